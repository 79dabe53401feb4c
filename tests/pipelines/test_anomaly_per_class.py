"""The anomaly study's per-OOD-class AUROC table, against sklearn on a written scores file."""

import numpy as np
from sklearn.metrics import roc_auc_score

from mlsup_jax.pipelines import anomaly_study

CLASS_NAMES = ("normal", "opacity", "nodule", "effusion", "cardiomegaly")


def _write_scores(workdir, run: str, **arrays) -> None:
  (workdir / run).mkdir(parents=True)
  np.savez(workdir / run / f"{run}_scores.npz", **arrays)


def test_each_ood_class_is_scored_against_the_id_images_alone(tmp_path):
  rng = np.random.default_rng(0)
  class_ids = np.concatenate([np.zeros(40, int), np.repeat([1, 2, 4], 15)])
  ood = (class_ids > 0).astype(np.int32)
  # Class 1 well separated, class 2 not at all, class 4 in between.
  shift = np.select([class_ids == 1, class_ids == 4], [3.0, 1.0], 0.0)
  autoencoder = rng.normal(size=class_ids.size) + shift
  tend = rng.normal(size=class_ids.size)
  _write_scores(tmp_path, "tend", autoencoder=autoencoder, tend=tend, ood=ood, class_id=class_ids)
  _write_scores(tmp_path, "vae", reconstruction=tend, ood=ood)  # no class_id: left out

  table = anomaly_study.per_class_auroc(str(tmp_path), CLASS_NAMES)

  assert "VAE" not in table and "AutoEncoder" in table and "TEND (thesis score)" in table
  for row, scores in (("AutoEncoder", autoencoder), ("TEND (thesis score)", tend)):
    assert list(table[row]) == ["opacity", "nodule", "cardiomegaly"]
    for class_id, name in ((1, "opacity"), (2, "nodule"), (4, "cardiomegaly")):
      keep = (class_ids == 0) | (class_ids == class_id)
      expected = roc_auc_score(ood[keep], scores[keep])
      np.testing.assert_allclose(table[row][name], expected, rtol=1e-12)
  assert table["AutoEncoder"]["opacity"] > 0.9 > table["AutoEncoder"]["cardiomegaly"] > 0.6


def test_the_table_is_rendered_with_one_column_per_class():
  tables = {
    "intra_class": {},
    "inter_class_auroc": {},
    "per_class_auroc": {"AutoEncoder": {"opacity": 0.7, "nodule": 0.55}},
  }
  markdown = anomaly_study.render_markdown(tables, {})
  assert "### Intra-class AUROC per OOD class" in markdown
  assert "| method | opacity | nodule |" in markdown
  assert "| AutoEncoder | 0.700 | 0.550 |" in markdown
