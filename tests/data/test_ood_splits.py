"""Tests of the one-vs-rest / rest-vs-one OOD split builder (TEND / CVAD protocols, spec S5.7)."""

import ml_collections
import numpy as np
import pytest

from mlsup_jax.data.phantoms.modalities import MODALITY_NAMES
from mlsup_jax.data.phantoms.radiograph import ChestRadiographPhantomSource
from mlsup_jax.data.pipeline import eval_batches
from mlsup_jax.data.sources import DATASETS, build_source
from mlsup_jax.data.sources.ood_splits import OodSplitSource, read_class_ids, stratified_split

ROLES = ("train", "val", "test")


class LabelledSource:
  """`n` examples, class `labels[i]`, image filled with `i`; counts reads; no `class_ids`."""

  def __init__(self, labels, size=4, extra_key=False, with_case_ids=True):
    self.labels = list(labels)
    self.size = size
    self.extra_key = extra_key
    self.reads = 0
    if with_case_ids:
      self.case_ids = [f"case{i:03d}" for i in range(len(self.labels))]

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    self.reads += 1
    example = {
      "image": np.full((self.size, self.size, 1), float(index), np.float32),
      "class_id": np.asarray(self.labels[index], np.int32),
    }
    if self.extra_key:
      example["label"] = np.zeros((self.size, self.size), np.int32)
    return example


class WithClassIds(LabelledSource):
  """The same, but exposing `class_ids` (so splitting needs no read)."""

  def __init__(self, labels, **kwargs):
    super().__init__(labels, **kwargs)
    self.class_ids = np.asarray(labels, np.int32)
    self.class_names = ("cat", "dog", "bird")


# 3 classes: 50 × class 0, 30 × class 1, 20 × class 2, interleaved.
LABELS = np.asarray([0, 1, 0, 2, 0, 1, 0, 0, 1, 2] * 10)


def roles(base, **kwargs):
  return {role: OodSplitSource(base, role=role, **kwargs) for role in ROLES}


def test_one_vs_rest_partitions_every_example_once():
  base = LabelledSource(LABELS)
  splits = roles(base, id_classes=0, seed=3)
  members = {role: set(split.indices.tolist()) for role, split in splits.items()}
  assert not members["train"] & members["val"]
  assert not members["train"] & members["test"]
  assert not members["val"] & members["test"]
  assert set.union(*members.values()) == set(range(len(LABELS)))  # nothing dropped
  assert sum(len(s) for s in splits.values()) == len(LABELS)
  # Train is ID only; ID = class 0 split 70/10/20 (35/5/10), OOD split 0/50/50 (25/25).
  train, val, test = splits["train"], splits["val"], splits["test"]
  assert train.in_classes == (0,) and train.out_classes == (1, 2)
  assert np.all(train.ood_labels == 0) and np.all(LABELS[train.indices] == 0)
  assert len(train) == 35
  assert (val.ood_labels == 0).sum() == 5 and (test.ood_labels == 0).sum() == 10
  assert (val.ood_labels == 1).sum() == 25 and (test.ood_labels == 1).sum() == 25
  for split in splits.values():
    np.testing.assert_array_equal(split.ood_labels, (LABELS[split.indices] != 0).astype(np.int32))
    for i in (0, len(split) - 1):
      example = split[i]
      assert example["ood"].shape == () and example["ood"].dtype == np.int32
      assert int(example["ood"]) == split.ood_labels[i]
      assert example["image"][0, 0, 0] == split.indices[i]  # the base example, unchanged
      assert int(example["class_id"]) == LABELS[split.indices[i]] == split.class_ids[i]
  # OOD classes are stratified: each class is split 50/50 between val and test.
  assert (LABELS[val.indices] == 2).sum() == 10 and (LABELS[test.indices] == 2).sum() == 10


def test_rest_vs_one_swaps_the_roles():
  base = WithClassIds(LABELS)
  one = roles(base, id_classes=[0], protocol="one_vs_rest")
  rest = roles(base, id_classes=[0], protocol="rest_vs_one")
  assert rest["test"].in_classes == (1, 2) and rest["test"].out_classes == (0,)
  assert set(LABELS[rest["train"].indices]) == {1, 2}
  for role in ("val", "test"):
    np.testing.assert_array_equal(
      rest[role].ood_labels, (LABELS[rest[role].indices] == 0).astype(np.int32)
    )
  # Every example is still used exactly once, and the OOD set is the former ID set.
  assert sorted(np.concatenate([s.indices for s in rest.values()])) == list(range(len(LABELS)))
  ood_rest = np.concatenate([s.indices[s.ood_labels == 1] for s in rest.values()])
  id_one = np.concatenate([s.indices[s.ood_labels == 0] for s in one.values()])
  assert sorted(ood_rest) == sorted(id_one)
  # ID classes keep their proportions in each role (stratified): 30 + 20 → 21 + 14 in train.
  assert np.bincount(LABELS[rest["train"].indices], minlength=3).tolist() == [0, 21, 14]


