"""TEND learns: on the IVC-filter phantom it beats its own stage-1 autoencoder (thesis Table 4.3).

One `launch.train` run (a subprocess on one CPU device, as README's commands run) of
`configs/tend.py:dataset=ivc_filter` — the default TEND config on the IVC-filter phantom (64²,
ID = the `conical_hooked` design, OOD = the seven other designs, one-vs-rest; AE 600 steps,
warm-up 200, centre one epoch, margin 600, R = 250, the authors' IVC distortion set), seed 0,
clean protocol, test split. The AutoEncoder row is TEND's stage-1 network, scored by its
reconstruction error, so every score comes from the same run.

Asserted, because it held on every seed measured (README, seeds 0–4): TEND with the authors'
score (0.9·p + 0.1·minmax(d)) and TEND's stage-2 classifier alone (p), trained on distortions of
ID images only, have a higher intra-class AUROC than the autoencoder's reconstruction error
(seed 0: 0.814 and 0.814 vs 0.586). Also asserted, at this fixed seed only: the thesis score
(λp + (1 − λ)d/R) beats the AE (seed 0: 0.775 vs 0.586); it does so on seeds 0, 2, 4 but not 1, 3,
where its d/R term dominates and the margin learner's distance is at chance. Not asserted: CVAD >
VAE (on the IVC phantom it holds on one seed of five, by 0.002; never on the chest phantom); TEND
> AE on the chest-radiograph phantom, whose findings are not changes of shape.
"""

import json

import pytest
from one_device_run import run_launch_train

pytestmark = pytest.mark.slow


def test_tend_beats_the_autoencoder_on_the_ivc_filter_phantom(tmp_path):
  workdir = tmp_path / "tend"
  run = run_launch_train(
    "--config=configs/tend.py:dataset=ivc_filter",
    f"--workdir={workdir}",
    "--config.train.checkpoint_every=2000",
    "--config.eval.save_figures=False",
  )
  assert run.returncode == 0, run.stderr[-3000:]
  results = json.loads((workdir / "eval_results.json").read_text())
  autoencoder = results["autoencoder/auroc"]
  print(
    f"IVC-filter intra-class AUROC: TEND code score {results['tend_code/auroc']:.3f}, "
    f"classifier {results['classifier/auroc']:.3f}, thesis score {results['tend/auroc']:.3f}, "
    f"AutoEncoder {autoencoder:.3f}"
  )
  assert results["tend_code/auroc"] > autoencoder
  # The ranking is TEND's own doing: its stage-2 classifier, trained on distortions of ID images
  # only, already ranks the unseen designs above the ID design.
  assert results["classifier/auroc"] > autoencoder
  # Seed-specific (3 of 5 seeds in README): the thesis's own score.
  assert results["tend/auroc"] > autoencoder
