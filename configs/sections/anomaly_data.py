"""The data section shared by the anomaly detectors (TEND, CVAD, AE / VAE baselines).

ID and OOD images come from one labelled phantom split by `data/sources/ood_splits.py`: the chest
radiographs (`dataset=radiograph`; one-vs-rest: ID = normal, intra-class OOD = the four subtle
abnormal classes) or the IVC-filter radiographs (`dataset=ivc_filter`; ID = the
`conical_hooked` design, OOD = the seven other designs), or rest-vs-one. ID images are split
70 / 10 / 20 into train / val / test; OOD images half into val, half into test. The clean
protocol fits thresholds and score normalisation on val (`calibration_source`) and reports on
test (`eval_source`).
"""

import ml_collections

from mlsup_jax.data.phantoms import ivc_filter, radiograph

ID_FRACTIONS = (0.7, 0.1, 0.2)
OOD_FRACTIONS = (0.0, 0.5, 0.5)


# dataset= option → (registered source name, class names, default class weights).
PHANTOMS = {
  "radiograph": ("phantom_radiograph", radiograph.CLASS_NAMES, radiograph.DEFAULT_CLASS_WEIGHTS),
  "ivc_filter": ("phantom_ivc_filter", ivc_filter.CLASS_NAMES, ivc_filter.DEFAULT_CLASS_WEIGHTS),
}


def phantom_data(
  dataset: str, *, smoke: bool, full: bool, rest_vs_one: bool, batch_size: int
) -> ml_collections.ConfigDict:
  """`config.data` for a phantom of `PHANTOMS` under the one-vs-rest / rest-vs-one protocol.

  Class 0 is ID under one-vs-rest (normal; the `conical_hooked` filter).
  """
  name, class_names, class_weights = PHANTOMS[dataset]
  image_size = 32 if smoke else (256 if full else 64)
  num_cases = 96 if smoke else (20000 if full else 1500)
  base = {
    "name": name,
    "split": "train",
    "num_cases": num_cases,
    "seed": 0,
    "image_size": image_size,
  }
  split = {
    "name": "ood_split",
    "base": base,
    "id_classes": (0,),
    "protocol": "rest_vs_one" if rest_vs_one else "one_vs_rest",
    "seed": 0,
    "fractions": ID_FRACTIONS,
    "ood_fractions": OOD_FRACTIONS,
  }
  id_share = class_weights[0] / sum(class_weights)
  if rest_vs_one:
    id_share = 1.0 - id_share
  return ml_collections.ConfigDict(
    {
      "train_source": {**split, "role": "train"},
      "calibration_source": {**split, "role": "val"},
      "eval_source": {**split, "role": "test"},
      # Expected number of ID training images (sizes one epoch, e.g. TEND's centre pass).
      "num_id_train": int(round(num_cases * id_share * ID_FRACTIONS[0])),
      "batch_size": batch_size,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": None,
      "class_names": class_names,
      "require_label": False,
      "train_transforms": (),
      "eval_transforms": (),
      "worker_count": 0,
      "read_threads": 2,
    }
  )


def pydicom_data(*, batch_size: int) -> ml_collections.ConfigDict:
  """`config.data` for the real-DICOM check: ID = ultrasound, OOD = MR and CT.

  The images are the DICOM test files inside the pydicom wheel (`pydicom_examples`): 12
  ultrasound frames, 2 MR and 3 CT images of ≥ 32 px a side. Two thirds of the ultrasound frames
  train; the test set is the other third plus every MR/CT image. There is no validation split,
  so evaluation uses the transductive protocol. Training augments with flips/rotations and
  brightness.
  """
  split = {
    "name": "ood_split",
    "base": {"name": "pydicom_examples", "modalities": ("US", "MR", "CT"), "image_size": 64},
    "id_classes": (0,),  # US
    "protocol": "one_vs_rest",
    "seed": 0,
    "fractions": (2 / 3, 0.0, 1 / 3),
    "ood_fractions": (0.0, 0.0, 1.0),
  }
  return ml_collections.ConfigDict(
    {
      "train_source": {**split, "role": "train"},
      "eval_source": {**split, "role": "test"},
      "num_id_train": 8,
      "batch_size": batch_size,
      "seed": 0,
      "spatial_dims": 2,
      "num_classes": None,
      "class_names": ("US", "MR", "CT"),
      "require_label": False,
      "train_transforms": ("random_dihedral", "random_brightness"),
      "eval_transforms": (),
      "brightness_delta": 0.1,
      "worker_count": 0,
      "read_threads": 2,
    }
  )


DATASETS = (*PHANTOMS, "pydicom")


def anomaly_data(
  dataset: str, *, smoke: bool, full: bool, rest_vs_one: bool
) -> ml_collections.ConfigDict:
  """`config.data` of the `dataset=` option shared by the anomaly configs."""
  if dataset in PHANTOMS:
    return phantom_data(
      dataset, smoke=smoke, full=full, rest_vs_one=rest_vs_one, batch_size=8 if smoke else 32
    )
  if dataset == "pydicom":
    return pydicom_data(batch_size=8)
  raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}.")
