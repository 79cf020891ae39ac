"""Sweeps: a grid of datasets x models x estimators x seeds, run by an executor.

Runs are ordered seed-major (every cell's seed 0, then every cell's seed 1, ...)
so that a sweep stopped early still covers every cell; with stacking
(``max_stack`` > 1) up to that many seeds of one cell train together in one
graph, and the stacks follow the same round-robin order. Finished runs are
skipped, interrupted ones resume from their checkpoint, and a run locked by a
live process (another driver on the same sweep) is left to it. The executor
(``training.executors``) decides where runs train: in this process, in local
worker processes, or on Ray; progress from all of them is printed here.
"""

import dataclasses
import math
import os
import sys
import time

from contracts import results
from contracts.settings import Grid
from training import results_io
from training.executors import InProcessExecutor, Task
from training.presets import PRESETS  # noqa: F401 - the driver's presets live beside the sweep
from training.validation import canonical_grid, validate_grid


def format_duration(seconds):
  if seconds != seconds or seconds == float("inf"):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class SweepError(RuntimeError):
  """The sweep stopped (or finished with errors); the message says why and what to do."""


class Progress:
  """Prints the sweep's progress: one line per evaluation of any run, wherever it trains."""

  def __init__(self, total_runs, total_steps, stream=sys.stdout):
    self.total_runs, self.total_steps = total_runs, total_steps
    self.done_runs, self.done_steps = 0, 0
    self.active = {}  # run_id -> last reported step
    self.first_step = {}  # run_id -> the step this driver first saw it at
    self.last_step = {}  # run_id -> the last step this driver saw
    self.start = time.time()
    self.stream = stream

  def _print(self, text):
    print(text, file=self.stream, flush=True)

  def finish(self, config, status):
    self.done_runs += 1
    self.done_steps += config.num_steps
    self.active.pop(config.run_id, None)
    self._print(f"[{self.done_runs}/{self.total_runs}] {config.run_id}: {status}")

  def skip(self, config, status):
    self.total_steps -= config.num_steps
    self.total_runs -= 1
    self.active.pop(config.run_id, None)
    self._print(f"[skip] {config.run_id}: {status}")

  def event(self, event):
    if event["kind"] == "log":
      self._print(f"[log] {event['text']}")
    elif event["kind"] == "progress":
      self.active[event["run_id"]] = event["step"]
      self.first_step.setdefault(event["run_id"], event["step"])
      self.last_step[event["run_id"]] = event["step"]
      if event["steps_per_sec"] is not None:  # None: where a resumed run starts (its [log] line says so)
        self.line(event["run_id"], event["step"], event["num_steps"], event["steps_per_sec"])

  def trained_steps(self):
    """Member-steps this driver trained (each run from the first step it reported to the last)."""
    return sum(self.last_step[r] - self.first_step[r] for r in self.last_step)

  def line(self, run_id, step, num_steps, steps_per_sec):
    elapsed = time.time() - self.start
    steps_so_far = self.done_steps + sum(self.active.values())
    rate = steps_so_far / elapsed if elapsed > 0 and steps_so_far else float("nan")
    eta = (self.total_steps - steps_so_far) / rate if rate == rate and rate > 0 else float("nan")
    running = f", {len(self.active)} running" if len(self.active) > 1 else ""
    run_eta = (num_steps - step) / steps_per_sec if steps_per_sec == steps_per_sec and steps_per_sec > 0 else math.nan
    self._print(
      f"[{self.done_runs}/{self.total_runs} done{running}] {run_id} step {step}/{num_steps} "
      f"| {steps_per_sec:.0f} train steps/s | run ETA {format_duration(run_eta)} | elapsed {format_duration(elapsed)} "
      f"| sweep ETA {format_duration(eta)}"
    )


def stack_runs(pending, max_stack):
  """Groups ``(config, run_dir)`` pairs into stacks of at most ``max_stack`` runs of one cell.

  A cell is everything but the seed. Stacks are ordered round-robin over cells
  (every cell's first stack, then every cell's second, ...), so with
  ``max_stack = 1`` the order is the seed-major order of ``pending`` itself.
  """
  if not isinstance(max_stack, int) or max_stack < 1:
    raise ValueError(f"the stack size cap must be a positive integer, got {max_stack!r}")
  cells = {}
  for config, run_dir in pending:
    cells.setdefault(dataclasses.replace(config, seed=0), []).append((config, run_dir))
  chunked = [[runs[i : i + max_stack] for i in range(0, len(runs), max_stack)] for runs in cells.values()]
  stacks = []
  for round_index in range(max((len(c) for c in chunked), default=0)):
    stacks += [c[round_index] for c in chunked if round_index < len(c)]
  return stacks


