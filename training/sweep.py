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
import itertools
import os
import re
import sys
import time

from datasets import DATASETS
from estimators import ESTIMATORS, FAMILIES, is_valid_estimator
from models import HIERARCHICAL_MODELS, MODELS, SINGLE_LAYER_MODELS
from training import results_io
from training.config import RunConfig
from training.executors import InProcessExecutor, Task


@dataclasses.dataclass(frozen=True)
class Grid:
  datasets: tuple
  models: tuple
  estimators: tuple
  seeds: tuple
  num_steps: int
  eval_every: int = 1000
  bound_every: int = 1000
  batch_size: int = 50
  num_bound_samples: int = 100
  share_upper_noise: bool = False
  basket: tuple = ()
  basket_draws: int = 20

  def configs(self):
    for seed, dataset, model, estimator in itertools.product(self.seeds, self.datasets, self.models,
                                                            self.estimators):
      yield RunConfig(dataset=dataset, model=model, estimator=estimator, seed=seed,
                      num_steps=self.num_steps, batch_size=self.batch_size,
                      eval_every=self.eval_every, bound_every=self.bound_every,
                      num_bound_samples=self.num_bound_samples, share_upper_noise=self.share_upper_noise,
                      basket=tuple(self.basket), basket_draws=self.basket_draws)

  def validate(self):
    """Rejects unknown names and impossible numbers before anything starts."""
    for kind, names, valid in (("dataset", self.datasets, DATASETS), ("model", self.models, MODELS),
                               ("estimator", self.estimators, tuple(ESTIMATORS))):
      if not names:
        raise ValueError(f"no {kind} given; valid {kind}s: {', '.join(valid)}")
      known = is_valid_estimator if kind == "estimator" else valid.__contains__
      unknown = [n for n in names if not known(n)]
      if kind == "estimator":
        for name in unknown:  # a family member of impossible size (vimco_1): say what is wrong with it
          family = re.fullmatch(r"(.+)_(\d+)", name)
          if family and family.group(1) in FAMILIES:
            try:
              FAMILIES[family.group(1)](int(family.group(2)))
            except ValueError as e:
              raise ValueError(f"estimator {name!r}: {e}") from None
      if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")
    if not self.seeds or any((not isinstance(s, int)) or s < 0 for s in self.seeds):
      raise ValueError(f"seeds must be non-negative integers, got {self.seeds!r}")
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds repeat: {self.seeds!r}")
    for config in self.configs():  # cheap; catches model x estimator combinations that cannot work
      config.validate()


ALL_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")

PRESETS = {
    # A few minutes on 2 CPU cores: every dataset and estimator, linear model, one seed.
    "quick": Grid(datasets=DATASETS, models=("linear",), estimators=ALL_ESTIMATORS, seeds=(0,),
                  num_steps=1000, eval_every=500, bound_every=1000),
    # The paper's single-layer table: 3 datasets x 2 models x 4 estimators x 5 seeds, 10^6 steps.
    "paper": Grid(datasets=DATASETS, models=SINGLE_LAYER_MODELS, estimators=ALL_ESTIMATORS, seeds=(0, 1, 2, 3, 4),
                  num_steps=1_000_000, eval_every=1000, bound_every=1000),
    # Multi-sample bounds at equal cost: VIMCO with 2m samples against local DisARM with m pairs.
    "multisample": Grid(datasets=DATASETS, models=SINGLE_LAYER_MODELS,
                        estimators=("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5",
                                    "vimco_20", "local_disarm_10"),
                        seeds=(0, 1, 2, 3, 4), num_steps=1_000_000, eval_every=1000, bound_every=1000),
    # The sweep committed under results/reduced (about two hours of a 2-core machine).
    "reduced": Grid(datasets=DATASETS, models=SINGLE_LAYER_MODELS, estimators=ALL_ESTIMATORS, seeds=(0, 1, 2),
                    num_steps=3000, eval_every=500, bound_every=3000),
    # The appendix's hierarchical models: 2, 3 and 4 stochastic layers of 200 bits, linear
    # conditionals, per-layer estimators (training/layerwise.py).
    "hierarchical": Grid(datasets=DATASETS, models=HIERARCHICAL_MODELS, estimators=ALL_ESTIMATORS,
                         seeds=(0, 1, 2, 3, 4), num_steps=1_000_000, eval_every=1000, bound_every=1000),
}


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
      self.line(event["run_id"], event["step"], event["num_steps"], event["steps_per_sec"])

  def line(self, run_id, step, num_steps, steps_per_sec):
    elapsed = time.time() - self.start
    steps_so_far = self.done_steps + sum(self.active.values())
    rate = steps_so_far / elapsed if elapsed > 0 and steps_so_far else float("nan")
    eta = (self.total_steps - steps_so_far) / rate if rate == rate and rate > 0 else float("nan")
    running = f", {len(self.active)} running" if len(self.active) > 1 else ""
    self._print(f"[{self.done_runs}/{self.total_runs} done{running}] {run_id} step {step}/{num_steps} "
                f"| {steps_per_sec:.0f} train steps/s | elapsed {format_duration(elapsed)} "
                f"| sweep ETA {format_duration(eta)}")


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
  chunked = [[runs[i:i + max_stack] for i in range(0, len(runs), max_stack)] for runs in cells.values()]
  stacks = []
  for round_index in range(max((len(c) for c in chunked), default=0)):
    stacks += [c[round_index] for c in chunked if round_index < len(c)]
  return stacks


