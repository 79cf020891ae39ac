"""Results a reader can trust: refused mismatched reruns, damaged runs, early refusals, exit codes.

Each test drives the real driver (``run_benchmarks.py``) in a subprocess, as a user
would, on a tiny sweep of the bundled MNIST files (a few seconds per run), and checks
what is on disk afterwards.
"""

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contracts import results

# Real driver processes or whole sweeps: minutes; the fast tier leaves them out.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = (
  "--preset=none",
  "--datasets=mnist",
  "--models=linear",
  "--seeds=0",
  "--batch_size=10",
  "--eval_every=10",
  "--bound_every=20",
  "--num_bound_samples=2",
  "--toy=none",
  "--report=false",
)


def driver(results_dir, *args, timeout=600, env=None):
  """Runs the driver to completion: (exit code, combined output)."""
  full_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1", **(env or {}))
  done = subprocess.run(
    [sys.executable, str(REPO / "run_benchmarks.py"), *TINY, f"--results_dir={results_dir}", "--sweep_name=s", *args],
    cwd=REPO,
    env=full_env,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  return done.returncode, done.stdout + done.stderr


def run_dir(results_dir, run_id):
  return Path(results_dir) / "s" / results.RUNS_DIR / run_id


# ------------------------------------------------------------------ sweeps belong to one grid


def test_a_rerun_with_another_grid_is_refused_before_anything_is_written(tmp_path):
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=20")
  assert code == 0, out
  sweep_json = tmp_path / "s" / results.SWEEP_JSON
  before = sweep_json.read_text()
  metrics = run_dir(tmp_path, "mnist-linear-disarm-seed0") / results.METRICS_CSV
  metrics_before = metrics.read_text()
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=30")
  assert code == 2, out
  assert "num_steps: sweep 20, now 30" in out and "--sweep_name" in out and "--extend" in out
  assert "already done" not in out
  assert sweep_json.read_text() == before and metrics.read_text() == metrics_before
  # A setting that is not a grid length is refused even with --extend.
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=20", "--decoder_sample=estimator", "--extend")
  assert code == 2 and "cannot change decoder_sample" in out, out
  # An impossible value is refused by the flag checks, also without touching sweep.json.
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=0")
  assert code != 0 and "num_steps" in out
  assert sweep_json.read_text() == before


def test_extend_adds_cells_and_lengthens_finished_runs(tmp_path):
  assert driver(tmp_path, "--estimators=disarm", "--num_steps=20")[0] == 0
  code, out = driver(tmp_path, "--estimators=disarm,arm", "--num_steps=30", "--extend")
  assert code == 0, out
  grid = json.loads((tmp_path / "s" / results.SWEEP_JSON).read_text())
  assert grid["estimators"] == ["disarm", "arm"] and grid["settings"]["num_steps"] == 30
  for run_id in ("mnist-linear-disarm-seed0", "mnist-linear-arm-seed0"):
    steps = list(pd.read_csv(run_dir(tmp_path, run_id) / results.METRICS_CSV)["step"])
    assert steps == [0, 10, 20, 30], (run_id, steps)
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=30", "--extend")
  assert code == 2 and "never drops" in out, out
  assert driver(tmp_path, "--check")[0] == 0


# ------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize("seed", ["4294967296", "2147483648", "1.5", "-1"])
def test_seeds_the_streams_cannot_tell_apart_are_refused(tmp_path, seed):
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=20", f"--seeds={seed}")
  assert code != 0 and "seed" in out.lower(), out
  assert not (tmp_path / "s" / results.RUNS_DIR).exists()


# ----------------------------------------------------------------------- damaged runs


def test_a_damaged_checkpoint_is_quarantined_and_the_other_runs_go_on(tmp_path):
  # Two seeds of one cell train stacked; kill nothing, but damage one run's files between sweeps.
  args = ("--estimators=disarm", "--num_steps=40", "--bound_every=40", "--seeds=0,1")
  assert driver(tmp_path, *args, "--num_steps=20", "--sweep_name=s")[0] == 0
  # Make both runs unfinished again (as if killed after step 20), then damage one checkpoint.
  for seed in (0, 1):
    folder = run_dir(tmp_path, f"mnist-linear-disarm-seed{seed}")
    os.unlink(folder / results.DONE_JSON)
    record = json.loads((folder / results.CONFIG_JSON).read_text())
    record["num_steps"] = 40
    record["bound_every"] = 40
    (folder / results.CONFIG_JSON).write_text(json.dumps(record))
  sweep = json.loads((tmp_path / "s" / results.SWEEP_JSON).read_text())
  sweep["settings"].update(num_steps=40, bound_every=40)
  (tmp_path / "s" / results.SWEEP_JSON).write_text(json.dumps(sweep))
  damaged = run_dir(tmp_path, "mnist-linear-disarm-seed1") / results.CHECKPOINT_DIR / results.CHECKPOINT_FILE
  damaged.write_bytes(np.random.default_rng(0).bytes(2000))
  code, out = driver(tmp_path, *args)
  check_code, check_out = driver(tmp_path, "--check")
  assert check_code == 1 and "state.npz is unreadable" in check_out, check_out
  assert code == 3, out  # the sweep finished, one run failed
  assert "Traceback" not in out and str(damaged) in out
  failed = json.loads((run_dir(tmp_path, "mnist-linear-disarm-seed1") / results.FAILED_JSON).read_text())
  assert str(damaged) in failed["reason"] and "--restart_damaged" in failed["reason"]
  healthy = pd.read_csv(run_dir(tmp_path, "mnist-linear-disarm-seed0") / results.METRICS_CSV)
  assert list(healthy["step"]) == [0, 10, 20, 30, 40]
  # A plain rerun does not pretend to resume it; --restart_damaged trains it from step 0.
  code, out = driver(tmp_path, *args)
  assert code == 3 and "already failed" in out, out
  code, out = driver(tmp_path, *args, "--restart_damaged")
  assert code == 0, out
  restarted = pd.read_csv(run_dir(tmp_path, "mnist-linear-disarm-seed1") / results.METRICS_CSV)
  assert list(restarted["step"]) == [0, 10, 20, 30, 40]
  assert driver(tmp_path, "--check")[0] == 0


def test_a_damaged_config_json_is_named_and_quarantined(tmp_path):
  args = ("--estimators=disarm,arm", "--num_steps=20")
  assert driver(tmp_path, *args)[0] == 0
  folder = run_dir(tmp_path, "mnist-linear-arm-seed0")
  os.unlink(folder / results.DONE_JSON)
  (folder / results.CONFIG_JSON).write_text("{not json")
  code, out = driver(tmp_path, *args)
  assert code == 3 and "Traceback" not in out, out
  assert str(folder / results.CONFIG_JSON) in json.loads((folder / results.FAILED_JSON).read_text())["reason"]


# ----------------------------------------------------------------- refusals up front


def test_a_batch_larger_than_the_training_split_is_refused_up_front(tmp_path):
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=20", "--batch_size=50001")
  assert code != 0 and "exceeds the 50000 training images" in out, out
  assert "Traceback" not in out
  assert not (tmp_path / "s" / results.RUNS_DIR).exists()


def test_a_data_folder_without_the_dataset_fails_at_once(tmp_path):
  data = tmp_path / "data"
  (data / "fashion_mnist").mkdir(parents=True)  # a data folder, but no MNIST in it
  start = time.time()
  code, out = driver(tmp_path, "--estimators=disarm", "--num_steps=20", f"--data_dir={data}")
  took = time.time() - start
  assert code == 2 and str(data / "mnist") in out and "--allow_download" in out, out
  assert took < 60, f"{took:.0f} s: the loader waited on the network"


# ---------------------------------------------------------- failed runs, file modes, plugins


def test_the_driver_exits_3_when_a_run_failed_after_finishing_the_others(tmp_path):
  env = {"PYTHONPATH": str(REPO)}
  code, out = driver(
    tmp_path, "--estimators=nan_gradient,disarm", "--num_steps=20", "--estimator_modules=tests.nan_estimator", env=env
  )
  assert code == 3, out
  assert "1 run(s) failed" in out and "mnist-linear-nan_gradient-seed0" in out
  summary = pd.read_csv(tmp_path / "s" / results.SUMMARY_CSV).set_index("run_id")
  assert summary.loc["mnist-linear-disarm-seed0", "status"] == "done"
  assert summary.loc["mnist-linear-nan_gradient-seed0", "status"] == "failed"


def test_result_files_have_the_umasks_mode(tmp_path):
  from training import results_io

  old = os.umask(0o022)
  try:
    path = tmp_path / "x.json"
    results_io.atomic_write_json(str(path), {"a": 1})
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    os.umask(0o002)
    results_io.atomic_write_text(str(path), "b")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o664
  finally:
    os.umask(old)


def test_an_estimator_from_one_file_trains_through_the_driver_with_its_own_scalar(tmp_path):
  """The README's stateful example: one file, registered at run time, no other file touched."""
  code, out = driver(
    tmp_path, "--estimators=learned_baseline_loo", "--num_steps=20", "--estimator_modules=tests.toy_stateful_estimator"
  )
  assert code == 0, out
  metrics = pd.read_csv(run_dir(tmp_path, "mnist-linear-learned_baseline_loo-seed0") / results.METRICS_CSV)
  assert metrics["learned_baseline_loo_c"].iloc[0] == 0.0
  assert metrics["learned_baseline_loo_c"].iloc[-1] != 0.0  # its state was trained
  assert metrics["grad_variance"].iloc[-1] > 0
  record = json.loads((run_dir(tmp_path, "mnist-linear-learned_baseline_loo-seed0") / results.CONFIG_JSON).read_text())
  assert record[results.ESTIMATOR_INFO_KEY]["trainable"] is True
