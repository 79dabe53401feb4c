"""Explicit name → object tables.

Tables map a config name to `"module.path:attribute"` strings that are imported on first use, so
importing the library does not import every method (and its optional dependencies). There is no
decorator magic: to add an entry, add one line to the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class Registry:
  """A named, explicit, lazily-importing table.

  Args:
    kind: what the table holds ("method", "loss", …), used in error messages.
    table: name → `"module:attribute"` (imported lazily) or the object itself.
  """

  def __init__(self, kind: str, table: Mapping[str, Any]):
    self.kind = kind
    self._table = dict(table)

  def names(self) -> list[str]:
    return sorted(self._table)

  def __contains__(self, name: str) -> bool:
    return name in self._table

  def register(self, name: str, entry: Any, *, replace: bool = False) -> None:
    """Adds an entry at run time (tests, notebooks); the tables below stay the reference."""
    if name in self._table and not replace:
      raise KeyError(f"{self.kind} {name!r} is already registered; pass replace=True.")
    self._table[name] = entry

  def unregister(self, name: str) -> None:
    self._table.pop(name, None)

  def get(self, name: str) -> Any:
    if name not in self._table:
      raise KeyError(
        f"Unknown {self.kind} {name!r}. Known {self.kind}s: {', '.join(self.names())}."
      )
    entry = self._table[name]
    if isinstance(entry, str):
      module_name, _, attribute = entry.partition(":")
      entry = getattr(importlib.import_module(module_name), attribute)
      self._table[name] = entry
    return entry


# Method name (config.method) → factory `Method(config)`.
METHODS = Registry(
  "method",
  {
    "scunet": "mlsup_jax.methods.scunet:ScuNetMethod",
    "maxquery": "mlsup_jax.methods.maxquery:MaxQueryMethod",
    "unet_segmentation": "mlsup_jax.methods.unet_segmentation:UNetSegmentationMethod",
    "tend": "mlsup_jax.methods.tend:TendMethod",
    "cvad": "mlsup_jax.methods.cvad:CvadMethod",
    "reconstruction_detector": "mlsup_jax.methods.reconstruction_detector:ReconstructionDetector",
    "mcpm": "mlsup_jax.methods.mcpm:McpmMethod",
    "pint": "mlsup_jax.methods.pint:PintMethod",
    "image_classifier": "mlsup_jax.methods.image_classifier:ImageClassifierMethod",
  },
)

# Dataset name (config.data.source / config.eval.source) → factory `(config_section) -> Source`.
DATASETS = Registry(
  "dataset",
  {
    "phantom_bac": "mlsup_jax.data.phantoms.bac:BacPhantomSource",
    "phantom_abdomen": "mlsup_jax.data.phantoms.abdomen:AbdomenPhantomSource",
    "image_folder": "mlsup_jax.data.sources:ImageFolderSource",
    "nifti_folder": "mlsup_jax.data.sources:NiftiFolderSource",
    "dicom_folder": "mlsup_jax.data.sources:DicomFolderSource",
    "nnunet_raw": "mlsup_jax.data.sources:NnUNetRawSource",
    "tfds": "mlsup_jax.data.sources:TfdsSource",
    "phantom_radiograph": "mlsup_jax.data.phantoms.radiograph:ChestRadiographPhantomSource",
    "phantom_modality": "mlsup_jax.data.phantoms.modalities:ModalityPhantomSource",
    "phantom_ivc_filter": "mlsup_jax.data.phantoms.ivc_filter:IvcFilterPhantomSource",
    "ood_split": "mlsup_jax.data.ood_splits:OodSplitSource",
    "image_class_folder": "mlsup_jax.data.readers.class_folder:ImageClassFolderSource",
    "pydicom_examples": "mlsup_jax.data.readers.pydicom_examples:PydicomExamplesSource",
    "noisy_labels": "mlsup_jax.data.corruption:NoisyLabelSource",
    "phantom_shifted_radiograph": (
      "mlsup_jax.data.phantoms.shifted_external:ShiftedRadiographSource"
    ),
    "index_subset": "mlsup_jax.data.subset:IndexSubsetSource",
    "relabel": "mlsup_jax.data.relabel:RelabelSource",
  },
)

# Model name (config.model.name) → Flax module class.
MODELS = Registry(
  "model",
  {
    "scunet": "mlsup_jax.nn.scunet:ScuNet",
    "unet": "mlsup_jax.nn.unet:UNet",
    "kmax": "mlsup_jax.nn.kmax:KMaX",
    "autoencoder": "mlsup_jax.nn.autoencoder:AutoEncoder",
    "tend_classifier": "mlsup_jax.nn.autoencoder:TendClassifier",
    "vae": "mlsup_jax.nn.vae:VAE",
    "cascade_vae": "mlsup_jax.nn.cvae:CascadeVAE",
    "discriminator": "mlsup_jax.nn.cvae:Discriminator",
    "cnn_classifier": "mlsup_jax.nn.classifier:SmallCNNClassifier",
  },
)
