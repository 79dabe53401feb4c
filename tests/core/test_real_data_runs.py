"""Methods train and evaluate on a user's data, started from the command line as README says.

The test writes two small labelled datasets of 32² CT-like slices — an nnU-Net raw dataset (PNG
images, `dataset.json`) and a NIfTI folder whose slices are stored as 3-D volumes with one slice
— and runs `python -m launch.train` with the documented override
`--config.data.train_source.name=<source> --config.data.train_source.root=DIR` (and the same for
`eval_source`, and MCPM's meta stream), which replaces the phantom's whole source section. Every
method that segments (SCU-Net, MaxQuery, MCPM, PINT, the generic `segmentation`) trains and
evaluates end to end on both formats; none needs the phantom-only keys (BAC intensity, OOD flags).
The second format of each method reuses the first one's compiled steps (the persistent cache).
"""

from __future__ import annotations

import json

import nibabel
import numpy as np
import pytest
from one_device_run import run_launch_train
from PIL import Image

from launch.common import load_config
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data.validation import DataError

pytestmark = pytest.mark.slow

SIZE = 32
SPLITS = ("train", "eval", "meta")
BINARY = [
  "--config.data.num_classes=2",
  "--config.model.num_classes=2",
  "--config.data.class_names=('background', 'organ')",
]
# Each method's smoke config and the extra overrides it needs on two-class data.
METHODS = {
  "segmentation": BINARY,
  "maxquery": BINARY,
  "scunet": [],
  "mcpm": [],
  "pint": [],
}


def _case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """A slice `[S, S]` in HU (soft tissue 40 ± 20, an organ disc at 180) and its 0/1 label."""
  yy, xx = np.mgrid[:SIZE, :SIZE]
  centre = rng.uniform(10, 22, size=2)
  radius = rng.uniform(5, 9)
  label = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < radius**2).astype(np.uint8)
  image = 40 + 20 * rng.standard_normal((SIZE, SIZE)) + 140 * label
  return image, label


def _write_nnunet(root, cases: int, seed: int) -> str:
  rng = np.random.default_rng(seed)
  (root / "imagesTr").mkdir(parents=True)
  (root / "labelsTr").mkdir()
  for i in range(cases):
    image, label = _case(rng)
    pixels = np.clip(image, 0, 255).astype(np.uint8)  # 8-bit PNG: HU 0 … 255.
    Image.fromarray(pixels).save(root / "imagesTr" / f"case{i:03d}_0000.png")
    Image.fromarray(label).save(root / "labelsTr" / f"case{i:03d}.png")
  spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1}}
  (root / "dataset.json").write_text(json.dumps({**spec, "file_ending": ".png"}))
  return str(root)


def _write_nifti(root, cases: int, seed: int) -> str:
  """Slices stored as volumes of one slice, `[S, S, 1]`."""
  rng = np.random.default_rng(seed)
  (root / "images").mkdir(parents=True)
  (root / "labels").mkdir()
  for i in range(cases):
    image, label = _case(rng)
    affine = np.diag([0.8, 0.8, 5.0, 1.0])
    volume = nibabel.Nifti1Image(image[..., None].astype(np.float32), affine)
    nibabel.save(volume, root / "images" / f"case{i:03d}.nii.gz")
    nibabel.save(
      nibabel.Nifti1Image(label[..., None], affine), root / "labels" / f"case{i:03d}.nii.gz"
    )
  return str(root)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
  root = tmp_path_factory.mktemp("user_data")
  return {
    "nnunet_raw": [_write_nnunet(root / f"nnunet_{s}", 12, i) for i, s in enumerate(SPLITS)],
    "nifti_folder": [_write_nifti(root / f"nifti_{s}", 12, 10 + i) for i, s in enumerate(SPLITS)],
  }


def _source_args(path: str, source: str, root: str) -> list[str]:
  return [f"--config.{path}.name={source}", f"--config.{path}.root={root}"]


def _args(method: str, source: str, dirs: list[str], workdir) -> list[str]:
  train, evaluation, meta = dirs
  args = [
    f"--config=configs/{method}.py:smoke",
    f"--workdir={workdir}",
    *_source_args("data.train_source", source, train),
    *_source_args("data.eval_source", source, evaluation),
    "--config.train.num_steps=4",
    "--config.train.checkpoint_every=4",
    *METHODS[method],
  ]
  if method == "mcpm":  # The clean meta set is the user's too.
    args += _source_args("data.streams.meta.source", source, meta)
  return args


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_trains_and_evaluates_on_nnunet_raw_and_nifti_from_the_command_line(
  tmp_path, datasets, method
):
  for source, dirs in datasets.items():
    workdir = tmp_path / source
    run = run_launch_train(*_args(method, source, dirs, workdir))
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((workdir / "eval_results.json").read_text())
    assert 0.0 <= results["dice"] <= 1.0, results
    assert results["num_images"] == 12
    saved = json.loads((workdir / "config.json").read_text())
    # The phantom's whole section was replaced by the user's source (+ its defaults).
    assert saved["data"]["train_source"]["name"] == source
    assert saved["data"]["train_source"]["root"] == dirs[0]
    assert not {"seed", "image_size", "num_cases", "base"} & set(saved["data"]["train_source"])
    assert saved["data"]["eval_source"]["root"] == dirs[1]


def test_a_source_without_a_key_the_method_needs_is_named_before_compiling(tmp_path, datasets):
  """An unlabelled folder as the evaluation set of a segmentation run: one clear error."""
  folder = tmp_path / "unlabelled"
  (folder / "images").mkdir(parents=True)
  for i in range(3):
    Image.fromarray(np.full((SIZE, SIZE), 50 * i, np.uint8)).save(folder / "images" / f"{i}.png")
  config = load_config(
    [
      "--config=configs/segmentation.py:smoke",
      *_source_args("data.train_source", "nnunet_raw", datasets["nnunet_raw"][0]),
      *_source_args("data.eval_source", "image_folder", str(folder)),
      *BINARY,
    ]
  )
  message = r"config.data.eval_source \('image_folder'\) gives examples without \['label'\]"
  with pytest.raises(DataError, match=message + ".*'segmentation' needs for evaluation"):
    RunSetup(config)


def test_a_misspelt_source_field_names_the_fields_the_source_takes(datasets):
  with pytest.raises(ValueError, match=r"source 'nnunet_raw' has no field\(s\) \['rot'\].*root"):
    load_config(
      [
        "--config=configs/segmentation.py:smoke",
        "--config.data.train_source.name=nnunet_raw",
        f"--config.data.train_source.rot={datasets['nnunet_raw'][0]}",
      ]
    )
