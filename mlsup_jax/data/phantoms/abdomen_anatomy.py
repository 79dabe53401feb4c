"""Anatomy of the abdominal CT phantom (`abdomen`): everything a case shows but the tumour.

`paint_anatomy` paints, in HU and in drawing order (later structures cover earlier ones): the
body (subcutaneous fat, muscle wall, visceral fat), ribs, the spine (paraspinal muscles, vertebral
body, canal, lamina, spinous process), the aorta and inferior vena cava, the right kidney, bowel
loops, the stomach, sometimes a gallbladder, and last the liver (two smoothly joined, lobulated
lobes carved by their neighbours, with parenchymal texture and intrahepatic vessels). Every
structure is a signed-distance solid (`shapes`) in the body frame of the case's pose grid.

With `organ_rng` (the multi-organ phantom of LTUDA), three more organs are painted right after
the right kidney, drawn from that separate generator so the case's own draws — and so every
single-organ case — stay exactly as they are: the left kidney (the right one mirrored), the
spleen (posterior left, enhancing like the liver) and the pancreas (a thin, lobulated band
across the left upper abdomen in front of the aorta, 15–40 HU below the liver: small and low
contrast). `organ_masks` then receives each organ's final mask (later structures win).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mlsup_jax.data.phantoms.shapes import (
  bumps,
  ellipsoid_distance,
  paint,
  radial_directions,
  smooth_min,
  unit_vectors,
)
from mlsup_jax.data.phantoms.textures import smoothstep

AIR_HU = -1000.0


def paint_anatomy(
  rng: np.random.Generator,
  grid: dict,
  shape: tuple[int, ...],
  noise: Callable[..., np.ndarray],
  organ_rng: np.random.Generator | None = None,
  organ_masks: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
  """Paints the body and organs.

  Args:
    rng: the case's generator (drawn from in a fixed order).
    grid: the case's body-frame coordinates (`AbdomenPhantomSource._grid`).
    shape: the case's shape `S`, `(H, W)` or `(D, H, W)`.
    noise: the case's texture generator, `noise(rng, **fractal_noise_kwargs) → [*S]`.
    organ_rng: a separate generator: paint the left kidney, spleen and pancreas too.
    organ_masks: with `organ_rng`, filled with `[*S]` bool masks `kidney` (both),
      `spleen` and `pancreas`.

  Returns:
    image: `[*S]` float32 HU, before blur and noise.
    liver: `[*S]` bool liver mask (the organ label).
    liver_soft: `[*S]` float32 anti-aliased liver coverage in [0, 1].
    level: the parenchyma's mean HU in this case (phase shift included).
  """
  y, x, z, px = grid["y"], grid["x"], grid["z"], grid["px"]
  coords = (y, x, z)
  image = np.full(shape, AIR_HU, np.float32)
  phase = rng.uniform(-10.0, 10.0)  # contrast timing: enhancing tissue brighter or darker
  fat_texture = noise(rng, beta=2.4, max_wavelength=24.0)
  tissue_texture = noise(rng, beta=2.6, max_wavelength=16.0)

  def inside(distance):
    return np.clip(0.5 - distance / px, 0.0, 1.0).astype(np.float32)

  # Body: a superellipse (flatter back and sides) with fat, muscle wall and visceral fat.
  ay, ax = rng.uniform(0.78, 0.88), rng.uniform(1.05, 1.2)
  power = rng.uniform(2.0, 2.6)
  body_r = (np.abs(y / ay) ** power + np.abs(x / ax) ** power) ** (1.0 / power)
  body_d = (body_r - 1.0) * ay
  fat_thickness, wall_thickness = rng.uniform(0.05, 0.14), rng.uniform(0.04, 0.07)
  fat_level = rng.uniform(-110.0, -90.0)
  paint(image, inside(body_d), fat_level + 8.0 * fat_texture)
  paint(image, inside(body_d + fat_thickness), rng.uniform(40.0, 60.0) + 4.0 * tissue_texture)
  cavity_d = body_d + fat_thickness + wall_thickness
  paint(image, inside(cavity_d), fat_level + 5.0 + 10.0 * fat_texture)

  # Ribs: small bright ovals in the muscle wall, mostly along the right (image-left) side.
  wall_r = 1.0 - (fat_thickness + 0.5 * wall_thickness) / ay
  for phi in np.concatenate(
    [rng.uniform(0.55, 1.35, int(rng.integers(3, 6))), rng.uniform(-0.45, -0.2, 1)]
  ):
    centre = (ay * wall_r * math.sin(math.pi * phi), ax * wall_r * math.cos(math.pi * phi))
    rib_d = ellipsoid_distance(coords, centre, (0.045, 0.03), rng.uniform(0, math.pi))
    paint(image, inside(rib_d), rng.uniform(450.0, 750.0))

  # Spine: paraspinal muscles, vertebral body (cortex + cancellous bone), canal, lamina.
  yv = ay - 0.42
  muscles_d = [
    ellipsoid_distance(coords, (ay - 0.2, side * 0.21), (0.14, 0.15)) for side in (-1.0, 1.0)
  ]
  for muscle_d in muscles_d:
    paint(image, inside(muscle_d), rng.uniform(45.0, 60.0) + 4.0 * tissue_texture)
  vertebra_radius = rng.uniform(0.13, 0.16)
  vertebra_d = ellipsoid_distance(coords, (yv, 0.0), (vertebra_radius, vertebra_radius * 1.1))
  paint(image, inside(vertebra_d), rng.uniform(600.0, 900.0))
  paint(image, inside(vertebra_d + 0.045), rng.uniform(200.0, 320.0) + 25.0 * tissue_texture)
  lamina_d = ellipsoid_distance(coords, (yv + vertebra_radius + 0.06, 0.0), (0.09, 0.11))
  paint(image, inside(lamina_d), rng.uniform(600.0, 900.0))
  canal_d = ellipsoid_distance(coords, (yv + vertebra_radius + 0.05, 0.0), (0.05, 0.055))
  paint(image, inside(canal_d), rng.uniform(0.0, 20.0))
  spinous_d = ellipsoid_distance(coords, (yv + vertebra_radius + 0.2, 0.0), (0.07, 0.025))
  paint(image, inside(spinous_d), rng.uniform(450.0, 750.0))

  # Great vessels.
  aorta_d = ellipsoid_distance(
    coords, (yv - vertebra_radius - 0.06, 0.1), (rng.uniform(0.065, 0.085),) * 2
  )
  paint(image, inside(aorta_d), rng.uniform(140.0, 180.0) + 2.0 * phase)
  ivc_centre = (yv - 0.28 + rng.uniform(-0.04, 0.04), -0.22 + rng.uniform(-0.04, 0.04))
  ivc_d = ellipsoid_distance(coords, ivc_centre, (0.065, 0.09), rng.uniform(-0.5, 0.5))
  paint(image, inside(ivc_d), rng.uniform(110.0, 150.0) + phase)

  # Right kidney (behind the liver): enhancing cortex around the medulla.
  kidney_centre = (yv - 0.02 + rng.uniform(-0.05, 0.05), -0.5 + rng.uniform(-0.05, 0.05))
  kidney_args = (
    (*kidney_centre, rng.uniform(-0.45, 0.25)),
    (rng.uniform(0.17, 0.22), rng.uniform(0.11, 0.14), 0.35),
    rng.uniform(0.3, 0.8),
  )
  kidney_d = ellipsoid_distance(coords, *kidney_args)
  paint(image, inside(kidney_d), rng.uniform(150.0, 190.0) + phase + 5.0 * tissue_texture)
  medulla_d = kidney_d + 0.045
  paint(image, inside(medulla_d), rng.uniform(100.0, 130.0) + phase)
  extra = {}
  if organ_rng is not None:
    extra = _paint_more_organs(
      organ_rng,
      image,
      coords,
      inside,
      phase,
      tissue_texture,
      yv,
      vertebra_radius,
      cavity_d,
      aorta_d,
    )

  # Bowel loops (gas, fluid or faeces); the liver and stomach are painted over them.
  loops = []
  for _ in range(int(rng.integers(1, 4))):
    centre = (rng.uniform(-0.6, 0.0), rng.uniform(-0.3, 0.5), rng.uniform(-0.4, 0.4))
    radius = rng.uniform(0.07, 0.13)
    loop_d = ellipsoid_distance(coords, centre, (radius, radius * rng.uniform(1.0, 1.4), 0.4))
    loops.append(loop_d)
    paint(image, inside(loop_d), rng.uniform(30.0, 60.0) + phase)
    content = rng.integers(3)
    value = (AIR_HU + 50.0, rng.uniform(5.0, 30.0), rng.uniform(-80.0, 20.0))[content]
    paint(image, inside(loop_d + 0.025), value + (60.0 * fat_texture if content == 2 else 0.0))

  # Stomach (image right, anterior): wall, fluid or food, often a gas cap.
  stomach_centre = (-0.3 + rng.uniform(-0.08, 0.08), 0.5 + rng.uniform(-0.08, 0.08))
  stomach_axes = (rng.uniform(0.22, 0.32), rng.uniform(0.2, 0.3), 0.5)
  stomach_d = ellipsoid_distance(coords, (*stomach_centre, 0.0), stomach_axes, 0.4)
  paint(image, inside(stomach_d), rng.uniform(40.0, 70.0) + phase)
  lumen = inside(stomach_d + 0.04)
  food = rng.uniform() < 0.4
  paint(image, lumen, rng.uniform(0.0, 25.0) + (30.0 * fat_texture if food else 0.0))
  if rng.uniform() < 0.6:
    gas_level = stomach_centre[0] - stomach_axes[0] * rng.uniform(0.1, 0.7)
    paint(image, lumen * inside(y - gas_level), AIR_HU + 60.0)

  # Gallbladder (sometimes): water-like, outside the liver label.
  gallbladder_d = np.full((1,) * len(shape), np.inf, np.float32)
  if rng.uniform() < 0.45:
    centre = (-0.22 + rng.uniform(-0.08, 0.08), -0.2 + rng.uniform(-0.08, 0.08))
    gallbladder_d = ellipsoid_distance(
      coords,
      (*centre, rng.uniform(-0.3, 0.3)),
      (rng.uniform(0.1, 0.15), rng.uniform(0.07, 0.1), 0.3),
      rng.uniform(0.0, math.pi),
    )
    paint(image, inside(gallbladder_d), rng.uniform(0.0, 25.0))

  # Liver: smooth union of a right and a left lobe, lobulated, carved by its neighbours.
  right_centre = (rng.uniform(-0.08, 0.04), rng.uniform(-0.6, -0.5), 0.0)
  right_axes = (rng.uniform(0.58, 0.68), rng.uniform(0.48, 0.58), 0.9)
  right_d = ellipsoid_distance(coords, right_centre, right_axes, rng.uniform(-0.2, 0.2))
  left_d = ellipsoid_distance(
    coords,
    (rng.uniform(-0.47, -0.37), rng.uniform(-0.1, 0.0), rng.uniform(-0.2, 0.2)),
    (rng.uniform(0.16, 0.22), rng.uniform(0.36, 0.46), 0.6),
    rng.uniform(0.2, 0.5),
  )
  liver_d = smooth_min(right_d, left_d, 0.15)
  liver_d -= right_axes[0] * bumps(
    radial_directions(coords, right_centre, right_axes),
    unit_vectors(rng, 6, planar=False),
    rng.uniform(-0.08, 0.08, 6),
    rng.uniform(2.0, 6.0, 6),
  )
  liver_d = np.maximum(liver_d, cavity_d + 0.01)
  for other_d, gap in (
    (kidney_d, 0.04),
    (stomach_d, 0.05),
    (ivc_d, 0.015),
    (gallbladder_d, 0.015),
    (aorta_d, 0.08),
    (vertebra_d, 0.08),
    *((muscle_d, 0.03) for muscle_d in muscles_d),
  ):
    liver_d = np.maximum(liver_d, gap - other_d)
  liver_d = np.broadcast_to(liver_d, shape)
  liver_soft = inside(liver_d)
  level = rng.uniform(100.0, 120.0) + phase
  # Vessel cross-sections (dots and short segments): the peaks of a smooth field.
  vessel_source = noise(rng, beta=3.5, min_wavelength=4.0, max_wavelength=16.0)
  vessels = smoothstep(vessel_source, 1.2, 1.9) * smoothstep(-liver_d, 0.0, 0.08)
  parenchyma = level + rng.uniform(4.0, 8.0) * tissue_texture
  parenchyma += (rng.uniform(45.0, 75.0) + phase) * vessels
  paint(image, liver_soft, parenchyma)
  liver = liver_d < 0.0
  if organ_rng is not None and organ_masks is not None:
    # Structures painted after the organs cover them (a pixel belongs to the last one painted).
    covered = liver | np.broadcast_to(stomach_d < 0.0, shape)
    covered = covered | np.broadcast_to(gallbladder_d < 0.0, shape)
    for loop_d in loops:
      covered = covered | np.broadcast_to(loop_d < 0.0, shape)
    pancreas = np.broadcast_to(extra["pancreas"] < 0.0, shape) & ~covered
    spleen = np.broadcast_to(extra["spleen"] < 0.0, shape) & ~covered & ~pancreas
    kidneys = np.broadcast_to((kidney_d < 0.0) | (extra["kidney_left"] < 0.0), shape)
    organ_masks.update(
      kidney=kidneys & ~covered & ~pancreas & ~spleen, spleen=spleen, pancreas=pancreas
    )
  return image, liver, liver_soft, level


def _paint_more_organs(
  rng, image, coords, inside, phase, tissue_texture, yv, vertebra_radius, cavity_d, aorta_d
) -> dict:
  """The left kidney, spleen and pancreas (module docstring); returns their distances."""
  # Left kidney: the right one mirrored to the patient's left (image right).
  centre = (yv - 0.02 + rng.uniform(-0.05, 0.05), 0.5 + rng.uniform(-0.05, 0.05))
  kidney_d = ellipsoid_distance(
    coords,
    (*centre, rng.uniform(-0.25, 0.45)),
    (rng.uniform(0.17, 0.22), rng.uniform(0.11, 0.14), 0.35),
    -rng.uniform(0.3, 0.8),
  )
  paint(image, inside(kidney_d), rng.uniform(150.0, 190.0) + phase + 5.0 * tissue_texture)
  paint(image, inside(kidney_d + 0.045), rng.uniform(100.0, 130.0) + phase)
  # Spleen: posterior left, against the body wall, enhancing like the liver.
  centre = (yv - 0.15 + rng.uniform(-0.05, 0.05), 0.72 + rng.uniform(-0.04, 0.04))
  spleen_d = ellipsoid_distance(
    coords,
    (*centre, rng.uniform(-0.2, 0.2)),
    (rng.uniform(0.2, 0.27), rng.uniform(0.1, 0.14), 0.5),
    rng.uniform(-1.0, -0.5),
  )
  spleen_d = np.maximum(spleen_d, cavity_d + 0.01)
  spleen_d = np.maximum(spleen_d, 0.02 - kidney_d)
  paint(image, inside(spleen_d), rng.uniform(105.0, 125.0) + phase + 5.0 * tissue_texture)
  # Pancreas: a thin lobulated band in front of the aorta, low contrast.
  centre = (yv - vertebra_radius - 0.2 + rng.uniform(-0.03, 0.03), 0.28 + rng.uniform(-0.05, 0.05))
  pancreas_d = ellipsoid_distance(
    coords,
    (*centre, rng.uniform(-0.2, 0.2)),
    (rng.uniform(0.045, 0.06), rng.uniform(0.28, 0.34), 0.3),
    rng.uniform(-0.35, -0.1),
  )
  pancreas_d = np.maximum(pancreas_d, 0.02 - aorta_d)
  level = rng.uniform(70.0, 90.0) + phase
  paint(image, inside(pancreas_d), level + 10.0 * tissue_texture)
  return {"kidney_left": kidney_d, "spleen": spleen_d, "pancreas": pancreas_d}
