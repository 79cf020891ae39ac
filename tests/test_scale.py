"""Sweeps that survive: kills, concurrent drivers, NaNs, hostile input, integrity.

Real-process tests start ``run_benchmarks.py`` as a subprocess on a tiny sweep of
real MNIST (from ../shared/data), with 2-sample bounds to stay cheap; the rest call
the driver's ``main`` in this process, on fake data where the data do not matter.
"""

import dataclasses
import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_benchmarks
from contracts.settings import Grid, RunConfig, Settings
from estimators import ESTIMATORS
from training import integrity, results_io, runner
from training.runner import RunLock

# Real driver processes or whole sweeps: minutes; the fast tier leaves them out.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = [
  "--preset=none",
  "--datasets=mnist",
  "--models=linear",
  "--seeds=0",
  "--batch_size=50",
  "--num_bound_samples=2",
  "--report=false",
  "--threads=1",
]


# ------------------------------------------------------------------------------------ helpers
def fake_splits(num_pixels=784, sizes=(100, 30, 30), seed=0):
  rng = np.random.default_rng(seed)
  train, valid, test = (rng.uniform(0.05, 0.95, size=(n, num_pixels)).astype(np.float32) for n in sizes)
  return types.SimpleNamespace(train=train, valid=valid, test=test, mean_train=train.mean(0), name="fake")


def start_driver(log_path, results_dir, *args):
  """A real driver process; its stdout and stderr go to log_path."""
  env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="3")
  with open(log_path, "w") as log:
    return subprocess.Popen(
      [sys.executable, str(REPO / "run_benchmarks.py"), *TINY, f"--results_dir={results_dir}", *args],
      stdout=log,
      stderr=subprocess.STDOUT,
      cwd=REPO,
      env=env,
    )


def finish(process, log_path, timeout=300):
  process.wait(timeout=timeout)
  return process.returncode, Path(log_path).read_text()


def wait_until(condition, process, log_path, timeout=300, interval=0.02):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    if process.poll() is not None:
      raise AssertionError(
        f"driver exited ({process.returncode}) before the condition held:\n" + Path(log_path).read_text()[-3000:]
      )
    time.sleep(interval)
  process.kill()
  raise AssertionError("timed out:\n" + Path(log_path).read_text()[-3000:])


def kill9(process):
  process.send_signal(signal.SIGKILL)
  process.wait(timeout=30)


def metric_steps(run_dir):
  """Steps of the complete lines of metrics.csv (cheap enough to poll)."""
  lines = results_io.complete_lines(os.path.join(run_dir, "metrics.csv")).splitlines()[1:]
  return [int(line.split(",", 1)[0]) for line in lines]


def checkpoint_step(run_dir):
  """The step of the checkpoint a resume would restore (None if there is none)."""
  try:
    with np.load(Path(run_dir) / "checkpoint" / "state.npz") as state:
      return int(state["step"])
  except (FileNotFoundError, OSError, ValueError, KeyError):  # absent, or mid-rename
    return None


def temp_files(root):
  return [str(p) for p in Path(root).rglob(".tmp-*")]


def problems_of(sweep_dir):
  return {run_id: problems for run_id, (problems, _) in integrity.check_sweep(str(sweep_dir)).items() if problems}


def in_process_driver(*args):
  """run_benchmarks' entry point in this process: (exit code)."""
  flags = run_benchmarks.FLAGS
  flags.unparse_flags()
  flags(["run_benchmarks.py", *args])
  try:
    return run_benchmarks.main_reporting_errors(["run_benchmarks.py"])
  finally:
    flags.unparse_flags()


