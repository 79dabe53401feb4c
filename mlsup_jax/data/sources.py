"""Random-access sources over real data on disk (grain `RandomAccessDataSource`s).

Each source has `__len__`, `__getitem__(i) -> {"image": …, "label": …}` (numpy arrays only,
channel-last: `image: [H, W, C]` or `[H, W, D, C]` float32, `label: [H, W]` / `[H, W, D]` int32)
and a `case_ids` sequence naming example `i`. Bad input raises `DataError` naming the file.
Names in `mlsup_jax.core.registry.DATASETS` point here; the readers live per format in
`mlsup_jax.data.readers`.

| name           | class               | reads                                              |
|----------------|---------------------|----------------------------------------------------|
| `image_folder` | `ImageFolderSource` | PNG / TIFF / JPEG / BMP (8- or 16-bit) + masks     |
| `nifti_folder` | `NiftiFolderSource` | `.nii` / `.nii.gz` volumes + label volumes         |
| `dicom_folder` | `DicomFolderSource` | single-frame DICOM, rescaled to modality units     |
| `nnunet_raw`   | `NnUNetRawSource`   | nnU-Net v2 raw layout (`dataset.json`, imagesTr…)  |
| `tfds`         | `TfdsSource`        | TFDS array_record datasets, without TensorFlow     |
| `image_class_folder` | `ImageClassFolderSource` | `root/<class>/*` images or DICOM → `class_id` |
| `pydicom_examples` | `PydicomExamplesSource` | the DICOM test files inside the pydicom wheel  |

Protocol wrappers over any labelled source live in `mlsup_jax.data.ood_splits` (`ood_split`).
"""

from mlsup_jax.data.readers.class_folder import ImageClassFolderSource
from mlsup_jax.data.readers.dicom import DicomFolderSource
from mlsup_jax.data.readers.images import ImageFolderSource
from mlsup_jax.data.readers.nifti import NiftiFolderSource, NnUNetRawSource
from mlsup_jax.data.readers.pydicom_examples import PydicomExamplesSource
from mlsup_jax.data.readers.tfds import TfdsSource

__all__ = [
  "DicomFolderSource",
  "ImageClassFolderSource",
  "ImageFolderSource",
  "NiftiFolderSource",
  "NnUNetRawSource",
  "PydicomExamplesSource",
  "TfdsSource",
]
