"""Tests of data/augmentation/image_warps.py and warp_sampling.py: ImageMagick-style warps."""

from __future__ import annotations

import numpy as np
import pytest
from distortion_images import random_image

from mlsup_jax.data.augmentation import image_warps as W
from mlsup_jax.data.augmentation import warp_sampling as S

# ----------------------------------------------------------------------------------------------
# Identities and known displacements.


@pytest.mark.parametrize("c", [None, 3])
def test_identity_parameters_give_the_identity(c):
  image = random_image(24, 32, c)
  h, w = image.shape[:2]
  np.testing.assert_allclose(W.barrel(image, 0.0, 0.0, 0.0, 1.0), image, atol=1e-6)
  corners = [(0, 0), (w, 0), (0, h), (w, h), (w / 3, h / 2)]
  same = [(x, y, x, y) for x, y in corners]
  for n in (1, 2, 3, 5):
    np.testing.assert_allclose(W.affine(image, same[:n]), image, atol=1e-5)
  np.testing.assert_allclose(W.perspective(image, same[:4]), image, atol=1e-5)
  np.testing.assert_allclose(W.perspective(image, same), image, atol=1e-5)
  np.testing.assert_array_equal(W.affine_projection(image, 1, 0, 0, 1, 0, 0), image)


def test_barrel_default_d_keeps_the_unit_radius():
  image = random_image(32, 32)
  np.testing.assert_allclose(W.barrel(image, 0.1, 0.05, 0.0), W.barrel(image, 0.1, 0.05, 0.0, 0.85))
  # f(r) = 1 + r³/5 > 1 samples further out: the corners see virtual pixels, the centre does not.
  out = W.barrel(image, 0.2, 0.0, 0.0, 1.0, virtual_pixel="background", fill=-1.0)
  assert out[0, 0] == -1.0 and out[16, 16] > -1.0


@pytest.mark.parametrize("tx, ty", [(3, 0), (0, 5), (-4, 2)])
def test_integer_translation_is_an_exact_shift(tx, ty):
  image = random_image(20, 24)
  shifted = W.affine_projection(image, 1, 0, 0, 1, tx, ty, virtual_pixel="background", fill=-1.0)
  expected = np.full_like(image, -1.0)
  h, w = image.shape
  dst = np.s_[max(ty, 0) : h + min(ty, 0), max(tx, 0) : w + min(tx, 0)]
  src = np.s_[max(-ty, 0) : h + min(-ty, 0), max(-tx, 0) : w + min(-tx, 0)]
  expected[dst] = image[src]
  np.testing.assert_array_equal(shifted, expected)
  # "tile" wraps the image around instead.
  tiled = W.affine_projection(image, 1, 0, 0, 1, tx, ty, virtual_pixel="tile")
  np.testing.assert_array_equal(tiled, np.roll(image, (ty, tx), axis=(0, 1)))
  # A one-pair affine is the same translation: source (u, v) goes to (u + tx, v + ty).
  np.testing.assert_array_equal(
    W.affine(image, [(5, 5, 5 + tx, 5 + ty)], virtual_pixel="tile"), tiled
  )


def test_virtual_pixel_modes_at_the_borders():
  image = random_image(16, 16)
  shift = dict(sx=1, rx=0, ry=0, sy=1, tx=4, ty=0)
  background = W.affine_projection(image, **shift, virtual_pixel="background", fill=0.25)
  transparent = W.affine_projection(image, **shift, virtual_pixel="transparent", fill=0.0)
  edge = W.affine_projection(image, **shift, virtual_pixel="edge")
  tile = W.affine_projection(image, **shift, virtual_pixel="tile")
  mirror = W.affine_projection(image, **shift, virtual_pixel="mirror")
  np.testing.assert_array_equal(background[:, :4], 0.25)
  np.testing.assert_array_equal(transparent[:, :4], 0.0)
  np.testing.assert_array_equal(edge[:, :4], np.repeat(image[:, :1], 4, axis=1))
  np.testing.assert_array_equal(tile[:, :4], image[:, -4:])
  np.testing.assert_array_equal(mirror[:, :4], image[:, 3::-1])
  for out in (background, transparent, edge, tile, mirror):  # the inside is the same for all
    np.testing.assert_array_equal(out[:, 4:], image[:, :-4])
  with pytest.raises(ValueError, match="virtual_pixel"):
    W.barrel(image, 0, 0, 0, 1, virtual_pixel="dither")


