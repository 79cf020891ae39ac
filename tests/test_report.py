"""What report.md says (plots/report.py, plots/published.py): distance from the paper's protocol,
the grid and every setting, throughput, damaged runs, the published comparison, determinism.

Sweeps are tiny real ones (tests/sweeps.py); damage is done to copies of their real files.
"""

import json
import math
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import plots
from contracts import results
from contracts.settings import Settings, setting_fields
from plots import loading, published, report
from tests import sweeps as testing


@pytest.fixture(scope="module")
def main_report(main_sweep, tmp_path_factory):
  """report.md of a copy of the main sweep (default published CSV; figures not drawn: same text)."""
  sweep = testing.copy_sweep(main_sweep, str(tmp_path_factory.mktemp("report") / "main"))
  return sweep, open(plots.make_report(sweep, draw_figures=False)).read()


def _section(text, heading):
  start = text.index(heading)
  end = text.find("\n## ", start + len(heading))
  return text[start : end if end >= 0 else None]


def test_first_lines_say_how_far_from_the_paper_protocol(main_report):
  _, text = main_report
  lines = text.splitlines()
  # The main sweep keeps the Settings defaults: the DisARM paper's protocol is the nearest.
  assert lines[0] == "# Benchmark report: `main` (DisARM paper's protocol)"
  first = next(i for i, line in enumerate(lines) if line.startswith("**How far from the DisARM paper's protocol:**"))
  assert first <= 5
  head = lines[first]
  assert "runs of 20 steps (the DisARM paper: 1,000,000, so 0.002% of it)" in head
  assert "2 finished seed(s) per cell (the DisARM paper: 5)" in head
  differing = ["eval_every", "bound_every", "num_bound_samples", "log_bound_k", "basket", "basket_draws"]
  assert f"{len(differing)} setting(s) differ" in head
  for name in differing:
    assert f"`{name}`" in head
  assert "It is the nearest protocol (settings differing from the others: RODEO paper's protocol, Tables 1-2: " in head
  assert (
    "**Published numbers** (`results/published/rodeo_2022.csv`): 4 row(s) for cells of this sweep, 0 judged"
    in lines[first + 2]
  )


def test_notes_of_whoever_ran_the_sweep_are_quoted_near_the_top(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  without = open(plots.make_report(sweep, draw_figures=False)).read()
  assert "Notes from whoever ran this sweep" not in without
  with open(os.path.join(sweep, results.SWEEP_NOTES), "w") as f:
    f.write("Stopped at 20 steps: the machine was needed.\n\nSecond paragraph.\n")
  lines = open(plots.make_report(sweep, draw_figures=False)).read().splitlines()
  notes = lines.index("> Stopped at 20 steps: the machine was needed.")
  assert lines[notes + 1 : notes + 3] == [">", "> Second paragraph."]
  assert notes < next(i for i, line in enumerate(lines) if line.startswith("## "))  # before the first section


def test_grid_and_every_setting_from_contracts(main_report):
  _, text = main_report
  grid = _section(text, "## Sweep grid")
  assert "From sweep.json:" in grid
  assert "- datasets: `omniglot`" in grid and "- models: `nonlinear`" in grid
  assert "- estimators: `reinforce_loo`, `arm`, `disarm`, `relax`" in grid and "- seeds: 0, 1" in grid
  # estimator_info: 3 evaluations of f, 2 of them differentiated, 2 of its control network
  assert "| relax | RELAX | relax | 3 | 2 | 2 | 1 | yes |" in grid
  settings = _section(text, "### Settings")
  reference = Settings()
  sweep_settings = testing.SWEEPS["main"][0].settings
  for field in setting_fields():
    row = next(line for line in settings.splitlines() if line.startswith(f"| `{field.name}` |"))
    ours = published.format_setting(getattr(sweep_settings, field.name))
    assert f"| `{ours}` | `{published.format_setting(field.default)}` |" in row, row
    assert row.endswith("**differs** |") == (getattr(sweep_settings, field.name) != getattr(reference, field.name))


def test_throughput_from_the_summary(main_report):
  sweep, text = main_report
  summary = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV))
  stack = summary["member_steps_per_sec"] / summary["steps_per_sec"]
  assert np.allclose(stack, 2.0)  # both seeds trained as one stack
  wall = (summary["wall_time_s"] / stack).sum()
  part = _section(text, "## Throughput")
  assert (
    f"8 finished runs trained 160 steps in all; their wall time, each stack counted once, sums to {wall:.1f} s: "
    f"**{160 / wall:.1f} training steps per second**"
  ) in part
  assert (
    f"8 runs in 4 stack(s) of 2; member-steps per second of a stack (`member_steps_per_sec` = steps per "
    f"second x stack size): median {summary['member_steps_per_sec'].median():.1f}"
  ) in part


