"""Synthetic mammograms with breast arterial calcification (BAC) for SCU-Net (spec S4).

Each whole image is a mammogram-like grey image (a `image_size`² stand-in for a full-field
digital mammogram):

* a breast silhouette (a half-ellipse with a wobbly skin line attached to the chest wall on the
  left or right, black background) whose thickness, and so brightness, falls off near the skin;
* for about half the images, a bright pectoral-muscle triangle in the upper chest-wall corner
  (as in MLO views);
* fibroglandular tissue: fractal (1/f³) blobs and ridged strands, thresholded softly into dense
  tissue, denser near the chest wall and behind the nipple, with a per-image breast density
  from fatty to extremely dense, plus fine mottling;
* unlabelled distractors: faint non-calcified soft vessels, the soft-tissue trace of every
  calcified artery, and small bright punctate benign calcifications;
* for about 80% of the images, 1–4 calcified arteries: thin (1–4 px wide, width varying along
  the vessel) curvilinear bright structures, interrupted into segments, beaded, sometimes
  "tram-track" (hollow-wall profile), with contrast varying along each vessel, between vessels
  and (log-uniformly, from subtle to obvious) between images;
* detector blur and signal-dependent acquisition noise.

The label is the exact mask of the calcified segments (pixels within the local vessel radius of
a calcified part of the centreline). As in SCU-Net's training data, patches are cut on a regular
grid, background patches (8-bit mean ≤ 20 or std ≤ 10, the authors' rule) are skipped, and with
`positive_only` only patches that contain calcification are kept.
"""

from __future__ import annotations

import math

import numpy as np

from mlsup_jax.data.phantoms.curves import (
  polyline_distance,
  projected_tube_profile,
  random_walk_curve,
  render_gaussian_blobs,
)
from mlsup_jax.data.phantoms.source_base import PhantomSource, split_id
from mlsup_jax.data.phantoms.textures import (
  fractal_noise,
  gaussian_blur,
  smooth_random_field,
  smoothstep,
)

# The authors' rule for skipping background patches, on 8-bit intensities.
BACKGROUND_MAX_MEAN = 20.0
BACKGROUND_MAX_STD = 10.0
# Fraction of whole images without any calcified artery.
NEGATIVE_FRACTION = 0.2
# Memory for cached whole images (float32 image + uint8 label: 5 bytes a pixel).
CACHE_BYTES = 512 * 2**20
# SCU-Net down-samples by 8, so image and patch sizes must be multiples of it.
SIZE_MULTIPLE = 8


def patch_starts(size: int, patch_size: int, stride: int) -> list[int]:
  """Start offsets of a regular patch grid along one axis, the last patch flush with the border.

  Example: `patch_starts(256, 64, 48) == [0, 48, 96, 144, 192]`.
  """
  starts = list(range(0, size - patch_size + 1, stride))
  if starts[-1] != size - patch_size:
    starts.append(size - patch_size)
  return starts


def is_background_patch(intensity: np.ndarray) -> bool:
  """The authors' background rule on an 8-bit-scale patch: mean ≤ 20 or std ≤ 10."""
  intensity = np.asarray(intensity, np.float64)
  return bool(intensity.mean() <= BACKGROUND_MAX_MEAN or intensity.std() <= BACKGROUND_MAX_STD)


