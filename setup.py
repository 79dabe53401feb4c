"""Packaging for mlsup_jax.

The CPU install is the default and is the tested set; GPU/TPU users add an extra:
`pip install -e .[cuda12]` or `pip install -e .[tpu]`.
"""

from setuptools import find_packages, setup

# One tested set (Python 3.11, CPU). Bump together and re-run the suite.
INSTALL_REQUIRES = [
  "jax==0.10.2",
  "jaxlib==0.10.2",
  "flax==0.12.8",
  "optax==0.2.8",
  "orbax-checkpoint==0.12.8",
  "chex==0.1.92",
  "grain==0.2.18",
  "einops==0.8.2",
  "numpy==2.4.6",
  "scipy==1.17.1",
  "scikit-learn==1.9.1",
  "threadpoolctl==3.8.0",  # one BLAS thread for small eigh calls (ot/label_costs.py)
  "ott-jax==0.6.0",
  "tensorflow-datasets==4.9.10",
  "ml-collections==1.1.0",
  "absl-py==2.5.1",
  "tensorboardX==2.6.5",
  "nibabel==5.4.2",
  "pydicom==3.0.2",
  "pillow==13.0.0",
  "tifffile==2026.3.3",
  "matplotlib==3.11.2",
]

EXTRAS_REQUIRE = {
  "cuda12": ["jax[cuda12]==0.10.2"],
  "tpu": ["jax[tpu]==0.10.2"],
  "test": ["pytest==9.0.3", "pytest-timeout==2.4.0", "ruff==0.17.6"],
  # Only for the side-by-side timing leg in benchmarks/; never imported by the library.
  "bench": ["torch"],
}

setup(
  name="mlsup_jax",
  version="0.1.0",
  description="JAX/Flax methods for medical image analysis under limited supervision.",
  python_requires=">=3.11",
  packages=find_packages(include=["mlsup_jax", "mlsup_jax.*", "configs", "launch", "benchmarks"]),
  install_requires=INSTALL_REQUIRES,
  extras_require=EXTRAS_REQUIRE,
)
