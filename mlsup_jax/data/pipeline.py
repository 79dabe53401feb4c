"""`config.data` → grain pipelines: seeded, per-process sharded, checkpointable.

**Training streams.** The main stream is `config.data.train_source` with `batch_size`,
`train_transforms` and `require_label`; every other stream is named under
`config.data.streams.<name>` with the same properties of its own:

    streams.unlabelled = {
      "source": {...},                 # a source section, as train_source
      "batch_size": 24,                # its own global batch size
      "transforms": ("ct_window",),    # applied to every example of the stream
      "views": {"strong": ("random_brightness",)},   # extra views of the image, see below
      "require_label": False,          # a stream may carry no labels
    }

Each stream goes through the same steps: validation → shuffle (its own seed, re-shuffled each
epoch; grain's shuffle order, computed a whole epoch at a time: `data/epoch_shuffle.py`) → repeat
forever → transforms (seeded per example) → views → this process's rows of each
global batch → batch. Everything before the last step is in the global order, so the global batch
is the same for any number of processes (and each process reads only its own rows: the dataset
is lazy). The
batches are zipped by position: batch n of the main stream carries batch n of every stream under
`batch[<name>]`, so a training batch is `{"image": [B, …], "label": [B, …], …, "<name>":
{"image": [B_name, …], …}}`, each stream sharded along its own leading axis. The zip is by
position, so the checkpointed iterator state (the main stream's) resumes every stream at the
very next batch.

A named stream with `require_label=False` is unlabelled: labels its source happens to have are
dropped (said once in the log), so they can neither leak into training nor fail validation; its
source's class map is ignored with them. Every *labelled* stream and the evaluation sources must
agree on the class map where their sources declare one (`class_names`): a mismatch is a
`DataError` naming both, before anything is compiled. An empty source is a `DataError` too
(`build_source`).

**Views** are photometric: `views.<view> = (transforms…)` runs those transforms on a copy of the
(transformed) example with its own random draws and keeps only the result's image, as
`image_<view>`, which is pixel-aligned with `image` (a view may not change the image's shape).
Weak/strong pairs are the stream's `transforms` (weak: spatial, applied to image and label) plus
a `strong` view.

**Evaluation**: a finite pass in order; the last batch is padded to full size and carries
`valid: [B]` (1 for real examples, 0 for padding) so the eval step never recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping

import grain
import jax
import ml_collections
import numpy as np
from absl import logging

from mlsup_jax.data import epoch_shuffle
from mlsup_jax.data.augmentation.transforms import TRANSFORMS
from mlsup_jax.data.sources import build_source
from mlsup_jax.data.validation import DataError, check_example, squeeze_single_slice

MAIN_STREAM = ""


@dataclasses.dataclass(frozen=True)
class StreamSpec:
  """One training stream: where it reads (`where`, for messages) and its own settings."""

  name: str
  where: str
  source: Mapping
  batch_size: int
  transforms: tuple[str, ...]
  views: Mapping[str, tuple[str, ...]]
  require_label: bool


def stream_specs(data_config: ml_collections.ConfigDict) -> list[StreamSpec]:
  """The main stream, then `config.data.streams` in name order."""
  specs = [
    StreamSpec(
      MAIN_STREAM,
      "config.data.train_source",
      data_config.train_source.to_dict(),
      int(data_config.batch_size),
      tuple(data_config.train_transforms),
      {},
      bool(data_config.require_label),
    )
  ]
  streams = data_config.streams if "streams" in data_config else {}
  for name in sorted(streams.keys()):
    stream = streams[name]
    where = f"config.data.streams.{name}"
    expected = {"source", "batch_size", "transforms", "views", "require_label"}
    if not isinstance(stream, ml_collections.ConfigDict) or set(stream.keys()) != expected:
      got = sorted(stream.keys()) if isinstance(stream, ml_collections.ConfigDict) else stream
      raise ValueError(f"{where} must have exactly the fields {sorted(expected)}; got {got}.")
    specs.append(
      StreamSpec(
        name,
        where,
        stream.source.to_dict(),
        int(stream.batch_size),
        tuple(stream.transforms),
        {view: tuple(names) for view, names in stream.views.items()},
        bool(stream.require_label),
      )
    )
  return specs


_DROPPED_LABELS_LOGGED: set[str] = set()


@dataclasses.dataclass(frozen=True)
class _DropLabel(grain.transforms.Map):
  """An unlabelled stream's examples without `label` (logged once per stream)."""

  where: str

  def map(self, example):
    if "label" not in example:
      return example
    if self.where not in _DROPPED_LABELS_LOGGED:
      _DROPPED_LABELS_LOGGED.add(self.where)
      logging.info("%s is unlabelled (require_label=False): its labels are ignored.", self.where)
    return {k: v for k, v in example.items() if k != "label"}


