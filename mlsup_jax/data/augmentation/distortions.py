"""TEND's synthetic novel samples: the authors' distortion presets, unseen transforms, grain maps.

TEND (thesis §S5.3) trains a classifier to tell ID images from strongly distorted copies of them.
`TEND_PRESETS` holds the authors' two option sets (RSNA: 8, IVC: 9), each option one
ImageMagick distortion of `image_warps.py` with its parameters in pixels of a 256² image
(scaled to the image's size when applied). `unseen_transform` holds the validation-only
transforms of Tables 4.5–4.6. `TendDistortion` / `UnseenTransform` are the grain maps
(registered as `tend_distortion` / `unseen_transform`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import grain
import numpy as np
from scipy import ndimage

from mlsup_jax.data.augmentation.image_warps import DISTORTIONS
from mlsup_jax.data.augmentation.warp_sampling import Viewport, check_image, map_coordinates

# The presets' pixel-valued parameters are for 256 × 256 images (the reference resolution).
REFERENCE_SIZE = 256
MATTE_GREY = 0xBD / 0xFF  # ImageMagick's default -mattecolor, as a fraction of the grey range
_SCALE_CACHE_SIZE = 64


# ----------------------------------------------------------------------------------------------
# TEND presets.


class DistortionOption(NamedTuple):
  """One preset option: `DISTORTIONS[method]` with `params` in pixels of a 256² image.

  Attributes:
    method: a key of `DISTORTIONS`.
    params: the ImageMagick arguments, as the reference code passes them to Wand.
    virtual_pixel: one of `VIRTUAL_PIXELS`.
    viewport: optional `(x, y, w, h)` destination viewport (256² pixels), then resized back.
  """

  method: str
  params: tuple[float, ...]
  virtual_pixel: str
  viewport: Viewport | None = None


_IVC_PERSPECTIVE = (0, 0, 30, 60, 140, 0, 110, 60, 0, 92, 2, 90, 140, 92, 138, 90)

# The reference code's two sets (one option drawn uniformly per image). Options where it sets no
# virtual pixel use ImageMagick's default, "edge". RSNA distorts the 256² resized image, so its
# pixel parameters are 256² pixels. ASSUMPTION: the IVC set (Wand's documentation examples, made
# for a 140 × 92 picture) was applied to the original, variously sized radiographs before the
# resize to 256; here it is read as 256² pixels like RSNA's.
TEND_PRESETS: dict[str, list[DistortionOption]] = {
  "rsna": [
    DistortionOption("barrel", (1.2, 0.5, 0.6, 1.0), "transparent"),
    # 3 pairs: ImageMagick's Perspective falls back to Affine.
    DistortionOption(
      "perspective", (90, 100, 115, 215, 113, 194, 201, 217, 172, 155, 241, 257), "background"
    ),
    DistortionOption("polar", (555,), "edge"),
    DistortionOption("arc", (60,), "tile"),
    # 1 pair: a translation by (−56, −25) px, wrapped around ("tile").
    DistortionOption("perspective", (80, 80, 24, 55), "tile"),
    # 2 pairs: a similarity.
    DistortionOption("perspective", (119, 112, 251, 169, 84, 108, 183, 197), "background"),
    DistortionOption("affine", (210, 108, 195, 175, 113, 119, 109, 236), "background"),
    DistortionOption("affine_projection", (0.8, 0.5, 0.0, 0.9, 5, 5), "background"),
  ],
  "ivc": [
    DistortionOption("barrel", (0.2, 0.0, 0.0, 1.0), "transparent"),
    DistortionOption(
      "perspective", (0, 0, 20, 60, 90, 0, 70, 63, 0, 90, 5, 83, 90, 90, 85, 88), "background"
    ),
    DistortionOption("arc", (95,), "edge"),
    DistortionOption("polar", (145,), "edge"),
    DistortionOption("arc", (60,), "tile"),
    DistortionOption("perspective", _IVC_PERSPECTIVE, "tile"),
    # The viewport variant: `distort:viewport = 300x200+50+50`, then resized to the image size.
    DistortionOption("perspective", _IVC_PERSPECTIVE, "edge", (50, 50, 300, 200)),
    DistortionOption("affine", (10, 10, 15, 15, 139, 0, 100, 20, 0, 92, 50, 80), "background"),
    DistortionOption("affine_projection", (0.7, 0.1, 0.0, 0.6, 5, 5), "background"),
  ],
}


def _check_preset(preset: str) -> list[DistortionOption]:
  if preset not in TEND_PRESETS:
    raise KeyError(f"Unknown TEND preset {preset!r}. Known presets: {', '.join(TEND_PRESETS)}.")
  return TEND_PRESETS[preset]


def _levels(image: np.ndarray, value_range) -> tuple[float, float]:
  if value_range is not None:
    low, high = value_range
    return float(low), float(high)
  return float(np.min(image)), float(np.max(image))


@functools.lru_cache(maxsize=_SCALE_CACHE_SIZE)
def _scaled_option(option: DistortionOption, shape: tuple[int, int]) -> DistortionOption:
  """`option` with its pixel-valued parameters moved from 256² pixels to an `[H, W]` image."""
  h, w = shape
  fx, fy = w / REFERENCE_SIZE, h / REFERENCE_SIZE
  params = tuple(float(p) for p in option.params)
  if option.method in ("perspective", "affine"):
    params = tuple(p * (fx if k % 2 == 0 else fy) for k, p in enumerate(params))  # u v x y
  elif option.method == "affine_projection":
    params = (*params[:4], params[4] * fx, params[5] * fy)
  elif option.method == "polar":
    params = (params[0] * min(fx, fy),)
  viewport = option.viewport
  if viewport is not None:
    x, y, vw, vh = viewport
    viewport = (x * fx, y * fy, vw * fx, vh * fy)
  return option._replace(params=params, viewport=viewport)


def apply_option(image, option: DistortionOption, *, value_range=None) -> np.ndarray:
  """Applies one preset option, its pixel parameters scaled from 256² to the image's size.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    option: a `DistortionOption` (parameters in 256² pixels).
    value_range: `(black, white)` grey levels for constant pixels: `"transparent"` fills with
      black, `"background"` with white (ImageMagick's default background), a perspective's sky
      with ImageMagick's default matte grey `#bdbdbd`. Default: the image's own min and max,
      so the output stays in the input's range.

  Returns:
    The distorted image, same shape and dtype.
  """
  image = check_image(image)
  if option.method not in DISTORTIONS:
    raise KeyError(f"Unknown distortion {option.method!r}. Known: {', '.join(DISTORTIONS)}.")
  black, white = _levels(image, value_range)
  fill = white if option.virtual_pixel == "background" else black
  scaled = _scaled_option(option, tuple(image.shape[:2]))
  kwargs = {"virtual_pixel": scaled.virtual_pixel, "fill": fill}
  if scaled.viewport is not None:
    kwargs["viewport"] = scaled.viewport
  if scaled.method == "perspective":
    kwargs["matte"] = black + MATTE_GREY * (white - black)
  if scaled.method in ("perspective", "affine"):
    return DISTORTIONS[scaled.method](image, scaled.params, **kwargs)
  return DISTORTIONS[scaled.method](image, *scaled.params, **kwargs)


def random_distortion(
  image, rng: np.random.Generator, preset: str = "rsna", *, value_range=None
) -> np.ndarray:
  """TEND's synthetic OOD sample: one option of `TEND_PRESETS[preset]`, drawn uniformly.

  Args:
    image: `[H, W]` or `[H, W, C]` (grey; every channel gets the same map).
    rng: the generator (only the choice of option is random).
    preset: `"rsna"` (8 options) or `"ivc"` (9 options).
    value_range: see `apply_option`.

  Returns:
    The distorted image, same shape and dtype, values in the input's range by default.
  """
  options = _check_preset(preset)
  image = check_image(image)
  option = options[int(rng.integers(len(options)))]
  return apply_option(image, option, value_range=value_range)


# ----------------------------------------------------------------------------------------------
# Validation-only ("unseen") transforms. Their parameters are NOT STATED in the thesis; the
# defaults below are our choice, picked to be clearly visible at 64²–256².

UNSEEN_TRANSFORMS = ("random_cut", "random_crop_resize", "additive_noise", "gaussian_blur")
CUT_FRACTION = (0.25, 0.5)  # sides of the cut-out rectangle, as fractions of H and W
CROP_FRACTION = (0.4, 0.7)  # side of the crop, as a fraction of H and W (same for both)
NOISE_STD = (0.05, 0.15)  # additive Gaussian noise std, as a fraction of the grey range
BLUR_SIGMA = (3.0, 6.0)  # Gaussian blur sigma in pixels of a 256² image


def unseen_transform(
  image, rng: np.random.Generator, name: str | None = None, *, value_range=None
) -> np.ndarray:
  """One of the validation-only transforms, with randomly drawn strength.

  * `"random_cut"`: one rectangle, sides `U(CUT_FRACTION)`·(H, W), placed uniformly, set black.
  * `"random_crop_resize"`: a crop of side `U(CROP_FRACTION)`·(H, W), placed uniformly,
    resized back to `[H, W]` (bilinear).
  * `"additive_noise"`: `+ N(0, σ²)` with `σ = U(NOISE_STD)·(white − black)`, clipped.
  * `"gaussian_blur"`: `σ = U(BLUR_SIGMA)·min(H, W)/256` pixels, spatial axes only.

  Args:
    image: `[H, W]` or `[H, W, C]`.
    rng: the generator.
    name: one of `UNSEEN_TRANSFORMS`; None draws one uniformly.
    value_range: `(black, white)`; default the image's min and max.

  Returns:
    The transformed image, same shape and dtype, values in `value_range`.
  """
  image = check_image(image)
  if name is None:
    name = UNSEEN_TRANSFORMS[int(rng.integers(len(UNSEEN_TRANSFORMS)))]
  if name not in UNSEEN_TRANSFORMS:
    raise KeyError(f"Unknown unseen transform {name!r}. Known: {', '.join(UNSEEN_TRANSFORMS)}.")
  black, white = _levels(image, value_range)
  h, w = image.shape[:2]
  work = image.astype(np.float32 if not np.issubdtype(image.dtype, np.floating) else image.dtype)
  if name == "random_cut":
    ch = max(1, round(rng.uniform(*CUT_FRACTION) * h))
    cw = max(1, round(rng.uniform(*CUT_FRACTION) * w))
    top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    out = work.copy()
    out[top : top + ch, left : left + cw] = black
  elif name == "random_crop_resize":
    frac = rng.uniform(*CROP_FRACTION)
    ch, cw = frac * h, frac * w
    top, left = rng.uniform(0, h - ch), rng.uniform(0, w - cw)
    rows = top + (np.arange(h) + 0.5) * (ch / h) - 0.5
    cols = left + (np.arange(w) + 0.5) * (cw / w) - 0.5
    coords = np.stack(np.broadcast_arrays(rows[:, None], cols[None, :]))
    out = map_coordinates(work, coords, "edge", 0.0)
  elif name == "additive_noise":
    std = rng.uniform(*NOISE_STD) * (white - black)
    out = np.clip(work + rng.normal(0.0, std, work.shape), black, white)
  else:
    sigma = rng.uniform(*BLUR_SIGMA) * min(h, w) / REFERENCE_SIZE
    sigmas = (sigma, sigma) + (0.0,) * (work.ndim - 2)
    out = ndimage.gaussian_filter(work, sigmas, mode="nearest")
  if not np.issubdtype(image.dtype, np.floating):
    info = np.iinfo(image.dtype)
    return np.clip(np.rint(out), info.min, info.max).astype(image.dtype)
  return np.asarray(out, image.dtype)


# ----------------------------------------------------------------------------------------------
# Grain transforms (registered in `mlsup_jax.data.augmentation.transforms.TRANSFORMS`).


@dataclasses.dataclass(frozen=True)
class TendDistortion(grain.transforms.RandomMap):
  """Adds `"distorted"`: `random_distortion(example["image"], rng, preset)` (TEND's fake OOD)."""

  preset: str = "rsna"
  value_range: tuple[float, float] | None = None

  def __post_init__(self):
    _check_preset(self.preset)

  def random_map(self, example, rng: np.random.Generator):
    distorted = random_distortion(example["image"], rng, self.preset, value_range=self.value_range)
    return {**example, "distorted": distorted}


@dataclasses.dataclass(frozen=True)
class UnseenTransform(grain.transforms.RandomMap):
  """Sets `example[output_key]` to `unseen_transform(example["image"], rng, name)` (None: one
  drawn per call): `"distorted"` adds it next to the image; `"image"` replaces the image
  (evaluating a detector on transformed ID images, Tables 4.5–4.6)."""

  name: str | None = None
  value_range: tuple[float, float] | None = None
  output_key: str = "distorted"

  def __post_init__(self):
    if self.name is not None and self.name not in UNSEEN_TRANSFORMS:
      raise KeyError(
        f"Unknown unseen transform {self.name!r}. Known: {', '.join(UNSEEN_TRANSFORMS)}."
      )

  def random_map(self, example, rng: np.random.Generator):
    distorted = unseen_transform(example["image"], rng, self.name, value_range=self.value_range)
    return {**example, self.output_key: distorted}


def distortion_names(preset: str) -> list[str]:
  """Short labels of a preset's options, e.g. `"arc(60) tile"` (figures, logs)."""
  labels = []
  for option in _check_preset(preset):
    params = ",".join(f"{p:g}" for p in option.params[:4])
    if len(option.params) > 4:
      params += ",…"
    view = " viewport" if option.viewport is not None else ""
    labels.append(f"{option.method}({params}) {option.virtual_pixel}{view}")
  return labels
