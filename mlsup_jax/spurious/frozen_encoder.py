"""A frozen image encoder whose weights come from a checkpoint, with an embedding cache (CFR).

CFR and DFR work on the representation of a *pretrained, frozen* encoder (CLIP's image tower in
the paper). Here any Flax model of the registry (`mlsup_jax.nn.MODELS`) whose output dict has
`"features": [B, F]` serves, with its variables from

* a run of the library's own trainer (`FrozenEncoder.from_run(config, workdir)`: the newest
  orbax checkpoint of that workdir, e.g. the encoder `launch.cfr` pre-trains), or
* a user's converted weights (`FrozenEncoder.from_file(model_config, path)`: the Flax msgpack
  of `{"params": …, "batch_stats": …}` that `save_variables` writes).

Loaded variables are checked leaf by leaf against the shapes the named model expects, so a
checkpoint of another architecture fails with the first mismatching path named, not deep inside
`apply`. `embed(source)` runs the encoder once over a source in fixed-size batches (the last one
padded, so one compiled function serves) and caches `[N, F]` float32 features in an `.npz` keyed
by a hash of the variables and the source config, so every method after it reads arrays.

Extension point: an image–text encoder (CLIP) is a model whose output has `"features"` too; its
text tower's class prompts would replace the linear classifier of `projection_head.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from mlsup_jax.core.networks import apply_network
from mlsup_jax.nn import build_model

__all__ = ["FrozenEncoder", "save_variables"]


def save_variables(path: str, variables: Mapping) -> None:
  """Writes `{"params": …, "batch_stats": …}` as Flax msgpack (what `from_file` reads).

  Example:
    >>> import tempfile, os, jax, jax.numpy as jnp, ml_collections
    >>> from mlsup_jax.spurious.frozen_encoder import FrozenEncoder, save_variables
    >>> config = ml_collections.ConfigDict({"name": "cnn_classifier", "num_classes": 2,
    ...                                     "base_width": 4, "depth": 2})
    >>> encoder = FrozenEncoder.initialised(config, image_shape=(32, 32, 1))
    >>> path = os.path.join(tempfile.mkdtemp(), "encoder.msgpack")
    >>> save_variables(path, encoder.variables)
    >>> FrozenEncoder.from_file(config, path, image_shape=(32, 32, 1)).features_dim
    8
  """
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(jax.device_get(dict(variables))))


def _expected_variables(model, image_shape) -> dict:
  x = jnp.zeros((1, *image_shape), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))


def check_variables(variables: Mapping, expected: Mapping, name: str) -> None:
  """Raises ValueError naming the first path whose presence or shape differs from `expected`."""
  got = {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree.leaves_with_path(variables)}
  want = {jax.tree_util.keystr(p): tuple(v.shape) for p, v in jax.tree.leaves_with_path(expected)}
  for path, shape in want.items():
    if path not in got:
      raise ValueError(f"Encoder weights for {name!r} lack {path} (expected shape {shape}).")
  extra = sorted(set(got) - set(want))
  if extra:
    raise ValueError(f"Encoder weights for {name!r} have entries the model lacks: {extra[:3]}.")
  for path, shape in want.items():
    if tuple(got[path]) != shape:
      raise ValueError(
        f"Encoder weights for {name!r} do not match the model: {path} has shape "
        f"{tuple(got[path])}, the model expects {shape}."
      )


class FrozenEncoder:
  """A registered model with fixed variables, used only for its `"features"` output.

  Args:
    model_config: the model section (`name` + constructor fields, as in `config.model`).
    variables: `{"params": …, **model_state}`.
    image_shape: `(H, W, C)` of one input image.

  Attributes:
    features_dim: F, the width of `"features"`.
    fingerprint: a hash of the model config and the variables (the embedding cache's key).
  """

  def __init__(self, model_config, variables: Mapping, image_shape):
    self.model_config = ml_collections.ConfigDict(dict(model_config))
    self.model = build_model(self.model_config)
    self.image_shape = tuple(int(s) for s in image_shape)
    expected = _expected_variables(self.model, self.image_shape)
    check_variables(variables, expected, self.model_config.name)
    self.variables = jax.tree.map(jnp.asarray, dict(variables))
    out = jax.eval_shape(
      lambda v, x: self.model.apply(v, x, train=False),
      self.variables,
      jnp.zeros((1, *self.image_shape), jnp.float32),
    )
    if not isinstance(out, Mapping) or "features" not in out:
      raise ValueError(
        f"Model {self.model_config.name!r} has no 'features' output; a frozen encoder needs one."
      )
    self.features_dim = int(out["features"].shape[-1])
    digest = hashlib.sha256(json.dumps(self.model_config.to_dict(), sort_keys=True).encode())
    for leaf in jax.tree.leaves(jax.device_get(self.variables)):
      digest.update(np.ascontiguousarray(leaf).tobytes())
    self.fingerprint = digest.hexdigest()[:16]
    self._apply = jax.jit(
      lambda v, x: apply_network(
        self.model, v["params"], {k: s for k, s in v.items() if k != "params"}, x, train=False
      )[0]["features"]
    )

  @classmethod
  def initialised(cls, model_config, image_shape, seed: int = 0) -> FrozenEncoder:
    """A randomly initialised encoder (tests, or a baseline without pre-training)."""
    model = build_model(ml_collections.ConfigDict(dict(model_config)))
    x = jnp.zeros((1, *image_shape), jnp.float32)
    variables = model.init(jax.random.key(seed), x, train=False)
    return cls(model_config, variables, image_shape)

  @classmethod
  def from_file(cls, model_config, path: str, image_shape) -> FrozenEncoder:
    """Loads a user's Flax msgpack `{"params": …, "batch_stats": …}` (see `save_variables`).

    Raises:
      FileNotFoundError: no such file. ValueError: not msgpack, or shapes that do not match.
    """
    if not os.path.isfile(path):
      raise FileNotFoundError(f"No encoder weights at {path}.")
    with open(path, "rb") as f:
      try:
        variables = flax.serialization.msgpack_restore(f.read())
      except Exception as error:  # msgpack raises several types on garbage.
        raise ValueError(f"{path} is not a Flax msgpack of encoder variables: {error}") from error
    return cls(model_config, variables, image_shape)

  @classmethod
  def from_run(cls, config: ml_collections.ConfigDict, workdir: str) -> FrozenEncoder:
    """The newest checkpoint of a library training run (`launch.train` / `train_and_evaluate`).

    Args:
      config: the run's config (its `model` section names the encoder).
      workdir: the run's workdir.
    """
    from mlsup_jax.core.checkpoint import Checkpointer
    from mlsup_jax.core.run_setup import RunSetup

    run = RunSetup(config)
    checkpointer = Checkpointer(
      workdir, run.config, max_to_keep=run.config.train.keep_checkpoints, write_config=False
    )
    try:
      step = checkpointer.latest_step()
      if step is None:
        raise FileNotFoundError(f"No checkpoint in {workdir} to load an encoder from.")
      state, _, _ = run.restore(checkpointer, step)
    finally:
      checkpointer.close()
    variables = {"params": state.params, **state.model_state}
    image_shape = tuple(run.example_local["image"].shape[1:])
    return cls(run.config.model, jax.device_get(variables), image_shape)

  def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """`images: [N, H, W, C]` → `[N, F]` float32 features, in fixed-size (padded) batches."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
      raise ValueError(
        f"images must be [N, {', '.join(map(str, self.image_shape))}], got {images.shape}."
      )
    n = len(images)
    out = np.zeros((n, self.features_dim), np.float32)
    size = max(1, min(int(batch_size), n))
    for start in range(0, n, size):
      chunk = images[start : start + size]
      padded = np.zeros((size, *self.image_shape), np.float32)
      padded[: len(chunk)] = chunk
      out[start : start + len(chunk)] = np.asarray(self._apply(self.variables, padded))[
        : len(chunk)
      ]
    return out

  def embed(self, source, cache_dir: str | None = None, source_config=None, batch_size=256) -> dict:
    """Features of every case of `source`, with its labels and (if present) groups.

    Args:
      source: a random-access source whose cases have `image` and `class_id` (and optionally
        `group`, for reporting).
      cache_dir: where to keep `<fingerprint>_<source hash>.npz` (None: no cache).
      source_config: the config that built `source` (the cache key; needed with `cache_dir`).
      batch_size: encoder batch size.

    Returns:
      `{"features": [N, F] float32, "labels": [N] int32, "groups": [N] int32 (−1 without)}`.
    """
    path = None
    if cache_dir is not None:
      if source_config is None:
        raise ValueError("embed(cache_dir=…) needs the source_config that keys the cache.")
      if isinstance(source_config, ml_collections.ConfigDict):
        source_config = source_config.to_dict()
      key = hashlib.sha256(json.dumps(source_config, sort_keys=True, default=str).encode())
      path = os.path.join(cache_dir, f"{self.fingerprint}_{key.hexdigest()[:16]}.npz")
      if os.path.exists(path):
        with np.load(path) as cached:
          return {k: cached[k] for k in cached.files}
    if len(source) == 0:
      raise ValueError("Cannot embed an empty source.")
    cases = [source[i] for i in range(len(source))]
    images = np.stack([c["image"] for c in cases]).astype(np.float32)
    result = {
      "features": self.features(images, batch_size),
      "labels": np.asarray([int(c["class_id"]) for c in cases], np.int32),
      "groups": np.asarray([int(c.get("group", -1)) for c in cases], np.int32),
    }
    if path is not None:
      os.makedirs(cache_dir, exist_ok=True)
      np.savez(path + ".tmp.npz", **result)
      os.replace(path + ".tmp.npz", path)
      logging.info("Cached %d embeddings in %s.", len(images), path)
    return result