def fabricate_done_run(sweep_dir, config):
  """A finished run's files, written as the runner writes them (no training)."""
  run_dir = os.path.join(sweep_dir, "runs", config.run_id)
  os.makedirs(run_dir)
  results_io.atomic_write_json(os.path.join(run_dir, "config.json"), runner.config_record(config))
  for step in integrity.expected_steps(config):
    bounds = step in integrity.bound_steps(config)
    results_io.append_metrics_row(
      os.path.join(run_dir, "metrics.csv"),
      dict(
        step=step,
        wall_time_s=0.1 * step,
        steps_per_sec=100.0 if step else float("nan"),
        train_elbo=-200.0 + step,
        grad_variance=0.5 if step else float("nan"),
        valid_bound_n=-190.0 if bounds else float("nan"),
        test_bound_n=-191.0 if bounds else float("nan"),
      ),
    )
  metrics = results_io.read_metrics(os.path.join(run_dir, "metrics.csv"))
  results_io.atomic_write_json(
    os.path.join(run_dir, "DONE.json"), results_io.summarize(config.to_dict(), metrics, "done")
  )
  return run_dir


def tree_digest(folder):
  digest = {}
  for path in sorted(Path(folder).rglob("*")):
    if path.is_file():
      digest[str(path.relative_to(folder))] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
  return digest


@pytest.fixture
def fake_data(monkeypatch):
  splits = fake_splits(num_pixels=784, sizes=(100, 30, 30))
  monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None, **kwargs: splits)
  return splits


FAKE_GRID = [
  "--preset=none",
  "--datasets=mnist",
  "--models=linear",
  "--seeds=0",
  "--num_steps=20",
  "--eval_every=10",
  "--batch_size=10",
  "--num_bound_samples=2",
  "--report=false",
]


# ---------------------------------------------------------------------------- crash safety
def test_sigkill_mid_training_and_mid_write_then_rerun_completes_each_step_once(tmp_path):
  sweep = tmp_path / "results" / "crash"
  run_dir = str(sweep / "runs" / "mnist-linear-disarm-seed0")
  args = ["--estimators=disarm", "--num_steps=800", "--eval_every=200", "--bound_every=800", "--sweep_name=crash"]

  # 1. Driver killed mid-training: the checkpoint of step 200 is on disk, training goes on.
  first = start_driver(tmp_path / "1.log", tmp_path / "results", *args)
  wait_until(lambda: checkpoint_step(run_dir) == 200, first, tmp_path / "1.log")
  kill9(first)
  assert metric_steps(run_dir)[:2] == [0, 200]
  assert not os.path.exists(os.path.join(run_dir, "DONE.json"))

  # 2. Driver killed mid-write: right after the row of step 400 is appended (its
  #    checkpoint follows the row, so it is usually not saved yet).
  second = start_driver(tmp_path / "2.log", tmp_path / "results", *args)
  wait_until(  # polled often: the kill should land between the row and the checkpoint after it
    lambda: "resuming" in (tmp_path / "2.log").read_text() and 400 in metric_steps(run_dir),
    second,
    tmp_path / "2.log",
    interval=0.005,
  )
  kill9(second)
  killed_at = checkpoint_step(run_dir)
  assert killed_at in (200, 400)
  log2 = (tmp_path / "2.log").read_text()
  assert "resuming from its checkpoint at step 200" in log2
  assert "step 200/800" not in log2  # it did not redo the block before its checkpoint
  # What a kill inside the next append's write() leaves: a torn last line.
  with open(os.path.join(run_dir, "metrics.csv"), "a") as f:
    f.write("600,12.5,3")

  # 3. A rerun with a worker pool resumes from the checkpoint on disk; its worker is
  #    SIGKILLed mid-training, the driver retries the run in a new worker, which resumes again.
  third = start_driver(tmp_path / "3.log", tmp_path / "results", *args, "--workers=2")
  wait_until(lambda: (checkpoint_step(run_dir) or 0) >= 600, third, tmp_path / "3.log")
  worker = json.loads(Path(run_dir, "run.lock").read_text())["pid"]
  assert worker != third.pid
  os.kill(worker, signal.SIGKILL)
  worker_killed_at = checkpoint_step(run_dir)
  code, log3 = finish(third, tmp_path / "3.log")
  assert code == 0, log3
  assert f"resuming from its checkpoint at step {killed_at}" in log3
  assert "worker process died (exit code -9); retrying the run (1/2)" in log3
  assert f"resuming from its checkpoint at step {worker_killed_at}" in log3
  assert "starting at step 0" not in log3 and "step 200/800" not in log3
  assert "step 800/800" in log3

  frame = pd.read_csv(os.path.join(run_dir, "metrics.csv"))  # parses: no torn or half-written line
  assert list(frame["step"]) == [0, 200, 400, 600, 800]  # every evaluation exactly once
  assert frame["test_bound_n"].notna().tolist() == [False] * 4 + [True]
  assert json.loads(Path(run_dir, "DONE.json").read_text())["final_step"] == 800
  assert temp_files(sweep) == []
  assert not os.path.exists(os.path.join(run_dir, "run.lock"))
  summary = pd.read_csv(sweep / "summary.csv")
  assert summary.set_index("run_id").loc["mnist-linear-disarm-seed0", "status"] == "done"
  assert problems_of(sweep) == {}


