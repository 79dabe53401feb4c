"""The semi-supervised base: CutMix boxes, each kind's targets and step, CPS's two networks, the
sharded step, per-volume metrics with spacing, model selection on validation, bad input."""

from __future__ import annotations

import copy
import json
import logging as std_logging
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny_segmentation import TinySegNet, assert_trees_close

from configs import semi_supervised as ssl_config
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core import teacher, trainer
from mlsup_jax.core.run_setup import RunSetup, enter_stage
from mlsup_jax.data import pipeline
from mlsup_jax.data.sources import DATASETS
from mlsup_jax.data.validation import DataError
from mlsup_jax.methods import semi_supervised as ssl
from mlsup_jax.metrics import segmentation as segmentation_metrics
from mlsup_jax.nn import MODELS
from mlsup_jax.pipelines import model_selection


@pytest.fixture(scope="module", autouse=True)
def registered():
  MODELS.register("test_ssl_tiny", TinySegNet)
  yield
  MODELS.unregister("test_ssl_tiny")


def _config(
  kind="mean_teacher", tiny=True, labelled_batch=4, unlabelled_batch=8, options="", **semi
):
  config = ssl_config.get_config(f"smoke,kind={kind}{options}")
  with config.unlocked():
    if tiny and kind in ("action", "action_pp", "arco", "mona"):  # contrasts need embeddings
      config.model.features = (4, 8)
      config.model.embedding_dim = 8
    elif tiny:
      config.model = {"name": "test_ssl_tiny", "num_classes": 4, "features": (4,)}
    config.data.batch_size = labelled_batch
    config.data.streams.unlabelled.batch_size = unlabelled_batch
    for key, value in semi.items():
      config.semi[key] = value
  return config


def _one_device_setup(config):
  return RunSetup(config, jax.devices()[:1])


def _setup(config):
  setup = _one_device_setup(config)
  batch = pipeline.train_dataset(setup.config.data)[0]
  return setup, batch


# ---------------------------------------------------------------------------------------------
# CutMix.


def test_cutmix_boxes_are_one_box_per_image_of_the_asked_area():
  boxes = np.asarray(ssl.cutmix_boxes(jax.random.key(0), 64, (40, 40), 0.25, 0.5))
  assert boxes.shape == (64, 40, 40) and set(np.unique(boxes)) <= {0.0, 1.0}
  area = boxes.mean(axis=(1, 2))
  # The box is clipped at the image border, so its area is at most the drawn fraction.
  assert area.max() <= 0.5 + 2 * 40 / 1600 and area.min() > 0.0
  assert np.median(area) > 0.15
  for box in boxes:  # One axis-aligned rectangle: its rows and columns are contiguous.
    rows, cols = np.flatnonzero(box.any(1)), np.flatnonzero(box.any(0))
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert box.sum() == len(rows) * len(cols)


def test_mix_takes_the_box_from_the_next_image():
  x = jnp.arange(3.0)[:, None, None, None] * jnp.ones((3, 4, 4, 2))
  box = jnp.zeros((3, 4, 4)).at[:, :2, :2].set(1.0)
  mixed = np.asarray(ssl.mix(x, box))
  for i in range(3):
    assert np.all(mixed[i, :2, :2] == (i + 1) % 3) and np.all(mixed[i, 2:, :] == i)
  assert ssl.mix(jnp.ones((3, 4, 4)), box).shape == (3, 4, 4)  # A mask without channels.


# ---------------------------------------------------------------------------------------------
# Targets and steps of each kind.


def test_fixmatch_targets_are_the_students_confident_weak_view_predictions():
  config = _config("fixmatch", threshold=0.5)
  setup, batch = _setup(config)
  state = setup.create_state(0)
  method = setup.method
  probs, mask = method.targets(state, batch["unlabelled"], jax.random.key(1), state.step)
  logits, _ = method.logits(state.params, state, batch["unlabelled"]["image"], None, train=False)
  expected = jax.nn.softmax(logits, axis=-1)
  np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(mask, (np.max(expected, -1) >= 0.5).astype(np.float32))