def test_every_claim_verdict_carries_steps_and_seeds(main_report):
  _, text = main_report
  claims = _section(text, "## Claims of the paper")
  for claim in ("2a", "2b", "2c", "3"):
    assert f"### Claim {claim}: **" in claims
    heading = next(line for line in claims.splitlines() if line.startswith(f"### Claim {claim}:"))
    assert heading.endswith("(runs of 20 steps, 2 seed(s) per cell (paper: 1,000,000 steps, 5 seeds))"), heading
  assert "| 2a |" in claims and "| 20 | 2 |" in claims


def test_published_comparison_by_default(main_report):
  sweep, text = main_report
  part = _section(text, "## Comparison with published numbers")
  rows = [line for line in part.splitlines() if line.startswith("| Omniglot-28\\*")]
  # DisARM and RELAX have Omniglot nonlinear rows in RODEO Tables 1 and 2.
  assert len(rows) == 4
  for row in rows:
    assert "| not judged |" in row
    assert "our runs are shorter than the published ones (20 vs 1,000,000 steps)" in row
    assert "not the paper's Omniglot" in row
    assert "setting(s) differ from the published protocol" in row
  table2 = [r for r in rows if "Table 2" in r]
  assert len(table2) == 2 and all("final_test_bound_k" in r and "K-sample test bound" in r for r in table2)
  assert "(K = 3)" in next(r for r in table2 if "RELAX" in r)
  assert "Note on Table 2 (test bound): The RODEO code's released evaluation draws the estimator's K samples" in part
  assert "batch_size 50 (published 100)" in part and "train_elbo_samples single (published k_mean)" in part
  comp = pd.read_csv(os.path.join(sweep, "paper_comparison.csv"))
  assert len(comp) == 4 and set(comp["verdict"]) == {"not judged"} and comp["diff_in_se"].isna().all()
  assert set(comp["our_metric"]) == {"final_train_elbo", "final_test_bound_k"}


def test_published_rows_are_judged_only_when_comparable(multisample_sweep, tmp_path):
  """A user's CSV replaces the default; rows as long as ours, of an unknown protocol, are judged."""
  sweep = testing.copy_sweep(multisample_sweep, str(tmp_path / "multisample"))
  summary = pd.read_csv(os.path.join(sweep, results.SUMMARY_CSV))
  vimco = summary[summary["estimator"] == "vimco_2"]["final_train_elbo"]
  mean, se = vimco.mean(), vimco.std(ddof=1) / math.sqrt(len(vimco))
  rows = [
    dict(
      dataset="MNIST",
      model="linear",
      estimator="vimco_2",
      metric="final_train_elbo",
      value=mean + 0.5 * se,
      stderr=0.0,
      steps=20,
      source="test row A",
      quote="",
    ),
    dict(
      dataset="mnist",
      model="linear",
      estimator="vimco_2",
      metric="final_train_elbo",
      value=mean + 10 * se + 1,
      stderr=0.0,
      steps=20,
      source="test row B",
      quote="",
    ),
    dict(
      dataset="mnist",
      model="linear",
      estimator="vimco_4",
      metric="final_train_elbo",
      value=-100.0,
      stderr=None,
      steps=1_000_000,
      source="test row C",
      quote="",
    ),
    dict(
      dataset="omniglot",
      model="linear",
      estimator="vimco_2",
      metric="final_train_elbo",
      value=-100.0,
      stderr=0.1,
      steps=20,
      source="not in this sweep",
      quote="",
    ),
  ]
  path = tmp_path / "mine.csv"
  pd.DataFrame(rows, columns=published.PUBLISHED_COLUMNS).to_csv(path, index=False)
  text = open(plots.make_report(sweep, published_csv=str(path), draw_figures=False)).read()
  assert f"--published={path}" in text
  comp = pd.read_csv(os.path.join(sweep, "paper_comparison.csv"))
  assert list(comp["estimator"]) == ["vimco_2", "vimco_2", "vimco_4"]
  a, b, c = (comp.iloc[i] for i in range(3))
  # Two seeds: a t with one degree of freedom detects nothing, so the rows are not judged
  # (judge_difference's verdicts on enough seeds are tested in tests/test_stats.py).
  assert a["verdict"] == "not judged" and "2 seed(s) < 3" in a["notes"]
  assert b["verdict"] == "not judged" and "2 seed(s) < 3" in b["notes"]
  assert c["verdict"] == "not judged" and "shorter than the published ones (20 vs 1,000,000 steps)" in c["notes"]
  assert "published s.e. missing, taken as 0" in c["notes"]
  assert "protocol of this source unknown: settings not checked" in a["notes"]
  assert "1 published rows are for cells not in this sweep." in text
  assert "rodeo_2022" not in _section(text, "## Comparison with published numbers")


