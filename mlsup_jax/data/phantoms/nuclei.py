"""Fluorescence nuclei with clumps, and exact instance masks (thesis §3.1's setting).

Each case is an RGB fluorescence field `[H, W, 3]` in [0, 1] as a FISH image stores it: nuclei in
the **blue** (DAPI) channel, small bright FISH spots inside some nuclei in red and green, and a
dim uneven background in every channel. Nuclei are deformed ellipses (radius `nucleus_radius`
± 25 %, axis ratio 1–1.6, a few low radial harmonics for an irregular outline) with their own
brightness (0.45–0.95) and a chromatin texture (smoothed noise, ±15 %).

About half of the nuclei sit in **clumps** of 2–6: each new member touches or overlaps one
already placed (centre distance 0.65–0.95 × the sum of their radii), the way nuclei pile up in
tumour tissue. Where two nuclei overlap the DAPI signal adds up (clipped at 1), and the overlap's
pixels belong, in the instance mask, to the nucleus whose outline is nearer in normalised
distance — where an annotator would draw the dividing line. The others are isolated (a gap of at
least 3 px). Acquisition: Gaussian blur (σ 1–1.8 px), shot-like noise (σ 0.02–0.05) and a slowly
varying background (0.03–0.10).

Keys: `image [H, W, 3]` float32, `label [H, W]` int32 instance ids (0 background, 1 … n),
`clump [H, W]` int32 (the clump id of a pixel's nucleus, 0 for isolated nuclei and background),
`num_nuclei` and `num_clumps` int32. Deterministic from `(seed, split, index)`.
"""

from __future__ import annotations

import numpy as np

from mlsup_jax.data.phantoms.source_base import PhantomSource
from mlsup_jax.data.phantoms.textures import fractal_noise, gaussian_blur

__all__ = ["NucleiPhantomSource"]