def test_torn_metrics_line_is_ignored_and_cut_on_append(tmp_path):
  path = str(tmp_path / "metrics.csv")
  results_io.append_metrics_row(path, dict(step=0, wall_time_s=1.0, train_elbo=-100.0))
  with open(path, "a") as f:
    f.write("10,2.0,")  # a kill inside write()
  assert list(results_io.read_metrics(path)["step"]) == [0]
  results_io.append_metrics_row(path, dict(step=10, wall_time_s=2.0, train_elbo=-90.0))
  assert list(pd.read_csv(path)["step"]) == [0, 10]


# ----------------------------------------------------------------------------- concurrency
def test_two_real_drivers_share_a_sweep_without_training_a_run_twice(tmp_path):
  sweep = tmp_path / "results" / "shared"
  runs = sweep / "runs"
  args = ["--estimators=disarm,reinforce_loo,arm", "--num_steps=100", "--eval_every=100", "--sweep_name=shared"]
  # A dead holder: a real process locks reinforce_loo's run and is SIGKILLed; its lock file stays.
  dead_dir = runs / "mnist-linear-reinforce_loo-seed0"
  dead_dir.mkdir(parents=True)
  holder = subprocess.Popen(
    [
      sys.executable,
      "-c",
      (
        "import fcntl, json, os, sys, time\n"
        f"fd = os.open({str(dead_dir / 'run.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "os.write(fd, json.dumps(dict(host='h', pid=os.getpid())).encode())\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
      ),
    ],
    stdout=subprocess.PIPE,
    text=True,
  )
  assert holder.stdout.readline().strip() == "locked"
  assert not RunLock(str(dead_dir)).acquire()  # held while its holder lives
  kill9(holder)
  assert (dead_dir / "run.lock").exists()
  # A live holder (this test) keeps arm's run for the whole time: both drivers must leave it.
  live_dir = runs / "mnist-linear-arm-seed0"
  live_dir.mkdir(parents=True)
  live = RunLock(str(live_dir))
  assert live.acquire()
  try:
    a = start_driver(tmp_path / "a.log", tmp_path / "results", *args)
    b = start_driver(tmp_path / "b.log", tmp_path / "results", *args)
    (code_a, log_a), (code_b, log_b) = finish(a, tmp_path / "a.log"), finish(b, tmp_path / "b.log")
  finally:
    live.release()
  assert code_a == 0 and code_b == 0, log_a + log_b
  both = log_a + log_b
  for run_id in ("mnist-linear-disarm-seed0", "mnist-linear-reinforce_loo-seed0"):
    assert both.count(f"{run_id}: starting at step 0") == 1, both  # trained by exactly one driver
    assert f"{run_id}: resuming" not in both
    assert metric_steps(str(runs / run_id)) == [0, 100]
    assert (runs / run_id / "DONE.json").exists()
  holder_text = f"locked by a live process (pid {os.getpid()} on host {socket.gethostname()})"
  assert holder_text in log_a and holder_text in log_b, both
  assert not (live_dir / "metrics.csv").exists()
  assert temp_files(sweep) == []
  assert problems_of(sweep) == {}
  summary = pd.read_csv(sweep / "summary.csv")
  assert sorted(summary["run_id"]) == ["mnist-linear-disarm-seed0", "mnist-linear-reinforce_loo-seed0"]


