"""The loss layout every method shares: terms by name, each with its weight and hyperparameters.

A **term** is a pure function `loss(*, outputs, batch, **hparams) -> (value, metrics)` listed in
`LOSSES` (`losses/__init__.py`) as a `LossTerm` that says which `outputs` and `batch` keys it
reads. A per-pixel term also takes `reduction`: `"mean"` gives the scalar, `"none"` the unreduced
`[B, *S]` map (the same function; there is no second table).

A **role** is one objective of a method (`LossRole`): the outputs its model provides, whether it
needs per-pixel maps, and which data stream its batch comes from. A single-objective method has
one role and its terms sit directly under `config.loss`; a method with several objectives (a meta
loss, one loss per stage) has one sub-section per role, `config.loss.<role>`.

A role's config section holds **every registered term that applies to it** (the term reads only
outputs the role provides, and has a per-pixel form where the role needs one), as
`<term>: {weight, **hyperparameters}` with the defaults filled in from the function's signature.
A weight of 0 switches a term off. So `config.json` records every value used, and any term can
be switched on and tuned from the command line:

    --config.loss.focal_dice.weight=0.5 --config.loss.focal_dice.gamma=3

Terms are summed in the section's (alphabetical) order. Unknown terms or hyperparameters, a
section with no active term, and two terms that report the same metric name are errors raised
before anything is compiled (`check_loss_config`, and at trace time for metric names).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import ml_collections

# Arguments of a loss function that are not hyperparameters.
_RESERVED = ("outputs", "batch", "reduction")
WEIGHT = "weight"


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """One entry of `LOSSES`: the function and what it reads.

  Attributes:
    fn: the loss function, or `"module.path:attribute"` (imported on first use).
    outputs: keys of `outputs` the term reads.
    batch: keys of `batch` the term reads (`valid`, the evaluation padding mask, is always
      optional and need not be listed).
  """

  fn: Callable | str
  outputs: tuple[str, ...] = ()
  batch: tuple[str, ...] = ()

  def function(self) -> Callable:
    if isinstance(self.fn, str):
      module, _, attribute = self.fn.partition(":")
      return getattr(importlib.import_module(module), attribute)
    return self.fn

  def parameters(self) -> Mapping[str, inspect.Parameter]:
    return inspect.signature(self.function()).parameters

  @property
  def per_pixel(self) -> bool:
    """Whether the term has a `reduction` argument (`"none"` gives a `[B, *S]` map)."""
    return "reduction" in self.parameters()

  def hyperparameters(self) -> dict[str, Any]:
    """The term's hyperparameters and their defaults, from the function's signature."""
    hparams = {}
    for name, parameter in self.parameters().items():
      if name in _RESERVED:
        continue
      if name == WEIGHT:
        raise ValueError(f"Loss {self.fn!r}: 'weight' is reserved for the term's weight.")
      if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
        raise ValueError(f"Loss {self.fn!r}: argument {name!r} must be keyword-only.")
      if parameter.default is inspect.Parameter.empty:
        raise ValueError(f"Loss {self.fn!r}: hyperparameter {name!r} needs a default value.")
      hparams[name] = parameter.default
    return hparams


@dataclasses.dataclass(frozen=True)
class LossRole:
  """One objective of a method.

  Attributes:
    outputs: the keys of the `outputs` dict the method hands to this role's terms.
    per_pixel: the method weights pixels itself, so the terms return `[B, *S]` maps.
    stream: the data stream whose batch the terms read ("" = the main training stream), or None
      when the method builds that batch itself (e.g. TEND labels originals 0 and distorted
      copies 1): then the keys the terms read are the method's business, not the data's.
    optional: every term may be off (weight 0): the method then skips the objective (e.g. an
      auxiliary contrastive loss).
  """

  outputs: tuple[str, ...]
  per_pixel: bool = False
  stream: str | None = ""
  optional: bool = False

  def accepts(self, term: LossTerm) -> bool:
    return set(term.outputs) <= set(self.outputs) and (term.per_pixel or not self.per_pixel)


def _losses():
  from mlsup_jax.losses import LOSSES  # The table imports the loss modules, which import this.

  return LOSSES


def applicable_terms(role: LossRole) -> list[str]:
  """Names of the registered terms that apply to `role`, sorted."""
  table = _losses()
  return [name for name in table.names() if role.accepts(table.get(name))]


def loss_section(
  role: LossRole,
  weights: Mapping[str, float],
  hparams: Mapping[str, Mapping[str, Any]] | None = None,
) -> ml_collections.ConfigDict:
  """The config section of one role: every applicable term with its weight and hyperparameters.

  Args:
    role: the objective.
    weights: the active terms and their weights; every other applicable term gets weight 0.
    hparams: per term, hyperparameters that differ from the function's defaults (values may be
      `FieldReference`s).

  Returns:
    `{term: {"weight": w, **hyperparameters}}` for every applicable term.

  Raises:
    ValueError: a term that is not registered or does not apply to the role, or a
      hyperparameter the term does not have.

  Example:
    >>> from mlsup_jax.losses import LossRole, loss_section
    >>> section = loss_section(LossRole(outputs=("logits",)), {"soft_dice": 1.0},
    ...                        {"cross_entropy": {"label_smoothing": 0.1}})
    >>> section.soft_dice.weight, section.cross_entropy.weight
    (1.0, 0.0)
    >>> section.cross_entropy.label_smoothing, section.soft_dice.smooth
    (0.1, 1.0)
  """
  hparams = dict(hparams or {})
  table = _losses()
  applicable = applicable_terms(role)
  for name in (*weights, *hparams):
    table.get(name)  # Unknown names: KeyError listing the known ones.
    if name not in applicable:
      raise ValueError(
        f"Loss {name!r} does not apply to an objective with outputs {role.outputs}"
        f"{' and per-pixel weighting' if role.per_pixel else ''}; applicable: {applicable}."
      )
  section = {}
  for name in applicable:
    defaults = table.get(name).hyperparameters()
    unknown = sorted(set(hparams.get(name, {})) - set(defaults))
    if unknown:
      raise ValueError(
        f"Loss {name!r} has no hyperparameter(s) {unknown}; it has {sorted(defaults)}."
      )
    section[name] = {WEIGHT: float(weights.get(name, 0.0)), **defaults, **hparams.get(name, {})}
  return ml_collections.ConfigDict(section)


def roles_section(
  roles: Mapping[str, LossRole],
  weights: Mapping[str, Mapping[str, float]],
  hparams: Mapping[str, Mapping[str, Mapping[str, Any]]] | None = None,
) -> ml_collections.ConfigDict:
  """`config.loss` of a method: one `loss_section` per role, or the section itself for one role.

  Args:
    roles: role name → `LossRole`; a single-objective method has the one role "".
    weights, hparams: per role, as `loss_section`'s.
  """
  hparams = hparams or {}
  unknown = sorted(set(weights) - set(roles)) + sorted(set(hparams) - set(roles))
  if unknown:
    raise ValueError(f"Unknown loss role(s) {unknown}; this method has {sorted(roles)}.")
  if set(roles) == {""}:
    return loss_section(roles[""], weights.get("", {}), hparams.get(""))
  return ml_collections.ConfigDict(
    {
      name: loss_section(role, weights.get(name, {}), hparams.get(name))
      for name, role in roles.items()
    }
  )


def role_config(loss_config: ml_collections.ConfigDict, role: str) -> ml_collections.ConfigDict:
  """The section of `role` in `config.loss` ("" = `config.loss` itself)."""
  return loss_config if role == "" else loss_config[role]


def active_terms(section: ml_collections.ConfigDict) -> list[tuple[str, float, dict[str, Any]]]:
  """`(name, weight, hyperparameters)` of every term with a non-zero weight, in section order."""
  active = []
  for name, fields in section.items():
    fields = dict(fields.to_dict() if hasattr(fields, "to_dict") else fields)
    weight = fields.pop(WEIGHT)
    if weight:
      active.append((name, float(weight), fields))
  return active


def check_loss_config(
  loss_config: ml_collections.ConfigDict, roles: Mapping[str, LossRole], where: str = "config.loss"
) -> None:
  """Validates `config.loss` against a method's roles before anything is compiled.

  Raises:
    ValueError: naming the section and the problem — a missing or unknown role, an unknown
      term, a term that does not apply to its role, a hyperparameter the term does not have, a
      missing or non-numeric weight, or a section with no active term.
  """
  table = _losses()
  if set(roles) != {""}:
    unknown = sorted(set(loss_config.keys()) - set(roles))
    missing = sorted(set(roles) - set(loss_config.keys()))
    if unknown or missing:
      raise ValueError(
        f"{where} must have one section per objective of this method, {sorted(roles)}; "
        f"unknown: {unknown}, missing: {missing}."
      )
  for role_name, role in roles.items():
    section = role_config(loss_config, role_name)
    path = where if role_name == "" else f"{where}.{role_name}"
    applicable = applicable_terms(role)
    for name, fields in section.items():
      if name not in table:
        raise ValueError(
          f"{path}.{name}: unknown loss term. Terms for this objective: {applicable} (add a new "
          "one to LOSSES in mlsup_jax/losses/__init__.py)."
        )
      if name not in applicable:
        raise ValueError(
          f"{path}.{name}: this term reads outputs {table.get(name).outputs} but this objective "
          f"provides {role.outputs}{' and needs per-pixel maps' if role.per_pixel else ''}."
        )
      if not isinstance(fields, ml_collections.ConfigDict) or WEIGHT not in fields:
        raise ValueError(f"{path}.{name} must be a section with a 'weight' (0 = off).")
      if not isinstance(fields[WEIGHT], int | float) or isinstance(fields[WEIGHT], bool):
        raise ValueError(f"{path}.{name}.weight must be a number, got {fields[WEIGHT]!r}.")
      accepted = set(table.get(name).hyperparameters())
      unknown = sorted(set(fields.keys()) - accepted - {WEIGHT})
      if unknown:
        raise ValueError(
          f"{path}.{name}: unknown hyperparameter(s) {unknown}; {name} takes {sorted(accepted)}."
        )
    if not active_terms(section) and not role.optional:
      raise ValueError(
        f"{path}: every term has weight 0; switch one on (e.g. {path}.<term>.weight=1)."
      )


def batch_keys(loss_config: ml_collections.ConfigDict, roles: Mapping[str, LossRole]):
  """Per stream, the batch keys the active terms of every role read."""
  table = _losses()
  keys: dict[str, set[str]] = {}
  for role_name, role in roles.items():
    if role.stream is None:
      continue
    for name, _, _ in active_terms(role_config(loss_config, role_name)):
      keys.setdefault(role.stream, set()).update(table.get(name).batch)
  return {stream: tuple(sorted(k)) for stream, k in keys.items()}


def merge_metrics(metrics: dict, new: Mapping, source: str) -> dict:
  """`metrics` updated with `new`; a name already present is an error (it would be overwritten)."""
  clash = sorted(set(metrics) & set(new))
  if clash:
    raise ValueError(
      f"{source} reports metric(s) {clash}, which another term (or the method) already reports; "
      "rename one of them so neither is overwritten."
    )
  metrics.update(new)
  return metrics


def weighted_sum(
  section: ml_collections.ConfigDict,
  *,
  outputs: dict,
  batch: dict,
  per_pixel: bool = False,
  role: str = "",
):
  """`Σ weight · term(outputs, batch, **hparams)` over the active terms of one role's section.

  Args:
    section: the role's config section (`loss_section`).
    outputs: what the model produced (the role's outputs).
    batch: the role's batch.
    per_pixel: call the terms with `reduction="none"` and sum their `[B, *S]` maps.
    role: the objective's name in `config.loss` ("" for a single objective). Metrics are
      `loss/<term>` (the term's mean value) plus the terms' own metrics; for a named role
      `loss/<role>/<term>` and `<role>/<metric>`, so two objectives never clash.

  Returns:
    `(total, metrics)`: a scalar (or the `[B, *S]` map when `per_pixel`) and scalar metrics.

  Raises:
    KeyError: a term reads an output the method does not provide.
    ValueError: two terms report the same metric name.

  Example:
    >>> import jax.numpy as jnp
    >>> from mlsup_jax.losses import LossRole, loss_section, weighted_sum
    >>> role = LossRole(outputs=("logits",))
    >>> section = loss_section(role, {"cross_entropy": 1.0, "soft_dice": 0.5})
    >>> logits = jnp.zeros((2, 4, 4, 3)); label = jnp.zeros((2, 4, 4), jnp.int32)
    >>> total, metrics = weighted_sum(section, outputs={"logits": logits}, batch={"label": label})
    >>> sorted(metrics)
    ['cross_entropy', 'dice', 'loss/cross_entropy', 'loss/soft_dice']
  """
  table = _losses()
  total = jnp.zeros((), jnp.float32)
  metrics: dict = {}
  prefix, own = (f"loss/{role}/", f"{role}/") if role else ("loss/", "")
  for name, weight, hparams in active_terms(section):
    term = table.get(name)
    missing = [k for k in term.outputs if k not in outputs]
    if missing:
      raise KeyError(
        f"Loss {name!r} reads outputs {missing}, which this method does not produce (it "
        f"produces {sorted(outputs)})."
      )
    if per_pixel:
      hparams = {**hparams, "reduction": "none"}
    value, term_metrics = term.function()(outputs=outputs, batch=batch, **hparams)
    total = total + weight * value
    merge_metrics(metrics, {f"{prefix}{name}": jnp.mean(value)}, f"Loss {name!r}")
    merge_metrics(metrics, {own + k: v for k, v in term_metrics.items()}, f"Loss {name!r}")
  return total, metrics


def term_hparams(section: ml_collections.ConfigDict, name: str) -> dict[str, Any]:
  """The hyperparameters of term `name` in `section` (its weight left out)."""
  fields = dict(section[name].to_dict())
  fields.pop(WEIGHT)
  return fields
