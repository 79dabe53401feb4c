"""One-vs-rest / rest-vs-one novelty-detection splits of any labelled source (TEND / CVAD, S5.7).

`OodSplitSource` turns a classification source (examples with `image` and an integer `class_id`)
into the train / val / test sets of an anomaly-detection protocol:

* one-vs-rest: in-distribution (ID) = `id_classes`, OOD = every other class of the same source;
* rest-vs-one: the roles are swapped (ID = every other class, OOD = `id_classes`);
* intra-class OOD (the above) or inter-class OOD: with `inter_class`, the OOD examples of val and
  test come from another source (another modality or dataset) instead; the ID part is unchanged.

ID examples are shuffled (seeded, stratified by class) and split train / val / test by
`fractions`; OOD examples go to val and test only, by `ood_fractions`, so a threshold or score
normalisation can be fitted on val without touching test (the "clean" protocol; the thesis fits
on test, S1).
Every example and its role are fixed by `seed`: the three roles of one configuration partition
the data, and no example is dropped. Each yielded example gains `ood: []` int32 (1 = OOD, the
positive class of the metrics).

Differences from the authors' code (S5.7): the split is shuffled rather than in file order, and
does not drop an image at the 80/20 boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mlsup_jax.data.sources import as_source

PROTOCOLS = ("one_vs_rest", "rest_vs_one")
ROLES = ("train", "val", "test")
# Independent shuffles of the ID, OOD and inter-class parts.
_ID_STREAM, _OOD_STREAM, _INTER_STREAM = 1, 2, 3


def read_class_ids(source, what: str = "source") -> np.ndarray:
  """The class of every example of `source`: its `class_ids` attribute, else each `class_id`.

  Sources that know their classes without decoding (phantoms draw them from a separate random
  stream, class folders from the folder names) expose `class_ids`; otherwise every example is
  read once.

  Returns:
    `[len(source)]` int64.

  Raises:
    ValueError: when an example has no integer scalar `class_id`, or `class_ids` has the wrong
      length or non-integer values.
  """
  ids = getattr(source, "class_ids", None)
  if ids is not None:
    ids = np.asarray(ids)
    if ids.shape != (len(source),) or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(
        f"{what}: class_ids must be {len(source)} integers (one per example), got an array of "
        f"shape {ids.shape} and dtype {ids.dtype}."
      )
    return ids.astype(np.int64)
  ids = np.empty(len(source), np.int64)
  for index in range(len(source)):
    example = source[index]
    if "class_id" not in example:
      raise ValueError(
        f"{what}[{index}] has no 'class_id' (keys: {sorted(example)}); OOD splits need a "
        "class label per example."
      )
    value = np.asarray(example["class_id"])
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
      raise ValueError(
        f"{what}[{index}]: class_id must be an integer scalar, got shape {value.shape} and "
        f"dtype {value.dtype}."
      )
    ids[index] = int(value)
  return ids


def stratified_split(
  indices: np.ndarray, labels: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
  """Splits `indices` into `len(fractions)` parts after a seeded shuffle, stratified by class.

  Part sizes are set once for all classes (boundaries at `round(cumsum(fractions) · n)`), so
  they do not accumulate per-class rounding. Stratification: each item is ranked by its
  relative position `(rank + 0.5) / class size` within its shuffled class, so every class is
  spread evenly over the ranking and each part keeps the class proportions to within one item
  per class.

  Args:
    indices: `[n]` the items to split.
    labels: `[n]` their classes.
    fractions: non-negative, summing to 1.
    rng: the shuffle's generator.

  Returns:
    One sorted int64 array per fraction; together they hold every index exactly once.
  """
  indices, labels = np.asarray(indices, np.int64), np.asarray(labels)
  shuffle = rng.permutation(len(indices))
  indices, labels = indices[shuffle], labels[shuffle]
  position = np.empty(len(indices))
  for label in np.unique(labels):
    members = np.flatnonzero(labels == label)
    position[members] = (np.arange(len(members)) + 0.5) / len(members)
  ranked = indices[np.argsort(position, kind="stable")]  # ties keep the shuffled order
  bounds = np.round(np.cumsum(fractions)[:-1] * len(ranked)).astype(int)
  return [np.sort(part) for part in np.split(ranked, bounds)]


def _fractions(name: str, values, count: int = 3) -> tuple[float, ...]:
  """`values` as `count` non-negative floats summing to 1."""
  try:
    values = tuple(float(v) for v in values)
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be {count} numbers, got {values!r}.") from None
  if len(values) != count or any(not v >= 0.0 for v in values):
    raise ValueError(
      f"{name} must be {count} non-negative numbers (train, val, test), got {values}."
    )
  if abs(sum(values) - 1.0) > 1e-6:
    raise ValueError(f"{name} must sum to 1, got {values} (sum {sum(values):.6g}).")
  return values


class OodSplitSource:
  """One role (train / val / test) of a one-vs-rest or rest-vs-one OOD protocol over a source.

  Example: the base (or inter-class) source's example plus `ood: []` int32 (1 = OOD). `train`
  holds ID examples only. With `inter_class`, examples carry only the keys both sources share
  (`image` and `class_id` at least), and an inter-class example's `class_id` is its source's
  `class_ids[i]`, or −1 when that source has no `class_ids` (a different label space: use `ood`,
  not `class_id`, to tell ID from OOD).

  Args:
    base: the labelled source (`image` and an integer scalar `class_id` per example; a
      `class_ids` attribute, if present, is used instead of reading every example), or its
      dataset config (a dict / ConfigDict with `name` and the factory's fields, built with
      `mlsup_jax.data.pipeline.build_source`).
    id_classes: the "one" of the protocol: a class id or name, or a sequence of them (names need
      the base's `class_names`). ID under one-vs-rest, OOD under rest-vs-one.
    protocol: "one_vs_rest" or "rest_vs_one".
    role: "train", "val" or "test".
    seed: seeds the shuffles; the same seed gives the same partition for every role.
    fractions: (train, val, test) shares of the ID examples; non-negative, summing to 1.
    ood_fractions: (train, val, test) shares of the OOD examples; train must be 0.
    inter_class: None (intra-class OOD: the base's other classes), or another source or dataset
      config whose every example is OOD (inter-class OOD); it replaces the base's OOD classes in
      val and test.

  Attributes:
    in_classes, out_classes: the base's ID and OOD class ids (sorted tuples).
    indices: `[N]` int64, the index of every example in its source.
    from_inter_class: `[N]` bool, whether example i comes from `inter_class`.
    ood_labels: `[N]` int32, the `ood` of every example.
    class_ids: `[N]` int64, the `class_id` of every example (inter-class: see above).
    case_ids: per-example names, when the base has `case_ids` (inter-class examples are
      `"inter_class/<its case id or index>"`).
    class_names: the base's class names, when it has them.

  Raises:
    ValueError: on an unknown protocol, role or class; fractions that are negative, do not sum
      to 1 or put OOD in train; an empty ID or OOD set; an empty role; examples without an
      integer `class_id`; or inter-class images of another shape than the base's.
  """

  def __init__(
    self,
    base,
    id_classes: int | str | Sequence[int | str],
    protocol: str = "one_vs_rest",
    role: str = "train",
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    ood_fractions: Sequence[float] = (0.0, 0.5, 0.5),
    inter_class=None,
  ):
    if protocol not in PROTOCOLS:
      raise ValueError(f"Unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}.")
    if role not in ROLES:
      raise ValueError(f"Unknown role {role!r}; expected one of {', '.join(ROLES)}.")
    if int(seed) < 0:
      raise ValueError(f"seed must be a non-negative integer, got {seed}.")
    fractions = _fractions("fractions", fractions)
    ood_fractions = _fractions("ood_fractions", ood_fractions)
    if ood_fractions[0] != 0.0:
      raise ValueError(
        f"ood_fractions[0] (train) must be 0: OOD examples never go to train, got {ood_fractions}."
      )
    self.base = as_source(base, "base")
    self.inter_class = None if inter_class is None else as_source(inter_class, "inter_class")
    self.protocol, self.role, self.seed = protocol, role, int(seed)
    self.fractions, self.ood_fractions = fractions, ood_fractions
    names = getattr(self.base, "class_names", None)
    if names is None:
      names = getattr(self.base, "CLASS_NAMES", None)
    if names is not None:
      self.class_names = tuple(names)

    labels = read_class_ids(self.base, "base")
    present = set(np.unique(labels).tolist())
    known = set(range(len(names))) if names is not None else present
    if present - known:
      raise ValueError(
        f"base has class ids {sorted(present - known)} outside its {len(names)} class_names."
      )
    chosen = self._resolve(id_classes, names, known)
    rest = sorted(known - chosen)
    one = sorted(chosen)
    self.in_classes, self.out_classes = (
      (tuple(one), tuple(rest)) if protocol == "one_vs_rest" else (tuple(rest), tuple(one))
    )
    everything = np.arange(len(self.base), dtype=np.int64)
    is_in = np.isin(labels, self.in_classes)
    if not is_in.any():
      raise ValueError(
        f"No ID examples: the base has no example of the ID classes {list(self.in_classes)} "
        f"({protocol}, id_classes={id_classes!r})."
      )
    id_parts = stratified_split(
      everything[is_in], labels[is_in], fractions, np.random.default_rng([self.seed, _ID_STREAM])
    )
    if self.inter_class is None:
      is_out = np.isin(labels, self.out_classes)
      if not is_out.any():
        raise ValueError(
          f"No OOD examples: the base has no example of the OOD classes {list(self.out_classes)} "
          f"({protocol}, id_classes={id_classes!r}); every example is ID."
        )
      ood_parts = stratified_split(
        everything[is_out],
        labels[is_out],
        ood_fractions,
        np.random.default_rng([self.seed, _OOD_STREAM]),
      )
      inter_labels = None
    else:
      if len(self.inter_class) == 0:
        raise ValueError("No OOD examples: the inter_class source is empty.")
      inter_labels = getattr(self.inter_class, "class_ids", None)
      inter_labels = (
        np.zeros(len(self.inter_class), np.int64)  # Its classes only stratify the split.
        if inter_labels is None
        else read_class_ids(self.inter_class, "inter_class")
      )
      ood_parts = stratified_split(
        np.arange(len(self.inter_class), dtype=np.int64),
        inter_labels,
        ood_fractions,
        np.random.default_rng([self.seed, _INTER_STREAM]),
      )

    k = ROLES.index(role)
    ids, oods = id_parts[k], ood_parts[k]
    if not len(ids) + len(oods):
      raise ValueError(
        f"Role {role!r} is empty: fractions {fractions} and ood_fractions {ood_fractions} give it "
        f"no example of {len(everything[is_in])} ID and {sum(len(p) for p in ood_parts)} OOD."
      )
    inter = self.inter_class is not None
    self.indices = np.concatenate([ids, oods])
    self.from_inter_class = np.concatenate([np.zeros(len(ids), bool), np.full(len(oods), inter)])
    self.ood_labels = np.concatenate([np.zeros(len(ids)), np.ones(len(oods))]).astype(np.int32)
    if inter_labels is None:
      self.class_ids = labels[self.indices]
    else:
      own = getattr(self.inter_class, "class_ids", None)
      self.class_ids = np.concatenate(
        [labels[ids], inter_labels[oods] if own is not None else np.full(len(oods), -1)]
      ).astype(np.int64)
    for array in (self.indices, self.from_inter_class, self.ood_labels, self.class_ids):
      array.flags.writeable = False
    base_case_ids = getattr(self.base, "case_ids", None)
    if base_case_ids is not None:
      if inter:
        inter_case_ids = getattr(self.inter_class, "case_ids", None) or range(len(self.inter_class))
        ood_case_ids = [f"inter_class/{inter_case_ids[i]}" for i in oods]
      else:
        ood_case_ids = [base_case_ids[i] for i in oods]
      self.case_ids = [base_case_ids[i] for i in ids] + ood_case_ids
    self._keys = self._common_keys(id_parts, ood_parts) if inter else None

  @staticmethod
  def _resolve(id_classes, names, known: set[int]) -> set[int]:
    """`id_classes` (ids and / or names) as a set of known class ids."""
    values = [id_classes] if isinstance(id_classes, int | str | np.integer) else list(id_classes)
    if not values:
      raise ValueError("id_classes is empty; name at least one class.")
    chosen = set()
    for value in values:
      if isinstance(value, str):
        if names is None or value not in names:
          known_names = f"known names: {', '.join(names)}" if names is not None else "no names"
          raise ValueError(f"Unknown class name {value!r} in id_classes ({known_names}).")
        value = list(names).index(value)
      if isinstance(value, bool) or int(value) != value or int(value) not in known:
        raise ValueError(
          f"Unknown class id {value!r} in id_classes; the base's classes are {sorted(known)}."
        )
      chosen.add(int(value))
    return chosen

  def _common_keys(self, id_parts, ood_parts) -> tuple[str, ...]:
    """Keys shared by base and inter-class examples (read once each); checks image shapes."""
    first_id = next(int(p[0]) for p in id_parts if len(p))
    first_ood = next(int(p[0]) for p in ood_parts if len(p))
    base_example, inter_example = self.base[first_id], self.inter_class[first_ood]
    base_shape = np.shape(base_example["image"])
    inter_shape = np.shape(inter_example["image"])
    if base_shape != inter_shape:
      raise ValueError(
        f"inter_class images have shape {inter_shape} but the base's have {base_shape}; "
        "render or resize both to the same size and channel count."
      )
    shared = set(base_example) & set(inter_example)
    return tuple(sorted(shared | {"image", "class_id"}))

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index) -> dict[str, Any]:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"OodSplitSource index {index} out of range [0, {len(self)}).")
    index %= len(self)
    source = self.inter_class if self.from_inter_class[index] else self.base
    example = dict(source[int(self.indices[index])])
    if self._keys is not None:
      if self.from_inter_class[index]:
        example["class_id"] = np.asarray(self.class_ids[index], np.int32)
      example = {key: example[key] for key in self._keys}
    example["ood"] = np.asarray(self.ood_labels[index], np.int32)
    return example

  def __repr__(self) -> str:
    kind = "inter-class" if self.inter_class is not None else "intra-class"
    return (
      f"OodSplitSource({self.protocol}, role={self.role!r}, {kind}, ID classes "
      f"{list(self.in_classes)}, {len(self)} examples, {int(self.ood_labels.sum())} OOD)"
    )