def prepare_sweep_dir(grid, sweep_dir, extend=False):
  """Checks ``grid`` against the sweep's ``sweep.json`` before anything is written; returns the grid to run.

  A sweep folder belongs to one grid. A rerun with another grid or other settings is
  refused (``SweepError`` naming the differing fields), unless ``extend`` is set and
  the new grid only adds datasets, models, estimators or seeds, or lengthens the runs
  (``num_steps``): then finished runs are resumed to the new length.
  """
  path = os.path.join(sweep_dir, results.SWEEP_JSON)
  if not os.path.exists(path):
    return grid
  try:
    stored = Grid.from_dict(results_io.read_json(path))
  except ValueError as e:
    raise SweepError(f"{path} is unreadable ({e}); move the sweep folder away or pass another --sweep_name") from None
  differences = stored.differences(grid)
  if not differences:
    return grid
  listed = "; ".join(f"{k}: sweep {v[0]!r}, now {v[1]!r}" for k, v in differences.items())
  if not extend:
    raise SweepError(
      f"{sweep_dir} holds a sweep with another grid or settings ({listed}). Nothing was changed. "
      "Pass another --sweep_name for a new sweep, or --extend to add datasets, models, estimators "
      "or seeds to this one or to lengthen its runs (--num_steps larger)."
    )
  growing = ("datasets", "models", "estimators", "seeds")
  for key, (old, new) in differences.items():
    if key in growing:
      dropped = [v for v in old if v not in new]
      if dropped:
        raise SweepError(
          f"--extend adds to a sweep and never drops from it: {key} {dropped} would be left out. "
          f"Keep them in --{key}, or pass another --sweep_name."
        )
    elif key == "num_steps":
      if new < old:
        raise SweepError(f"--extend lengthens runs; num_steps {new} is shorter than the sweep's {old}")
      if old % stored.eval_every:
        raise SweepError(
          f"the sweep's runs end at step {old}, off its evaluation cadence ({stored.eval_every}): "
          "they cannot be lengthened in place; pass another --sweep_name"
        )
    else:
      raise SweepError(
        f"--extend cannot change {key} (sweep {old!r}, now {new!r}): runs with different "
        "settings would be mixed. Pass another --sweep_name."
      )
  return grid


def _lengthen_finished_run(run_dir, config):
  """A finished run of an extended sweep: its config takes the new length and its DONE.json goes (it resumes)."""
  from contracts.settings import RunConfig

  path = os.path.join(run_dir, results.CONFIG_JSON)
  if not os.path.exists(path):
    return
  stored = RunConfig.from_dict(results_io.read_json(path))
  if stored.settings.differences(config.settings) == ["num_steps"] and stored.num_steps < config.num_steps:
    from training.runner import config_record

    results_io.atomic_write_json(path, config_record(config))
    for marker in (results.DONE_JSON,):
      if os.path.exists(os.path.join(run_dir, marker)):
        os.unlink(os.path.join(run_dir, marker))


def reuse_line(reused, total, sweep_dir, first):
  """The console line saying that finished runs of an earlier invocation were reused, not trained."""
  text = f"{reused} of {total} run(s) in {sweep_dir} were already finished"
  if first:
    return (
      f"[reuse] {text} and are not trained again (their results are an earlier invocation's: "
      "a new --sweep_name or --results_dir trains every run anew)"
    )
  return f"[reuse] {text} before this invocation and were reused; it trained or resumed {total - reused}"


def _log_throughput(sweep_dir, progress, executor, max_stack, reused=0, trained=0):
  """Appends what this driver did to the sweep's log: runs reused and trained, member-steps over clock time."""
  clock = time.time() - progress.start
  steps = progress.trained_steps()
  entry = dict(
    clock_s=round(clock, 1),
    member_steps=int(steps),
    member_steps_per_sec=round(steps / clock, 1) if clock > 0 and steps else None,
    executor=executor.description,
    max_stack=max_stack,
    reused_runs=int(reused),
    trained_runs=int(trained),
  )
  results_io.append_json_line(os.path.join(sweep_dir, results.SWEEP_LOG), entry)


