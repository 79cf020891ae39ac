"""Tiny real sweeps for the plots tests and for trying the report: the real writer, then (if asked) chosen values.

    python -m tests.sweeps /tmp/demo && python -m plots.make_report --results_dir=/tmp/demo/main

(``build_sweep`` builds every sweep of ``SWEEPS`` side by side in background processes.)

Every sweep here is trained by the suite's own driver code (``training.sweep.run_sweep``
with a ``contracts.settings.Grid``, a few steps on the real data), so its files have the
format the suite writes today. Where a test needs controlled numbers (a claim's verdict
logic), ``set_metric_values`` overwrites chosen values of chosen runs through
``training.results_io`` (``read_metrics``, ``write_metrics``, ``rebuild_summary``): the
columns, the summary and every file stay the writer's.

It lives with the tests because it needs the training stack (TensorFlow), which plots/
never imports.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import subprocess
import sys

from contracts import results
from contracts.settings import Grid, Settings

# A few steps, two evaluations (steps 0 and 20) with cheap bounds: the point is the
# files, not the numbers. Evaluation passes over the whole data set dominate a tiny
# run's time, so the sweeps use Omniglot (the smallest) and two seeds.
TINY = dict(num_steps=20, eval_every=20, bound_every=20, num_bound_samples=2)

# name -> (grid, runs stacked per graph, toy problem arguments or None)
SWEEPS = {
  # The paper's four single-sample estimators on a cell with published RODEO rows
  # (Omniglot, nonlinear: DisARM and RELAX), with the variance basket, the K-sample
  # bound logged, both seeds trained as one stack, and a tiny toy problem.
  "main": (
    Grid(
      ("omniglot",),
      ("nonlinear",),
      ("reinforce_loo", "arm", "disarm", "relax"),
      (0, 1),
      Settings(**TINY, log_bound_k=True, basket=("reinforce_loo", "arm", "disarm"), basket_draws=3),
    ),
    2,
    dict(
      estimators=("arm", "disarm"),
      p0s=(0.49, 0.499),
      seeds=(0, 1),
      num_steps=20,
      num_draws=200,
      sigma_grid=(0.1, 0.5, 0.9),
      log_every=10,
    ),
  ),
  # Estimators of a multi-sample bound at two costs (2 and 4 evaluations of f).
  "multisample": (
    Grid(("mnist",), ("linear",), ("vimco_2", "local_disarm_1", "vimco_4", "local_disarm_2"), (0, 1), Settings(**TINY)),
    2,
    None,
  ),
}

# Set it to a folder to keep the built sweeps between pytest runs (a sweep is rebuilt
# when its folder lacks the built mark or its definition in SWEEPS changed); unset,
# every pytest run builds its own.
REUSE_ENV = "DISARM_PLOTS_TEST_SWEEPS"
_BUILT_MARK = ".plots-testing-built"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (root, name) -> (process, log path) of builds running in the background.
_BUILDS = {}


def sweeps_root(session_tmp) -> str:
  """Where a pytest run builds its sweeps: $DISARM_PLOTS_TEST_SWEEPS, else under that run's temp folder."""
  return os.environ.get(REUSE_ENV) or os.path.join(str(session_tmp), "plots-sweeps")


def _sweep_dir(name: str, root: str) -> str:
  return os.path.join(os.path.abspath(root), name)


def _fingerprint(name: str) -> str:
  """What the built mark records: the sweep's definition, so that a changed definition is rebuilt."""
  grid, max_stack, toy = SWEEPS[name]
  return json.dumps(dict(grid=grid.to_dict(), max_stack=max_stack, toy=toy), sort_keys=True, default=list) + "\n"


def is_built(name: str, root: str) -> bool:
  path = os.path.join(_sweep_dir(name, root), _BUILT_MARK)
  if not os.path.exists(path):
    return False
  with open(path) as f:
    return f.read() == _fingerprint(name)


