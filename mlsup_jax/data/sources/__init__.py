"""Random-access sources (grain `RandomAccessDataSource`s): real-data readers, wrappers, phantoms.

Each source has `__len__`, `__getitem__(i) -> {"image": …, "label": …}` (numpy arrays only,
channel-last: `image: [H, W, C]` or `[H, W, D, C]` float32, `label: [H, W]` / `[H, W, D]` int32)
and a `case_ids` sequence naming example `i`. Bad input raises `DataError` naming the file.
A config section `{name: <DATASETS entry>, **constructor arguments}` names a source;
`build_source` builds it.

Readers (`sources/readers/`, one file per format):

| name           | class               | reads                                              |
|----------------|---------------------|----------------------------------------------------|
| `image_folder` | `ImageFolderSource` | PNG / TIFF / JPEG / BMP (8- or 16-bit) + masks     |
| `nifti_folder` | `NiftiFolderSource` | `.nii` / `.nii.gz` volumes + label volumes         |
| `dicom_folder` | `DicomFolderSource` | single-frame DICOM, rescaled to modality units     |
| `nnunet_raw`   | `NnUNetRawSource`   | nnU-Net v2 raw layout (`dataset.json`, imagesTr…)  |
| `tfds`         | `TfdsSource`        | TFDS array_record datasets, without TensorFlow     |
| `image_class_folder` | `ImageClassFolderSource` | `root/<class>/*` images or DICOM → `class_id` |
| `pydicom_examples` | `PydicomExamplesSource` | the DICOM test files inside the pydicom wheel  |

Wrappers over any source (their `base` is a source config or a built source, `as_source`):
`index_subset` (`subset.py`), `relabel` (`relabel.py`), `noisy_labels` (`corruption.py`),
`ood_split` (`ood_splits.py`), `semi_supervised_split` (`labelled_split.py`), `partial_labels`
(`partial_labels.py`: a sub-dataset that annotates only some organs, with `known`),
`query_database` (`query_database.py`: queries + database for retrieval, flagged `query`),
`annotated` (`annotated.py`: per-example values from an `.npz`, e.g. OSCARS's bins),
`weak_droplet_labels` (`weak_instances.py`: §3.2's weak droplet instances as `label`). Phantoms:
`mlsup_jax/data/phantoms/`.
"""

from __future__ import annotations

from collections.abc import Mapping

import ml_collections

from mlsup_jax.data.validation import DataError
from mlsup_jax.registry import Registry

# Dataset name (`name` of a source section) → factory `(**fields) -> Source`.
DATASETS = Registry(
  "dataset",
  {
    "image_folder": "mlsup_jax.data.sources.readers.images:ImageFolderSource",
    "nifti_folder": "mlsup_jax.data.sources.readers.nifti:NiftiFolderSource",
    "dicom_folder": "mlsup_jax.data.sources.readers.dicom:DicomFolderSource",
    "nnunet_raw": "mlsup_jax.data.sources.readers.nifti:NnUNetRawSource",
    "tfds": "mlsup_jax.data.sources.readers.tfds:TfdsSource",
    "image_class_folder": "mlsup_jax.data.sources.readers.class_folder:ImageClassFolderSource",
    "pydicom_examples": "mlsup_jax.data.sources.readers.pydicom_examples:PydicomExamplesSource",
    "index_subset": "mlsup_jax.data.sources.subset:IndexSubsetSource",
    "relabel": "mlsup_jax.data.sources.relabel:RelabelSource",
    "noisy_labels": "mlsup_jax.data.sources.corruption:NoisyLabelSource",
    "ood_split": "mlsup_jax.data.sources.ood_splits:OodSplitSource",
    "semi_supervised_split": "mlsup_jax.data.sources.labelled_split:SemiSupervisedSplit",
    "partial_labels": "mlsup_jax.data.sources.partial_labels:PartialLabelSource",
    "query_database": "mlsup_jax.data.sources.query_database:QueryDatabaseSource",
    "annotated": "mlsup_jax.data.sources.annotated:AnnotatedSource",
    "weak_droplet_labels": "mlsup_jax.data.sources.weak_instances:WeakDropletLabelSource",
    "phantom_bac": "mlsup_jax.data.phantoms.bac:BacPhantomSource",
    "phantom_abdomen": "mlsup_jax.data.phantoms.abdomen:AbdomenPhantomSource",
    "phantom_nuclei": "mlsup_jax.data.phantoms.nuclei:NucleiPhantomSource",
    "phantom_steatosis": "mlsup_jax.data.phantoms.steatosis:SteatosisPhantomSource",
    "phantom_cardiac": "mlsup_jax.data.phantoms.cardiac:CardiacPhantomSource",
    "phantom_radiograph": "mlsup_jax.data.phantoms.radiograph:ChestRadiographPhantomSource",
    "phantom_modality": "mlsup_jax.data.phantoms.modalities:ModalityPhantomSource",
    "phantom_ivc_filter": "mlsup_jax.data.phantoms.ivc_filter:IvcFilterPhantomSource",
    "phantom_shifted_radiograph": (
      "mlsup_jax.data.phantoms.shifted_external:ShiftedRadiographSource"
    ),
    "phantom_multi_finding_radiograph": (
      "mlsup_jax.data.phantoms.multi_finding_radiograph:MultiFindingRadiographSource"
    ),
    "phantom_spurious_radiograph": (
      "mlsup_jax.data.phantoms.spurious_radiograph:SpuriousRadiographSource"
    ),
  },
)


def build_source(source_config: ml_collections.ConfigDict | Mapping):
  """Instantiates `DATASETS[source_config.name](**other fields)` with a clear error.

  Example:
    >>> from mlsup_jax.data.sources import build_source
    >>> source = build_source({"name": "phantom_abdomen", "split": "test", "num_cases": 2,
    ...                        "image_size": 32})
    >>> len(source), sorted(source[0])[:3]
    (2, ['case_ood', 'image', 'label'])
  """
  if isinstance(source_config, ml_collections.ConfigDict):
    source_config = source_config.to_dict()
  fields = dict(source_config)
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


def as_source(spec, what: str = "base"):
  """The source `spec` describes: a dataset config (with `name`) or an already built source.

  Wrapper sources (noisy labels, OOD splits, subsets, relabelling) take their `base` this way.

  Args:
    spec: a dict / `ConfigDict` with `name` and that factory's fields, or a random-access source
      (anything with `__len__` and `__getitem__`).
    what: the argument's name, for error messages.

  Raises:
    ValueError: a config without `name`, or something that is neither a config nor a source.
  """
  if isinstance(spec, ml_collections.ConfigDict):
    spec = spec.to_dict()
  if isinstance(spec, Mapping):
    if "name" not in spec:
      raise ValueError(
        f"{what} config needs a 'name' (a DATASETS entry), got fields {sorted(spec)}."
      )
    return build_source(spec)
  if not (hasattr(spec, "__len__") and hasattr(spec, "__getitem__")):
    raise ValueError(
      f"{what} must be a dataset config (a dict with 'name') or a random-access source, got "
      f"{type(spec).__name__}."
    )
  return spec