class BacPhantomSource(PhantomSource):
  """Synthetic mammograms (or patches of them) with breast arterial calcification labels.

  Examples are dicts with `image: [h, w, 1]` float32 in [0, 1], `label: [h, w]` int32 in {0, 1}
  (calcified artery segments) and `intensity: [h, w]` float32 = 255 · image (the 8-bit scale of
  the BAC burden metrics), where `h = w = image_size` for whole images and `patch_size` for
  patches.

  Args:
    split: "train", "val" or "test"; each split draws disjoint cases.
    num_images: number of whole images in the split.
    image_size: side of the square whole images; a multiple of 8.
    patch_size: side of the square patches; a multiple of 8, ≤ image_size.
    patch_stride: step of the patch grid (the last patch is aligned to the border).
    seed: non-negative base seed.
    positive_only: in patch mode, keep only patches that contain calcification (the thesis's
      training set). Whole-image mode always yields every image, including the ~20% without BAC.
    whole_images: yield whole images (for evaluation with patch stitching) instead of patches.

  Attributes:
    patch_index: `[num_patches, 3]` int32 rows `(image index, row, col)` of each patch's top-left
      corner (empty in whole-image mode).

  Raises:
    ValueError: on an unknown split or an invalid size, stride, count or seed.
  """

  def __init__(
    self,
    split: str = "train",
    num_images: int = 32,
    image_size: int = 256,
    patch_size: int = 64,
    patch_stride: int = 48,
    seed: int = 0,
    positive_only: bool = True,
    whole_images: bool = False,
  ):
    split_id(split)
    if int(num_images) < 1:
      raise ValueError(f"num_images must be ≥ 1, got {num_images}.")
    if int(image_size) < SIZE_MULTIPLE or int(image_size) % SIZE_MULTIPLE:
      raise ValueError(
        f"image_size must be a positive multiple of {SIZE_MULTIPLE} (SCU-Net down-samples by "
        f"{SIZE_MULTIPLE}), got {image_size}."
      )
    if int(patch_size) < SIZE_MULTIPLE or int(patch_size) % SIZE_MULTIPLE:
      raise ValueError(
        f"patch_size must be a positive multiple of {SIZE_MULTIPLE} (SCU-Net down-samples by "
        f"{SIZE_MULTIPLE}), got {patch_size}."
      )
    if int(patch_size) > int(image_size):
      raise ValueError(f"patch_size {patch_size} is larger than image_size {image_size}.")
    if int(patch_stride) <= 0:
      raise ValueError(f"patch_stride must be positive, got {patch_stride}.")
    # Whole images stay cached (up to ~512 MiB): patch reads hit the images in random order.
    cache_size = max(1, min(int(num_images), CACHE_BYTES // (5 * int(image_size) ** 2)))
    super().__init__(split, int(num_images), int(seed), cache_size=cache_size)
    self.num_images = int(num_images)
    self.image_size = int(image_size)
    self.patch_size = int(patch_size)
    self.patch_stride = int(patch_stride)
    self.positive_only = bool(positive_only)
    self.whole_images = bool(whole_images)
    self._grid = np.mgrid[0 : self.image_size, 0 : self.image_size].astype(np.float32)
    self.patch_index = np.zeros((0, 3), np.int32)
    if not self.whole_images:
      self.patch_index = self._build_patch_index()

  # ----------------------------------------------------------------------------------- reading

  def __len__(self) -> int:
    return self.num_images if self.whole_images else len(self.patch_index)

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    index = self._check_index(index)
    if self.whole_images:
      case = self.case(index)
      return _example(case["image"], case["label"])
    image_index, row, col = (int(v) for v in self.patch_index[index])
    case = self.case(image_index)
    window = (slice(row, row + self.patch_size), slice(col, col + self.patch_size))
    return _example(case["image"][window], case["label"][window])

  def _build_patch_index(self) -> np.ndarray:
    starts = patch_starts(self.image_size, self.patch_size, self.patch_stride)
    rows = []
    for image_index in range(self.num_images):
      case = self.case(image_index)
      intensity = case["image"].astype(np.float32) * np.float32(255.0)
      for row in starts:
        for col in starts:
          window = (slice(row, row + self.patch_size), slice(col, col + self.patch_size))
          if is_background_patch(intensity[window]):
            continue
          if self.positive_only and not case["label"][window].any():
            continue
          rows.append((image_index, row, col))
    return np.asarray(rows, np.int32).reshape(-1, 3)

  # -------------------------------------------------------------------------------- generation

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    """One whole image: `image: [n, n]` float32 in [0, 1] and `label: [n, n]` uint8."""
    del index  # Everything comes from `rng`.
    n = self.image_size
    scale = n / 256.0  # Lengths are tuned at 256²; vessel widths stay in pixels.
    rows, cols = self._grid

    # Silhouette: half-ellipse attached to the chest wall (column 0), wobbly skin line. About
    # half the images are MLO-like: a pectoral-muscle triangle in the upper chest-wall corner,
    # with the breast reaching the top edge around it.
    mlo = rng.uniform() < 0.45
    centre_row = n * rng.uniform(0.42, 0.58)
    depth = n * rng.uniform(0.62, 0.9)  # chest wall → nipple
    half_height = n * rng.uniform(0.42, 0.62)  # > n/2 clips at the top/bottom
    if mlo:
      muscle_rows = n * rng.uniform(0.45, 0.85)
      muscle_cols = n * rng.uniform(0.18, 0.4)
      bulge = rng.uniform(0.0, 0.25)
      # The breast must contain the muscle's corners (0, muscle_cols) and (muscle_rows, 0).
      reach = 1.25 * muscle_cols / depth
      half_height = max(half_height, centre_row / math.sqrt(1.0 - min(reach, 0.9) ** 2))
      half_height = max(half_height, 1.15 * (muscle_rows - centre_row))
    u, v = (rows - centre_row) / half_height, cols / depth
    wobble = 1.0 + 0.02 * smooth_random_field(rng, (64,), 6.0)
    angle_grid = np.linspace(-math.pi / 2, math.pi / 2, 64)
    radius = np.hypot(u, v) / np.interp(np.arctan2(u, v), angle_grid, wobble).astype(np.float32)
    breast_soft = 1.0 - smoothstep(radius, 0.985, 1.0)
    breast = radius < 1.0
    muscle = np.zeros((n, n), np.float32)
    if mlo:
      s_muscle = rows / muscle_rows + cols / muscle_cols
      s_muscle -= bulge * (rows / muscle_rows) * (1.0 - rows / muscle_rows)
      muscle = (1.0 - smoothstep(s_muscle, 0.96, 1.04)) * breast_soft

    # Fibroglandular tissue.
    skin_depth = np.clip(1.0 - radius, 0.0, 1.0)
    thickness = 0.42 + 0.58 * smoothstep(skin_depth, 0.0, 0.3)
    from_chest = np.clip(v, 0.0, 1.0)
    envelope = (1.0 - smoothstep(radius, 0.45, 0.9)) * (1.0 - 0.5 * from_chest)
    blobs = fractal_noise(
      rng, (n, n), beta=3.0, max_wavelength=120 * scale, min_wavelength=3.0, stretch=(1.0, 1.6)
    )
    ridge_source = fractal_noise(
      rng, (n, n), beta=2.6, max_wavelength=40 * scale, stretch=(1.0, 2.0)
    )
    strands = np.exp(-np.square(ridge_source / 0.3))
    mottle = fractal_noise(rng, (n, n), beta=2.2, max_wavelength=12 * scale)
    density = rng.uniform(-1.0, 0.6)  # per image: fatty … extremely dense
    dense_signal = 0.9 * blobs + 0.6 * strands + 2.6 * envelope - 1.4 + density
    dense = smoothstep(dense_signal, -0.9, 1.6)
    fat_level = rng.uniform(0.26, 0.36)
    dense_gain = rng.uniform(0.3, 0.45)
    tissue = (
      fat_level
      + dense_gain * dense
      + 0.03 * blobs * dense
      + 0.035 * mottle
      + 0.04 * strands * (1.0 - dense)
    )
    tissue *= thickness
    if mlo:
      # The muscle brightens towards its corner and has a faint fibrous texture.
      muscle_level = rng.uniform(0.55, 0.72) + 0.12 * (1.0 - np.clip(s_muscle, 0.0, 1.0))
      muscle_level = muscle_level + 0.03 * mottle + 0.04 * blobs
      tissue = tissue * (1.0 - muscle) + muscle_level * muscle
    # A slightly brighter skin line.
    tissue += 0.035 * (smoothstep(radius, 0.955, 0.985) - smoothstep(radius, 0.985, 1.0))

    image = tissue
    label = np.zeros((n, n), bool)
    shape = (n, n)

    def walk(length: float, start_depth: tuple[float, float]):
      """A vessel centreline from the chest-wall side towards the nipple, cut at the skin."""
      for _ in range(20):
        start_col = depth * rng.uniform(*start_depth)
        start_row = centre_row + half_height * rng.uniform(-0.75, 0.75)
        heading = math.pi / 2 + rng.uniform(-0.6, 0.6)
        points = random_walk_curve(
          rng,
          (start_row, start_col),
          heading,
          length,
          curvature_std=0.012 / scale,
          curvature_correlation=25.0 * scale,
          heading_pull=0.02 / scale,
        )
        pixels = np.rint(points).astype(int)
        in_image = np.all((pixels >= 0) & (pixels < n), axis=1)
        inside = in_image.copy()
        inside[in_image] = radius[pixels[in_image, 0], pixels[in_image, 1]] < 0.96
        inside &= muscle[np.clip(pixels[:, 0], 0, n - 1), np.clip(pixels[:, 1], 0, n - 1)] < 0.5
        if not inside[0]:
          continue
        end = len(inside) if inside.all() else int(np.argmin(inside))
        if end * 0.5 >= 20.0 * scale:
          return points[:end]
      return None

    # Non-calcified soft vessels (distractors, unlabelled).
    for _ in range(int(rng.integers(1, 5))):
      points = walk(depth * rng.uniform(0.4, 1.0), (0.0, 0.3))
      if points is None:
        continue
      count = len(points)
      width = rng.uniform(2.5, 5.0) * np.exp(0.15 * smooth_random_field(rng, (count,), 40.0))
      contrast = rng.uniform(0.015, 0.05) * (1.0 + 0.3 * smooth_random_field(rng, (count,), 30.0))
      distance, nearest = polyline_distance(points, shape, width.max() / 2)
      inside = nearest >= 0
      image[inside] += (
        contrast[nearest[inside]]
        * projected_tube_profile(distance[inside], width[nearest[inside]] / 2)
      ).astype(np.float32)

    # Calcified arteries.
    if rng.uniform() >= NEGATIVE_FRACTION:
      image_contrast = math.exp(rng.uniform(math.log(0.1), math.log(0.5)))
      num_arteries = int(rng.choice([1, 2, 3, 4], p=[0.35, 0.3, 0.2, 0.15]))
      attempts = 0
      drawn = 0
      while drawn < num_arteries and attempts < 4 * num_arteries:
        attempts += 1
        points = walk(depth * rng.uniform(0.35, 1.0), (0.0, 0.6))
        if points is None:
          continue
        count = len(points)
        radius0 = rng.uniform(0.5, 1.9)
        vessel_radius = np.clip(
          radius0 * np.exp(0.25 * smooth_random_field(rng, (count,), 40.0)), 0.5, 2.0
        )
        coverage = rng.uniform(0.4, 0.95)
        segments = smooth_random_field(rng, (count,), 20.0)
        calcified = segments >= np.quantile(segments, 1.0 - coverage)
        beading = np.clip(0.75 + 0.3 * smooth_random_field(rng, (count,), 3.0), 0.45, 1.0)
        contrast = (
          image_contrast
          * rng.uniform(0.75, 1.25)
          * np.exp(0.2 * smooth_random_field(rng, (count,), 50.0))
          * (1.0 + 0.6 * np.clip(1.2 - vessel_radius, 0.0, None))  # thin ones are dense
          * beading
        )
        hollow = radius0 > 1.1 and rng.uniform() < 0.6
        inner = rng.uniform(0.45, 0.7) if hollow else 0.0
        distance, nearest = polyline_distance(points, shape, vessel_radius.max() + 1.0)
        inside = nearest >= 0
        near = nearest[inside]
        d = distance[inside]
        r = vessel_radius[near]
        # The artery's soft-tissue trace (unlabelled), visible in the gaps too.
        trace_contrast = rng.uniform(0.01, 0.035)
        wall = projected_tube_profile(d, r + 1.0)
        calcium = projected_tube_profile(d, r + 0.3, inner * r)
        image[inside] += (
          trace_contrast * wall + contrast[near] * calcified[near] * calcium
        ).astype(np.float32)
        segment_mask = (d <= r) & calcified[near]
        label[inside] |= segment_mask
        drawn += int(segment_mask.any())

    # Benign punctate calcifications (distractors, unlabelled), sometimes clustered.
    centres = []
    candidates = rng.uniform(0, n - 1, size=(64, 2))
    candidates = candidates[breast[tuple(np.rint(candidates).astype(int).T)]]
    centres.extend(candidates[: int(rng.poisson(5))])
    if rng.uniform() < 0.3:
      cluster_centre = rng.uniform(0.2 * n, 0.8 * n, size=2)
      spread = rng.uniform(2.0, 6.0) * scale
      centres.extend(cluster_centre + spread * rng.standard_normal((int(rng.integers(4, 11)), 2)))
    if centres:
      centres = np.asarray(centres)
      sigmas = rng.uniform(0.5, 1.3, size=len(centres))
      amplitudes = np.exp(rng.uniform(math.log(0.06), math.log(0.45), size=len(centres)))
      image += render_gaussian_blobs(shape, centres, sigmas, amplitudes)

    # Acquisition: breast support, detector blur, signal-dependent noise.
    image = gaussian_blur(image * breast_soft, rng.uniform(0.5, 0.75))
    noise_level = rng.uniform(0.006, 0.016)
    noise = rng.standard_normal(shape).astype(np.float32)
    image = image + (noise_level * np.sqrt(np.clip(image, 0.0, None)) + 0.002) * noise
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    label &= breast
    if rng.uniform() < 0.5:  # right breast: chest wall on the right
      image, label = image[:, ::-1], label[:, ::-1]
    return {
      "image": np.ascontiguousarray(image),
      "label": np.ascontiguousarray(label.astype(np.uint8)),
    }


def _example(image: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
  image = np.array(image, np.float32)
  return {
    "image": image[..., None],
    "label": np.array(label, np.int32),
    "intensity": image * np.float32(255.0),
  }
