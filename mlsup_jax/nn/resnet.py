"""ResNet-18 / 34 in Flax (He et al. 2016; torchvision's layout), the retrieval backbone of ch. 6.

`ResNet(stage_sizes=(2, 2, 2, 2))` is ResNet-18: a 7×7/2 stem + 3×3/2 max-pool, four stages of
basic blocks (64, 128, 256, 512 channels × `width_multiplier`), global average pooling. Small
phantom images lose too much to the stem's /4, so `small_input=True` swaps it for one 3×3/1
convolution without pooling (as CIFAR ResNets do) — the block structure is unchanged.

Pretrained weights cannot be downloaded here; `load_torchvision_weights` converts a user-supplied
torchvision state dict (saved as `.npz` or given as a dict of arrays) into this module's
variables — the documented extension point for ImageNet initialisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mlsup_jax.nn.layers import TORCH_BN_MOMENTUM

__all__ = ["BasicBlock", "ResNet", "load_torchvision_weights"]


class BasicBlock(nn.Module):
  """Two 3×3 convolutions with BatchNorm and an identity (or 1×1 projection) shortcut."""

  features: int
  strides: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    def norm(name, zero=False):
      return nn.BatchNorm(
        use_running_average=not train,
        momentum=TORCH_BN_MOMENTUM,
        epsilon=1e-5,
        dtype=self.dtype,
        scale_init=nn.initializers.zeros if zero else nn.initializers.ones,
        name=name,
      )

    conv = dict(use_bias=False, dtype=self.dtype, padding=((1, 1), (1, 1)))
    h = nn.Conv(self.features, (3, 3), (self.strides,) * 2, name="conv1", **conv)(x)
    h = nn.relu(norm("bn1")(h))
    h = nn.Conv(self.features, (3, 3), name="conv2", **conv)(h)
    # The last BN of each residual branch starts at zero (Goyal et al.): blocks begin as identities.
    h = norm("bn2", zero=True)(h)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.Conv(
        self.features, (1, 1), (self.strides,) * 2, use_bias=False, dtype=self.dtype,
        name="downsample_conv",
      )(x)  # fmt: skip
      x = norm("downsample_bn")(x)
    return nn.relu(h + x)


class ResNet(nn.Module):
  """A basic-block ResNet: `x [B, H, W, C] → {"features": [B, F]}` (F = 512 · width_multiplier).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from mlsup_jax.nn.resnet import ResNet
    >>> model = ResNet(width_multiplier=0.125, small_input=True)   # ResNet-18 at 1/8 width
    >>> variables = model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 1)), train=False)
    >>> model.apply(variables, jnp.zeros((2, 32, 32, 1)), train=False)["features"].shape
    (2, 64)

  Attributes:
    stage_sizes: blocks per stage; (2, 2, 2, 2) is ResNet-18, (3, 4, 6, 3) ResNet-34.
    width_multiplier: scales every stage's channels (1.0: 64 … 512).
    small_input: a 3×3/1 stem without max-pool, for images of ≤ 64 px.
    dtype: compute dtype (params stay float32; features are returned in float32).
  """

  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  width_multiplier: float = 1.0
  small_input: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> dict[str, jax.Array]:
    width = max(1, int(round(64 * self.width_multiplier)))
    h = x.astype(self.dtype)
    bn = dict(
      use_running_average=not train, momentum=TORCH_BN_MOMENTUM, epsilon=1e-5, dtype=self.dtype
    )
    if self.small_input:
      h = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                  name="conv1")(h)  # fmt: skip
      h = nn.relu(nn.BatchNorm(name="bn1", **bn)(h))
    else:
      h = nn.Conv(width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                  dtype=self.dtype, name="conv1")(h)  # fmt: skip
      h = nn.relu(nn.BatchNorm(name="bn1", **bn)(h))
      h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, blocks in enumerate(self.stage_sizes):
      for block in range(blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        h = BasicBlock(width * 2**stage, strides, self.dtype, name=f"layer{stage + 1}_{block}")(
          h, train=train
        )
    return {"features": jnp.mean(h, axis=(1, 2)).astype(jnp.float32)}


def load_torchvision_weights(variables: Mapping, state_dict: Mapping[str, Any] | str) -> dict:
  """This module's `variables` with the tensors of a torchvision ResNet state dict.

  Supported: torchvision's `resnet18` / `resnet34` keys (`conv1.weight`, `bn1.*`,
  `layer{s}.{b}.conv{1,2}.weight`, `layer{s}.{b}.bn{1,2}.*`, `layer{s}.{b}.downsample.{0,1}.*`;
  `fc.*` is ignored). Convolution kernels are transposed from `[O, I, kh, kw]` to
  `[kh, kw, I, O]`. A 3-channel stem is summed over its input channels when the model takes one
  channel (grey radiographs), the usual way to reuse ImageNet weights.

  Save a state dict for this with
  `np.savez("r18.npz", **{k: v.numpy() for k, v in torchvision.models.resnet18(weights=...)
  .state_dict().items()})`.

  Args:
    variables: `{"params": …, "batch_stats": …}` of a `ResNet` (e.g. from `model.init`).
    state_dict: a mapping of numpy-convertible tensors, or the path of an `.npz`.

  Returns:
    New variables with every converted tensor in place.

  Raises:
    ValueError: a key the model lacks, a missing tensor, or a shape that does not fit.
  """
  if isinstance(state_dict, str):
    with np.load(state_dict) as f:
      state_dict = {k: f[k] for k in f.files}
  params = jax.tree.map(np.asarray, dict(variables["params"]))
  stats = jax.tree.map(np.asarray, dict(variables.get("batch_stats", {})))
  used = set()

  def take(key):
    if key not in state_dict:
      raise ValueError(f"the state dict has no {key!r}.")
    used.add(key)
    return np.asarray(state_dict[key], np.float32)

  def put(tree, path, value):
    node = tree
    for name in path[:-1]:
      node = node[name]
    old = node[path[-1]]
    if value.shape != old.shape:
      raise ValueError(f"{'/'.join(path)}: expected {old.shape}, got {value.shape}.")
    node[path[-1]] = value

  def conv(module, torch_key):
    kernel = take(torch_key).transpose(2, 3, 1, 0)
    expected = _get(params, (*module, "kernel")).shape
    if kernel.shape[2] == 3 and expected[2] == 1:
      kernel = kernel.sum(axis=2, keepdims=True)
    put(params, (*module, "kernel"), kernel)

  def norm(module, prefix):
    put(params, (*module, "scale"), take(prefix + ".weight"))
    put(params, (*module, "bias"), take(prefix + ".bias"))
    put(stats, (*module, "mean"), take(prefix + ".running_mean"))
    put(stats, (*module, "var"), take(prefix + ".running_var"))

  conv(("conv1",), "conv1.weight")
  norm(("bn1",), "bn1")
  for name in params:
    if not name.startswith("layer"):
      continue
    stage, block = name[len("layer") :].split("_")
    prefix = f"layer{stage}.{block}"
    for i in (1, 2):
      conv((name, f"conv{i}"), f"{prefix}.conv{i}.weight")
      norm((name, f"bn{i}"), f"{prefix}.bn{i}")
    if "downsample_conv" in params[name]:
      conv((name, "downsample_conv"), f"{prefix}.downsample.0.weight")
      norm((name, "downsample_bn"), f"{prefix}.downsample.1")
  extra = sorted(
    k for k in state_dict if k not in used and not k.startswith("fc.") and "num_batches" not in k
  )
  if extra:
    raise ValueError(f"the state dict has tensors this model lacks: {extra[:5]} …")
  return {"params": params, "batch_stats": stats}


def _get(tree, path):
  for name in path:
    tree = tree[name]
  return tree
