"""Table arithmetic and the bolding rule (plots/tables.py): the rule on hand-made rows, the tables on a
tiny real sweep (tests/sweeps.py) with values set through the suite's writer."""

import math
import os
import shutil

import pandas as pd
import pytest

from contracts import results
from plots import loading, stats, tables
from tests import sweeps as testing


def test_mean_se_uses_ddof_1():
  mean, se, n = stats.mean_se([1.0, 2.0, 3.0, 4.0])
  assert n == 4 and mean == pytest.approx(2.5)
  # sample variance = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; se = sqrt(5/3) / 2
  assert se == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0)


def test_mean_se_single_value_and_nan():
  mean, se, n = stats.mean_se([float("nan"), -7.0])
  assert (mean, n) == (-7.0, 1) and math.isnan(se)
  assert stats.mean_se([])[2] == 0


def test_bold_rule_is_strict_at_equality():
  row = pd.DataFrame({"estimator": ["a", "b"], "mean": [-10.0, -12.0], "se": [1.0, 1.0], "n": [5, 5]})
  assert tables.best_entry(row) is None  # -11 > -11 is false
  row.loc[0, "mean"] = -9.999
  assert tables.best_entry(row) == "a"


def test_no_bold_with_single_seed_entry_single_entry_or_tie():
  row = pd.DataFrame({"estimator": ["a", "b"], "mean": [-10.0, -50.0], "se": [0.1, float("nan")], "n": [3, 1]})
  assert tables.best_entry(row) is None
  assert tables.best_entry(row.iloc[:1]) is None
  tie = pd.DataFrame(
    {"estimator": ["a", "b", "c"], "mean": [-10.0, -10.0, -50.0], "se": [0.1, 0.1, 0.1], "n": [3, 3, 3]}
  )
  assert tables.best_entry(tie) is None


def test_tables_of_a_real_sweep(main_sweep):
  data = loading.load_sweep(main_sweep)
  summary = pd.read_csv(os.path.join(main_sweep, results.SUMMARY_CSV))
  md = tables.tables_markdown(data.summary, data.catalogue)
  assert "| Dataset | Model | REINFORCE LOO | ARM | DisARM | RELAX |" in md
  for metric in ("final_train_elbo", "final_test_bound_n", "final_test_bound_k", "steps_per_sec"):
    assert f"(`{metric}`)" in md
  disarm = summary[summary["estimator"] == "disarm"]["final_train_elbo"]
  cell = tables.format_cell(disarm.mean(), disarm.std(ddof=1) / math.sqrt(2), 2)
  assert cell in md.split("(`final_train_elbo`)")[1].split("**")[0]
  t = tables.build_table(data.summary, "final_test_bound_k").set_index("estimator")
  relax = summary[summary["estimator"] == "relax"]["final_test_bound_k"]
  assert t.loc["relax", "mean"] == pytest.approx(relax.mean()) and t.loc["relax", "n"] == 2
  assert "Omniglot-28\\*" in md and "not directly comparable" in md


def test_bold_winner_and_single_seed_cells(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  summary = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV))
  best = summary["final_train_elbo"].max()
  testing.set_metric_values(
    sweep, {r: {"train_elbo": {"last": best + 10 + 0.1 * i}} for i, r in enumerate(testing.run_ids(sweep, "disarm"))}
  )
  data = loading.load_sweep(sweep)
  t = tables.build_table(data.summary, "final_train_elbo")
  assert list(t.loc[t["bold"], "estimator"]) == ["disarm"]
  md_path, tex_path = tables.write_tables(sweep, data.summary, data.catalogue)
  md, tex = open(md_path).read(), open(tex_path).read()
  assert "| **" in md and "\\mathbf{" in tex and "Omniglot-28$^*$" in tex and "\\toprule" in tex
  # A run folder gone (summary rebuilt by the writer): one seed left, s.e. n/a, marked (n=1).
  shutil.rmtree(os.path.join(sweep, results.RUNS_DIR, testing.run_ids(sweep, "arm")[1]))
  from training import results_io

  results_io.rebuild_summary(sweep)
  data = loading.load_sweep(sweep)
  md = tables.table_markdown(
    tables.build_table(data.summary, "final_train_elbo"), "final_train_elbo", "T", True, data.catalogue
  )
  arm = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV)).query("estimator == 'arm'")["final_train_elbo"].item()
  assert f"{arm:.2f} ± n/a (n=1)" in md
  assert list(tables.build_table(data.summary, "final_train_elbo").query("bold")["estimator"]) == []
