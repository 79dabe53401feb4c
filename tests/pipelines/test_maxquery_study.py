"""The MaxQuery study end to end (smoke sizes): three variants, paper-shaped tables, files."""

import json
import math

import pytest

from configs import maxquery as maxquery_config
from mlsup_jax.pipelines import maxquery_study

pytestmark = pytest.mark.slow


def _config(variant: str):
  config = maxquery_config.get_config(f"smoke,variant={variant}")
  with config.unlocked():
    config.data.batch_size = 8  # One example per fake device.
  return config


def test_study_writes_the_papers_tables_and_figures(tmp_path):
  # Two of the three variants keep CI short; "noqd" is the "maxquery" method with other loss
  # terms (tests/methods/test_maxquery_configs.py), and its rows must simply be absent here.
  configs = {v: _config(v) for v in ("unet", "maxquery")}
  study = maxquery_study.run_study(configs, str(tmp_path))

  tables = study["tables"]
  assert list(tables["inlier_dice"]) == ["U-Net", "MaxQuery"]
  assert set(tables["inlier_dice"]["MaxQuery"]) == {
    "liver",
    "hcc",
    "cyst",
    "metastasis",
    "tumour avg",
  }
  assert list(tables["ood_localization"]) == [
    "MC Dropout", "MSP", "MaxLogit", "SML", "Energy", "MaxQuery"
  ]  # fmt: skip
  for row in tables["ood_localization"].values():
    assert set(row) == {"auroc", "aupr", "fpr95", "case_auc"}
    assert 0.0 <= row["auroc"] <= 1.0 or math.isnan(row["auroc"])
  assert list(tables["score_ablation"]) == [
    "category / post", "category / pre", "query / post", "query / pre"
  ]  # fmt: skip
  # The table's MaxQuery row is the MaxQuery model's query-level pre-softmax score.
  assert tables["ood_localization"]["MaxQuery"] == tables["score_ablation"]["query / pre"]
  assert study["ordering"]["MaxQuery > MaxQuery w/o QD"] is None  # Not run.
  assert isinstance(study["ordering"]["MaxLogit >= MSP"], bool)

  for name in ("results.md", "results.json", "ood_roc.png"):
    assert (tmp_path / name).stat().st_size > 0, name
  for figure in ("unet/unet_cases.png", "maxquery/maxquery_cases.png"):
    assert (tmp_path / figure).stat().st_size > 0, figure
  saved = json.loads((tmp_path / "results.json").read_text())
  assert saved["tables"]["ood_localization"].keys() == tables["ood_localization"].keys()
  markdown = (tmp_path / "results.md").read_text()
  assert "| MaxQuery |" in markdown and "AUROC" in markdown and "case AUC" in markdown

  # Re-running resumes: every variant is finished, so it only re-evaluates to the same tables.
  again = maxquery_study.run_study(configs, str(tmp_path))
  assert json.dumps(again["tables"], sort_keys=True) == json.dumps(tables, sort_keys=True)


def test_unknown_variant_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="Unknown study variants"):
    maxquery_study.run_study({"maxquery_v2": _config("maxquery")}, str(tmp_path))


def _fake_results(seed: int) -> dict:
  """Per-variant evaluation results as `trainer.train_and_evaluate` returns them."""
  base = 0.5 + 0.1 * seed
  names = maxquery_config.get_config("smoke").data.class_names
  dice = {f"dice/{n}": base for n in names[1:]} | {"dice/tumour_avg": base}
  scores = ("msp", "max_logit", "energy", "mc_dropout", "sml")
  unet = dice | {f"{s}/{m}": 0.5 for s in scores for m in ("auroc", "aupr", "fpr95", "case_auc")}
  query = ("maxquery", "maxquery_post", "category_pre", "category_post")
  metrics = ("auroc", "aupr", "fpr95", "case_auc")
  maxquery = dice | {f"{s}/{m}": base + 0.05 for s in query for m in metrics}
  noqd = dice | {f"{s}/{m}": 0.6 for s in query for m in metrics}
  return {"unet": unet, "noqd": noqd, "maxquery": maxquery}


def test_seeds_are_aggregated_as_mean_std_with_each_seed_and_ordering_counts():
  names = maxquery_config.get_config("smoke").data.class_names
  per_seed = []
  for seed in (0, 1, 2):
    tables = maxquery_study.build_tables(_fake_results(seed), names)
    per_seed.append({"tables": tables, "ordering": maxquery_study.ordering(tables)})
  summary = maxquery_study.aggregate(per_seed, names)
  assert summary["seeds"] == 3
  # MaxQuery AUROC 0.55 / 0.65 / 0.75 vs w/o QD 0.6 on every seed: holds on 2 of 3.
  assert summary["holds"]["MaxQuery > MaxQuery w/o QD"] == 2
  assert summary["holds"]["MaxLogit >= MSP"] == 3
  assert summary["tables"]["ood_localization"]["MaxQuery"]["auroc"] == pytest.approx(
    [0.55, 0.65, 0.75]
  )
  markdown = maxquery_study.render_seeds_markdown(summary, names)
  assert "65.00 ± 8.16 (55.00 / 65.00 / 75.00)" in markdown
  assert "MaxQuery > MaxQuery w/o QD: holds on 2 / 3 seeds" in markdown
