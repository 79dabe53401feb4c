"""mlsup_jax: medical image analysis under limited supervision, in JAX/Flax."""

__version__ = "0.1.0"
