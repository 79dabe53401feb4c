"""Optimal Transport Dataset Distance (OTDD) on ott-jax: see `mlsup_jax.ot.otdd`."""

from mlsup_jax.ot.features import embed, flatten_pixels
from mlsup_jax.ot.otdd import OTDDResult, otdd
from mlsup_jax.ot.sinkhorn_solver import SinkhornSettings

__all__ = ["OTDDResult", "SinkhornSettings", "embed", "flatten_pixels", "otdd"]