def test_uamt_masks_pixels_above_the_entropy_threshold():
  config = _config("uamt", num_passes=3, rampup_steps=10)
  setup, batch = _setup(config)
  state = setup.create_state(0)
  probs, mask = setup.method.targets(state, batch["unlabelled"], jax.random.key(2), jnp.int32(0))
  entropy = -np.sum(np.asarray(probs) * np.log(np.maximum(np.asarray(probs), 1e-12)), -1)
  tau = (0.75 + 0.25 * float(teacher.sigmoid_rampup(0, 10))) * math.log(4)
  keep = entropy < tau
  near = np.abs(entropy - tau) < 1e-4  # float32 entropy vs float64 here
  np.testing.assert_array_equal(np.asarray(mask)[~near], keep[~near].astype(np.float32))


def _stage(setup, name="train"):
  return next(stage for stage in setup.stages if stage.name == name)


def _state(setup, stage="train"):
  """A fresh state whose optimizer state is `stage`'s."""
  return setup.create_state([s.name for s in setup.stages].index(stage))


def _step(config, batch, state=None, setup=None, steps=1, stage="train"):
  setup = setup or _one_device_setup(config)
  state = _state(setup, stage) if state is None else state
  step = jax.jit(_stage(setup, stage).train_step)
  for i in range(steps):
    state, metrics = step(state, batch, jax.random.key(3 + i))
  return (state, metrics), setup


def test_action_weighs_each_image_by_its_share_of_confident_teacher_pixels():
  config = _config("action", threshold=0.3)
  setup, batch = _setup(config)
  state = setup.create_state(0)
  probs, mask = setup.method.targets(state, batch["unlabelled"], jax.random.key(1), state.step)
  logits, _ = setup.method.logits(
    state.extra["teacher"], state, batch["unlabelled"]["image"], jax.random.key(1)
  )
  confident = np.max(np.asarray(jax.nn.softmax(logits, -1)), -1) >= 0.3
  expected = confident.mean(axis=(1, 2), keepdims=True) * np.ones_like(confident)
  np.testing.assert_allclose(mask, expected, rtol=1e-6)
  assert 0.0 < float(np.mean(mask)) < 1.0


def test_action_step_adds_the_regional_contrast_and_moves_the_teacher():
  config = _config("action", options=",sampling=spatial,antithetic")
  setup, batch = _setup(config)
  (after, metrics), _ = _step(config, batch, setup=setup)
  assert float(metrics["contrast/contrast_classes"]) >= 2
  assert np.isfinite(float(metrics["loss/contrast/regional_contrast"]))
  assert set(after.extra) == {"teacher"}
  term = config.loss.contrast.regional_contrast
  assert (term.weight, term.sampling, term.antithetic) == (0.01, "spatial", True)


def test_action_pp_contrasts_labelled_anchors_and_carries_its_queue():
  config = _config("action_pp")
  setup, batch = _setup(config)
  before = _state(setup)
  assert int(before.extra["tsc"]["pointer"]) == 0
  assert np.all(np.asarray(before.extra["tsc"]["queue_labels"]) == -1)
  (after, metrics), _ = _step(config, batch, before, setup)
  present = np.unique(np.asarray(batch["label"]))
  anchors = len(present) * config.semi.tsc.anchors_per_class
  memory = after.extra["tsc"]
  assert int(memory["pointer"]) == anchors % config.semi.tsc.queue_size
  queued = np.asarray(memory["queue_labels"])
  assert sorted(set(queued[:anchors].tolist())) == sorted(present.tolist())
  assert np.all(queued[anchors:] == -1)
  assert np.isfinite(float(metrics["tsc"])) and float(metrics["tsc_positives"]) >= 1
  assert float(metrics["tsc_temperature"]) == pytest.approx(1.0)  # the cycle starts high


def test_action_pp_queue_must_hold_a_steps_anchors():
  config = _config("action_pp")
  with config.unlocked():
    config.semi.tsc.queue_size = 8
  with pytest.raises(ValueError, match="queue_size"):
    ssl.SemiSupervisedMethod(config)