@dataclasses.dataclass(frozen=True)
class _Validate(grain.transforms.Map):
  where: str
  spatial_dims: int
  num_classes: int | None
  require_label: bool

  def map(self, example):
    return check_example(
      squeeze_single_slice(example, self.spatial_dims),
      where=self.where,
      spatial_dims=self.spatial_dims,
      num_classes=self.num_classes,
      require_label=self.require_label,
    )


def local_batch_size(global_batch_size: int, where: str = "config.data.batch_size") -> int:
  """This process's share of a global batch."""
  processes = jax.process_count()
  if global_batch_size < 1 or global_batch_size % processes:
    raise ValueError(
      f"{where}={global_batch_size} must be a positive multiple of the {processes} processes."
    )
  return global_batch_size // processes


def _transform(name: str, data_config):
  try:
    return TRANSFORMS.get(name)(data_config)
  except (AttributeError, KeyError) as error:
    raise ValueError(
      f"Transform {name!r} reads a config.data field that is missing: {error}"
    ) from error


def _transformed(dataset: grain.MapDataset, names, data_config, seed: int) -> grain.MapDataset:
  """`dataset` with the registered transforms `names` applied; random ones seeded by `seed`
  (per example index, so a pass is reproducible)."""
  for name in names:
    transform = _transform(name, data_config)
    if isinstance(transform, grain.transforms.RandomMap):
      dataset = dataset.random_map(transform, seed=seed)
    else:
      dataset = dataset.map(transform)
  return dataset


@dataclasses.dataclass(frozen=True)
class _View(grain.transforms.RandomMap):
  """Adds `image_<name>`: the image after `transforms` run on a copy of the example."""

  name: str
  transforms: tuple
  where: str

  def random_map(self, example, rng: np.random.Generator):
    key = f"image_{self.name}"
    if key in example:
      raise DataError(f"{self.where}: view {self.name!r} would overwrite the key {key!r}.")
    view = dict(example)
    for transform in self.transforms:
      if isinstance(transform, grain.transforms.RandomMap):
        view = transform.random_map(view, rng)
      else:
        view = transform.map(view)
    image = np.asarray(view["image"])
    if image.shape != np.shape(example["image"]):
      raise DataError(
        f"{self.where}: view {self.name!r} changed the image's shape {np.shape(example['image'])} "
        f"to {image.shape}; views must be photometric (spatial transforms go in `transforms`)."
      )
    return {**example, key: image}


def _with_views(dataset, views: Mapping, data_config, seed: int, where: str):
  for position, name in enumerate(sorted(views)):
    transforms = tuple(_transform(t, data_config) for t in views[name])
    dataset = dataset.random_map(
      _View(name, transforms, where), seed=derived_seed(seed, 1000 + position)
    )
  return dataset


