"""MORSE: an implicit neural rendering head with a stochastic mixture of experts, on any backbone.

After the authors' `code/model_2d.py` (`PointRend` with `MOEHead_random`) and
`code/point_rend/{semantic_seg,point_head}.py` (`PointRendSemSegHead`, `ImplicitPointHead`).
A segmentation backbone (`nn.SEGMENTATION_MODELS`, built with `return_scales=True`) gives coarse
logits `[B, *S, K]` and its decoder's feature maps, coarsest first. Then:

1. **Feature fusion** into one fine feature map at the finest scale:
   * `moe=True` (the paper): the multi-scale **mixture of experts** — each scale through its own
     two-layer 1×1 MLP (`expert_dim`), resized (linear) to the finest scale; a gate (two 3×3
     conv + BN + ReLU layers over the concatenation, softmax over scales) weighs the experts per
     pixel; with `stochastic_gating` a random number `r ∈ {0, …, max_dropped_experts}` of experts
     (a random subset) has its gate zeroed in training (the authors' `MOEHead_random`, `use_num`
     4); then a two-layer MLP, channel dropout 0.1 and a 1×1 projection to `feature_dim`;
   * `moe=False`: the authors' `FeatureExtractor` — top-down: `x ← conv1×1(x) + x`, resize to
     the next scale, concatenate it; a final 1×1 conv to `feature_dim`.
2. **Point head** on points at continuous coordinates (`point_rendering.py`): the fine features
   and the coarse logits sampled there, with (`implicit=True`, the paper) random Fourier features
   of the coordinates (`[sin, cos](2π·(2c − 1)·M)`, M `[d, 128]` ~ U[0, 1], fixed); `num_fc`
   Dense + ReLU layers of width `fc_dim`, the coarse logits concatenated after each; a linear
   predictor to K classes.
   * training: `train_points` points chosen by uncertainty with oversampling and an importance
     ratio; the output carries `point_logits [B, N, K]` and `point_coords [B, N, d]` for the
     point loss (the method samples the labels at the coordinates);
   * inference: `subdivision_steps` times, the `subdivision_points` most uncertain pixels of the
     current logits are re-predicted by the head and written back (the authors' loop; their
     backbones predict at full resolution, so there is no upsampling between steps).

The official code turns all of this off by default (`--implicit`, `--moe`, `--moe_random` False);
our defaults are the paper's method: `implicit`, `moe` and `stochastic_gating` on. All point
counts are fixed, so the head lives inside one jitted step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from mlsup_jax.nn import point_rendering as pr
from mlsup_jax.nn.layers import TORCH_BN_MOMENTUM

__all__ = ["FeatureFusion", "MixtureOfExperts", "Morse", "PointHead", "expert_mask"]


def _resize(x: jax.Array, spatial: tuple[int, ...]) -> jax.Array:
  if x.shape[1:-1] == spatial:
    return x
  return jax.image.resize(x, (x.shape[0], *spatial, x.shape[-1]), "linear")


def expert_mask(key: jax.Array, num_experts: int, max_dropped: int) -> jax.Array:
  """`[E]` bool: `r ~ U{0, …, min(max_dropped, E)}` experts, a random subset, are off (False).

  The authors' `MOEHead_random`: `random.sample(range(E), random.randint(0, use_num))`.
  """
  count_key, order_key = jax.random.split(key)
  count = jax.random.randint(count_key, (), 0, min(max_dropped, num_experts) + 1)
  rank = jnp.argsort(jax.random.uniform(order_key, (num_experts,)))  # a random permutation
  return rank >= count


class MixtureOfExperts(nn.Module):
  """Multi-scale features → `[B, *S_finest, feature_dim]` (module docstring, 1, `moe=True`)."""

  feature_dim: int = 256
  expert_dim: int = 256
  stochastic_gating: bool = True
  max_dropped_experts: int = 4
  dropout_rate: float = 0.1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, scales: Sequence[jax.Array], *, train: bool) -> jax.Array:
    d = scales[-1].ndim - 2
    finest = scales[-1].shape[1:-1]
    experts = []
    for x in scales:
      for _ in range(2):
        x = nn.relu(nn.Dense(self.expert_dim, dtype=self.dtype)(x))
      experts.append(_resize(x, finest))
    stacked = jnp.stack(experts, axis=-2)  # [B, *S, E, D]
    gate = jnp.concatenate(experts, axis=-1)
    for width in (self.feature_dim, len(scales)):
      gate = nn.Conv(width, (3,) * d, use_bias=False, dtype=self.dtype)(gate)
      gate = nn.BatchNorm(
        use_running_average=not train, momentum=TORCH_BN_MOMENTUM, dtype=self.dtype
      )(gate)
      gate = nn.relu(gate)
    weights = jax.nn.softmax(gate.astype(jnp.float32), axis=-1)  # [B, *S, E]
    if train and self.stochastic_gating:
      keep = expert_mask(self.make_rng("dropout"), len(scales), self.max_dropped_experts)
      weights = weights * keep.astype(weights.dtype)
    x = jnp.sum(stacked * weights[..., None].astype(stacked.dtype), axis=-2)
    for _ in range(2):
      x = nn.relu(nn.Dense(self.expert_dim, dtype=self.dtype)(x))
    if self.dropout_rate:
      # Channel dropout (PyTorch Dropout2d): one draw per sample and channel.
      x = nn.Dropout(self.dropout_rate, broadcast_dims=tuple(range(1, d + 1)))(
        x, deterministic=not train
      )
    return nn.Dense(self.feature_dim, dtype=self.dtype)(x)


class FeatureFusion(nn.Module):
  """The authors' `FeatureExtractor` (module docstring, 1, `moe=False`)."""

  feature_dim: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, scales: Sequence[jax.Array], *, train: bool) -> jax.Array:
    del train
    x = scales[0]
    for nxt in scales[1:]:
      x = nn.Dense(x.shape[-1], use_bias=False, dtype=self.dtype)(x) + x
      x = jnp.concatenate([_resize(x, nxt.shape[1:-1]), nxt.astype(x.dtype)], axis=-1)
    return nn.Dense(self.feature_dim, use_bias=False, dtype=self.dtype)(x)


