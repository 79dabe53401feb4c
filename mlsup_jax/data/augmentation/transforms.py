"""Grain transforms: normalisation, channel replication, dihedral ops, rotation and scaling, crops,
intensity jitter.

Random transforms are `grain.transforms.RandomMap`s: grain seeds each example's generator from
the pipeline seed and the example's index, so augmentation is reproducible and a resumed run
sees exactly the same augmented batches. Spatial transforms move every array that shares the
image's spatial shape (label, masks, intensity maps) together with the image.
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np
from scipy import ndimage

from mlsup_jax.data.augmentation.distortions import TendDistortion, UnseenTransform
from mlsup_jax.registry import Registry


def _spatial_keys(example: dict, spatial_dims: int) -> list[str]:
  shape = np.shape(example["image"])[:spatial_dims]
  return [k for k, v in example.items() if np.shape(v)[:spatial_dims] == shape]


@dataclasses.dataclass(frozen=True)
class Normalize(grain.transforms.Map):
  """`image ← (image − mean) / std` (the "zero-means" normalisation of SCU-Net)."""

  mean: float
  std: float

  def map(self, example):
    image = (np.asarray(example["image"], np.float32) - self.mean) / self.std
    return {**example, "image": image}


@dataclasses.dataclass(frozen=True)
class CtWindow(grain.transforms.Map):
  """CT display window: `image ← clip((HU − (level − width / 2)) / width, 0, 1)` as float32.

  E.g. level 40, width 400 (the abdominal soft-tissue window) maps −160 HU → 0 and 240 HU → 1.
  """

  level: float
  width: float

  def __post_init__(self):
    if not self.width > 0:
      raise ValueError(f"CtWindow width must be positive, got {self.width}.")

  def map(self, example):
    low = np.float32(self.level - self.width / 2.0)
    image = (np.asarray(example["image"], np.float32) - low) / np.float32(self.width)
    return {**example, "image": np.clip(image, 0.0, 1.0).astype(np.float32)}


@dataclasses.dataclass(frozen=True)
class ReplicateChannels(grain.transforms.Map):
  """Stacks copies of a one-channel image: `[..., 1] → [..., copies]`."""

  copies: int

  def map(self, example):
    image = np.asarray(example["image"])
    if image.shape[-1] != 1:
      return example
    return {**example, "image": np.repeat(image, self.copies, axis=-1)}


@dataclasses.dataclass(frozen=True)
class RandomDihedral(grain.transforms.RandomMap):
  """Uniformly one of {rot90, h-flip, v-flip, rot270, identity} (SCU-Net's augmentation)."""

  spatial_dims: int = 2

  def random_map(self, example, rng: np.random.Generator):
    op = int(rng.integers(5))
    out = dict(example)
    for key in _spatial_keys(example, self.spatial_dims):
      x = np.asarray(example[key])
      if op == 0:
        x = np.rot90(x, 1, axes=(0, 1))
      elif op == 1:
        x = x[:, ::-1]
      elif op == 2:
        x = x[::-1, :]
      elif op == 3:
        x = np.rot90(x, 3, axes=(0, 1))
      out[key] = np.ascontiguousarray(x)
    return out


@dataclasses.dataclass(frozen=True)
class RandomRotateScale(grain.transforms.RandomMap):
  """In-plane rotation and isotropic scaling about the centre (LTUDA's weak view).

  With probability 0.5 each (the LTUDA code's rule): a rotation by an angle uniform in
  `[−max_degrees, max_degrees]` and a zoom by a factor uniform in `[1 − max_scale_change,
  1 + max_scale_change]` (> 1 enlarges). Arrays whose key starts with `image` are interpolated
  linearly and padded with their minimum; the others (labels, masks) take the nearest value and
  are padded with 0. In 3-D the plane of `axes` moves (default the last two: the phantoms' `(z, y,
  x)`; NIfTI volumes stored `(x, y, z)` want `(0, 1)`), every slice alike. Unlike the
  authors' loader, which zooms in only along the diagonal (the crop's row and column offsets are
  one draw), the zoom is about the image centre.
  """

  max_degrees: float = 30.0
  max_scale_change: float = 0.25
  spatial_dims: int = 2
  axes: tuple[int, int] = (-2, -1)

  def random_map(self, example, rng: np.random.Generator):
    angle = np.deg2rad(rng.uniform(-self.max_degrees, self.max_degrees))
    scale = rng.uniform(1.0 - self.max_scale_change, 1.0 + self.max_scale_change)
    rotate, zoom = rng.uniform() < 0.5, rng.uniform() < 0.5
    if not rotate and not zoom:
      return example
    angle = angle if rotate else 0.0
    scale = scale if zoom else 1.0
    # Output → input map of the in-plane axes: rotate by −angle and shrink by the zoom.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.eye(self.spatial_dims)
    a, b = (axis % self.spatial_dims for axis in self.axes)
    matrix[np.ix_([a, b], [a, b])] = [[cos, -sin], [sin, cos]]
    out = dict(example)
    for key in _spatial_keys(example, self.spatial_dims):
      x = np.asarray(example[key])
      centre = (np.asarray(x.shape[: self.spatial_dims], np.float64) - 1.0) / 2.0
      offset = centre - matrix @ centre
      image_like = key.startswith("image")
      channels = x.reshape(*x.shape[: self.spatial_dims], -1)
      moved = np.stack(
        [
          ndimage.affine_transform(
            channels[..., c],
            matrix,
            offset=offset,
            order=1 if image_like else 0,
            mode="constant",
            cval=float(channels[..., c].min()) if image_like else 0.0,
          )
          for c in range(channels.shape[-1])
        ],
        axis=-1,
      )
      out[key] = moved.reshape(x.shape).astype(x.dtype)
    return out


@dataclasses.dataclass(frozen=True)
class RandomBrightness(grain.transforms.RandomMap):
  """Multiplies the image by a factor in `[1 − delta, 1 + delta]` (torchvision's ColorJitter)."""

  delta: float

  def random_map(self, example, rng: np.random.Generator):
    factor = np.float32(rng.uniform(1.0 - self.delta, 1.0 + self.delta))
    return {**example, "image": np.asarray(example["image"], np.float32) * factor}


@dataclasses.dataclass(frozen=True)
class RandomGaussianNoise(grain.transforms.RandomMap):
  """Adds `N(0, σ²)` to the image, σ drawn uniformly in `[0, std]` per example (a strong view)."""

  std: float

  def random_map(self, example, rng: np.random.Generator):
    image = np.asarray(example["image"], np.float32)
    sigma = np.float32(rng.uniform(0.0, self.std))
    noise = rng.standard_normal(image.shape).astype(np.float32) * sigma
    return {**example, "image": image + noise}


@dataclasses.dataclass(frozen=True)
class RandomCrop(grain.transforms.RandomMap):
  """A random `size`-sided crop of every spatial array (all spatial dims the same size)."""

  size: int
  spatial_dims: int = 2

  def random_map(self, example, rng: np.random.Generator):
    shape = np.shape(example["image"])[: self.spatial_dims]
    if any(s < self.size for s in shape):
      raise ValueError(f"RandomCrop size {self.size} exceeds the image's spatial shape {shape}.")
    starts = [int(rng.integers(s - self.size + 1)) for s in shape]
    window = tuple(slice(st, st + self.size) for st in starts)
    out = dict(example)
    for key in _spatial_keys(example, self.spatial_dims):
      out[key] = np.ascontiguousarray(np.asarray(example[key])[window])
    return out


# Name (in `config.data.*_transforms`) → factory taking the `config.data` section.
TRANSFORMS = Registry(
  "transform",
  {
    "normalize": lambda c: Normalize(mean=c.norm_mean, std=c.norm_std),
    "ct_window": lambda c: CtWindow(level=c.window_level, width=c.window_width),
    "replicate_channels": lambda c: ReplicateChannels(copies=c.in_channels),
    "random_dihedral": lambda c: RandomDihedral(spatial_dims=c.spatial_dims),
    "random_rotate_scale": lambda c: RandomRotateScale(
      max_degrees=c.get("rotate_degrees", 30.0),
      max_scale_change=c.get("scale_change", 0.25),
      spatial_dims=c.spatial_dims,
      axes=tuple(c.get("rotate_axes", (-2, -1))),
    ),
    "random_brightness": lambda c: RandomBrightness(delta=c.brightness_delta),
    "random_noise": lambda c: RandomGaussianNoise(std=c.noise_std),
    "random_crop": lambda c: RandomCrop(size=c.crop_size, spatial_dims=c.spatial_dims),
    "tend_distortion": lambda c: TendDistortion(preset=c.distortion_preset),
    "unseen_transform": lambda c: UnseenTransform(name=c.unseen_transform),
    "unseen_transform_image": lambda c: UnseenTransform(
      name=c.unseen_transform, output_key="image"
    ),
  },
)