def build_sweep_here(name: str, root: str) -> str:
  """Trains sweep ``name`` of ``SWEEPS`` into ``<root>/<name>`` in this process (once); returns its path.

  Several pytest processes (``pytest -n 2``) share one root: the build holds a lock on
  ``<root>/<name>.lock`` until this process ends, so a second build of the same sweep waits
  for the first and then finds it built.
  """
  os.makedirs(root, exist_ok=True)
  lock = os.open(os.path.join(os.path.abspath(root), f"{name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
  fcntl.flock(lock, fcntl.LOCK_EX)  # released by the OS when this process exits
  sweep_dir = _sweep_dir(name, root)
  if is_built(name, root):
    return sweep_dir
  from training.sweep import run_sweep

  grid, max_stack, toy = SWEEPS[name]
  if os.path.exists(sweep_dir):
    shutil.rmtree(sweep_dir)
  run_sweep(grid, sweep_dir, stream=sys.stdout, max_stack=max_stack)  # the build log names any crash
  if toy is not None:
    from experiments.toy import run_toy

    run_toy(os.path.join(sweep_dir, results.TOY_DIR), log=None, **toy)
  with open(os.path.join(sweep_dir, _BUILT_MARK), "w") as f:
    f.write(_fingerprint(name))
  return sweep_dir


def start_builds(root: str, names=None) -> None:
  """Starts building the named sweeps (default: all) in background processes, one each.

  Much of a tiny sweep's time is single-threaded (Python, graph tracing, XLA
  compilation): two sweeps built side by side finish sooner than one after the other.
  """
  os.makedirs(root, exist_ok=True)
  for name in names or SWEEPS:
    key = (os.path.abspath(root), name)
    if key in _BUILDS or is_built(name, root):
      continue
    log_path = os.path.join(os.path.abspath(root), f"{name}.build.{os.getpid()}.log")
    with open(log_path, "w") as log:
      env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
      process = subprocess.Popen(
        [sys.executable, "-m", "tests.sweeps", "build", name, os.path.abspath(root)],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
      )
    _BUILDS[key] = (process, log_path)


def build_sweep(name: str, root: str) -> str:
  """The path of sweep ``name`` built under ``root``: built once, in the background beside the other
  sweeps of ``SWEEPS`` (``start_builds``); raises RuntimeError with the build's output if it failed."""
  if is_built(name, root):
    return _sweep_dir(name, root)
  start_builds(root)
  process, log_path = _BUILDS[(os.path.abspath(root), name)]
  process.wait()
  if process.returncode != 0 or not is_built(name, root):
    with open(log_path) as f:
      tail = f.read()[-4000:]
    raise RuntimeError(f"building the tiny sweep {name!r} failed (exit status {process.returncode}):\n{tail}")
  return _sweep_dir(name, root)


@atexit.register
def _stop_unfinished_builds():
  """A pytest run that needed only some sweeps does not leave the others training."""
  for process, _ in _BUILDS.values():
    if process.poll() is None:
      process.terminate()


def copy_sweep(src: str, dst: str) -> str:
  """Copies a sweep's inputs (the files the training driver writes) to ``dst``, without figures or reports."""
  inputs = {results.SUMMARY_CSV, results.SWEEP_JSON, results.SWEEP_LOG, results.SWEEP_NOTES}
  run_files = {results.CONFIG_JSON, results.METRICS_CSV, results.DONE_JSON, results.FAILED_JSON}
  os.makedirs(dst, exist_ok=True)
  for name in sorted(os.listdir(src)):
    path = os.path.join(src, name)
    if name in inputs:
      shutil.copy2(path, os.path.join(dst, name))
    elif name == results.TOY_DIR:
      shutil.copytree(path, os.path.join(dst, name))
    elif name == results.RUNS_DIR:
      for run_id in sorted(os.listdir(path)):
        out = os.path.join(dst, name, run_id)
        os.makedirs(out, exist_ok=True)
        for f in sorted(os.listdir(os.path.join(path, run_id))):
          if f in run_files:
            shutil.copy2(os.path.join(path, run_id, f), os.path.join(out, f))
  return dst


def set_metric_values(sweep_dir: str, changes: dict, rebuild: bool = True):
  """Overwrites metric values of runs through the suite's writer, then rebuilds summary.csv.

  ``changes``: ``{run_id: {column: value}}``. A ``value`` is a number (written into
  every row), or a callable taking the run's metrics DataFrame and returning the new
  column (e.g. ``lambda m: m["basket_var_arm"] * 0.5``), or a dict ``{"last": x}``
  that sets the last evaluation only (what summary.csv reports as ``final_*``).
  ``column`` must be a column the writer already wrote for that run.
  """
  from training import results_io

  for run_id, columns in changes.items():
    path = os.path.join(sweep_dir, results.RUNS_DIR, run_id, results.METRICS_CSV)
    frame = results_io.read_metrics(path)
    for column, value in columns.items():
      if column not in frame.columns:
        raise KeyError(f"{run_id}: metrics.csv has no column {column!r} (columns: {', '.join(frame.columns)})")
      if callable(value):
        frame[column] = value(frame)
      elif isinstance(value, dict):
        frame[column] = frame[column].astype(float)
        frame.loc[frame.index[-1], column] = value["last"]
      else:
        frame[column] = value
    results_io.write_metrics(path, frame)
  if rebuild:
    results_io.rebuild_summary(sweep_dir)


def run_ids(sweep_dir: str, estimator: str) -> list:
  """Run ids of one estimator's runs in a sweep, by seed, as summary.csv lists them."""
  import csv

  with open(os.path.join(sweep_dir, results.SUMMARY_CSV), newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["estimator"] == estimator]
  return [r["run_id"] for r in sorted(rows, key=lambda r: int(r["seed"]))]


if __name__ == "__main__":
  if len(sys.argv) == 4 and sys.argv[1] == "build":
    build_sweep_here(sys.argv[2], sys.argv[3])
  elif len(sys.argv) == 2:
    for sweep in SWEEPS:
      print(build_sweep_here(sweep, sys.argv[1]))
  else:
    sys.exit("usage: python -m tests.sweeps OUT_DIR   (or: build NAME ROOT)")
