"""Tests of mlsup_jax.data.distortions: ImageMagick-style distortions, TEND presets, grain maps."""

from __future__ import annotations

import grain
import ml_collections
import numpy as np
import pytest

from mlsup_jax.data import distortions as D
from mlsup_jax.data.transforms import TRANSFORMS


def _radiograph(n: int, channels: int | None = None) -> np.ndarray:
  """A chest-radiograph-like phantom in [0.1, 1]: bright body, dark lungs, spine, ribs."""
  y, x = np.mgrid[0:n, 0:n] / (n - 1) * 2 - 1
  body = np.clip(1 - (x / 0.9) ** 2, 0, 1) ** 0.5 * 0.7 + 0.1
  lungs = np.exp(-((((np.abs(x) - 0.38) / 0.22) ** 2 + ((y + 0.05) / 0.5) ** 2) ** 2))
  spine = np.exp(-((x / 0.06) ** 2)) * 0.25
  ribs = 0.05 * (np.sin(22 * y) > 0.6) * (np.abs(x) < 0.75)
  image = np.clip(body - 0.5 * lungs + spine + ribs + 0.15 * (y + 1) / 2, 0, 1)
  image = image.astype(np.float32)
  return image if channels is None else np.repeat(image[..., None], channels, axis=-1)


def _random_image(h=24, w=32, c=None, seed=0):
  rng = np.random.default_rng(seed)
  shape = (h, w) if c is None else (h, w, c)
  return rng.uniform(size=shape).astype(np.float32)


ALL_OPTIONS = [(p, k) for p, options in D.TEND_PRESETS.items() for k in range(len(options))]


# ----------------------------------------------------------------------------------------------
# Identities and known displacements.


@pytest.mark.parametrize("c", [None, 3])
def test_identity_parameters_give_the_identity(c):
  image = _random_image(24, 32, c)
  h, w = image.shape[:2]
  np.testing.assert_allclose(D.barrel(image, 0.0, 0.0, 0.0, 1.0), image, atol=1e-6)
  corners = [(0, 0), (w, 0), (0, h), (w, h), (w / 3, h / 2)]
  same = [(x, y, x, y) for x, y in corners]
  for n in (1, 2, 3, 5):
    np.testing.assert_allclose(D.affine(image, same[:n]), image, atol=1e-5)
  np.testing.assert_allclose(D.perspective(image, same[:4]), image, atol=1e-5)
  np.testing.assert_allclose(D.perspective(image, same), image, atol=1e-5)
  np.testing.assert_array_equal(D.affine_projection(image, 1, 0, 0, 1, 0, 0), image)


def test_barrel_default_d_keeps_the_unit_radius():
  image = _random_image(32, 32)
  np.testing.assert_allclose(D.barrel(image, 0.1, 0.05, 0.0), D.barrel(image, 0.1, 0.05, 0.0, 0.85))
  # f(r) = 1 + r³/5 > 1 samples further out: the corners see virtual pixels, the centre does not.
  out = D.barrel(image, 0.2, 0.0, 0.0, 1.0, virtual_pixel="background", fill=-1.0)
  assert out[0, 0] == -1.0 and out[16, 16] > -1.0


@pytest.mark.parametrize("tx, ty", [(3, 0), (0, 5), (-4, 2)])
def test_integer_translation_is_an_exact_shift(tx, ty):
  image = _random_image(20, 24)
  shifted = D.affine_projection(image, 1, 0, 0, 1, tx, ty, virtual_pixel="background", fill=-1.0)
  expected = np.full_like(image, -1.0)
  h, w = image.shape
  dst = np.s_[max(ty, 0) : h + min(ty, 0), max(tx, 0) : w + min(tx, 0)]
  src = np.s_[max(-ty, 0) : h + min(-ty, 0), max(-tx, 0) : w + min(-tx, 0)]
  expected[dst] = image[src]
  np.testing.assert_array_equal(shifted, expected)
  # "tile" wraps the image around instead.
  tiled = D.affine_projection(image, 1, 0, 0, 1, tx, ty, virtual_pixel="tile")
  np.testing.assert_array_equal(tiled, np.roll(image, (ty, tx), axis=(0, 1)))
  # A one-pair affine is the same translation: source (u, v) goes to (u + tx, v + ty).
  np.testing.assert_array_equal(
    D.affine(image, [(5, 5, 5 + tx, 5 + ty)], virtual_pixel="tile"), tiled
  )