class PointHead(nn.Module):
  """Point features + coarse logits (+ Fourier features) → point logits (module docstring, 2)."""

  num_classes: int
  fc_dim: int = 512
  num_fc: int = 3
  implicit: bool = True
  encoding_features: int = 128
  encoding_seed: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fine: jax.Array, coarse: jax.Array, coords: jax.Array) -> jax.Array:
    """`fine: [B, N, C]`, `coarse: [B, N, K]`, `coords: [B, N, d]` → `[B, N, K]` float32."""
    parts = [fine]
    if self.implicit:
      # Fixed (not trained) Gaussian-free random matrix ~ U[0, 1], as the authors' buffer.
      matrix = jax.random.uniform(
        jax.random.key(self.encoding_seed), (coords.shape[-1], self.encoding_features)
      )
      parts.insert(0, pr.fourier_features(coords.astype(jnp.float32), matrix))
    coarse = coarse.astype(self.dtype)
    x = jnp.concatenate([*(p.astype(self.dtype) for p in parts), coarse], axis=-1)
    for _ in range(self.num_fc):
      x = nn.relu(nn.Dense(self.fc_dim, dtype=self.dtype)(x))
      x = jnp.concatenate([x, coarse], axis=-1)
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


def _backbone_outputs(outputs) -> tuple[jax.Array, list[jax.Array]]:
  """(coarse per-pixel logits, decoder scales) of a backbone built with `return_scales=True`."""
  from mlsup_jax.losses.mask_transformer import layer_outputs

  if not isinstance(outputs, Mapping) or "scales" not in outputs:
    raise ValueError("MORSE's backbone must return {'logits' | mask outputs, 'scales'}.")
  if "logits" in outputs:
    logits = outputs["logits"]
  else:  # A mask transformer: its semantic log-probabilities.
    logits = layer_outputs(outputs)["logits"]
  return logits.astype(jnp.float32), list(outputs["scales"])