def test_damaged_runs_are_named_and_left_out(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  runs = os.path.join(sweep, results.RUNS_DIR)
  truncated, garbled, lacking, binary = (
    testing.run_ids(sweep, "disarm")[0],
    testing.run_ids(sweep, "arm")[1],
    testing.run_ids(sweep, "relax")[0],
    testing.run_ids(sweep, "reinforce_loo")[1],
  )
  config = os.path.join(runs, truncated, results.CONFIG_JSON)
  text = open(config).read()
  open(config, "w").write(text[: len(text) // 2])  # cut mid-way, as a full disk would
  metrics = os.path.join(runs, garbled, results.METRICS_CSV)
  with open(metrics, "a") as f:
    f.write("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n")  # a row with too many fields
  metrics = os.path.join(runs, lacking, results.METRICS_CSV)
  pd.read_csv(metrics).drop(columns=["grad_variance"]).to_csv(metrics, index=False)
  with open(os.path.join(runs, binary, results.METRICS_CSV), "wb") as f:
    f.write(b"\xff\xfe\x00garbage\x00\n")
  path = plots.make_report(sweep)  # figures drawn too: nothing may stop on them
  text = open(path).read()
  part = _section(text, "## Damaged run files")
  assert f"| {truncated} | config.json does not parse (JSONDecodeError" in part
  assert f"| {garbled} | metrics.csv does not parse (ParserError" in part
  assert f"| {binary} | metrics.csv does not parse (UnicodeDecodeError" in part
  assert f"| {lacking} | metrics.csv lacks columns grad_variance | used for what it has |" in part
  assert "**Damaged run files:** 3 run(s) left out of every figure, table and claim, 1 used for what they have" in text
  data = loading.load_sweep(sweep)
  assert sorted(data.summary["run_id"]) == sorted(
    set(
      testing.run_ids(sweep, "disarm")
      + testing.run_ids(sweep, "arm")
      + testing.run_ids(sweep, "relax")
      + testing.run_ids(sweep, "reinforce_loo")
    )
    - {truncated, garbled, binary}
  )
  tables_md = open(os.path.join(sweep, "tables.md")).read()
  assert "(n=1)" in tables_md  # DisARM, ARM and REINFORCE LOO are down to one seed
  assert "| damaged |" in _section(text, "## Sweep grid")


def test_damaged_summary_and_sweep_json(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  with open(os.path.join(sweep, results.SWEEP_JSON), "w") as f:
    f.write('{"datasets": ["omni')
  text = open(plots.make_report(sweep, draw_figures=False)).read()
  assert "sweep.json does not parse" in text and "From summary.csv (no sweep.json):" in text
  open(os.path.join(sweep, results.SUMMARY_CSV), "w").write("run_id,dataset\nx,y\n")
  with pytest.raises(loading.ResultsDirError, match="lacks required columns"):
    plots.make_report(sweep, draw_figures=False)


def test_report_is_a_deterministic_function_of_the_files(main_sweep, main_report, tmp_path):
  """Regenerated elsewhere, later, without figures: the same report.md and tables.md."""
  first, text = main_report
  again = testing.copy_sweep(main_sweep, str(tmp_path / "elsewhere" / "main"))
  assert open(plots.make_report(again, draw_figures=False)).read() == text
  assert open(os.path.join(again, "tables.md")).read() == open(os.path.join(first, "tables.md")).read()
  assert str(tmp_path) not in text and first not in text


def test_config_without_estimator_info_is_an_older_run_not_damage(main_sweep, tmp_path):
  sweep = testing.copy_sweep(main_sweep, str(tmp_path / "main"))
  for run_id in testing.run_ids(sweep, "relax"):
    path = os.path.join(sweep, results.RUNS_DIR, run_id, results.CONFIG_JSON)
    config = json.load(open(path))
    del config[results.ESTIMATOR_INFO_KEY]
    json.dump(config, open(path, "w"))
  data = loading.load_sweep(sweep)
  assert not data.damaged and sorted(data.without_info) == testing.run_ids(sweep, "relax")
  assert data.catalogue.num_f_evals("relax") is None
  text = open(plots.make_report(sweep, draw_figures=False)).read()
  assert "2 run(s) have no `estimator_info` in config.json" in text
  shutil.rmtree(os.path.join(sweep, results.RUNS_DIR, testing.run_ids(sweep, "arm")[0]))
  text = open(plots.make_report(sweep, draw_figures=False)).read()
  assert "config.json" in _section(text, "## Damaged run files")


def test_setting_rows_cover_every_field(main_sweep):
  rows = report.setting_rows(loading.load_sweep(main_sweep))
  assert [r["name"] for r in rows] == [f.name for f in setting_fields()]
  assert all(r["recorded"] for r in rows)


def _window_inputs():
  """Three seeds of one cell: train_elbo every 10 steps to 100 (window: steps 90 and 100), a K bound
  logged only at step 100 (one evaluation in the window)."""
  done, frames = [], []
  for seed in range(3):
    run_id = f"mnist-nonlinear-disarm-seed{seed}"
    steps = np.arange(0, 101, 10)
    elbo = -110.0 + 0.05 * steps + seed + np.where(steps == 100, 0.3, 0.0)  # a jump at the last evaluation
    frames.append(
      pd.DataFrame(
        dict(
          run_id=run_id,
          step=steps,
          train_elbo=elbo,
          test_bound_k=np.where(steps == 100, elbo + 1.0, np.nan),
        )
      )
    )
    done.append(
      dict(
        run_id=run_id,
        dataset="mnist",
        model="nonlinear",
        estimator="disarm",
        seed=seed,
        status="done",
        final_step=100,
        final_train_elbo=elbo[-1],
        final_test_bound_k=elbo[-1] + 1.0,
      )
    )
  data = type("Data", (), {})()
  data.done = pd.DataFrame(done)
  data.metrics = pd.concat(frames, ignore_index=True)
  data.catalogue = loading.style.Catalogue({})
  protocol = published.PROTOCOLS[0]
  row = dict(dataset="mnist", model="nonlinear", estimator="disarm", protocol=protocol.name, published_se=0.1)
  comp = pd.DataFrame(
    [
      dict(
        row,
        table="1",
        published_metric="final_train_elbo",
        our_metric="final_train_elbo",
        published=-105.0,
        verdict="ours higher",
      ),
      dict(
        row,
        table="2",
        published_metric="final_test_bound_100",
        our_metric="final_test_bound_k",
        published=-104.0,
        verdict="ours higher",
      ),
      dict(
        row,
        table="9",
        published_metric="final_train_elbo",
        our_metric="final_train_elbo",
        published=-100.0,
        verdict="not judged",
      ),
    ]
  )
  return data, comp


def test_window_comparison_averages_each_run_over_its_last_tenth():
  data, comp = _window_inputs()
  window, left_out = published.window_comparison(data, comp, fraction=0.1, min_evals=2)
  # The K bound has one evaluation in the window, the not-judged row is not repeated.
  assert left_out == 1 and len(window) == 1
  r = window.iloc[0]
  # Seed s: steps 90 and 100 give -105.5 + s and -104.7 + s (0.3 jump); window mean -105.1 + s.
  seeds = np.arange(3)
  assert r["window_column"] == "train_elbo" and r["evals_min"] == r["evals_max"] == 2
  assert r["window_start_min"] == pytest.approx(90.0)
  assert r["ours_window"] == pytest.approx(np.mean(-105.1 + seeds))
  assert r["ours_final"] == pytest.approx(np.mean(-104.7 + seeds))
  assert r["window_minus_final"] == pytest.approx(-0.4) and r["window_minus_final_se"] == pytest.approx(0.0, abs=1e-9)
  assert r["ours_window_se"] == pytest.approx(1.0 / math.sqrt(3))
  # Window - published in the verdicts' Welch t: published s.e. on 4 df (the RODEO tables' 5 runs).
  test, _, _ = published.judge_difference(-105.1 + seeds, -105.0, 0.1, 4.0)
  assert r["diff"] == pytest.approx(np.mean(-105.1 + seeds) + 105.0)
  assert (r["ci_low"], r["ci_high"], r["df"]) == pytest.approx((test["ci_low"], test["ci_high"], test["df"]))
  assert r["ci_low"] < r["diff"] < r["ci_high"]
  lines = "\n".join(published.window_markdown(data, window, left_out, fraction=0.1, min_evals=2))
  assert "last 10% of its steps" in lines and "(train_elbo, 2 evaluations)" in lines
  assert "1 judged row(s) left out" in lines
  # The default needs three evaluations in the window: both rows left out, nothing to tabulate.
  window, left_out = published.window_comparison(data, comp)
  assert window.empty and left_out == 2
