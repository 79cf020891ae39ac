#!/usr/bin/env python3
"""This checkout's speed against an earlier commit's, side by side on the same machine in one run.

  python3 -m benchmarks.compare_with_commit --commit=a2a45a9

Checks the commit out into a temporary git worktree, then times the same figures with
both versions, alternating old and new call by call so that drift of a shared machine
hits both alike: milliseconds per training step (one run, batch 50: linear and
nonlinear DisARM, RELAX; nonlinear DisARM at batch 100, the RODEO protocol's) and one
full evaluation (train-ELBO pass and the two 100-sample bounds). The new version is
timed twice: with the settings that reproduce the old one's training (decoder on the
estimator's samples, permutation order; the arithmetic of a step is then the same)
and with the DisARM reference defaults (one more decoder pass for the decoder's
independent sample). Each figure is the median of ``--repetitions`` timed calls,
each a fresh process per version (so neither inherits the other's threads).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("commit", "a2a45a9", "The earlier commit to compare with.")
flags.DEFINE_integer("repetitions", 3, "Timed calls per figure and version.")
flags.DEFINE_integer("block", 500, "Training steps per timed call.")
flags.DEFINE_bool("evaluation", True, "Also time one full evaluation per model.")
flags.DEFINE_string(
  "data_dir",
  None,
  "Folder with the raw dataset files (default: this checkout's, as the driver "
  "finds it); both versions read the same files.",
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OLD_SETTINGS = dict(
  decoder_sample="estimator",
  decoder_reduction="mean",
  data_order="permutation",
  control_variate_input="encoder_input",
  eval_binarization="fresh",
  grad_variance_debias=True,
)

# Runs inside either checkout: times one figure and prints it as JSON.
TIMER = r"""
import json, os, statistics, sys, time
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, os.getcwd())
kind, model, estimator, batch, block, reps, settings = json.loads(sys.argv[1])
from datasets import load_dataset
from training.trainer import Trainer
splits = load_dataset("mnist")
if os.path.isdir("contracts"):
  from contracts.settings import RunConfig, Settings
  config = RunConfig("mnist", model, estimator, 0, Settings(batch_size=batch, **settings))
else:
  from training.config import RunConfig
  config = RunConfig("mnist", model, estimator, seed=0, num_steps=10**6, batch_size=batch)
trainer = Trainer(config, splits)
def call():
  if kind == "step":
    trainer.train(block)
  else:
    trainer.train_elbo(); trainer.bound("valid"); trainer.bound("test")
call()
times = []
for _ in range(reps):
  start = time.perf_counter(); call(); times.append(time.perf_counter() - start)
value = statistics.median(times)
print(json.dumps(1000 * value / block if kind == "step" else value))
"""


def measure(checkout, figure, settings):
  kind, model, estimator, batch = figure
  args = json.dumps([kind, model, estimator, batch, FLAGS.block, 1, settings])
  env = dict(os.environ, DISARM_DATA_DIR=DATA_DIR)
  done = subprocess.run(
    [sys.executable, "-c", TIMER, args], cwd=checkout, capture_output=True, text=True, timeout=1800, env=env
  )
  if done.returncode:
    raise RuntimeError(f"timing {figure} in {checkout} failed:\n{done.stderr[-3000:]}")
  return float(done.stdout.strip().splitlines()[-1])


DATA_DIR = ""


def main(argv):
  del argv
  global DATA_DIR
  from benchmarks.machine import cpu_description
  from datasets import resolve_data_dir

  DATA_DIR = resolve_data_dir(FLAGS.data_dir) or ""
  figures = [
    ("step", "linear", "disarm", 50),
    ("step", "nonlinear", "disarm", 50),
    ("step", "linear", "relax", 50),
    ("step", "nonlinear", "relax", 50),
    ("step", "nonlinear", "disarm", 100),
  ]
  if FLAGS.evaluation:
    figures += [("evaluation", "linear", "disarm", 50), ("evaluation", "nonlinear", "disarm", 50)]
  with tempfile.TemporaryDirectory() as tmp:
    old = os.path.join(tmp, "old")
    subprocess.run(["git", "worktree", "add", "--detach", old, FLAGS.commit], cwd=REPO, check=True, capture_output=True)
    try:
      print(
        f"machine: {cpu_description()}; {FLAGS.commit} against this checkout; median of "
        f"{FLAGS.repetitions} timed calls, each in a fresh process after a warm-up call"
      )
      print(f"{'figure':40s} {FLAGS.commit:>10s} {'new, same':>10s} {'new, ref.':>10s} {'speed-up':>9s}")
      for figure in figures:
        times = {"old": [], "same": [], "reference": []}
        for _ in range(FLAGS.repetitions):
          times["old"].append(measure(old, figure, {}))
          times["same"].append(measure(REPO, figure, OLD_SETTINGS))
          times["reference"].append(measure(REPO, figure, {}))
        med = {k: statistics.median(v) for k, v in times.items()}
        unit = "ms/step" if figure[0] == "step" else "s"
        name = f"{figure[0]} {figure[1]} {figure[2]} batch {figure[3]} ({unit})"
        print(
          f"{name:40s} {med['old']:10.3f} {med['same']:10.3f} {med['reference']:10.3f} "
          f"{med['old'] / med['same']:8.2f}x",
          flush=True,
        )
    finally:
      subprocess.run(["git", "worktree", "remove", "--force", old], cwd=REPO, check=False, capture_output=True)


if __name__ == "__main__":
  app.run(main)