class Morse(nn.Module):
  """Backbone + MORSE head: `[B, *S, C]` → `{"logits", ...}` (module docstring).

  Attributes:
    backbone: the backbone's model section (`name` one of `nn.SEGMENTATION_MODELS`, its fields;
      `return_scales` is set here).
    num_classes: K (must equal the backbone's).
    spatial_dims: 2 or 3 (passed on to the backbone when it takes it).
    feature_dim: width of the fused fine features (the authors' `in_features` 256).
    expert_dim: width of each expert's MLP (their 256).
    moe, stochastic_gating, max_dropped_experts: feature fusion (module docstring).
    implicit: Fourier features of the coordinates in the point head.
    fc_dim, num_fc: the point head's MLP (their width is in_features + 256 = 512, 3 layers).
    train_points, oversample, importance: training points (their 2048, 3, 0.75).
    subdivision_steps, subdivision_points: inference refinement (their 2, 8192).
    dtype: compute dtype.
  """

  backbone: Mapping
  num_classes: int
  spatial_dims: int = 2
  feature_dim: int = 256
  expert_dim: int = 256
  moe: bool = True
  stochastic_gating: bool = True
  max_dropped_experts: int = 4
  implicit: bool = True
  fc_dim: int = 512
  num_fc: int = 3
  train_points: int = 2048
  oversample: float = 3.0
  importance: float = 0.75
  subdivision_steps: int = 2
  subdivision_points: int = 8192
  dtype: Any = jnp.float32

  def setup(self):
    from mlsup_jax.nn import SEGMENTATION_MODELS, build_model

    section = dict(self.backbone)
    if section.get("name") not in SEGMENTATION_MODELS or section.get("name") == "morse":
      raise ValueError(
        f"MORSE's backbone must be one of {SEGMENTATION_MODELS}, got {section.get('name')!r}."
      )
    if int(section.get("num_classes", self.num_classes)) != self.num_classes:
      raise ValueError(
        f"backbone num_classes {section['num_classes']} ≠ MORSE num_classes {self.num_classes}."
      )
    section.update(num_classes=self.num_classes, return_scales=True)
    self.net = build_model(ml_collections.ConfigDict(section), spatial_dims=self.spatial_dims)
    if self.moe:
      self.fusion = MixtureOfExperts(
        self.feature_dim,
        self.expert_dim,
        self.stochastic_gating,
        self.max_dropped_experts,
        dtype=self.dtype,
      )
    else:
      self.fusion = FeatureFusion(self.feature_dim, dtype=self.dtype)
    self.head = PointHead(
      self.num_classes, self.fc_dim, self.num_fc, self.implicit, dtype=self.dtype
    )

  def _points(self, features, coarse, coords):
    fine = pr.point_sample(features, coords)
    return self.head(fine, pr.point_sample(coarse, coords), coords)

  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    """Training: `{"logits": coarse, "point_logits": [B, N, K], "point_coords": [B, N, d]}`;
    inference: `{"logits": refined, "coarse_logits": coarse}` (all logits `[B, *S, K]`)."""
    coarse, scales = _backbone_outputs(self.net(x, train=train))
    features = self.fusion(scales, train=train)
    if train:
      coords = pr.uncertain_points_with_randomness(
        self.make_rng("dropout"), coarse, self.train_points, self.oversample, self.importance
      )
      return {
        "logits": coarse,
        "point_logits": self._points(features, coarse, coords),
        "point_coords": coords,
      }
    refined = coarse
    batch, k = coarse.shape[0], coarse.shape[-1]
    for _ in range(self.subdivision_steps):
      index, coords = pr.uncertain_points_on_grid(pr.uncertainty(refined), self.subdivision_points)
      point_logits = self._points(features, coarse, coords)
      flat = refined.reshape(batch, -1, k)
      flat = flat.at[jnp.arange(batch)[:, None], index].set(point_logits)
      refined = flat.reshape(coarse.shape)
    return {"logits": refined, "coarse_logits": coarse}