def test_action_pretraining_stages_distil_and_the_first_moves_only_the_encoder():
  config = _config("action", options=",pretrain")
  setup, batch = _setup(config)
  assert [(s.name, s.num_steps) for s in setup.stages] == [
    ("distill_encoder", 3),
    ("distill", 3),
    ("train", 6),
  ]
  before = _state(setup, "distill_encoder")
  assert set(before.params) == {"net", "heads"}
  (after, metrics), _ = _step(config, batch, before, setup, stage="distill_encoder")
  assert "distill/kl_latent" in metrics and "distill/kl_output" not in metrics

  changed = jax.tree_util.tree_map_with_path(
    lambda path, x, y: (jax.tree_util.keystr(path), bool(jnp.any(x != y))),
    before.params,
    after.params,
  )
  flags = dict(jax.tree.leaves(changed, is_leaf=lambda x: isinstance(x, tuple)))
  encoder = [k for k in flags if "UNetBackbone_0" in k and "ConvNormAct_0'" in k]
  decoder = [k for k in flags if "ConvTranspose" in k or k.startswith("['net']['Conv_")]
  assert encoder and all(flags[k] for k in encoder)
  assert decoder and not any(flags[k] for k in decoder)
  assert any(flags[k] for k in flags if k.startswith("['heads']"))
  queue = after.extra["distill"]
  n = config.data.streams.unlabelled.batch_size
  assert int(queue["pointer"]) == n and int(queue["filled"].sum()) == n
  after = enter_stage(after, _stage(setup, "distill"))  # the trainer's stage change
  (after2, metrics), _ = _step(config, batch, after, setup, stage="distill")
  assert "distill/kl_output" in metrics and np.isfinite(float(metrics["distill/kl_output"]))
  assert int(after2.extra["distill"]["filled"].sum()) == min(2 * n, 36)


@pytest.mark.parametrize("kind, sampling", [("arco", "spatial"), ("mona", "uniform")])
def test_arco_and_mona_add_the_equivariance_term_and_differ_in_sampling(kind, sampling):
  config = _config(kind, equivariance={"weight": 1.0, "threshold": 0.0, "grid": 3, "sigma": 0.05})
  assert config.loss.contrast.regional_contrast.sampling == sampling
  setup, batch = _setup(config)
  (_, metrics), _ = _step(config, batch, setup=setup)
  assert np.isfinite(float(metrics["equivariance_kl"]))
  assert float(metrics["equivariance_pixels"]) > 0  # threshold 0: every foreground pixel counts


def test_arco_carries_a_queue_of_teacher_embeddings_for_the_nearest_neighbour_term():
  config = _config("arco")
  assert (config.semi.memory.weight, config.semi.memory.size, config.semi.memory.topk) == (
    1.0,
    36,
    5,
  )
  setup, batch = _setup(config)
  before = _state(setup)
  n = config.data.streams.unlabelled.batch_size
  width = config.semi.memory.pool**2 * config.model.embedding_dim
  assert before.extra["memory"]["queue"].shape == (36, width)
  (after, metrics), _ = _step(config, batch, before, setup)
  # The first step finds an empty queue (no neighbours, loss 0), then writes the teacher's
  # unit-length pooled embeddings of the mixed weak views.
  assert float(metrics["nearest_neighbour"]) == 0.0
  queue = after.extra["memory"]
  assert int(queue["pointer"]) == n and int(queue["filled"].sum()) == n
  norms = np.linalg.norm(np.asarray(queue["queue"][:n]), axis=1)
  np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
  (after2, metrics), _ = _step(config, batch, after, setup)
  assert 0.0 < float(metrics["nearest_neighbour"]) < 4.0
  assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(after2))
  assert int(after2.extra["memory"]["filled"].sum()) == 2 * n
  # Mean Teacher and ACTION carry no such queue; the term needs an ACTION-family kind.
  assert "memory" not in _state(_setup(_config("action"))[0]).extra
  bad = _config("mean_teacher", memory={"weight": 1.0, "size": 36, "topk": 5, "pool": 4})
  with pytest.raises(ValueError, match="semi.memory"):
    ssl.SemiSupervisedMethod(bad)