def test_splits_are_deterministic_by_seed():
  base = WithClassIds(LABELS)
  a = OodSplitSource(base, id_classes=0, role="test", seed=1)
  b = OodSplitSource(base, id_classes=0, role="test", seed=1)
  c = OodSplitSource(base, id_classes=0, role="test", seed=2)
  np.testing.assert_array_equal(a.indices, b.indices)
  assert not np.array_equal(a.indices, c.indices)


def test_class_ids_attribute_avoids_reading_examples():
  with_ids = WithClassIds(LABELS)
  OodSplitSource(with_ids, id_classes="cat", role="val")
  assert with_ids.reads == 0
  without = LabelledSource(LABELS)
  OodSplitSource(without, id_classes=0, role="val")
  assert without.reads == len(LABELS)  # each example read once
  np.testing.assert_array_equal(read_class_ids(without), LABELS)


def test_class_names_select_classes_and_case_ids_follow():
  base = WithClassIds(LABELS)
  split = OodSplitSource(base, id_classes=("cat", "bird"), role="test")
  assert split.in_classes == (0, 2) and split.out_classes == (1,)
  assert split.class_names == ("cat", "dog", "bird")
  assert split.case_ids == [f"case{i:03d}" for i in split.indices]
  no_case_ids = OodSplitSource(LabelledSource(LABELS, with_case_ids=False), 0, role="test")
  assert not hasattr(no_case_ids, "case_ids")


def test_inter_class_replaces_the_ood_part_only():
  base = WithClassIds(LABELS, extra_key=True)
  other = WithClassIds([2, 1] * 15, size=4)
  intra = roles(base, id_classes=0, seed=4)
  inter = roles(base, id_classes=0, seed=4, inter_class=other)
  for role in ROLES:
    id_intra = intra[role].indices[intra[role].ood_labels == 0]
    id_inter = inter[role].indices[inter[role].ood_labels == 0]
    np.testing.assert_array_equal(id_intra, id_inter)  # the ID part is unchanged
    assert not inter[role].from_inter_class[inter[role].ood_labels == 0].any()
    assert inter[role].from_inter_class[inter[role].ood_labels == 1].all()
  assert len(inter["train"]) == 35 and inter["train"].ood_labels.sum() == 0
  # All 30 inter-class examples are OOD, split 15 / 15 over val and test, each used once.
  ood = [inter[r].indices[inter[r].ood_labels == 1] for r in ("val", "test")]
  assert len(ood[0]) == len(ood[1]) == 15
  assert sorted(np.concatenate(ood)) == list(range(30))
  example = inter["test"][len(inter["test"]) - 1]
  assert int(example["ood"]) == 1
  # Only the keys both sources share (the base's extra `label` is dropped from every example).
  assert set(example) == {"image", "class_id", "ood"}
  assert set(inter["test"][0]) == {"image", "class_id", "ood"}
  assert int(example["class_id"]) == other.labels[inter["test"].indices[-1]]
  assert inter["test"].case_ids[-1].startswith("inter_class/case")


def test_inter_class_images_must_match_the_base_shape():
  with pytest.raises(ValueError, match="inter_class images have shape"):
    OodSplitSource(
      WithClassIds(LABELS), id_classes=0, role="test", inter_class=LabelledSource([0] * 5, size=8)
    )


