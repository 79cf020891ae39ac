"""What a run costs before its first step, in fresh processes: TensorFlow's import, the trainer,
tracing the training block (autograph's conversion of the Python code, then the graph), and the
first block (graph optimisation), against a block of the same steps once warm.

    python3 -m benchmarks.bench_startup                      # DisARM and RODEO (K = 2), 3 processes each
    python3 -m benchmarks.bench_startup --repo=/path/to/other/checkout   # the same for another checkout

Every short run of the suite (a tiny test sweep, the check command's training stage, each
driver process of the tests) pays these once per process or per stack, and it is most of
what those runs cost. Figures are CPU seconds of the process (``time.process_time``, both
TensorFlow threads counted), medians over fresh processes; the data are random, so no
dataset is read.
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app, flags

from benchmarks.machine import cpu_description

FLAGS = flags.FLAGS
flags.DEFINE_list("estimators", ["disarm", "rodeo_2"], "Estimators to time, each in its own processes.")
flags.DEFINE_string("model", "nonlinear", "Model of the runs.")
flags.DEFINE_integer("processes", 3, "Fresh processes per estimator (the median is shown).")
flags.DEFINE_integer("steps", 20, "Steps of the first block and of the warm block.")
flags.DEFINE_string("repo", None, "Checkout whose code is timed (default: this one).")

PHASES = ("import_tf", "build", "trace", "first_block", "warm_block")

# One process: each phase's CPU seconds as JSON on the last line.
CHILD = """
import json, sys, time, types
clock = time.process_time
start = clock()
import numpy as np
import tensorflow as tf
after_import = clock()
from contracts.settings import RunConfig, Settings
from training.trainer import Trainer

estimator, model, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
train, valid, test = (rng.uniform(0.02, 0.98, size=(n, 784)).astype(np.float32) for n in (1000, 100, 100))
splits = types.SimpleNamespace(train=train, valid=valid, test=test, mean_train=train.mean(0), name="random")
t0 = clock()
trainer = Trainer(RunConfig("random", model, estimator, 0, Settings(num_steps=10**6, batch_size=100)), splits)
t1 = clock()
trainer.trace()
t2 = clock()
trainer.train(steps)
t3 = clock()
trainer.train(steps)
t4 = clock()
print(json.dumps(dict(import_tf=after_import - start, build=t1 - t0, trace=t2 - t1, first_block=t3 - t2,
                      warm_block=t4 - t3)))
"""


def time_once(repo, estimator):
  env = dict(os.environ, PYTHONPATH=repo, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
  done = subprocess.run(
    [sys.executable, "-c", CHILD, estimator, FLAGS.model, str(FLAGS.steps)],
    cwd=repo,
    env=env,
    capture_output=True,
    text=True,
    check=True,
  )
  return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  repo = os.path.abspath(FLAGS.repo or os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True).stdout
  print(f"machine: {cpu_description()}")
  print(f"code: {repo} at {commit.strip() or '?'}; {FLAGS.model} model, batch 100, {FLAGS.steps}-step blocks")
  print(f"CPU seconds per process, median of {FLAGS.processes} fresh processes:")
  print(f"{'estimator':<12}" + "".join(f"{p:>13}" for p in PHASES))
  for estimator in FLAGS.estimators:
    runs = [time_once(repo, estimator) for _ in range(FLAGS.processes)]
    row = {p: statistics.median(r[p] for r in runs) for p in PHASES}
    print(f"{estimator:<12}" + "".join(f"{row[p]:>13.2f}" for p in PHASES), flush=True)


if __name__ == "__main__":
  app.run(main)