class NucleiPhantomSource(PhantomSource):
  """Fluorescence nuclei fields with clumps (module docstring).

  Example:
    >>> from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource
    >>> case = NucleiPhantomSource(num_cases=1, image_size=128)[0]
    >>> case["image"].shape, int(case["label"].max()) == int(case["num_nuclei"])
    ((128, 128, 3), True)

  Args:
    split: "train", "val" or "test".
    num_cases: number of fields.
    image_size: side H = W in pixels (≥ 64).
    nucleus_radius: mean nucleus radius in pixels (the magnification).
    num_nuclei: nuclei per field (about half in clumps).
    seed: base seed.
  """

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 16,
    image_size: int = 256,
    nucleus_radius: float = 12.0,
    num_nuclei: int = 24,
    seed: int = 0,
  ):
    if int(image_size) < 64:
      raise ValueError(f"image_size must be ≥ 64, got {image_size}.")
    if not 3.0 <= float(nucleus_radius) <= int(image_size) / 6:
      raise ValueError(
        f"nucleus_radius must lie in [3, image_size / 6], got {nucleus_radius} for {image_size}."
      )
    if int(num_nuclei) < 1:
      raise ValueError(f"num_nuclei must be ≥ 1, got {num_nuclei}.")
    super().__init__(split, num_cases, seed, cache_size=min(int(num_cases), 64))
    self.image_size = int(image_size)
    self.nucleus_radius = float(nucleus_radius)
    self.num_nuclei = int(num_nuclei)
    rows, cols = np.mgrid[0 : self.image_size, 0 : self.image_size]
    self._grid = (rows.astype(np.float32), cols.astype(np.float32))

  # ------------------------------------------------------------------------------ layout

  def _layout(self, rng: np.random.Generator) -> list[dict]:
    """Nuclei (centre, radii, angle, harmonics, clump id) placed without unwanted contact."""
    size, mean_r = self.image_size, self.nucleus_radius
    nuclei: list[dict] = []

    def draw_shape():
      r = mean_r * rng.uniform(0.75, 1.25)
      ratio = rng.uniform(1.0, 1.6)
      return {
        "a": r * np.sqrt(ratio),
        "b": r / np.sqrt(ratio),
        "angle": rng.uniform(0, np.pi),
        "harmonics": rng.normal(0, 0.05, (3, 2)),
        "radius": r,
      }

    def free(centre, radius, ignore=()):
      margin = radius + 2
      if not (margin <= centre[0] < size - margin and margin <= centre[1] < size - margin):
        return False
      return all(
        i in ignore or np.hypot(*(centre - n["centre"])) > radius + n["radius"] + 3
        for i, n in enumerate(nuclei)
      )

    target = self.num_nuclei
    clumped = int(round(target * rng.uniform(0.4, 0.6)))
    clump_id = 0
    attempts = 0
    while sum(n["clump"] > 0 for n in nuclei) < clumped and attempts < 200:
      attempts += 1
      size_of_clump = int(rng.integers(2, 7))
      first = draw_shape()
      centre = rng.uniform(0, size, 2)
      if not free(centre, first["radius"] * 2.5):
        continue
      clump_id += 1
      members = [len(nuclei)]
      nuclei.append({**first, "centre": centre, "clump": clump_id})
      for _ in range(size_of_clump - 1):
        for _ in range(20):
          anchor = nuclei[int(rng.choice(members))]
          shape = draw_shape()
          distance = (anchor["radius"] + shape["radius"]) * rng.uniform(0.65, 0.95)
          direction = rng.uniform(0, 2 * np.pi)
          centre = anchor["centre"] + distance * np.array([np.cos(direction), np.sin(direction)])
          others = [
            np.hypot(*(centre - nuclei[m]["centre"])) / (shape["radius"] + nuclei[m]["radius"])
            for m in members
          ]
          # Touch the clump but never sit on top of a member (≥ 0.6 of the radii apart).
          if min(others) >= 0.6 and free(centre, shape["radius"], ignore=members):
            members.append(len(nuclei))
            nuclei.append({**shape, "centre": centre, "clump": clump_id})
            break
      if len(members) == 1:  # nothing attached: an isolated nucleus after all
        nuclei[members[0]]["clump"] = 0
        clump_id -= 1
    attempts = 0
    while len(nuclei) < target and attempts < 500:
      attempts += 1
      shape = draw_shape()
      centre = rng.uniform(0, size, 2)
      if free(centre, shape["radius"]):
        nuclei.append({**shape, "centre": centre, "clump": 0})
    return nuclei

  def _window(self, nucleus: dict) -> tuple[slice, slice]:
    """The pixels a nucleus can cover (its outline stays within 1.2 × its long axis)."""
    reach = int(np.ceil(1.2 * nucleus["a"])) + 2
    r, c = (int(round(v)) for v in nucleus["centre"])
    size = self.image_size
    return slice(max(r - reach, 0), min(r + reach + 1, size)), slice(
      max(c - reach, 0), min(c + reach + 1, size)
    )

  def _normalised_distance(self, nucleus: dict, window) -> np.ndarray:
    """Distance to the centre in units of the (deformed) outline over `window`: < 1 inside."""
    rows, cols = (g[window] for g in self._grid)
    dy, dx = rows - nucleus["centre"][0], cols - nucleus["centre"][1]
    cos, sin = np.cos(nucleus["angle"]), np.sin(nucleus["angle"])
    u, v = dx * cos + dy * sin, -dx * sin + dy * cos
    theta = np.arctan2(v, u)
    outline = 1.0
    for k, (c, s) in enumerate(nucleus["harmonics"], start=2):
      outline = outline + c * np.cos(k * theta) + s * np.sin(k * theta)
    return np.sqrt((u / nucleus["a"]) ** 2 + (v / nucleus["b"]) ** 2) / outline

  # ------------------------------------------------------------------------------ rendering

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    del index
    size = self.image_size
    nuclei = self._layout(rng)
    label = np.zeros((size, size), np.int32)
    clump = np.zeros((size, size), np.int32)
    nearest = np.full((size, size), np.inf, np.float32)
    dapi = np.zeros((size, size), np.float32)
    spots = np.zeros((size, size, 2), np.float32)
    rows, cols = self._grid
    # One chromatin field per case (granules of about half a radius), shared by every nucleus.
    texture = 1.0 + 0.15 * fractal_noise(
      rng, (size, size), beta=2.0, max_wavelength=self.nucleus_radius
    )
    for i, nucleus in enumerate(nuclei, start=1):
      window = self._window(nucleus)
      distance = self._normalised_distance(nucleus, window)
      inside = distance < 1.0
      brightness = rng.uniform(0.45, 0.95)
      # A soft edge over the last 10 % of the radius.
      profile = np.clip((1.0 - distance) / 0.1, 0.0, 1.0)
      dapi[window] += brightness * profile * texture[window]
      owner = inside & (distance < nearest[window])
      label[window][owner] = i
      clump[window][owner] = nucleus["clump"]
      nearest[window] = np.where(owner, distance, nearest[window])
      for channel in range(2):  # FISH spots: 0–3 per channel inside the nucleus
        for _ in range(int(rng.integers(0, 4))):
          angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.6)
          cy = nucleus["centre"][0] + radius * nucleus["b"] * np.sin(angle)
          cx = nucleus["centre"][1] + radius * nucleus["a"] * np.cos(angle)
          spots[window + (channel,)] += rng.uniform(0.5, 1.0) * np.exp(
            -((rows[window] - cy) ** 2 + (cols[window] - cx) ** 2) / (2 * 1.5**2)
          )
    background = rng.uniform(0.03, 0.10) * (
      1.0 + 0.5 * fractal_noise(rng, (size, size), max_wavelength=size)
    )
    image = np.stack([spots[..., 0], spots[..., 1], np.clip(dapi, 0.0, 1.0)], axis=-1)
    image = image + background[..., None]
    sigma = rng.uniform(1.0, 1.8)
    image = np.stack([gaussian_blur(image[..., c], sigma) for c in range(3)], axis=-1)
    image = image + rng.normal(0.0, rng.uniform(0.02, 0.05), image.shape)
    return {
      "image": np.clip(image, 0.0, 1.0).astype(np.float32),
      "label": label,
      "clump": clump,
      "num_nuclei": np.int32(len(nuclei)),
      "num_clumps": np.int32(len({n["clump"] for n in nuclei} - {0})),
    }