def run_sweep(grid, sweep_dir, data_dir=None, tensorboard=False, retry_failed=False, stream=None,
              executor=None, max_stack=1):
  """Runs every config of ``grid`` under ``sweep_dir``; returns the summary DataFrame.

  ``executor``: from ``training.executors.make_executor`` (default: this process).
  ``max_stack``: at most this many runs of one cell (differing in their seed) are
  trained together in one graph (``training.runner.train_stack``).
  Raises ``SweepError`` when a run hits a problem every run would hit (data, disk,
  a mismatched configuration: the sweep stops) or when runs crashed (the others
  finish first).
  """
  grid.validate()
  executor = executor or InProcessExecutor()
  sweep_dir = os.path.abspath(sweep_dir)  # workers elsewhere (Ray) need absolute paths
  data_dir = os.path.abspath(data_dir) if data_dir else data_dir
  os.makedirs(os.path.join(sweep_dir, "runs"), exist_ok=True)
  results_io.atomic_write_json(os.path.join(sweep_dir, "sweep.json"), dataclasses.asdict(grid))
  configs = list(grid.configs())
  by_id = {c.run_id: c for c in configs}
  progress = Progress(len(configs), sum(c.num_steps for c in configs), stream or sys.stdout)
  pending = []
  for config in configs:
    run_dir = os.path.join(sweep_dir, "runs", config.run_id)
    status, _ = results_io.run_status(run_dir)
    if status == "done" or (status == "failed" and not retry_failed):
      progress.skip(config, f"already {status}" + ("" if status == "done" else " (--retry_failed retries it)"))
      continue
    pending.append((config, run_dir))
  tasks = [Task(tuple(c for c, _ in stack), tuple(d for _, d in stack), data_dir=data_dir,
                tensorboard=tensorboard, retry_failed=retry_failed) for stack in stack_runs(pending, max_stack)]
  if tasks:
    stacked = f" in {len(tasks)} stack(s) of up to {max_stack}" if max_stack > 1 else ""
    progress._print(f"{len(pending)} run(s) to train or resume{stacked}, {executor.description}")
  crashes = []
  results = executor.run(tasks, progress.event)
  try:
    for result in results:
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
        raise SweepError(f"{result['message']}\n(sweep stopped at {config.run_id}; "
                         "runs already finished are untouched)")
  finally:
    results.close()
  summary = results_io.rebuild_summary(sweep_dir)
  if crashes:
    raise SweepError(f"{len(crashes)} run(s) stopped on an unexpected error (printed above): "
                     f"{', '.join(crashes)}. The other runs went on; a rerun resumes these.")
  return summary
