"""The results format's column names: what they hold, and files written under earlier names."""

import json
import os

import numpy as np
import pandas as pd

from contracts import results
from plots import figures, loading, markdown
from training import results_io

LEGACY_HEADER = (
  "step,wall_time_s,steps_per_sec,stack_size,train_elbo,valid_bound_100,test_bound_100,grad_variance,"
  "valid_bound_k,test_bound_k"
)
LEGACY_ROWS = "0,0.5,,1,-540.0,,,,,\n1000,9.5,120.0,1,-180.0,-171.25,-172.5,0.25,,\n"


def write_legacy_run(run_dir, done=True):
  os.makedirs(run_dir)
  with open(os.path.join(run_dir, results.METRICS_CSV), "w") as f:
    f.write(LEGACY_HEADER + "\n" + LEGACY_ROWS)
  if done:
    record = {"run_id": os.path.basename(run_dir), "final_test_bound_100": -172.5, "best_valid_bound_100": -171.25}
    results_io.atomic_write_json(os.path.join(run_dir, results.DONE_JSON), record)


def test_the_bound_columns_are_named_for_the_setting_not_a_number():
  assert {"valid_bound_n", "test_bound_n"} <= set(results.METRIC_COLUMNS)
  assert {"final_test_bound_n", "test_bound_n_at_best_valid"} <= set(results.SUMMARY_COLUMNS)
  assert not [c for c in results.METRIC_COLUMNS + results.SUMMARY_COLUMNS if "100" in c]
  # Every legacy name maps to a current column, and nothing current is renamed.
  assert set(results.LEGACY_COLUMNS.values()) <= set(results.METRIC_COLUMNS + results.SUMMARY_COLUMNS)
  assert not set(results.LEGACY_COLUMNS) & set(results.METRIC_COLUMNS + results.SUMMARY_COLUMNS)


def test_files_with_the_earlier_names_read_under_the_current_ones(tmp_path):
  path = tmp_path / "metrics.csv"
  path.write_text(LEGACY_HEADER + "\n" + LEGACY_ROWS)
  for frame in (results_io.read_metrics(str(path)), loading.read_metrics_file(str(path))[0]):
    assert "test_bound_100" not in frame.columns
    np.testing.assert_array_equal(frame["test_bound_n"].to_numpy(), [np.nan, -172.5])
    np.testing.assert_array_equal(frame["valid_bound_n"].to_numpy(), [np.nan, -171.25])
  assert loading.read_metrics_file(str(path))[1] == []
  summary = results_io.summarize({"run_id": "r"}, results_io.read_metrics(str(path)), "done")
  assert summary["final_test_bound_n"] == -172.5 and summary["test_bound_n_at_best_valid"] == -172.5


def test_a_resumed_run_rewrites_an_earlier_header_and_keeps_its_rows(tmp_path):
  path = str(tmp_path / "metrics.csv")
  with open(path, "w") as f:
    f.write(LEGACY_HEADER + "\n" + LEGACY_ROWS)
  results_io.append_metrics_row(path, dict(step=2000, wall_time_s=19.0, train_elbo=-150.0, test_bound_n=-140.0))
  frame = pd.read_csv(path)
  assert list(frame.columns) == list(results.METRIC_COLUMNS)
  assert frame["step"].tolist() == [0, 1000, 2000]
  np.testing.assert_array_equal(frame["test_bound_n"].to_numpy(), [np.nan, -172.5, -140.0])


def test_rebuild_upgrades_finished_runs_names_only_and_leaves_running_ones(tmp_path):
  sweep = tmp_path / "sweep"
  done_dir = sweep / "runs" / "mnist-linear-disarm-seed0"
  running_dir = sweep / "runs" / "mnist-linear-disarm-seed1"
  write_legacy_run(str(done_dir))
  write_legacy_run(str(running_dir), done=False)
  rewritten = results_io.upgrade_legacy_names(str(sweep))
  assert sorted(rewritten) == sorted([str(done_dir / "metrics.csv"), str(done_dir / "DONE.json")])
  header, rows = (done_dir / "metrics.csv").read_text().split("\n", 1)
  assert header == LEGACY_HEADER.replace("_bound_100", "_bound_n") and rows == LEGACY_ROWS
  assert json.loads((done_dir / "DONE.json").read_text()) == {
    "run_id": "mnist-linear-disarm-seed0",
    "final_test_bound_n": -172.5,
    "best_valid_bound_n": -171.25,
  }
  assert (running_dir / "metrics.csv").read_text() == LEGACY_HEADER + "\n" + LEGACY_ROWS
  assert results_io.upgrade_legacy_names(str(sweep)) == []  # nothing left to rename


def test_labels_say_the_number_of_bound_samples_the_runs_used():
  cell = pd.DataFrame({"test_bound_n": [-100.0, -99.0], loading.BOUND_SAMPLES: [1000, 1000]})
  labels = dict((column, label) for column, label, _, _ in figures.curve_panels(cell))
  assert labels["test_bound_n"] == "1,000-sample test bound (nats)"
  column = loading.BOUND_SAMPLES
  assert markdown.bound_samples_text(cell.assign(num_bound_samples=[100, 5000]), column) == "100 or 5,000"
  assert markdown.bound_samples_text(cell.drop(columns=[column]), column) == "N"
