"""Pure Flax Linen modules. Layout is channel-last: `[B, H, W, C]` or `[B, H, W, D, C]`.

Every network a config names is called as `model(x, *, train)` and built by name with
`build_model(config.model, ...)`: `config.model.name` picks the class from `MODELS` and the
section's other fields are its constructor arguments, so a backbone swap is a config line.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import ml_collections

from mlsup_jax.registry import Registry

# Model name (config.model.name) → Flax module class.
MODELS = Registry(
  "model",
  {
    "unet": "mlsup_jax.nn.unet:UNet",
    "scunet": "mlsup_jax.nn.scunet:ScuNet",
    "kmax": "mlsup_jax.nn.kmax:KMaX",
    "autoencoder": "mlsup_jax.nn.autoencoder:AutoEncoder",
    "tend_classifier": "mlsup_jax.nn.autoencoder:TendClassifier",
    "vae": "mlsup_jax.nn.vae:VAE",
    "cascade_vae": "mlsup_jax.nn.cvae:CascadeVAE",
    "discriminator": "mlsup_jax.nn.cvae:Discriminator",
    "cnn_classifier": "mlsup_jax.nn.classifier:SmallCNNClassifier",
    "morse": "mlsup_jax.nn.morse:Morse",
    "resnet": "mlsup_jax.nn.resnet:ResNet",
    "mask_rcnn": "mlsup_jax.nn.mask_rcnn:MaskRCNN",
    "class_wise_embedder": "mlsup_jax.nn.retrieval_heads:ClassWiseEmbedder",
  },
)

# Segmentation networks: `[B, *S, C] → logits [B, *S, K]` (or, for the mask transformer, a dict
# with `mask_logits` and `class_logits`). Any of them can be the backbone of a segmentation method.
SEGMENTATION_MODELS = ("unet", "scunet", "kmax")


def model_fields(name: str) -> dict[str, dataclasses.Field]:
  """The constructor fields of `MODELS[name]` (Flax's own `parent` and `name` left out)."""
  return {
    f.name: f
    for f in dataclasses.fields(MODELS.get(name))
    if f.init and f.name not in ("parent", "name")
  }


def build_model(model_config: ml_collections.ConfigDict, **context):
  """`MODELS[model_config.name](**fields)` from a config section.

  Args:
    model_config: `name` plus constructor arguments of that class (`dtype` as a string, e.g.
      "bfloat16").
    **context: arguments the method supplies from elsewhere in the config (e.g. `spatial_dims`
      from `config.data`); each is passed only if the class has that field, and must agree with
      the section when both give it.

  Returns:
    The Flax module.

  Raises:
    ValueError: a field the class does not have, or a required one that is missing.

  Example:
    >>> import ml_collections
    >>> from mlsup_jax.nn import build_model
    >>> model = build_model(ml_collections.ConfigDict(
    ...     {"name": "unet", "num_classes": 3, "features": (8, 16)}), spatial_dims=2)
    >>> type(model).__name__, model.num_classes, model.features
    ('UNet', 3, (8, 16))
  """
  fields = dict(model_config.to_dict())
  name = fields.pop("name")
  accepted = model_fields(name)
  unknown = sorted(set(fields) - set(accepted))
  if unknown:
    raise ValueError(
      f"config.model has field(s) {unknown} that model {name!r} does not take; its fields: "
      f"{sorted(accepted)}."
    )
  for key, value in context.items():
    if key not in accepted:
      continue
    if key in fields and fields[key] != value:
      raise ValueError(f"config.model.{key}={fields[key]!r} contradicts {key}={value!r}.")
    fields[key] = value
  missing = sorted(
    k
    for k, f in accepted.items()
    if k not in fields
    and f.default is dataclasses.MISSING
    and f.default_factory is dataclasses.MISSING
  )
  if missing:
    raise ValueError(f"Model {name!r} needs config.model field(s) {missing}.")
  if "dtype" in fields:
    fields["dtype"] = jnp.dtype(fields["dtype"])
  fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
  return MODELS.get(name)(**fields)