def test_built_from_configs_with_phantoms():
  """Config → normal radiographs as ID, abnormal as intra-class OOD, or other modalities as
  inter-class OOD; all built through `build_source`."""
  base = {"name": "phantom_radiograph", "split": "test", "num_cases": 40, "seed": 0}
  config = ml_collections.ConfigDict(
    {"name": "ood_split", "base": base, "id_classes": ("normal",), "role": "test"}
  )
  intra = build_source(config)
  assert isinstance(intra, OodSplitSource) and DATASETS.get("ood_split") is OodSplitSource
  radiographs = ChestRadiographPhantomSource("test", 40, seed=0)
  normal = radiographs.class_ids[intra.indices] == 0
  np.testing.assert_array_equal(intra.ood_labels, (~normal).astype(np.int32))
  example = intra[int(np.flatnonzero(intra.ood_labels)[0])]
  assert int(example["ood"]) == 1 and int(example["class_id"]) > 0
  assert example["image"].shape == (64, 64, 1)

  config.inter_class = {
    "name": "phantom_modality",
    "split": "test",
    "num_cases": 8,
    "seed": 0,
    "modality": ["mr_brain", "ultrasound"],
  }
  config.protocol = "one_vs_rest"
  inter = build_source(config)
  ood = np.flatnonzero(inter.ood_labels)
  assert len(ood) == 4 and inter.from_inter_class[ood].all()
  example = inter[int(ood[0])]
  assert int(example["ood"]) == 1
  assert MODALITY_NAMES[int(example["class_id"])] in ("mr_brain", "ultrasound")


def test_stratified_split_rounds_without_losing_items():
  rng = np.random.default_rng(0)
  parts = stratified_split(np.arange(7), np.zeros(7, int), (0.7, 0.1, 0.2), rng)
  assert [len(p) for p in parts] == [5, 1, 1]  # round(4.9), round(5.6) − 5, rest
  assert sorted(np.concatenate(parts)) == list(range(7))


@pytest.mark.parametrize(
  "kwargs, match",
  [
    ({"id_classes": 7}, "Unknown class id 7"),
    ({"id_classes": "fish"}, "Unknown class name 'fish'"),
    ({"id_classes": []}, "id_classes is empty"),
    ({"id_classes": [0, 1, 2]}, "No OOD examples"),
    ({"fractions": (0.7, 0.2, 0.2)}, "must sum to 1"),
    ({"fractions": (1.1, -0.1, 0.0)}, "non-negative"),
    ({"fractions": (0.5, 0.5)}, "3 non-negative numbers"),
    ({"ood_fractions": (0.2, 0.4, 0.4)}, "never go to train"),
    ({"protocol": "one_vs_one"}, "Unknown protocol"),
    ({"role": "holdout"}, "Unknown role"),
    ({"role": "val", "fractions": (0.8, 0.0, 0.2), "ood_fractions": (0, 0, 1)}, "is empty"),
    ({"base": {"split": "test"}}, "needs a 'name'"),
    ({"base": 42}, "dataset config"),
  ],
)
def test_invalid_arguments_raise_clear_errors(kwargs, match):
  arguments = {"base": WithClassIds(LABELS), "id_classes": 0, "role": "test", **kwargs}
  with pytest.raises(ValueError, match=match):
    OodSplitSource(**arguments)


def test_missing_or_unusable_class_labels_raise_clear_errors():
  # Classes named by the base but absent from it: no ID example.
  with pytest.raises(ValueError, match="No ID examples"):
    OodSplitSource(WithClassIds([0, 1] * 5), id_classes="bird", role="test")
  # Examples without class_id.
  unlabelled = LabelledSource([0, 1])
  unlabelled.__class__ = type(
    "Unlabelled",
    (LabelledSource,),
    {"__getitem__": lambda self, i: {"image": np.zeros((4, 4, 1), np.float32)}},
  )
  with pytest.raises(ValueError, match=r"base\[0\] has no 'class_id'"):
    OodSplitSource(unlabelled, id_classes=0)
  # Non-scalar class_id.
  bad = LabelledSource([0, 1])
  bad.labels = [np.zeros(2, np.int32)] * 2
  with pytest.raises(ValueError, match="integer scalar"):
    OodSplitSource(bad, id_classes=0)
  # Class ids outside the base's class_names.
  with pytest.raises(ValueError, match="outside its 3 class_names"):
    OodSplitSource(WithClassIds([0, 1, 5]), id_classes=0)


def test_eval_pipeline_batches_carry_the_ood_flag():
  base = {"name": "phantom_radiograph", "split": "val", "num_cases": 24, "image_size": 32}
  split = {"name": "ood_split", "base": base, "id_classes": ["normal"], "role": "test"}
  data = ml_collections.ConfigDict(
    {
      "eval_source": split,
      "spatial_dims": 2,
      "num_classes": None,
      "require_label": False,
      "eval_transforms": (),
      "seed": 0,
    }
  )
  source = build_source(data.eval_source)
  batches = list(eval_batches(data, batch_size=8))
  ood = np.concatenate([b["ood"][b["valid"] == 1] for b in batches])
  np.testing.assert_array_equal(ood, source.ood_labels)
  assert batches[0]["image"].shape == (8, 32, 32, 1) and batches[0]["ood"].dtype == np.int32
