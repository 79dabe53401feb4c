"""The nuclear channel (8/16-bit, float, which channel), the foreground and nucleus size, and the
watershed baseline on the phantom (it under-splits clumps: high precision, lower recall)."""

import numpy as np
import pytest

from mlsup_jax.data.phantoms.nuclei import NucleiPhantomSource
from mlsup_jax.metrics.instances import instance_report
from mlsup_jax.nuclei.foreground import foreground_mask, nuclear_channel, nucleus_size
from mlsup_jax.nuclei.watershed import watershed_nuclei


def test_nuclear_channel_reads_bit_depths_and_the_chosen_channel():
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[..., 0] = 255
  assert nuclear_channel(rgb).max() == 0.0  # blue by default: nothing there
  assert nuclear_channel(rgb, channel=0).max() == 1.0
  sixteen = np.full((4, 4), 32768, np.uint16)
  assert nuclear_channel(sixteen)[0, 0] == pytest.approx(0.5, abs=1e-4)
  with pytest.raises(ValueError, match="channel=5"):
    nuclear_channel(rgb, channel=5)
  with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
    nuclear_channel(np.full((4, 4), 300.0))
  with pytest.raises(ValueError, match="Expected an"):
    nuclear_channel(np.zeros((2, 2, 2, 2)))


def test_no_foreground_is_an_empty_result_and_size_needs_foreground():
  flat = np.zeros((32, 32), np.float32)
  assert not foreground_mask(flat).any()
  assert watershed_nuclei(flat).max() == 0
  with pytest.raises(ValueError, match="No foreground"):
    nucleus_size(foreground_mask(flat))
  assert nucleus_size(foreground_mask(flat), radius=5).radius == pytest.approx(5)


def test_watershed_on_the_phantom_is_precise_but_misses_splits():
  source = NucleiPhantomSource(split="test", num_cases=4, image_size=192, nucleus_radius=10)
  reports = [instance_report(watershed_nuclei(c["image"]), c["label"]) for c in source]
  precision = np.mean([r["precision"] for r in reports])
  recall = np.mean([r["recall"] for r in reports])
  assert precision > 0.75 and precision > recall