def _validated(
  dataset, where: str, data_config, require_label: bool, process_slice: bool = True
) -> grain.MapDataset:
  if not isinstance(dataset, grain.MapDataset):
    dataset = grain.MapDataset.source(dataset)
  if process_slice:  # Each process reads only its own slice (multi-host input sharding).
    dataset = dataset[jax.process_index() :: jax.process_count()]
  return dataset.map(
    _Validate(
      where=where,
      spatial_dims=data_config.spatial_dims,
      num_classes=data_config.num_classes,
      require_label=require_label,
    )
  )


def source_class_names(source) -> tuple[str, ...] | None:
  """The class map a source declares (`class_names` or `CLASS_NAMES`), else None."""
  for name in ("class_names", "CLASS_NAMES"):
    names = getattr(source, name, None)
    if names is not None:
      return tuple(str(n) for n in names)
  return None


def check_class_maps(named_sources) -> None:
  """Raises `DataError` when labelled sources declare different class maps.

  Args:
    named_sources: `(where, source)` pairs of labelled sources (streams, evaluation sources).
  """
  first = None
  for where, source in named_sources:
    names = source_class_names(source)
    if names is None:
      continue
    if first is None:
      first = (where, names)
    elif names != first[1]:
      raise DataError(
        f"{where} labels its classes {list(names)}, but {first[0]} labels them "
        f"{list(first[1])}: labelled streams and evaluation sources must share one class map "
        "(relabel one of them, e.g. with a `relabel` source)."
      )


class _ProcessRows(grain.MapDataset):
  """This process's rows of every global batch of an endless, globally ordered stream.

  Element j is global element `(j // local) · global + process · local + j % local`: process p
  gets rows `[p · local, (p + 1) · local)` of each global batch. Shuffling and the per-example
  random transforms run on the global order (indices are the global ones), and the dataset is
  lazy, so each process reads and transforms only its own rows — and the global batch is the same
  whatever the number of processes (tests/core/test_multihost.py).
  """

  def __init__(self, parent: grain.MapDataset, global_batch: int, process: int, processes: int):
    super().__init__(parent)
    self._global, self._local = global_batch, global_batch // processes
    self._offset = process * self._local
    self._length = len(parent) // global_batch * self._local

  def __len__(self) -> int:
    return self._length

  def _parent_index(self, index: int) -> int:
    step, row = divmod(index, self._local)
    return step * self._global + self._offset + row

  def __getitem__(self, index):
    if isinstance(index, slice):
      return self.slice(index)
    return self._parent[self._parent_index(index)]

  def __str__(self) -> str:
    return f"ProcessRows(global={self._global}, local={self._local}, offset={self._offset})"


def _stream_batches(spec: StreamSpec, data_config, seed: int, source=None) -> grain.MapDataset:
  """Validated, shuffled (`seed`), endlessly repeated, augmented (`seed + 1`), viewed, this
  process's rows of each global batch, batched."""
  source = build_source(spec.source) if source is None else source
  where = f"{spec.where} ({spec.source['name']!r})"
  dataset = grain.MapDataset.source(source)
  if spec.name != MAIN_STREAM and not spec.require_label:
    dataset = dataset.map(_DropLabel(where))
  dataset = _validated(dataset, where, data_config, spec.require_label, process_slice=False)
  dataset = epoch_shuffle.shuffle(dataset, seed).repeat(None)
  dataset = _transformed(dataset, spec.transforms, data_config, seed + 1)
  dataset = _with_views(dataset, spec.views, data_config, seed, spec.where)
  where_batch = f"{spec.where} batch_size"
  local = local_batch_size(spec.batch_size, where_batch)
  if jax.process_count() > 1:
    dataset = _ProcessRows(dataset, spec.batch_size, jax.process_index(), jax.process_count())
  return dataset.batch(local, drop_remainder=True)


@dataclasses.dataclass(frozen=True)
class _ZipStream(grain.transforms.MapWithIndex):
  """Adds batch `index` of an endless stream to the main stream's batch at position `index`."""

  name: str
  stream: grain.MapDataset

  def map_with_index(self, index: int, batch):
    if self.name in batch:
      raise DataError(
        f"Stream {self.name!r} collides with the training examples' key {self.name!r}; rename "
        "the stream in config.data.streams."
      )
    return {**batch, self.name: self.stream[index]}