def test_a_contrast_without_embeddings_is_a_clear_error():
  config = _config("mean_teacher")
  with config.unlocked():
    config.loss.contrast.regional_contrast.weight = 0.01
  with pytest.raises(ValueError, match="embedding_dim"):
    ssl.SemiSupervisedMethod(config)


def test_mean_teacher_moves_the_teacher_by_the_ema_formula():
  config = _config("mean_teacher", ema_decay=0.9)
  setup, batch = _setup(config)
  before = setup.create_state(0)
  (after, metrics), _ = _step(config, batch, before, setup)
  gamma = float(teacher.ema_decay(0, 0.9))
  expected = jax.tree.map(
    lambda t, p: gamma * t + (1 - gamma) * p, before.extra["teacher"], after.params
  )
  assert_trees_close(after.extra["teacher"], expected, rtol=1e-6, atol=1e-7)
  assert {"loss", "unsupervised_loss", "confident_fraction"} <= set(metrics)
  assert float(metrics["confident_fraction"]) == 1.0  # Mean teacher: every pixel.


def _with_other_unlabelled(batch):
  other = copy.deepcopy(batch)
  for key in ("image", "image_strong"):
    other["unlabelled"][key] = np.flip(batch["unlabelled"][key], axis=0) * 0.5 + 0.25
  return other


def test_labelled_only_does_not_read_the_unlabelled_images():
  config = _config("labelled_only")
  setup, batch = _setup(config)
  (a, _), _ = _step(config, batch, setup=setup, steps=3)
  (b, _), _ = _step(config, _with_other_unlabelled(batch), setup=setup, steps=3)
  assert_trees_close(a.params, b.params, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["mean_teacher", "fixmatch", "cps"])
def test_the_unlabelled_images_move_the_student(kind):
  config = _config(kind, unsup_weight=10.0, rampup_steps=1, threshold=0.0)
  setup, batch = _setup(config)
  # Three steps: Adam's first update is ±lr whatever the gradient's size.
  (a, _), _ = _step(config, batch, setup=setup, steps=3)
  (b, _), _ = _step(config, _with_other_unlabelled(batch), setup=setup, steps=3)
  difference = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a.params, b.params)
  assert max(jax.tree.leaves(difference)) > 1e-6


def test_cps_trains_two_networks_from_different_initialisations_and_evaluates_a():
  config = _config("cps", unsup_weight=1.0, rampup_steps=1)
  setup, batch = _setup(config)
  state = setup.create_state(0)
  assert set(state.params) == {"a", "b"} and not state.extra
  gap = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), *state.params.values())
  assert max(jax.tree.leaves(gap)) > 1e-3
  (after, metrics), _ = _step(config, batch, state, setup)
  assert {"a/loss/unsupervised/pseudo_label_ce", "b/loss/unsupervised/pseudo_label_ce"} <= set(
    metrics
  )
  assert setup.method.eval_params(after) is after.params["a"]


def test_cps_refuses_a_network_with_batch_statistics():
  config = _config("cps", tiny=False)
  with config.unlocked():
    config.model = {"name": "scunet", "num_classes": 4}
  with pytest.raises(ValueError, match="BatchNorm"):
    _one_device_setup(config).create_state(0)


def test_bad_semi_options_are_clear_errors():
  with pytest.raises(ValueError, match="kind"):
    ssl_config.get_config("smoke,kind=vat")
  for field, value, message in [
    ("ema_decay", 1.0, "ema_decay"),
    ("cutmix_min", 0.6, "cutmix"),
  ]:
    config = _config("fixmatch", **{field: value})
    with pytest.raises(ValueError, match=message):
      ssl.SemiSupervisedMethod(config)


