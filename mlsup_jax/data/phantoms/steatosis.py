"""H&E liver tiles with fat droplets and their exact instances (thesis §3.2's setting).

Each case is an RGB tile `[H, W, 3]` in [0, 1] of a steatotic liver stained with haematoxylin and
eosin, as a slide scanner stores it:

* **tissue**: eosin-pink hepatocyte cytoplasm with a granular texture, cords of cells separated
  by pale **sinusoids** (thin wavy channels), and haematoxylin-purple **nuclei** (round, 3–4 %
  of the radius of the tile's droplets apart from them);
* **fat droplets**: white, empty (the fat dissolved in processing), from small to large (radius
  `droplet_radius` × 0.4–1.6). About half sit in **clusters** of 2–6 that press against each
  other: where two overlap the boundary between them is the line of equal normalised distance,
  so packed droplets turn polygonal, as in real macrovesicular steatosis; each droplet has a
  thin pink membrane rim;
* sometimes a **non-tissue** region (white glass) along one edge — the background the weak-label
  rule must not call droplets;
* acquisition: a stain-intensity jitter per tile, slight blur and noise.

Keys: `image [H, W, 3]` float32, `label [H, W]` int32 droplet instance ids (0 background and
tissue, 1 … n; the exact instances), `tissue [H, W]` int32 (1 inside the tissue, droplets
included), `cluster [H, W]` int32 (the cluster id of a droplet's pixels, 0 for isolated ones),
`num_droplets` int32. Deterministic from `(seed, split, index)`.
"""

from __future__ import annotations

import numpy as np

from mlsup_jax.data.phantoms.source_base import PhantomSource
from mlsup_jax.data.phantoms.textures import fractal_noise, gaussian_blur

__all__ = ["SteatosisPhantomSource"]

# Stain colours (RGB in [0, 1]) of slide-scanned H&E.
EOSIN = np.array([0.91, 0.62, 0.76], np.float32)
HAEMATOXYLIN = np.array([0.38, 0.26, 0.58], np.float32)
SINUSOID = np.array([0.96, 0.86, 0.92], np.float32)
FAT = np.array([0.97, 0.96, 0.97], np.float32)
GLASS = np.array([0.95, 0.95, 0.96], np.float32)


