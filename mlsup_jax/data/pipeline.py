"""`config.data` → grain pipelines: seeded, per-process sharded, checkpointable.

Training: source → per-process slice → validation → shuffle (seeded, re-shuffled each epoch) →
repeat forever → transforms (seeded per example) → batch. The iterator's state is a small dict
saved with every checkpoint, so a resumed run continues with the very next batch.

Extra streams (`config.data.streams`, optional): methods that need a second data set next to the
training one (MCPM / MW-Net's clean meta set) name it there, `streams.<name> = <source config>`.
Each stream goes through the same steps as `train_source` (validation, its own seeded shuffle and
endless cycle, the same `train_transforms` with its own seeds) and is zipped example by example
into the training stream: the n-th training example carries the n-th example of every stream
under `example[<name>]`, so a batch is `{"image": [B, …], "label": [B, …], …, "<name>": {"image":
[B, …], …}}` — the same batch size, sharded along the same axis. The zip is by position, so the
iterator's checkpointed state is unchanged and a resumed run sees the same pairs.

Evaluation: a finite pass in order; the last batch is padded to full size and carries
`valid: [B]` (1 for real examples, 0 for padding) so the eval step never recompiles.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import grain
import jax
import ml_collections
import numpy as np

from mlsup_jax.core.registry import DATASETS
from mlsup_jax.data.transforms import TRANSFORMS
from mlsup_jax.data.validation import DataError, check_example


def build_source(source_config: ml_collections.ConfigDict):
  """Instantiates `DATASETS[source_config.name](**other fields)` with a clear error."""
  fields = dict(source_config.to_dict())
  name = fields.pop("name")
  factory = DATASETS.get(name)
  try:
    source = factory(**fields)
  except TypeError as error:
    raise DataError(
      f"Dataset {name!r} rejected its config fields {sorted(fields)}: {error}"
    ) from error
  if len(source) == 0:
    raise DataError(f"Dataset {name!r} with {fields} is empty: no examples to read.")
  return source


@dataclasses.dataclass(frozen=True)
class _Validate(grain.transforms.Map):
  dataset: str
  spatial_dims: int
  num_classes: int | None
  require_label: bool

  def map(self, example):
    return check_example(
      example,
      where=f"dataset {self.dataset!r}",
      spatial_dims=self.spatial_dims,
      num_classes=self.num_classes,
      require_label=self.require_label,
    )


def _local_batch_size(global_batch_size: int) -> int:
  processes = jax.process_count()
  if global_batch_size % processes:
    raise ValueError(
      f"Global batch size {global_batch_size} is not divisible by {processes} processes."
    )
  return global_batch_size // processes


def _transformed(dataset: grain.MapDataset, names, data_config, seed: int) -> grain.MapDataset:
  """`dataset` with the registered transforms `names` applied; random ones seeded by `seed`
  (per example index, so a pass is reproducible)."""
  for name in names:
    transform = TRANSFORMS.get(name)(data_config)
    if isinstance(transform, grain.transforms.RandomMap):
      dataset = dataset.random_map(transform, seed=seed)
    else:
      dataset = dataset.map(transform)
  return dataset


def _validated(source, source_config, data_config) -> grain.MapDataset:
  dataset = grain.MapDataset.source(source)
  # Each process reads only its own slice (multi-host input sharding).
  dataset = dataset[jax.process_index() :: jax.process_count()]
  return dataset.map(
    _Validate(
      dataset=source_config.name,
      spatial_dims=data_config.spatial_dims,
      num_classes=data_config.num_classes,
      require_label=data_config.require_label,
    )
  )


def _endless(source_config, data_config, seed: int) -> grain.MapDataset:
  """Validated, shuffled (`seed`), endlessly repeated and augmented (`seed + 1`) examples."""
  source = build_source(source_config)
  dataset = _validated(source, source_config, data_config)
  dataset = dataset.shuffle(seed=seed).repeat(None)
  return _transformed(dataset, data_config.train_transforms, data_config, seed + 1)


@dataclasses.dataclass(frozen=True)
class _ZipStream(grain.transforms.MapWithIndex):
  """Adds example `index` of an endless stream to the training example at position `index`."""

  name: str
  stream: grain.MapDataset

  def map_with_index(self, index: int, example):
    if self.name in example:
      raise DataError(
        f"Stream {self.name!r} collides with the training examples' key {self.name!r}; rename "
        "the stream in config.data.streams."
      )
    return {**example, self.name: self.stream[index]}


def _stream_seed(seed: int, position: int) -> int:
  """A seed for the `position`-th extra stream, independent of the training stream's."""
  return int(np.random.SeedSequence([seed, position + 1]).generate_state(1)[0] >> 1)


def train_dataset(data_config: ml_collections.ConfigDict) -> grain.MapDataset:
  """The infinite, shuffled, augmented, batched training `MapDataset` for this process.

  With `data_config.streams`, every example also carries one example of each stream (module
  docstring).
  """
  dataset = _endless(data_config.train_source, data_config, data_config.seed)
  streams = data_config.streams if "streams" in data_config else {}
  for position, name in enumerate(sorted(streams.keys())):
    stream = _endless(streams[name], data_config, _stream_seed(data_config.seed, position))
    dataset = dataset.map_with_index(_ZipStream(name, stream))
  return dataset.batch(_local_batch_size(data_config.batch_size), drop_remainder=True)


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


def eval_batches(
  data_config: ml_collections.ConfigDict, batch_size: int, source_key: str = "eval_source"
) -> Iterator[dict]:
  """One ordered pass over `data_config[source_key]` in padded local batches with a `valid` mask.

  `source_key` is `eval_source`, or `calibration_source` for the pass over training images that
  post-hoc scores fit their statistics on (e.g. SML).
  """
  source = build_source(data_config[source_key])
  dataset = _validated(source, data_config[source_key], data_config)
  # Random evaluation transforms (e.g. `unseen_transform_image`) are seeded per example index.
  dataset = _transformed(dataset, data_config.eval_transforms, data_config, data_config.seed + 2)
  local = _local_batch_size(batch_size)
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