# ----------------------------------------------------------------------------------------------
# Solvers.


def test_perspective_solver_maps_the_control_points_exactly():
  points = np.array([(0, 0, 20, 60), (90, 0, 70, 63), (0, 90, 5, 83), (90, 90, 85, 88)], np.float64)
  hom = W.solve_perspective(points)
  assert hom.shape == (3, 3) and hom[2, 2] == 1.0
  for u, v, x, y in points:
    mapped = hom @ [x, y, 1.0]
    np.testing.assert_allclose(mapped[:2] / mapped[2], [u, v], atol=1e-9)
  # A genuinely projective map: the denominator varies.
  assert np.abs(hom[2, :2]).max() > 1e-4
  # Fewer than 4 pairs: ImageMagick's Affine fallback.
  three = points[:3]
  np.testing.assert_allclose(W.solve_perspective(three)[:2], W.solve_affine(three))
  image = random_image(40, 40)
  np.testing.assert_array_equal(W.perspective(image, three), W.affine(image, three))


def test_affine_solver_exact_for_three_pairs_and_similar_for_two():
  points = np.array([(10, 10, 15, 15), (139, 0, 100, 20), (0, 92, 50, 80)], np.float64)
  m = W.solve_affine(points.ravel())  # flat (u, v, x, y, …) is accepted too
  for u, v, x, y in points:
    np.testing.assert_allclose(m @ [x, y, 1.0], [u, v], atol=1e-9)
  two = W.solve_affine(points[:2])
  for u, v, x, y in points[:2]:
    np.testing.assert_allclose(two @ [x, y, 1.0], [u, v], atol=1e-9)
  (a, b), (c, d) = two[:, :2]
  np.testing.assert_allclose([a, b], [d, -c], atol=1e-12)  # scaled rotation: no shear
  with pytest.raises(ValueError, match="degenerate"):
    W.solve_affine([(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2)])
  with pytest.raises(ValueError, match="groups of"):
    W.solve_affine([1, 2, 3])


def test_perspective_sky_gets_the_matte_value():
  # A strong keystone: the source's top edge is squeezed, so the horizon enters the picture.
  points = [(0, 0, 30, 60), (140, 0, 110, 60), (0, 92, 2, 90), (140, 92, 138, 90)]
  image = random_image(64, 64) + 2.0
  out = W.perspective(image, points, virtual_pixel="tile", matte=-7.0)
  assert np.all(out[0] == -7.0) and np.all(out[-1] >= 2.0)


# ----------------------------------------------------------------------------------------------
# Polar and Arc structure.


def _polar_coordinates(n):
  y, x = np.mgrid[0:n, 0:n] + 0.5 - n / 2
  return np.arctan2(x, y), np.hypot(x, y)  # angle from "down", as ImageMagick's Polar


def _within_bin_spread(values, keys, bins):
  """Mean within-bin standard deviation of `values` grouped by `keys` into `bins` bins."""
  edges = np.linspace(keys.min(), keys.max() + 1e-9, bins + 1)
  groups = np.digitize(keys, edges)
  return np.mean([values[groups == g].std() for g in np.unique(groups)])