class SteatosisPhantomSource(PhantomSource):
  """H&E liver tiles with fat droplets (module docstring).

  Example:
    >>> from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
    >>> case = SteatosisPhantomSource(num_cases=1, image_size=128)[0]
    >>> case["image"].shape, int(case["label"].max()) == int(case["num_droplets"])
    ((128, 128, 3), True)

  Args:
    split: "train", "val" or "test".
    num_cases: number of tiles.
    image_size: side H = W in pixels (≥ 64).
    droplet_radius: mean droplet radius in pixels (the magnification).
    num_droplets: droplets per tile (about half in clusters).
    background_fraction: share of tiles with a non-tissue (glass) region along an edge.
    seed: base seed.
  """

  def __init__(
    self,
    split: str = "train",
    num_cases: int = 16,
    image_size: int = 256,
    droplet_radius: float = 10.0,
    num_droplets: int = 30,
    background_fraction: float = 0.3,
    seed: int = 0,
  ):
    if int(image_size) < 64:
      raise ValueError(f"image_size must be ≥ 64, got {image_size}.")
    if not 3.0 <= float(droplet_radius) <= int(image_size) / 6:
      raise ValueError(
        f"droplet_radius must lie in [3, image_size / 6], got {droplet_radius} for {image_size}."
      )
    if int(num_droplets) < 1:
      raise ValueError(f"num_droplets must be ≥ 1, got {num_droplets}.")
    if not 0.0 <= float(background_fraction) <= 1.0:
      raise ValueError(f"background_fraction must lie in [0, 1], got {background_fraction}.")
    super().__init__(split, num_cases, seed, cache_size=min(int(num_cases), 32))
    self.image_size = int(image_size)
    self.droplet_radius = float(droplet_radius)
    self.num_droplets = int(num_droplets)
    self.background_fraction = float(background_fraction)
    rows, cols = np.mgrid[0 : self.image_size, 0 : self.image_size]
    self._grid = (rows.astype(np.float32), cols.astype(np.float32))

  def _layout(self, rng: np.random.Generator, allowed: np.ndarray) -> list[dict]:
    """Droplets (centre, radius, clump id): clusters of touching droplets, then isolated ones."""
    size, mean_r = self.image_size, self.droplet_radius
    droplets: list[dict] = []

    def radius():
      return mean_r * rng.uniform(0.4, 1.6)

    def free(centre, r, ignore=()):
      margin = r + 2
      if not (margin <= centre[0] < size - margin and margin <= centre[1] < size - margin):
        return False
      if not allowed[int(centre[0]), int(centre[1])]:
        return False
      return all(
        i in ignore or np.hypot(*(centre - d["centre"])) > r + d["radius"] + 2
        for i, d in enumerate(droplets)
      )

    clustered = int(round(self.num_droplets * rng.uniform(0.4, 0.6)))
    cluster_id, attempts = 0, 0
    while sum(d["cluster"] > 0 for d in droplets) < clustered and attempts < 200:
      attempts += 1
      first = radius()
      centre = rng.uniform(0, size, 2)
      if not free(centre, first * 2.5):
        continue
      cluster_id += 1
      members = [len(droplets)]
      droplets.append({"centre": centre, "radius": first, "cluster": cluster_id})
      for _ in range(int(rng.integers(1, 6))):
        for _ in range(20):
          anchor = droplets[int(rng.choice(members))]
          r = radius()
          # Pressed together: centres closer than the sum of the radii (overlap 5–30 %).
          distance = (anchor["radius"] + r) * rng.uniform(0.7, 0.95)
          direction = rng.uniform(0, 2 * np.pi)
          centre = anchor["centre"] + distance * np.array([np.cos(direction), np.sin(direction)])
          ratios = [
            np.hypot(*(centre - droplets[m]["centre"])) / (r + droplets[m]["radius"])
            for m in members
          ]
          if min(ratios) >= 0.65 and free(centre, r, ignore=members):
            members.append(len(droplets))
            droplets.append({"centre": centre, "radius": r, "cluster": cluster_id})
            break
      if len(members) == 1:
        droplets[members[0]]["cluster"] = 0
        cluster_id -= 1
    attempts = 0
    while len(droplets) < self.num_droplets and attempts < 500:
      attempts += 1
      r, centre = radius(), rng.uniform(0, size, 2)
      if free(centre, r):
        droplets.append({"centre": centre, "radius": r, "cluster": 0})
    return droplets

  def generate(self, rng: np.random.Generator, index: int) -> dict[str, np.ndarray]:
    del index
    size = self.image_size
    rows, cols = self._grid
    # Non-tissue (glass) along one edge of some tiles: its boundary a smooth wavy line.
    tissue = np.ones((size, size), bool)
    if rng.uniform() < self.background_fraction:
      depth = rng.uniform(0.12, 0.3) * size
      wave = 0.06 * size * fractal_noise(rng, (1, size), beta=2.5)[0]
      r, c = rows.astype(int), cols.astype(int)
      inward, along = {  # distance from the chosen edge, and the coordinate along it
        0: (rows, c),
        1: (size - 1 - rows, c),
        2: (cols, r),
        3: (size - 1 - cols, r),
      }[int(rng.integers(4))]
      tissue = inward > depth + wave[along]
    droplets = self._layout(rng, tissue)
    label = np.zeros((size, size), np.int32)
    cluster = np.zeros((size, size), np.int32)
    nearest = np.full((size, size), np.inf, np.float32)
    for i, d in enumerate(droplets, start=1):
      reach = int(np.ceil(d["radius"])) + 2
      r0, c0 = (int(round(v)) for v in d["centre"])
      window = (
        slice(max(r0 - reach, 0), r0 + reach + 1),
        slice(max(c0 - reach, 0), c0 + reach + 1),
      )
      distance = (
        np.hypot(rows[window] - d["centre"][0], cols[window] - d["centre"][1]) / d["radius"]
      )
      owner = (distance < 1.0) & (distance < nearest[window])
      label[window][owner] = i
      cluster[window][owner] = d["cluster"]
      nearest[window] = np.where(owner, distance, nearest[window])

    # Tissue: eosin cytoplasm with granules, sinusoids, nuclei.
    granules = 1.0 + 0.08 * fractal_noise(rng, (size, size), beta=1.6)
    image = np.broadcast_to(EOSIN, (size, size, 3)) * granules[..., None]
    flow = fractal_noise(rng, (size, size), beta=2.8)
    sinusoid = np.exp(-np.square(np.sin(3.0 * np.pi * flow) / 0.12))  # thin wavy channels
    image = image * (1 - 0.8 * sinusoid[..., None]) + 0.8 * sinusoid[..., None] * SINUSOID
    nucleus_r = max(1.5, 0.3 * self.droplet_radius)
    # Nuclei: point seeds blurred into round spots (one Gaussian per seed, vectorised).
    centres = rng.uniform(0, size, (int(size * size / (9.0 * self.droplet_radius) ** 2 * 4), 2))
    seeds = np.zeros((size, size), np.float32)
    seeds[centres[:, 0].astype(int), centres[:, 1].astype(int)] = 1.0
    nucleus = np.clip(gaussian_blur(seeds, nucleus_r) * (2 * np.pi * nucleus_r**2), 0.0, 1.0)
    image = image * (1 - nucleus[..., None]) + nucleus[..., None] * HAEMATOXYLIN
    # Droplets: white, with a thin membrane rim (pink) at their outline.
    fat = (label > 0).astype(np.float32)
    rim = np.clip(gaussian_blur(fat, 0.7) - fat, 0.0, 1.0) + np.clip(
      fat - gaussian_blur(fat, 0.6), 0.0, 1.0
    ) * (cluster > 0)
    fat_soft = gaussian_blur(fat, 0.5)
    image = image * (1 - fat_soft[..., None]) + fat_soft[..., None] * FAT
    image = image * (1 - 0.5 * rim[..., None]) + 0.5 * rim[..., None] * EOSIN * 0.95
    # Glass outside the tissue.
    glass = gaussian_blur((~tissue).astype(np.float32), 1.0)
    image = image * (1 - glass[..., None]) + glass[..., None] * GLASS
    # Acquisition: stain jitter, blur, noise.
    image = image * rng.uniform(0.93, 1.05, 3).astype(np.float32)
    image = np.stack([gaussian_blur(image[..., c], 0.6) for c in range(3)], -1)
    image = image + rng.normal(0.0, 0.015, image.shape).astype(np.float32)
    label[~tissue] = 0
    return {
      "image": np.clip(image, 0.0, 1.0).astype(np.float32),
      "label": label,
      "tissue": tissue.astype(np.int32),
      "cluster": cluster,
      "num_droplets": np.asarray(len(droplets), np.int32),
    }