def test_lock_is_exclusive_and_released():
  import tempfile

  with tempfile.TemporaryDirectory() as d:
    first, second = RunLock(d), RunLock(d)
    assert first.acquire() and not second.acquire()
    first.release()
    assert not os.path.exists(os.path.join(d, "run.lock"))
    assert second.acquire()
    second.release()


# ----------------------------------------------------------------------- numerical failure
def _nan_disarm(f, logits, noise, state=None, context=None):
  out = ESTIMATORS["disarm"].fn(f, logits, noise, state=state, context=context)
  return out._replace(grad=out.grad * float("nan"))


def test_nan_stops_that_run_only_and_is_retried_only_when_asked(tmp_path, fake_data, monkeypatch, capsys):
  monkeypatch.setitem(
    ESTIMATORS, "nan_test", dataclasses.replace(ESTIMATORS["disarm"], name="nan_test", fn=_nan_disarm)
  )
  args = FAKE_GRID + ["--estimators=nan_test,disarm", f"--results_dir={tmp_path}", "--sweep_name=nan"]
  # The sweep finishes the other runs, then exits with EXIT_RUNS_FAILED (3) naming the failed run.
  assert in_process_driver(*args) == run_benchmarks.EXIT_RUNS_FAILED == 3
  assert "mnist-linear-nan_test-seed0" in capsys.readouterr().err
  summary = pd.read_csv(tmp_path / "nan" / "summary.csv").set_index("run_id")
  assert summary.loc["mnist-linear-nan_test-seed0", "status"] == "failed"
  assert "non-finite" in summary.loc["mnist-linear-nan_test-seed0", "reason"]
  assert summary.loc["mnist-linear-disarm-seed0", "status"] == "done"  # the sweep went on
  failed = tmp_path / "nan" / "runs" / "mnist-linear-nan_test-seed0" / "FAILED.json"
  before = failed.stat().st_mtime_ns
  capsys.readouterr()

  assert in_process_driver(*args) == run_benchmarks.EXIT_RUNS_FAILED  # still failed: still reported
  out = capsys.readouterr().out
  assert "mnist-linear-nan_test-seed0: already failed" in out and "retrying" not in out
  assert failed.stat().st_mtime_ns == before

  assert in_process_driver(*args, "--retry_failed") == run_benchmarks.EXIT_RUNS_FAILED  # fails again
  out = capsys.readouterr().out
  assert "mnist-linear-nan_test-seed0: retrying after a numerical failure" in out
  assert "mnist-linear-disarm-seed0: already done" in out
  assert (
    pd.read_csv(tmp_path / "nan" / "summary.csv").set_index("run_id").loc["mnist-linear-nan_test-seed0", "status"]
    == "failed"
  )


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
  "flag,value,valid",
  [("datasets", "mnsit", "fashion_mnist"), ("models", "deep", "nonlinear"), ("estimators", "disarn", "reinforce_loo")],
)
def test_driver_unknown_names_list_valid_ones(tmp_path, capsys, flag, value, valid):
  code = in_process_driver(*FAKE_GRID, "--estimators=disarm", f"--{flag}={value}", f"--results_dir={tmp_path}")
  err = capsys.readouterr().err
  assert code == 2 and value in err and valid in err and "Traceback" not in err
  assert not (tmp_path / "custom").exists()  # rejected before anything started


