"""Mask transformer for MaxQuery: a U-Net pixel backbone + a kMaX-style clustering decoder.

Yuan et al. (CVPR 2023) build MaxQuery on an nnU-Net pixel backbone and a k-means mask
transformer decoder (kMaX-DeepLab, Yu et al. ECCV 2022). No code was released; this module
follows the kMaX reference layers (spec `reference_code_constants.md` §1) at sizes set by the
config, for 2-D or 3-D inputs:

* `N` object queries are learned cluster centres `[N, D]` (truncated normal, std 1), tiled over
  the batch.
* Each decoder layer, at one backbone scale (coarse → fine):
  1. pixel space: `conv1×1 → BN → GELU` of the backbone features (`D` channels);
  2. **assignment** (the predictor): `A[b, p, n] = BN₁(⟨L2norm(pixel_head(p)), mask_head(q_n)⟩)`,
     the single-channel BN's scale initialised to 0.1 as in kMaX; class logits per query;
  3. **k-means update**: `Δ_n = Σ_p onehot(argmax_n A)[p, n] · value(p)` — a *sum* over the
     pixels assigned to each centre, with a stop-gradient on the hard assignment — then
     `q ← q + BN₀(W·BN(Δ))` (the last BN's scale initialised to 0, so each block starts as the
     identity);
  4. multi-head self-attention among the queries, then an FFN, both residual with zero-init BN.
* After the last layer a final predictor runs on the full-resolution backbone features.

Outputs (MaskFormer semantic inference: `semantic_log_probs`): `mask_logits [B, *S, N]`
(pre-softmax pixel–query affinities at full resolution — the MaxQuery score is `−max_n`),
`class_logits [B, N, K]` and `aux`: the same pair from every decoder layer, at that layer's
resolution (deep supervision compares them with down-sampled labels, as kMaX and nnU-Net do).

Reconstructed choices [R] (the paper gives none): no void class (every query votes for one of
the K inlier classes; the loss is a semantic loss, not a matched panoptic loss); the class head
is one dense layer; there is no drop-path; BN momentum 0.9 (PyTorch's 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mlsup_jax.nn.layers import TORCH_BN_MOMENTUM
from mlsup_jax.nn.unet import UNetBackbone
from mlsup_jax.ood.scores import semantic_probabilities


def _batch_norm(train: bool, scale: float = 1.0, dtype: Any = jnp.float32) -> nn.BatchNorm:
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=TORCH_BN_MOMENTUM,
    epsilon=1e-3,
    scale_init=nn.initializers.constant(scale),
    dtype=dtype,
  )


def _flatten_pixels(x: jax.Array) -> jax.Array:
  """`[B, *S, C] → [B, P, C]`."""
  return x.reshape(x.shape[0], -1, x.shape[-1])


def semantic_log_probs(mask_logits: jax.Array, class_logits: jax.Array) -> jax.Array:
  """MaskFormer semantic inference, as log-probabilities (valid logits for the losses).

  `seg[b, p, k] = Σ_n softmax_n(A)[b, p, n] · softmax_k(class_logits)[b, n, k]` is one batched
  matmul (`ood.scores.semantic_probabilities`); the log is floored at 1e-30 so an underflowed
  class stays finite.

  Args:
    mask_logits: `[B, *S, N]`.
    class_logits: `[B, N, K]`.

  Returns:
    `[B, *S, K]` log-probabilities.
  """
  seg = semantic_probabilities(mask_logits.astype(jnp.float32), class_logits.astype(jnp.float32))
  return jnp.log(jnp.maximum(seg, 1e-30))


class PixelSpace(nn.Module):
  """`conv1×1 → BN → GELU`: backbone features to the decoder width `[B, *S, D]`."""

  hidden: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = nn.Dense(self.hidden, use_bias=False, dtype=self.dtype)(x)
    return nn.gelu(_batch_norm(train, dtype=self.dtype)(x))


class KMaXPredictor(nn.Module):
  """The assignment step: pixel–query affinities and per-query class logits.

  Pixel head: depth-wise conv `kernel` (kMaX: 5; 1 skips it) → BN → GELU → 1×1 → BN → GELU →
  1×1 (mask_dim) → BN, then L2 normalised over channels; mask head: dense (mask_dim) → BN on
  the queries.
  """

  mask_dim: int
  num_classes: int
  spatial_dims: int
  kernel: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, pixel: jax.Array, queries: jax.Array, train: bool):
    """`pixel: [B, *S, D]`, `queries: [B, N, D]` → (`mask_logits [B, *S, N]`, `[B, N, K]`)."""
    width = pixel.shape[-1]
    p = pixel
    if self.kernel > 1:
      p = nn.Conv(
        width,
        (self.kernel,) * self.spatial_dims,
        padding="SAME",
        feature_group_count=width,
        use_bias=False,
        dtype=self.dtype,
      )(p)
    p = nn.gelu(_batch_norm(train, dtype=self.dtype)(p))
    p = nn.Dense(width, use_bias=False, dtype=self.dtype)(p)
    p = nn.gelu(_batch_norm(train, dtype=self.dtype)(p))
    p = nn.Dense(self.mask_dim, use_bias=False, dtype=self.dtype)(p)
    p = _batch_norm(train, dtype=self.dtype)(p)
    p = p.astype(jnp.float32)
    p = p * jax.lax.rsqrt(jnp.sum(p * p, axis=-1, keepdims=True) + 1e-12)
    q = nn.Dense(self.mask_dim, use_bias=False, dtype=self.dtype)(queries)
    q = _batch_norm(train, dtype=self.dtype)(q).astype(jnp.float32)
    logits = jnp.einsum("b...c,bnc->b...n", p, q)
    # kMaX's single-channel BN on the affinities (scale starts at 0.1).
    logits = _batch_norm(train, scale=0.1)(logits[..., None])[..., 0]
    class_logits = nn.Dense(self.num_classes, dtype=self.dtype)(queries).astype(jnp.float32)
    return logits, class_logits


class KMaXLayer(nn.Module):
  """One k-means cross-attention block + query self-attention + FFN."""

  mask_dim: int
  num_classes: int
  spatial_dims: int
  num_heads: int = 4
  ffn_dim: int = 256
  pixel_head_kernel: int = 5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, queries: jax.Array, pixel: jax.Array, train: bool):
    """`queries: [B, N, D]`, `pixel: [B, *S, C]` → (new queries, (mask_logits, class_logits))."""
    hidden = queries.shape[-1]
    pixel_space = PixelSpace(hidden, self.dtype)(pixel, train)
    mask_logits, class_logits = KMaXPredictor(
      self.mask_dim, self.num_classes, self.spatial_dims, self.pixel_head_kernel, self.dtype
    )(pixel_space, queries, train)

    # k-means update: hard assignment (no gradient), sum of the assigned pixel values.
    flat_logits = _flatten_pixels(mask_logits)
    assignment = jax.lax.stop_gradient(
      jax.nn.one_hot(jnp.argmax(flat_logits, axis=-1), flat_logits.shape[-1], dtype=self.dtype)
    )
    value = nn.Dense(hidden, use_bias=False, dtype=self.dtype)(pixel_space)
    delta = jnp.einsum("bpn,bpd->bnd", assignment, _flatten_pixels(value))
    delta = _batch_norm(train, dtype=self.dtype)(delta)
    delta = nn.Dense(hidden, use_bias=False, dtype=self.dtype)(delta)
    queries = queries + _batch_norm(train, scale=0.0, dtype=self.dtype)(delta)

    # Self-attention among the queries.
    attended = nn.MultiHeadDotProductAttention(
      num_heads=self.num_heads, qkv_features=hidden, use_bias=False, dtype=self.dtype
    )(queries, queries)
    queries = nn.gelu(queries + _batch_norm(train, scale=0.0, dtype=self.dtype)(attended))

    # FFN.
    h = nn.Dense(self.ffn_dim, use_bias=False, dtype=self.dtype)(queries)
    h = nn.gelu(_batch_norm(train, dtype=self.dtype)(h))
    h = nn.Dense(hidden, use_bias=False, dtype=self.dtype)(h)
    queries = nn.gelu(queries + _batch_norm(train, scale=0.0, dtype=self.dtype)(h))
    return queries, (mask_logits, class_logits)


class KMaX(nn.Module):
  """U-Net backbone + kMaX clustering decoder (see the module docstring).

  Attributes:
    num_classes: K inlier classes (background included).
    num_queries: N object queries (MaxQuery: 32 = 16 background + 4 organ + 12 tumour).
    backbone_features: U-Net channels per level, finest first.
    hidden_dim: query / pixel-space width D (kMaX 256).
    mask_dim: width of the affinity embedding (kMaX 128).
    num_heads: query self-attention heads (kMaX 8).
    ffn_dim: FFN width (kMaX 2048).
    blocks_per_scale: decoder layers at each backbone scale, coarsest first (kMaX (2, 2, 2) at
      strides 32/16/8); needs `len(blocks_per_scale) < len(backbone_features)`.
    pixel_head_kernel: depth-wise kernel of the predictors' pixel heads (kMaX 5; 1 removes the
      depth-wise conv, which is slow on CPUs).
    spatial_dims: 2 or 3.
    dropout_rate: backbone dropout (0: deterministic network).
    dtype: computation dtype (affinities and logits are float32).
    return_scales: also return the pixel decoder's feature maps, coarsest first, as `"scales"`
      (for a head on top, e.g. MORSE).
  """

  num_classes: int
  num_queries: int = 32
  backbone_features: Sequence[int] = (16, 32, 64, 128)
  hidden_dim: int = 64
  mask_dim: int = 32
  num_heads: int = 4
  ffn_dim: int = 256
  blocks_per_scale: Sequence[int] = (1, 1, 1)
  pixel_head_kernel: int = 5
  spatial_dims: int = 2
  dropout_rate: float = 0.0
  dtype: Any = jnp.float32
  return_scales: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict:
    """`x: [B, *S, C]` → `{"mask_logits", "class_logits", "aux"}` (module docstring)."""
    if len(self.blocks_per_scale) >= len(self.backbone_features):
      raise ValueError(
        f"blocks_per_scale {tuple(self.blocks_per_scale)} needs fewer scales than the "
        f"{len(self.backbone_features)} backbone levels (the finest is the final predictor's)."
      )
    pixel_features = UNetBackbone(
      self.backbone_features, self.spatial_dims, self.dropout_rate, self.dtype
    )(x, train=train)
    centres = self.param(
      "cluster_centres",
      nn.initializers.truncated_normal(stddev=1.0),
      (self.num_queries, self.hidden_dim),
    )
    queries = jnp.broadcast_to(centres, (x.shape[0], *centres.shape)).astype(self.dtype)
    aux = []
    for scale, num_blocks in enumerate(self.blocks_per_scale):
      for _ in range(num_blocks):
        queries, (mask_logits, class_logits) = KMaXLayer(
          self.mask_dim,
          self.num_classes,
          self.spatial_dims,
          self.num_heads,
          self.ffn_dim,
          self.pixel_head_kernel,
          self.dtype,
        )(queries, pixel_features[scale], train)
        aux.append({"mask_logits": mask_logits, "class_logits": class_logits})
    # The final predictor only embeds pixels (no centre update), so its full-resolution pixel
    # space can be as narrow as the mask embedding: the bulk of the decoder's cost otherwise.
    pixel_space = PixelSpace(self.mask_dim, self.dtype)(pixel_features[-1], train)
    mask_logits, class_logits = KMaXPredictor(
      self.mask_dim, self.num_classes, self.spatial_dims, self.pixel_head_kernel, self.dtype
    )(pixel_space, queries, train)
    outputs = {"mask_logits": mask_logits, "class_logits": class_logits, "aux": tuple(aux)}
    if self.return_scales:
      outputs["scales"] = tuple(pixel_features)
    return outputs
