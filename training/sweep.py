"""Sweeps: a grid of datasets x models x estimators x seeds, run one after another.

Runs are ordered seed-major (every cell's seed 0, then every cell's seed 1, ...)
so that a sweep stopped early still covers every cell. Finished runs are
skipped, interrupted ones resume from their checkpoint, and a run locked by a
live process (another driver on the same sweep) is left to it.
"""

import dataclasses
import itertools
import os
import sys
import time

from datasets import DATASETS
from estimators import ESTIMATORS, is_valid_estimator
from models import MODELS
from training import results_io
from training.config import RunConfig
from training.runner import RunLock, train_run


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

  def configs(self):
    for seed, dataset, model, estimator in itertools.product(self.seeds, self.datasets, self.models,
                                                            self.estimators):
      yield RunConfig(dataset=dataset, model=model, estimator=estimator, seed=seed,
                      num_steps=self.num_steps, batch_size=self.batch_size,
                      eval_every=self.eval_every, bound_every=self.bound_every)

  def validate(self):
    """Rejects unknown names and impossible numbers before anything starts."""
    for kind, names, valid in (("dataset", self.datasets, DATASETS), ("model", self.models, MODELS),
                               ("estimator", self.estimators, tuple(ESTIMATORS))):
      if not names:
        raise ValueError(f"no {kind} given; valid {kind}s: {', '.join(valid)}")
      known = is_valid_estimator if kind == "estimator" else valid.__contains__
      unknown = [n for n in names if not known(n)]
      if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")
    if not self.seeds or any((not isinstance(s, int)) or s < 0 for s in self.seeds):
      raise ValueError(f"seeds must be non-negative integers, got {self.seeds!r}")
    if len(set(self.seeds)) != len(self.seeds):
      raise ValueError(f"seeds repeat: {self.seeds!r}")
    for config in itertools.islice(self.configs(), 1):
      config.validate()


ALL_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")

PRESETS = {
    # A few minutes on 2 CPU cores: every dataset and estimator, linear model, one seed.
    "quick": Grid(datasets=DATASETS, models=("linear",), estimators=ALL_ESTIMATORS, seeds=(0,),
                  num_steps=1000, eval_every=500, bound_every=1000),
    # The paper's single-layer table: 3 datasets x 2 models x 4 estimators x 5 seeds, 10^6 steps.
    "paper": Grid(datasets=DATASETS, models=MODELS, estimators=ALL_ESTIMATORS, seeds=(0, 1, 2, 3, 4),
                  num_steps=1_000_000, eval_every=1000, bound_every=1000),
    # Multi-sample bounds at equal cost: VIMCO with 2m samples against local DisARM with m pairs.
    "multisample": Grid(datasets=DATASETS, models=MODELS,
                        estimators=("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5",
                                    "vimco_20", "local_disarm_10"),
                        seeds=(0, 1, 2, 3, 4), num_steps=1_000_000, eval_every=1000, bound_every=1000),
    # The sweep committed under results/reduced (about two hours of a 2-core machine).
    "reduced": Grid(datasets=DATASETS, models=MODELS, estimators=ALL_ESTIMATORS, seeds=(0, 1, 2),
                    num_steps=3000, eval_every=500, bound_every=3000),
}


def format_duration(seconds):
  if seconds != seconds or seconds == float("inf"):
    return "?"
  seconds = int(seconds)
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
  """Prints one line per evaluation: runs done, current run, speed, ETA."""

  def __init__(self, total_runs, total_steps, stream=sys.stdout):
    self.total_runs, self.total_steps = total_runs, total_steps
    self.done_runs, self.done_steps = 0, 0
    self.start = time.time()
    self.stream = stream
    self.current = None

  def begin(self, config):
    self.current = config
    self.run_start = time.time()

  def finish(self, config, status):
    self.done_runs += 1
    self.done_steps += config.num_steps
    print(f"[{self.done_runs}/{self.total_runs}] {config.run_id}: {status}", file=self.stream, flush=True)

  def skip(self, config, status):
    self.total_steps -= config.num_steps
    self.total_runs -= 1
    print(f"[skip] {config.run_id}: {status}", file=self.stream, flush=True)

  def __call__(self, config, step, steps_per_sec):
    elapsed = time.time() - self.start
    steps_so_far = self.done_steps + step
    rate = steps_so_far / elapsed if elapsed > 0 and steps_so_far else float("nan")
    eta = (self.total_steps - steps_so_far) / rate if rate == rate and rate > 0 else float("nan")
    print(f"[{self.done_runs}/{self.total_runs} done] {config.run_id} step {step}/{config.num_steps} "
          f"| {steps_per_sec:.0f} train steps/s | elapsed {format_duration(elapsed)} "
          f"| sweep ETA {format_duration(eta)}", file=self.stream, flush=True)


def run_sweep(grid, sweep_dir, data_dir=None, tensorboard=False, retry_failed=False, stream=sys.stdout):
  """Runs every config of ``grid`` under ``sweep_dir``; returns the summary DataFrame."""
  grid.validate()
  os.makedirs(os.path.join(sweep_dir, "runs"), exist_ok=True)
  results_io.atomic_write_json(os.path.join(sweep_dir, "sweep.json"), dataclasses.asdict(grid))
  configs = list(grid.configs())
  progress = Progress(len(configs), sum(c.num_steps for c in configs), stream)
  for config in configs:
    run_dir = os.path.join(sweep_dir, "runs", config.run_id)
    status, _ = results_io.run_status(run_dir)
    if status == "failed" and retry_failed:
      os.unlink(os.path.join(run_dir, "FAILED.json"))
      status = "running"
    if status in ("done", "failed"):
      progress.skip(config, f"already {status}")
      continue
    os.makedirs(run_dir, exist_ok=True)
    lock = RunLock(run_dir)
    if not lock.acquire():
      progress.skip(config, "locked by another live driver")
      continue
    try:
      progress.begin(config)
      summary = train_run(config, run_dir, data_dir=data_dir, tensorboard=tensorboard, progress=progress)
    finally:
      lock.release()
    progress.finish(config, summary["status"] + (f" ({summary['reason']})" if summary.get("reason") else ""))
    results_io.rebuild_summary(sweep_dir)
  return results_io.rebuild_summary(sweep_dir)