def derived_seed(seed: int, position: int) -> int:
  """A seed for the `position`-th derived stream, independent of `seed`'s own."""
  return int(np.random.SeedSequence([seed, position + 1]).generate_state(1)[0] >> 1)


def train_dataset(data_config: ml_collections.ConfigDict) -> grain.MapDataset:
  """The infinite, shuffled, augmented training `MapDataset` of batches for this process.

  With `data_config.streams`, every batch also carries one batch of each stream (module
  docstring).
  """
  specs = stream_specs(data_config)
  sources = [build_source(spec.source) for spec in specs]
  labelled = [
    (f"{spec.where} ({spec.source['name']!r})", source)
    for spec, source in zip(specs, sources, strict=True)
    if spec.require_label or spec.name == MAIN_STREAM
  ]
  for key in sorted(data_config.keys()):
    if key.endswith("_source") and key != "train_source" and data_config[key] is not None:
      where = f"config.data.{key} ({data_config[key].name!r})"
      labelled.append((where, build_source(data_config[key])))
  check_class_maps(labelled)
  dataset = _stream_batches(specs[0], data_config, data_config.seed, sources[0])
  for position, (spec, source) in enumerate(zip(specs[1:], sources[1:], strict=True)):
    seed = derived_seed(data_config.seed, position)
    stream = _stream_batches(spec, data_config, seed, source)
    dataset = dataset.map_with_index(_ZipStream(spec.name, stream))
  return dataset


def train_iterator(dataset: grain.MapDataset, data_config: ml_collections.ConfigDict):
  """A checkpointable iterator (`get_state` / `set_state`) over `train_dataset`'s batches."""
  iterable = dataset.to_iter_dataset(
    grain.ReadOptions(num_threads=data_config.read_threads, prefetch_buffer_size=2)
  )
  if data_config.worker_count > 0:
    iterable = iterable.mp_prefetch(
      grain.MultiprocessingOptions(num_workers=data_config.worker_count)
    )
  return iter(iterable)


def _eval_dataset(data_config: ml_collections.ConfigDict, source_key: str):
  section = data_config[source_key]
  source = build_source(section)
  where = f"config.data.{source_key} ({section.name!r})"
  dataset = _validated(source, where, data_config, require_label=False)
  # Random evaluation transforms (e.g. `unseen_transform_image`) are seeded per example index.
  dataset = _transformed(dataset, data_config.eval_transforms, data_config, data_config.seed + 2)
  return source, dataset


def first_eval_example(data_config: ml_collections.ConfigDict, source_key: str) -> dict:
  """The first (validated, transformed) example of `config.data[source_key]`."""
  return _eval_dataset(data_config, source_key)[1][0]


def eval_batches(
  data_config: ml_collections.ConfigDict, batch_size: int, source_key: str = "eval_source"
) -> Iterator[dict]:
  """One ordered pass over `data_config[source_key]` in padded local batches with a `valid` mask.

  `source_key` is `eval_source`, or `calibration_source` for the pass over training images that
  post-hoc scores fit their statistics on (e.g. SML).
  """
  source, dataset = _eval_dataset(data_config, source_key)
  local = local_batch_size(batch_size, "config.eval.batch_size")
  # Every process runs the same number of batches (global arrays need it): pad with invalid ones.
  per_process = -(-len(source) // jax.process_count())
  for start in range(0, per_process, local):
    indices = range(start, min(start + local, len(dataset)))
    examples = [dataset[i] for i in indices] or [dataset[0]]
    valid = [1] * len(indices) + [0] * (local - len(indices))
    examples += [examples[0]] * (local - len(examples))
    batch = {k: np.stack([e[k] for e in examples]) for k in examples[0]}
    batch["valid"] = np.asarray(valid, np.int32)
    yield batch