def test_virtual_pixel_modes_at_the_borders():
  image = _random_image(16, 16)
  shift = dict(sx=1, rx=0, ry=0, sy=1, tx=4, ty=0)
  background = D.affine_projection(image, **shift, virtual_pixel="background", fill=0.25)
  transparent = D.affine_projection(image, **shift, virtual_pixel="transparent", fill=0.0)
  edge = D.affine_projection(image, **shift, virtual_pixel="edge")
  tile = D.affine_projection(image, **shift, virtual_pixel="tile")
  mirror = D.affine_projection(image, **shift, virtual_pixel="mirror")
  np.testing.assert_array_equal(background[:, :4], 0.25)
  np.testing.assert_array_equal(transparent[:, :4], 0.0)
  np.testing.assert_array_equal(edge[:, :4], np.repeat(image[:, :1], 4, axis=1))
  np.testing.assert_array_equal(tile[:, :4], image[:, -4:])
  np.testing.assert_array_equal(mirror[:, :4], image[:, 3::-1])
  for out in (background, transparent, edge, tile, mirror):  # the inside is the same for all
    np.testing.assert_array_equal(out[:, 4:], image[:, :-4])
  with pytest.raises(ValueError, match="virtual_pixel"):
    D.barrel(image, 0, 0, 0, 1, virtual_pixel="dither")


# ----------------------------------------------------------------------------------------------
# Solvers.


def test_perspective_solver_maps_the_control_points_exactly():
  points = np.array([(0, 0, 20, 60), (90, 0, 70, 63), (0, 90, 5, 83), (90, 90, 85, 88)], np.float64)
  hom = D.solve_perspective(points)
  assert hom.shape == (3, 3) and hom[2, 2] == 1.0
  for u, v, x, y in points:
    mapped = hom @ [x, y, 1.0]
    np.testing.assert_allclose(mapped[:2] / mapped[2], [u, v], atol=1e-9)
  # A genuinely projective map: the denominator varies.
  assert np.abs(hom[2, :2]).max() > 1e-4
  # Fewer than 4 pairs: ImageMagick's Affine fallback.
  three = points[:3]
  np.testing.assert_allclose(D.solve_perspective(three)[:2], D.solve_affine(three))
  image = _random_image(40, 40)
  np.testing.assert_array_equal(D.perspective(image, three), D.affine(image, three))


def test_affine_solver_exact_for_three_pairs_and_similar_for_two():
  points = np.array([(10, 10, 15, 15), (139, 0, 100, 20), (0, 92, 50, 80)], np.float64)
  m = D.solve_affine(points.ravel())  # flat (u, v, x, y, …) is accepted too
  for u, v, x, y in points:
    np.testing.assert_allclose(m @ [x, y, 1.0], [u, v], atol=1e-9)
  two = D.solve_affine(points[:2])
  for u, v, x, y in points[:2]:
    np.testing.assert_allclose(two @ [x, y, 1.0], [u, v], atol=1e-9)
  (a, b), (c, d) = two[:, :2]
  np.testing.assert_allclose([a, b], [d, -c], atol=1e-12)  # scaled rotation: no shear
  with pytest.raises(ValueError, match="degenerate"):
    D.solve_affine([(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2)])
  with pytest.raises(ValueError, match="groups of"):
    D.solve_affine([1, 2, 3])


