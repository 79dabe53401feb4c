"""Mask R-CNN: one jitted step sharded over 8 devices equals 1 device; training on the weak
droplet labels learns to find droplets (the Table 3.2 ordering is a study claim)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
import tifffile
from one_device_run import REPO, one_device_env, train_and_results

from configs import mask_rcnn as mask_rcnn_config
from launch import steatosis_mask_rcnn
from mlsup_jax.core import mesh as mesh_lib
from mlsup_jax.core.run_setup import RunSetup
from mlsup_jax.data import pipeline
from mlsup_jax.data.phantoms.steatosis import SteatosisPhantomSource
from mlsup_jax.metrics.instances import instance_report


def test_train_step_is_the_same_on_8_devices_and_on_1(devices):
  config = mask_rcnn_config.get_config("smoke")
  with config.unlocked():
    config.data.batch_size = 8
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.01
  local = pipeline.train_dataset(config.data)[0]

  def run(devs):
    setup = RunSetup(config, devs)
    _, shardings = setup.state_shardings(0)
    state = setup.create_state(0)
    step = setup.compile_step(setup.stages[0], shardings)
    state, metrics = step(state, mesh_lib.global_batch(local, setup.mesh), setup.train_rng)
    return jax.device_get((state.params, metrics))

  (sharded, m8), (single, m1) = run(devices), run(devices[:1])
  # The same anchors, RoIs and masks are sampled (per-example keys), so the losses agree.
  for key in ("rpn_objectness", "rpn_box", "roi_class", "roi_box", "roi_mask"):
    np.testing.assert_allclose(m8[key], m1[key], rtol=1e-4, atol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5), sharded, single)


@pytest.mark.slow
def test_mask_rcnn_trained_on_weak_labels_finds_the_droplets_tile_by_tile(tmp_path):
  results = train_and_results(tmp_path, "mask_rcnn.py", "tiny")
  # Untrained it detects nothing (F1 0); after these 200 steps F1 0.49 and matched IoU 0.76 on
  # the development machine. Beating the weak labels (F1 0.56 here) takes the study's 1,000
  # steps (docs/results/nuclei.md, the study test below).
  assert results["f1"] >= 0.35, results
  assert results["mean_matched_iou"] >= 0.65, results
  run = os.path.join(tmp_path, "tiny")
  assert os.path.exists(os.path.join(run, "mask_rcnn_examples.png"))

  # The trained network over a larger image, window by window, with the droplet filters.
  source = SteatosisPhantomSource(split="test", num_cases=1, image_size=256, droplet_radius=8,
                                  num_droplets=40, seed=5)  # fmt: skip
  case = source[0]
  image_path = os.path.join(tmp_path, "region.tif")
  tifffile.imwrite(image_path, (case["image"] * 255).astype(np.uint8))
  out = tmp_path / "tiled"
  command = [sys.executable, "-m", "launch.steatosis", f"--image={image_path}", f"--out={out}",
             f"--model={run}", "--tile=128", "--overlap=32"]  # fmt: skip
  done = subprocess.run(command, cwd=REPO, env=one_device_env(), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]
  found = tifffile.imread(out / "region_droplets.tif")
  assert instance_report(found, case["label"])["f1"] >= 0.3


@pytest.mark.study
def test_mask_rcnn_beats_its_weak_labels_on_every_seed(tmp_path):
  results = steatosis_mask_rcnn.run(str(tmp_path), "small", ["41"], [0, 1, 2])
  weak = results[steatosis_mask_rcnn.WEAK]["f1"]
  trained = results["Mask R-CNN ResNet-41 (trained on the weak labels)"]["f1"]
  assert all(t > w for t, w in zip(trained, weak, strict=True)), (trained, weak)


def test_bad_inputs_get_clear_errors(tmp_path):
  from mlsup_jax.methods.mask_rcnn import TrainedMaskRcnn, load_trained
  from mlsup_jax.nn.mask_rcnn import MaskRCNN

  model = MaskRCNN(depth=41, width=4, fpn_channels=8, norm_groups=4, head_hidden=16)
  with pytest.raises(ValueError, match="multiples of 32"):
    model.init(jax.random.key(0), np.zeros((1, 60, 64, 3), np.float32), train=False)
  with pytest.raises(ValueError, match="needs `instances`"):
    model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32), train=True)
  (tmp_path / "config.json").write_text('{"method": "scunet"}')
  with pytest.raises(ValueError, match="not a Mask R-CNN"):
    load_trained(str(tmp_path), window=128)
  predictor = TrainedMaskRcnn(mask_rcnn_config.get_config("smoke"), params=None, window=64)
  with pytest.raises(ValueError, match="larger than the window"):
    predictor(np.zeros((65, 64, 3), np.float32))