def run_sweep(
  grid,
  sweep_dir,
  data_dir=None,
  tensorboard=False,
  retry_failed=False,
  stream=None,
  executor=None,
  max_stack=1,
  extend=False,
  plugins=(),
  allow_download=False,
  restart_damaged=False,
):
  """Runs every config of ``grid`` under ``sweep_dir``; returns the summary DataFrame.

  Its ``attrs["reused_line"]`` says how many runs were found finished and reused ('' when
  none were), for the caller to print last, after its own output.

  ``executor``: from ``training.executors.make_executor`` (default: this process).
  ``max_stack``: at most this many runs of one cell (differing in their seed) are
  trained together in one graph (``training.runner.train_stack``).
  ``extend``: allow a grid that adds cells or steps to the sweep's (``prepare_sweep_dir``).
  ``plugins``: modules that register estimators, imported wherever runs train.
  ``allow_download``: let the loaders fall back to tensorflow_datasets for a dataset
  missing from the data folder. ``restart_damaged``: train runs whose own files are
  damaged again from step 0 (otherwise they are marked failed and the others go on).
  Raises ``SweepError`` when the grid does not match the sweep's, when a run hits a
  problem every run would hit (data, disk, a mismatched configuration: the sweep
  stops) or when runs crashed or failed (the others finish first).
  """
  try:
    grid = canonical_grid(grid)
    validate_grid(grid)
  except ValueError as e:
    raise SweepError(str(e)) from None
  executor = executor or InProcessExecutor()
  sweep_dir = os.path.abspath(sweep_dir)  # workers elsewhere (Ray) need absolute paths
  data_dir = os.path.abspath(data_dir) if data_dir else data_dir
  grid = prepare_sweep_dir(grid, sweep_dir, extend)
  os.makedirs(os.path.join(sweep_dir, results.RUNS_DIR), exist_ok=True)
  results_io.atomic_write_json(os.path.join(sweep_dir, results.SWEEP_JSON), grid.to_dict())
  configs = list(grid.configs())
  by_id = {c.run_id: c for c in configs}
  progress = Progress(len(configs), sum(c.num_steps for c in configs), stream or sys.stdout)
  pending, finished = [], []
  for config in configs:
    run_dir = os.path.join(sweep_dir, results.RUNS_DIR, config.run_id)
    if extend:
      _lengthen_finished_run(run_dir, config)
    status, _ = results_io.run_status(run_dir)
    damaged = status == "failed" and restart_damaged and results_io.marked_damaged(run_dir)
    if status == "done" or (status == "failed" and not retry_failed and not damaged):
      finished.append((config, status))
    else:
      pending.append((config, run_dir))
  if finished:
    # First: a sweep folder holding earlier runs is reused, not trained again.
    progress._print(reuse_line(len(finished), len(configs), sweep_dir, first=True))
  for config, status in finished:
    progress.skip(config, f"already {status}" + ("" if status == "done" else " (--retry_failed retries it)"))
  tasks = [
    Task(
      tuple(c for c, _ in stack),
      tuple(d for _, d in stack),
      data_dir=data_dir,
      tensorboard=tensorboard,
      retry_failed=retry_failed,
      plugins=tuple(plugins),
      allow_download=allow_download,
      restart_damaged=restart_damaged,
    )
    for stack in stack_runs(pending, max_stack)
  ]
  if tasks:
    stacked = f" in {len(tasks)} stack(s) of up to {max_stack}" if max_stack > 1 else ""
    progress._print(f"{len(pending)} run(s) to train or resume{stacked}, {executor.description}")
  crashes = []
  outcomes = executor.run(tasks, progress.event)
  try:
    for result in outcomes:
      config = by_id[result["run_id"]]
      outcome = result["outcome"]
      if outcome == "locked":
        progress.skip(config, result["reason"])
      elif outcome == "finished":
        progress.skip(config, f"already {result['status']}")
      elif outcome == "trained":
        progress.finish(config, result["status"] + (f" ({result['reason']})" if result["reason"] else ""))
        results_io.rebuild_summary(sweep_dir)
      elif result["error_kind"] == "crash":
        progress.finish(config, "error")
        progress._print(f"error in {config.run_id}:\n{result['message']}")
        crashes.append(config.run_id)
      else:
        executor.stop()
        results_io.rebuild_summary(sweep_dir)
        raise SweepError(
          f"{result['message']}\n(sweep stopped at {config.run_id}; runs already finished are untouched)"
        )
  finally:
    outcomes.close()
  summary = results_io.rebuild_summary(sweep_dir)
  _log_throughput(sweep_dir, progress, executor, max_stack, reused=len(finished), trained=len(pending))
  last_line = reuse_line(len(finished), len(configs), sweep_dir, first=False) if finished else ""
  if crashes:
    raise SweepError(
      f"{len(crashes)} run(s) stopped on an unexpected error (printed above): "
      f"{', '.join(crashes)}. The other runs went on; a rerun resumes these."
    )
  summary.attrs["reused_line"] = last_line
  return summary