def test_polar_of_vertical_stripes_gives_radial_spokes():
  n = 128
  columns = np.sin(np.linspace(0, 8 * np.pi, n, endpoint=False))
  stripes = np.tile(columns, (n, 1)).astype(np.float32)  # varies with x only
  rings_src = stripes.T.copy()  # varies with y only
  angle, radius = _polar_coordinates(n)
  inside = (radius > 6) & (radius < n / 2 - 2)
  spokes = W.polar(stripes, n / 2)[inside]
  rings = W.polar(rings_src, n / 2)[inside]
  angle, radius = angle[inside], radius[inside]
  # Spokes: constant along a ray (binned by angle), varying around the circle.
  assert _within_bin_spread(spokes, angle, 256) < 0.15 * spokes.std()
  assert _within_bin_spread(spokes, radius, 32) > 0.8 * spokes.std()
  # Rings: the reverse.
  assert _within_bin_spread(rings, radius, 64) < 0.15 * rings.std()
  assert _within_bin_spread(rings, angle, 64) > 0.8 * rings.std()
  # Column u → angle 2π(u − W/2)/W from straight down: the centre column points down.
  marker = np.zeros((n, n), np.float32)
  marker[:, n // 2 - 2 : n // 2 + 2] = 1.0
  out = W.polar(marker, n / 2)
  assert out[n - 10, n // 2] > 0.9 and out[10, n // 2] < 0.1  # below the centre, not above


def test_polar_best_fit_shows_the_whole_circle():
  image = np.ones((32, 32), np.float32)
  out = W.polar(image, 40, best_fit=True, virtual_pixel="background", fill=0.0)
  angle, radius = _polar_coordinates(32)
  # The disc is inscribed in the canvas (apart from the seam straight up, where the left and
  # right image edges meet the virtual pixels, as in ImageMagick without a horizontal tile).
  seam = np.abs(angle) > np.pi - 0.15
  np.testing.assert_allclose(out[(radius < 14) & ~seam], 1.0, atol=1e-6)
  assert out[(radius < 14) & seam].min() < 1.0
  np.testing.assert_array_equal(out[radius > 16.5], 0.0)  # corners lie outside the circle


def test_arc_bends_rows_into_concentric_arcs():
  h, w = 32, 48
  ones = np.ones((h, w), np.float32)
  mask = W.arc(ones, 60, virtual_pixel="background", fill=0.0)
  assert mask.shape == (h, w)
  assert mask[1, w // 2] == 1.0 and mask[h // 2, w // 2] == 1.0  # top centre, middle
  assert mask[0, 0] == 0.0 and mask[0, -1] == 0.0  # top corners: outside the outer radius
  assert mask[-1, w // 2] == 0.0  # bottom centre: inside the inner radius
  # Rows become radii: a top-to-bottom ramp decreases towards the arc's centre.
  ramp = np.repeat(np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None], w, axis=1)
  column = W.arc(ramp, 60, virtual_pixel="background", fill=-1.0)[:, w // 2]
  valid = column[column >= 0]
  assert len(valid) > h // 2 and np.all(np.diff(valid) < 0)
  # Columns become angles: the arc is left-right symmetric for a symmetric image.
  sym = W.arc(np.tile(np.abs(np.linspace(-1, 1, w, dtype=np.float32)), (h, 1)), 60)
  np.testing.assert_allclose(sym, sym[:, ::-1], atol=1e-5)
  with pytest.raises(ValueError, match="degrees"):
    W.arc(ones, 0)


# ----------------------------------------------------------------------------------------------
# Sampling: the cached gather is `map_coordinates(order=1)`.


@pytest.mark.parametrize("virtual_pixel", S.VIRTUAL_PIXELS)
def test_gather_matches_map_coordinates(virtual_pixel):
  image = random_image(20, 28, c=2)
  mode = S.SCIPY_MODES[virtual_pixel]
  cases = [
    ("barrel", (1.2, 0.5, 0.6, 1.0), None),
    ("affine_projection", (0.8, 0.5, 0.0, 0.9, 5.0, 5.0), None),
    ("arc", (95.0,), W._arc_coefficients(95.0, (20, 28))[1]),
    ("polar", (9.0, False), None),
    ("perspective", (0, 0, 3, 2, 28, 0, 25, 4, 0, 20, 1, 19, 28, 20, 27, 18), (-5, -5, 40, 30)),
  ]
  for method, params, viewport in cases:
    table = W._gather_table(method, params, (20, 28), viewport, mode)
    coords, _ = W._plan(method, params, (20, 28), viewport)
    fast = S.gather(image, table, 0.3, 0.3)
    reference = S.map_coordinates(image, coords, virtual_pixel, 0.3)
    np.testing.assert_allclose(fast, reference, atol=1e-5, err_msg=method)