@pytest.mark.parametrize(
  "kind, stage",
  [
    ("mean_teacher", "train"),
    ("fixmatch", "train"),
    ("cps", "train"),
    ("action", "train"),
    ("action", "distill"),  # with `pretrain`
    ("action_pp", "train"),
    ("arco", "train"),
  ],
)
def test_sharded_step_matches_single_device(devices, kind, stage):
  """Two steps on 8 devices and on one agree to float32 round-off (teacher, CutMix, CPS, the
  stratified contrastive draws over the global batch)."""
  options = ",sampling=spatial" if kind.startswith("action") else ""
  if kind == "arco":
    options = ""  # ARCO's default: spatial stratified groups
  if stage != "train":
    options += ",pretrain"
  config = _config(
    kind, labelled_batch=8, unlabelled_batch=16, options=options, cutmix=True, rampup_steps=1
  )
  dataset = pipeline.train_dataset(RunSetup(config, devices).config.data)
  batches = [dataset[i] for i in range(2)]

  def run(devs):
    setup = RunSetup(config, devs)
    index = [s.name for s in setup.stages].index(stage)
    _, shardings = setup.state_shardings(index)
    state = setup.create_state(index)
    step = setup.compile_step(setup.stages[index], shardings)
    seen = []
    for i, local in enumerate(batches):
      batch = mesh_lib.global_batch(local, setup.mesh)
      assert len(batch["unlabelled"]["image"].sharding.device_set) == len(devs)
      state, metrics = step(state, batch, jax.random.fold_in(setup.train_rng, i))
      seen.append(jax.device_get(metrics))
    return seen, jax.device_get(state)

  sharded_metrics, sharded = run(devices)
  single_metrics, single = run(devices[:1])
  # The distillation KL divides similarities by T_t = 0.01: a reduction-order difference of
  # 1e-8 in a cosine becomes 1e-6 in the KL, so its metric is compared at 1e-5.
  metric_atol = 1e-5 if stage == "distill" else 1e-6
  for a, b in zip(sharded_metrics, single_metrics, strict=True):
    assert_trees_close(a, b, rtol=1e-5, atol=metric_atol)
  assert_trees_close(sharded.params, single.params, rtol=1e-5, atol=1e-6)
  assert_trees_close(sharded.extra, single.extra, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Evaluation: volumes, spacing, model selection.


def test_volumes_stack_slices_by_patient_in_slice_order():
  pred = np.arange(6)[:, None, None] * np.ones((6, 2, 2), int)
  patient = np.array([1, 0, 1, 0, 1, 0])
  slices = np.array([2, 1, 0, 0, 1, 2])
  stacked, _ = segmentation_metrics.stack_patient_volumes(pred, pred, patient, slices)
  assert stacked.shape == (2, 3, 2, 2)
  np.testing.assert_array_equal(stacked[:, :, 0, 0], [[3, 1, 5], [2, 4, 0]])
  with pytest.raises(ValueError, match="slice counts"):
    segmentation_metrics.stack_patient_volumes(pred[:5], pred[:5], patient[:5], slices[:5])


def test_volume_distances_are_in_spacing_units_and_missed_structures_are_counted():
  config = _config("labelled_only")
  method = ssl.SemiSupervisedMethod(_one_device_setup(config).config)
  label = np.zeros((4, 16, 16), np.int32)
  label[:, 4:10, 4:10] = 3  # LV in every slice of two 2-slice patients
  label[:, 11:13, 4:10] = 1  # RV
  pred = label.copy()
  pred[:, 4:10, 4:9] = 3
  pred[:, 4:10, 9] = 0
  pred[:2][pred[:2] == 1] = 0  # Patient 0: RV missed
  outputs = {
    "pred": pred,
    "label": label,
    "patient": np.array([0, 0, 1, 1]),
    "slice": np.array([0, 1, 0, 1]),
  }
  with method.config.unlocked():
    method.config.eval.spacing = (1.0, 1.0, 1.0)
  voxels = method.evaluate(outputs)
  with method.config.unlocked():
    method.config.eval.spacing = (10.0, 2.0, 2.0)
  mm = method.evaluate(outputs)
  assert voxels["num_images"] == 2  # Two volumes, not four slices.
  assert voxels["num_missed"] == 1 and mm["num_missed"] == 1
  assert mm["hd95/lv"] == pytest.approx(2.0 * voxels["hd95/lv"])  # In-plane error only.
  assert np.isfinite(mm["hd95/rv"])  # Patient 1's RV is found; patient 0's is left out.


def test_selection_never_uses_the_test_source():
  config = _config("labelled_only")
  with config.unlocked():
    config.data.selection_source = copy.deepcopy(config.data.eval_source)
  with pytest.raises(ValueError, match="test data"):
    model_selection.select_and_test(config, "/nonexistent")


def test_train_then_select_on_validation_and_test_once(tmp_path):
  config = _config("fixmatch", labelled_batch=8, unlabelled_batch=16)  # On the 8 test devices.
  workdir = str(tmp_path)
  trainer.train_and_evaluate(config, workdir)
  summary = model_selection.select_and_test(config, workdir)
  assert sorted(summary["scores"]) == [3, 6]  # Every kept checkpoint was scored on validation.
  assert summary["best_step"] == model_selection.best_step(summary["scores"], "max")
  assert {"dice", "hd95", "num_missed"} <= set(summary["test"])
  with open(tmp_path / "selection.json") as f:
    assert json.load(f)["best_step"] == summary["best_step"]
  with open(tmp_path / "config.json") as f:  # The run's own config is left as trained.
    assert json.load(f)["data"]["eval_source"]["split"] == "test"
  again = model_selection.select_and_test(config, workdir)  # Cached: nothing re-evaluated.
  assert again["scores"] == {int(k): v for k, v in summary["scores"].items()}


# ---------------------------------------------------------------------------------------------
# Bad input.


def test_a_labelled_count_that_leaves_no_labelled_or_no_unlabelled_patient_is_an_error():
  for labelled in (0, 4):  # The smoke phantom has 4 training patients.
    config = ssl_config.get_config(f"smoke,labelled={labelled}")
    with pytest.raises(DataError, match="num_labelled"):
      pipeline.train_dataset(config.data)


class _EmptySource:
  """A user's source that found no files."""

  def __len__(self):
    return 0

  def __getitem__(self, index):
    raise IndexError(index)


def test_an_empty_unlabelled_stream_is_an_error():
  config = _config("mean_teacher")
  with config.unlocked():
    config.data.streams.unlabelled.source = {"name": "test_ssl_empty"}
  DATASETS.register("test_ssl_empty", _EmptySource)
  try:
    with pytest.raises(DataError, match=r"test_ssl_empty.*no examples"):
      pipeline.train_dataset(config.data)
  finally:
    DATASETS.unregister("test_ssl_empty")


def test_labels_in_the_unlabelled_stream_are_dropped_and_said_once(caplog):
  config = _config("mean_teacher")
  with config.unlocked():  # A labelled source as the unlabelled stream.
    config.data.streams.unlabelled.source = config.data.train_source.to_dict()
  pipeline._DROPPED_LABELS_LOGGED.clear()
  with caplog.at_level(std_logging.INFO):
    dataset = pipeline.train_dataset(config.data)
    batches = [dataset[i] for i in range(3)]
  assert all("label" not in b["unlabelled"] for b in batches)
  assert all("label" in b for b in batches)
  said = [r for r in caplog.records if "labels are ignored" in r.getMessage()]
  assert len(said) == 1


def test_class_maps_that_differ_between_labelled_sources_are_an_error():
  config = _config("mean_teacher")
  with config.unlocked():  # An abdominal phantom as the evaluation data of a cardiac run.
    config.data.eval_source = {"name": "phantom_abdomen", "split": "test", "num_cases": 4}
  with pytest.raises(DataError, match="class map"):
    pipeline.train_dataset(config.data)
  # An unlabelled stream's class map is dropped with its labels: no error.
  config = _config("mean_teacher")
  with config.unlocked():
    config.data.streams.unlabelled.source = {
      "name": "phantom_abdomen",
      "split": "train",
      "num_cases": 8,
      "image_size": 32,
    }
  pipeline.train_dataset(config.data)
