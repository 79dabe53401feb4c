"""The noisy-label study's summary: mean ± std over seeds and ordering counts (no training)."""

from __future__ import annotations

import pytest

from mlsup_jax.pipelines import noisy_label_study as study


def _metrics(dice: float) -> dict:
  return {"dice": dice, "iou": dice - 0.1, "miou": dice - 0.05, "hd95": 2.0, "asd": 0.5}


def test_summary_counts_the_seeds_each_ordering_holds_on():
  dice = {  # method → dice per seed, at r = 0.4
    "U-Net": [0.88, 0.87, 0.90],
    "MW-Net": [0.89, 0.86, 0.91],
    "MCPM": [0.93, 0.91, 0.92],
    "plain": [0.90, 0.88, 0.89],
    "PINT": [0.89, 0.90, 0.90],
  }
  results = {m: {"0.4": {str(s): _metrics(v[s]) for s in range(3)}} for m, v in dice.items()}
  summary = study.summarize(results, [0.4], [0, 1, 2])
  holds = summary["holds"]["0.4"]
  assert holds["MCPM > U-Net"] == 3
  assert holds["MCPM > MW-Net > U-Net"] == 2  # MW-Net below the U-Net on seed 1
  assert holds["PINT > plain"] == 2
  assert "PINT > PNT and INT" not in holds  # PNT / INT not run
  assert summary["cells"]["0.4"]["MCPM"]["dice"] == pytest.approx([0.93, 0.91, 0.92])
  markdown = study.render_markdown(summary)
  assert "| 0.4 | MCPM | 0.920 ± 0.008 (0.930 / 0.910 / 0.920) |" in markdown
  assert (
    "- r = 0.4: MCPM > U-Net 3 / 3; MCPM > MW-Net > U-Net 2 / 3; PINT > plain 2 / 3" in markdown
  )