@pytest.mark.parametrize(
  "flag,value,name",
  [
    ("num_steps", "0", "num_steps"),
    ("num_steps", "-5", "num_steps"),
    ("batch_size", "0", "batch_size"),
    ("seeds", "-1", "seeds"),
    ("num_bound_samples", "0", "num_bound_samples"),
    ("eval_every", "-10", "eval_every"),
    ("estimators", "vimco_1", "vimco needs a whole number of samples >= 2"),
    ("estimators", "reinforce_loo_0", "samples >= 2"),
    ("estimators", "local_disarm_0", "local_disarm needs a whole number"),
  ],
)
def test_driver_impossible_numbers_rejected_before_anything_starts(tmp_path, capsys, flag, value, name):
  code = in_process_driver(*FAKE_GRID, "--estimators=disarm", f"--{flag}={value}", f"--results_dir={tmp_path}")
  err = capsys.readouterr().err
  assert code == 2 and name in err and "Traceback" not in err
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("flag", ["--workers=0", "--workers=-2", "--threads=-1", "--max_retries=-1"])
def test_driver_rejects_bad_executor_numbers_in_a_real_process(tmp_path, flag):
  # Flag bounds are checked while parsing, before TensorFlow is even imported.
  result = subprocess.run(
    [
      sys.executable,
      str(REPO / "run_benchmarks.py"),
      *TINY,
      "--estimators=disarm",
      "--num_steps=10",
      f"--results_dir={tmp_path}",
      flag,
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=120,
  )
  assert result.returncode != 0
  assert flag.split("=")[0].lstrip("-") in result.stderr and "Traceback" not in result.stderr
  assert list(tmp_path.iterdir()) == []


def test_driver_unknown_estimator_in_a_real_process_gives_one_line(tmp_path):
  result = subprocess.run(
    [
      sys.executable,
      str(REPO / "run_benchmarks.py"),
      *TINY,
      "--estimators=disarn",
      "--num_steps=10",
      f"--results_dir={tmp_path}",
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    timeout=300,
    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
  )
  assert result.returncode == 2
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "disarn" in errors[0] and "reinforce_loo" in errors[0], result.stderr
  assert "Traceback" not in result.stderr
  assert list(tmp_path.iterdir()) == []


def test_unwritable_results_dir(tmp_path, capsys):
  if os.geteuid() == 0:  # root writes anywhere on a normal filesystem; sysfs refuses new files
    results_dir, sweep_name = "/sys", "kernel"
  else:
    (tmp_path / "ro").mkdir()
    os.chmod(tmp_path / "ro", 0o500)
    results_dir, sweep_name = str(tmp_path), "ro"
  code = in_process_driver(
    *FAKE_GRID, "--estimators=disarm", f"--results_dir={results_dir}", f"--sweep_name={sweep_name}"
  )
  err = capsys.readouterr().err
  assert code == 2 and "not writable" in err and "--results_dir" in err and "Traceback" not in err

  (tmp_path / "a_file").write_text("")
  code = in_process_driver(*FAKE_GRID, "--estimators=disarm", f"--results_dir={tmp_path / 'a_file'}")
  err = capsys.readouterr().err
  assert code == 2 and "cannot create results folder" in err and "--results_dir" in err


def _sweep_with_a_finished_run(tmp_path, name):
  sweep = tmp_path / name
  config = RunConfig(
    "mnist",
    "linear",
    "disarm",
    0,
    Settings(num_steps=20, batch_size=10, eval_every=10, bound_every=1000, num_bound_samples=2),
  )  # FAKE_GRID's
  done_dir = fabricate_done_run(str(sweep), config)
  return sweep, done_dir, tree_digest(done_dir)


def test_full_disk_stops_with_a_clear_message_and_keeps_finished_runs(tmp_path, fake_data, monkeypatch, capsys):
  sweep, done_dir, digest = _sweep_with_a_finished_run(tmp_path, "full")

  def no_space(path, row):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

  monkeypatch.setattr(results_io, "append_metrics_row", no_space)
  code = in_process_driver(*FAKE_GRID, "--estimators=disarm,arm", f"--results_dir={tmp_path}", "--sweep_name=full")
  err = capsys.readouterr().err
  assert code == 2, err
  assert "no space left" in err and "metrics.csv" in err and "--results_dir" in err and "Traceback" not in err
  assert tree_digest(done_dir) == digest
  assert temp_files(sweep) == []


def _mount_tmpfs(path, size):
  path.mkdir()
  try:
    subprocess.run(
      ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True, capture_output=True, timeout=30
    )
  except (OSError, subprocess.SubprocessError):
    return False
  return True


def test_really_full_disk_on_a_tiny_tmpfs(tmp_path, fake_data, capsys):
  mount = tmp_path / "tiny"
  if not _mount_tmpfs(mount, "300k"):
    pytest.skip("cannot mount a tmpfs here (needs root); the simulated full-disk test covers the logic")
  try:
    sweep, done_dir, digest = _sweep_with_a_finished_run(mount, "full")
    # The arm run's config and first rows fit; its checkpoint (several MB) does not.
    code = in_process_driver(*FAKE_GRID, "--estimators=disarm,arm", f"--results_dir={mount}", "--sweep_name=full")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "no space left" in err.lower() and "Traceback" not in err
    assert tree_digest(done_dir) == digest
    assert problems_of(sweep) == {}
  finally:
    subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def _write_idx(path, header, payload=b""):
  import gzip
  import struct

  with gzip.open(path, "wb") as f:
    f.write(struct.pack(">iiii", *header) + payload)


@pytest.mark.parametrize("problem", ["no_dir", "missing", "truncated", "wrong_shape"])
def test_bad_data_files_stop_with_one_message_and_keep_finished_runs(tmp_path, capsys, problem):
  data = tmp_path / "data"
  mnist = data / "mnist"
  train, test = mnist / "train-images-idx3-ubyte.gz", mnist / "t10k-images-idx3-ubyte.gz"
  if problem != "no_dir":
    mnist.mkdir(parents=True)
    _write_idx(test, (2051, 10000, 28, 28))
  if problem == "truncated":
    _write_idx(train, (2051, 60000, 28, 28), bytes(5000))
    train.write_bytes(train.read_bytes()[:40])
  elif problem == "wrong_shape":
    _write_idx(train, (2051, 60000, 27, 28))
  sweep, done_dir, digest = _sweep_with_a_finished_run(tmp_path / "results", "sweep")
  code = in_process_driver(
    *FAKE_GRID,
    "--estimators=disarm,arm",
    f"--results_dir={tmp_path / 'results'}",
    "--sweep_name=sweep",
    f"--data_dir={data}",
  )
  err = capsys.readouterr().err
  assert code == 2, err
  errors = [line for line in err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "Traceback" not in err, err
  expected = {"no_dir": str(data), "missing": "missing", "truncated": "truncated", "wrong_shape": "27x28"}
  assert expected[problem] in err
  assert "--data_dir" in err and (problem == "no_dir" or "train-images-idx3-ubyte.gz" in err)
  assert tree_digest(done_dir) == digest


def test_ray_executor_without_ray_says_how_to_install_it(tmp_path, capsys, monkeypatch):
  monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
  code = in_process_driver(*FAKE_GRID, "--estimators=disarm", f"--results_dir={tmp_path}", "--executor=ray")
  err = capsys.readouterr().err
  assert code == 2 and "pip install ray==" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- integrity
def test_check_reports_files_that_disagree_with_their_config(tmp_path, capsys):
  sweep = tmp_path / "s"
  base = RunConfig(
    "mnist",
    "linear",
    "disarm",
    0,
    Settings(num_steps=20, batch_size=10, eval_every=10, bound_every=10, num_bound_samples=2),
  )
  good = fabricate_done_run(str(sweep), base)
  results_io.atomic_write_json(
    str(sweep / "sweep.json"), Grid(("mnist",), ("linear",), ("disarm",), (0,), base.settings).to_dict()
  )
  results_io.rebuild_summary(str(sweep))
  assert in_process_driver("--check", f"--results_dir={tmp_path}", "--sweep_name=s") == 0
  assert "no problems" in capsys.readouterr().out

  def run(seed):
    return fabricate_done_run(str(sweep), dataclasses.replace(base, seed=seed))

  def rewrite_metrics(run_dir, edit):
    path = os.path.join(run_dir, "metrics.csv")
    results_io.atomic_write_text(path, edit(results_io.read_metrics(path)).to_csv(index=False))

  dup = run(1)
  rewrite_metrics(dup, lambda m: pd.concat([m, m.iloc[[1]]]).sort_values("step"))
  off = run(2)
  rewrite_metrics(off, lambda m: m.assign(step=[0, 10, 15]))
  beyond = run(3)
  rewrite_metrics(beyond, lambda m: m.assign(step=[0, 10, 30]))
  short = run(4)
  rewrite_metrics(short, lambda m: m.iloc[:2])
  done = json.loads(Path(short, "DONE.json").read_text())
  results_io.atomic_write_json(os.path.join(short, "DONE.json"), dict(done, final_step=10))
  renamed = run(5)
  os.rename(renamed, os.path.join(sweep, "runs", "mnist-linear-disarm-seed9"))
  nocol = run(6)
  rewrite_metrics(nocol, lambda m: m.drop(columns=["grad_variance"]))
  # A run whose settings are not the sweep's (here: which samples train the decoder).
  fabricate_done_run(str(sweep), dataclasses.replace(base, seed=8).with_settings(decoder_sample="estimator"))
  results_io.rebuild_summary(str(sweep))

  code = in_process_driver("--check", f"--results_dir={tmp_path}", "--sweep_name=s")
  out = capsys.readouterr().out
  assert code == 1
  lines = out.splitlines()

  def reported(run_id, text):
    return any(line.startswith(f"PROBLEM {run_id}:") and text in line for line in lines)

  assert reported("mnist-linear-disarm-seed1", "repeats steps [10]")
  assert reported("mnist-linear-disarm-seed2", "off the evaluation cadence")
  assert reported("mnist-linear-disarm-seed3", "beyond num_steps 20")
  assert reported("mnist-linear-disarm-seed4", "final_step 10")
  assert reported("mnist-linear-disarm-seed4", "lacks evaluation steps [20]")
  assert reported("mnist-linear-disarm-seed9", "not the folder's 'mnist-linear-disarm-seed9'")
  assert reported("mnist-linear-disarm-seed6", "lacks columns ['grad_variance']")
  assert reported("mnist-linear-disarm-seed8", "disagrees with sweep.json (decoder_sample")
  assert not any(os.path.basename(good) in line for line in lines)

  os.unlink(sweep / "summary.csv")
  fabricate_done_run(str(sweep), dataclasses.replace(base, seed=7))
  results_io.atomic_write_text(str(sweep / "summary.csv"), "run_id,status\nmnist-linear-disarm-seed0,done\n")
  assert in_process_driver("--check", f"--results_dir={tmp_path}", "--sweep_name=s") == 1
  assert "rebuild it with --rebuild_summary" in capsys.readouterr().out
  assert in_process_driver("--rebuild_summary", "--report=false", f"--results_dir={tmp_path}", "--sweep_name=s") == 0
  capsys.readouterr()
  assert in_process_driver("--check", f"--results_dir={tmp_path}", "--sweep_name=s") == 1
  assert "rebuild it with --rebuild_summary" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------ Ray
def _ray_available():
  try:
    import ray  # noqa: F401
  except ImportError:
    return False
  return True


@pytest.mark.skipif(
  not _ray_available(),
  reason="Ray is not installed (pip install -r requirements.txt "
  "installs it); --executor=ray then fails with an install hint, tested above",
)
def test_ray_executor_runs_a_tiny_sweep_through_a_local_instance(tmp_path):
  args = [
    "--estimators=disarm,arm",
    "--num_steps=50",
    "--eval_every=50",
    "--sweep_name=ray",
    "--executor=ray",
    "--ray_cpus_per_task=1",
  ]
  code, log = finish(start_driver(tmp_path / "ray.log", tmp_path / "results", *args), tmp_path / "ray.log")
  assert code == 0, log
  assert "Ray tasks on a local Ray instance" in log
  sweep = tmp_path / "results" / "ray"
  for run_id in ("mnist-linear-disarm-seed0", "mnist-linear-arm-seed0"):
    assert f"{run_id} step 50/50" in log  # progress from the Ray workers, printed by the driver
    assert metric_steps(str(sweep / "runs" / run_id)) == [0, 50]
    assert (sweep / "runs" / run_id / "DONE.json").exists()
    assert sorted(os.listdir(sweep / "runs" / run_id)) == ["DONE.json", "checkpoint", "config.json", "metrics.csv"]
  summary = pd.read_csv(sweep / "summary.csv")
  assert sorted(summary["status"]) == ["done", "done"]
  assert problems_of(sweep) == {}