def test_perspective_sky_gets_the_matte_value():
  # A strong keystone: the source's top edge is squeezed, so the horizon enters the picture.
  points = [(0, 0, 30, 60), (140, 0, 110, 60), (0, 92, 2, 90), (140, 92, 138, 90)]
  image = _random_image(64, 64) + 2.0
  out = D.perspective(image, points, virtual_pixel="tile", matte=-7.0)
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
  spokes = D.polar(stripes, n / 2)[inside]
  rings = D.polar(rings_src, n / 2)[inside]
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
  out = D.polar(marker, n / 2)
  assert out[n - 10, n // 2] > 0.9 and out[10, n // 2] < 0.1  # below the centre, not above


def test_polar_best_fit_shows_the_whole_circle():
  image = np.ones((32, 32), np.float32)
  out = D.polar(image, 40, best_fit=True, virtual_pixel="background", fill=0.0)
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
  mask = D.arc(ones, 60, virtual_pixel="background", fill=0.0)
  assert mask.shape == (h, w)
  assert mask[1, w // 2] == 1.0 and mask[h // 2, w // 2] == 1.0  # top centre, middle
  assert mask[0, 0] == 0.0 and mask[0, -1] == 0.0  # top corners: outside the outer radius
  assert mask[-1, w // 2] == 0.0  # bottom centre: inside the inner radius
  # Rows become radii: a top-to-bottom ramp decreases towards the arc's centre.
  ramp = np.repeat(np.linspace(1.0, 0.0, h, dtype=np.float32)[:, None], w, axis=1)
  column = D.arc(ramp, 60, virtual_pixel="background", fill=-1.0)[:, w // 2]
  valid = column[column >= 0]
  assert len(valid) > h // 2 and np.all(np.diff(valid) < 0)
  # Columns become angles: the arc is left-right symmetric for a symmetric image.
  sym = D.arc(np.tile(np.abs(np.linspace(-1, 1, w, dtype=np.float32)), (h, 1)), 60)
  np.testing.assert_allclose(sym, sym[:, ::-1], atol=1e-5)
  with pytest.raises(ValueError, match="degrees"):
    D.arc(ones, 0)


# ----------------------------------------------------------------------------------------------
# Sampling: the cached gather is `map_coordinates(order=1)`.


@pytest.mark.parametrize("virtual_pixel", D.VIRTUAL_PIXELS)
def test_gather_matches_map_coordinates(virtual_pixel):
  image = _random_image(20, 28, c=2)
  mode = D._SCIPY_MODES[virtual_pixel]
  cases = [
    ("barrel", (1.2, 0.5, 0.6, 1.0), None),
    ("affine_projection", (0.8, 0.5, 0.0, 0.9, 5.0, 5.0), None),
    ("arc", (95.0,), D._arc_coefficients(95.0, (20, 28))[1]),
    ("polar", (9.0, False), None),
    ("perspective", (0, 0, 3, 2, 28, 0, 25, 4, 0, 20, 1, 19, 28, 20, 27, 18), (-5, -5, 40, 30)),
  ]
  for method, params, viewport in cases:
    table = D._gather_table(method, params, (20, 28), viewport, mode)
    coords, _ = D._plan(method, params, (20, 28), viewport)
    fast = D._gather(image, table, 0.3, 0.3)
    reference = D._map_coordinates(image, coords, virtual_pixel, 0.3)
    np.testing.assert_allclose(fast, reference, atol=1e-5, err_msg=method)


# ----------------------------------------------------------------------------------------------
# Presets.


def test_presets_reproduce_the_reference_sets():
  assert len(D.TEND_PRESETS["rsna"]) == 8 and len(D.TEND_PRESETS["ivc"]) == 9
  for options in D.TEND_PRESETS.values():
    assert {o.method for o in options} <= set(D.DISTORTIONS)
    assert {o.virtual_pixel for o in options} <= set(D.VIRTUAL_PIXELS)
  assert D.TEND_PRESETS["ivc"][-1].params == (0.7, 0.1, 0.0, 0.6, 5, 5)
  assert sum(o.viewport is not None for o in D.TEND_PRESETS["ivc"]) == 1
  assert len(D.distortion_names("ivc")) == 9


@pytest.mark.parametrize("n", [64, 256])
@pytest.mark.parametrize("preset, k", ALL_OPTIONS)
def test_preset_options_keep_shape_dtype_and_range(preset, k, n):
  option = D.TEND_PRESETS[preset][k]
  image = _radiograph(n, channels=1 if n == 64 else None)
  out = D.apply_option(image, option)
  assert out.shape == image.shape and out.dtype == image.dtype
  assert np.isfinite(out).all()
  assert out.min() >= image.min() and out.max() <= image.max()


def test_preset_options_work_on_non_square_multichannel_and_uint8_images():
  grey = _radiograph(64)[:48]
  rgb = np.repeat(grey[..., None], 3, axis=-1)
  as_uint8 = np.round(grey * 255).astype(np.uint8)
  for options in D.TEND_PRESETS.values():
    for option in options:
      out = D.apply_option(rgb, option)
      assert out.shape == (48, 64, 3)
      np.testing.assert_allclose(out[..., 1], out[..., 0])  # one map for every channel
      np.testing.assert_allclose(out[..., 0], D.apply_option(grey, option), atol=1e-6)
      out8 = D.apply_option(as_uint8, option)
      assert out8.dtype == np.uint8 and out8.shape == (48, 64)


@pytest.mark.parametrize("n", [64, 256])
def test_every_preset_option_changes_a_radiograph_strongly(n):
  # Measured on this phantom (grey range 0.9), identical at 64² and 256²: mean |distorted −
  # original| 0.14 (IVC barrel 0.2,0,0,1, the mildest) to 0.39, Pearson correlation with the
  # original 0.70 (that barrel) down to −0.24. A 2-pixel shift, for scale, gives 0.07 and 0.93:
  # MAD alone hardly separates it, the correlation does. Thresholds: MAD > 0.1, corr < 0.8.
  image = _radiograph(n)
  nudged = np.roll(image, 2 * n // 64, axis=1)
  assert np.corrcoef(nudged.ravel(), image.ravel())[0, 1] > 0.9
  for preset, options in D.TEND_PRESETS.items():
    for k, option in enumerate(options):
      out = D.apply_option(image, option)
      mad = np.abs(out - image).mean()
      corr = np.corrcoef(out.ravel(), image.ravel())[0, 1]
      assert mad > 0.1 and corr < 0.8, (preset, k, option.method, mad, corr)


def test_preset_pixel_parameters_scale_with_the_image_size():
  # RSNA's one-pair perspective is a tiled translation by (−56, −25) px at 256²: at 64² it is
  # (−14, −6.25) px, so an image that varies along x only moves by exactly 14 columns.
  row = np.sin(np.linspace(0, 6 * np.pi, 64, endpoint=False)).astype(np.float32)
  image = np.tile(row, (64, 1))
  option = D.TEND_PRESETS["rsna"][4]
  assert option.method == "perspective" and option.virtual_pixel == "tile"
  np.testing.assert_allclose(D.apply_option(image, option), np.roll(image, -14, axis=1), atol=1e-5)
  # The same option at 256² and 64² gives the same picture (compared at 64²).
  big = _radiograph(256)
  small = big.reshape(64, 4, 64, 4).mean(axis=(1, 3))
  for option in D.TEND_PRESETS["rsna"]:
    down = D.apply_option(big, option).reshape(64, 4, 64, 4).mean(axis=(1, 3))
    assert np.abs(down - D.apply_option(small, option)).mean() < 0.03, option.method


def test_background_is_white_and_transparent_black():
  image = _radiograph(64)
  barrel = D.apply_option(image, D.TEND_PRESETS["rsna"][0])  # transparent
  affine = D.apply_option(image, D.TEND_PRESETS["rsna"][6])  # background
  assert barrel[0, 0] == pytest.approx(image.min()) and affine[0, 0] == pytest.approx(image.max())
  custom = D.apply_option(image, D.TEND_PRESETS["rsna"][6], value_range=(-1.0, 2.0))
  assert custom[0, 0] == pytest.approx(2.0)


def test_random_distortion_is_deterministic_and_covers_every_option():
  image = _radiograph(64)
  for preset, options in D.TEND_PRESETS.items():
    a = D.random_distortion(image, np.random.default_rng(7), preset)
    b = D.random_distortion(image, np.random.default_rng(7), preset)
    np.testing.assert_array_equal(a, b)
    expected = {D.apply_option(image, o).tobytes() for o in options}
    seen = {
      D.random_distortion(image, np.random.default_rng(s), preset).tobytes() for s in range(80)
    }
    assert seen == expected


def test_errors_are_clear():
  image = _radiograph(32)
  with pytest.raises(KeyError, match="Known presets: rsna, ivc"):
    D.random_distortion(image, np.random.default_rng(0), "isic")
  for bad in (np.zeros(16), np.zeros((1, 16)), np.zeros((4, 4, 1, 1))):
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
      D.random_distortion(bad, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[H, W\] or \[H, W, C\]"):
      D.unseen_transform(bad, np.random.default_rng(0), "gaussian_blur")
  with pytest.raises(KeyError, match="random_cut"):
    D.unseen_transform(image, np.random.default_rng(0), "jpeg")
  with pytest.raises(ValueError, match="singular"):
    D.affine_projection(image, 1, 1, 1, 1, 0, 0)
  with pytest.raises(ValueError, match="viewport"):
    D.perspective(image, [(0, 0, 1, 1)], viewport=(0, 0, 0, 5))
  with pytest.raises(KeyError, match="Unknown distortion"):
    D.apply_option(image, D.DistortionOption("swirl", (1.0,), "edge"))


# ----------------------------------------------------------------------------------------------
# Unseen (validation-only) transforms.


@pytest.mark.parametrize("name", D.UNSEEN_TRANSFORMS)
def test_unseen_transforms(name):
  image = _radiograph(64, channels=1)
  rng = np.random.default_rng(3)
  out = D.unseen_transform(image, rng, name)
  again = D.unseen_transform(image, np.random.default_rng(3), name)
  np.testing.assert_array_equal(out, again)
  assert out.shape == image.shape and out.dtype == image.dtype
  assert out.min() >= image.min() and out.max() <= image.max()
  diff = np.abs(out - image)[..., 0]
  assert diff.mean() > 0.005
  if name == "random_cut":  # one black rectangle, the rest untouched
    rows, cols = np.nonzero(diff > 0)
    box = np.s_[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    assert np.all(out[..., 0][box] == image.min())
    outside = np.ones(diff.shape, bool)
    outside[box] = False
    np.testing.assert_array_equal(out[..., 0][outside], image[..., 0][outside])
    assert out[..., 0][box].size >= 0.8 * (0.25 * 64) ** 2
  elif name == "gaussian_blur":  # smoother: less total variation
    assert np.abs(np.diff(out[..., 0], axis=1)).sum() < np.abs(np.diff(image[..., 0], axis=1)).sum()
  elif name == "random_crop_resize":  # zoomed in: also smoother per pixel
    assert (
      np.abs(np.diff(out[..., 0], axis=0)).mean() < np.abs(np.diff(image[..., 0], axis=0)).mean()
    )
  else:  # noise: rougher
    assert (
      np.abs(np.diff(out[..., 0], axis=1)).mean() > np.abs(np.diff(image[..., 0], axis=1)).mean()
    )
  names = {
    D.unseen_transform(image, np.random.default_rng(s)).tobytes() for s in range(40)
  }  # None draws the transform too
  assert len(names) == 40


# ----------------------------------------------------------------------------------------------
# Grain transforms.


def test_grain_transforms_from_the_registry():
  config = ml_collections.ConfigDict({"distortion_preset": "ivc", "unseen_transform": "random_cut"})
  tend = TRANSFORMS.get("tend_distortion")(config)
  unseen = TRANSFORMS.get("unseen_transform")(config)
  assert isinstance(tend, D.TendDistortion) and tend.preset == "ivc"
  assert isinstance(unseen, D.UnseenTransform) and unseen.name == "random_cut"
  for transform in (tend, unseen):
    assert isinstance(transform, grain.transforms.RandomMap)
  # Defaults live in the configs: a config without the field names it.
  empty = ml_collections.ConfigDict()
  with pytest.raises(AttributeError, match="distortion_preset"):
    TRANSFORMS.get("tend_distortion")(empty)
  with pytest.raises(AttributeError, match="unseen_transform"):
    TRANSFORMS.get("unseen_transform")(empty)
  assert (
    TRANSFORMS.get("unseen_transform")(ml_collections.ConfigDict({"unseen_transform": None})).name
    is None
  )

  image = _radiograph(32, channels=1)
  examples = [{"image": image + 0.01 * i, "label": np.int32(i)} for i in range(6)]
  dataset = grain.MapDataset.source(examples).seed(5).random_map(tend).random_map(unseen)
  first = [dataset[i] for i in range(6)]
  second = [dataset[i] for i in range(6)]
  for i, (a, b) in enumerate(zip(first, second, strict=True)):
    np.testing.assert_array_equal(a["image"], examples[i]["image"])  # the input is kept
    assert a["label"] == i and a["distorted"].shape == image.shape
    np.testing.assert_array_equal(a["distorted"], b["distorted"])  # reproducible per index
  # The unseen transform ran last: its key overwrote TEND's, with a black rectangle.
  assert all((a["distorted"] == a["image"].min()).any() for a in first)

  with pytest.raises(KeyError, match="Unknown TEND preset"):
    TRANSFORMS.get("tend_distortion")(ml_collections.ConfigDict({"distortion_preset": "isic"}))
  with pytest.raises(KeyError, match="Unknown unseen transform"):
    D.UnseenTransform(name="jpeg")
