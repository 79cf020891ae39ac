#!/usr/bin/env python3
"""disarm-bench driver: sweep datasets x models x estimators x seeds, log CSVs, make the report.

Examples:
  python run_benchmarks.py --preset=quick
  python run_benchmarks.py --preset=paper --sweep_name=paper
  python run_benchmarks.py --datasets=mnist --models=linear --estimators=arm,disarm \
      --seeds=0,1,2 --num_steps=20000 --sweep_name=mnist_arm_vs_disarm

A preset fills the grid; any grid flag given explicitly overrides it. Results go
to <results_dir>/<sweep_name>/ (see README.md, "Results layout"). Rerunning the
same command skips finished runs and resumes interrupted ones.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "quick", ["quick", "reduced", "paper", "multisample", "hierarchical", "none"],
                  "Named grid: quick (minutes on 2 CPU cores), reduced (the committed ~2 h sweep), "
                  "paper (the paper's single-layer grid, 5 seeds, 10^6 steps), multisample (VIMCO with "
                  "2m samples against local DisARM with m pairs, m in 1, 5, 10), hierarchical (2-4 "
                  "stochastic layers, per-layer estimators), none (flags only).")
flags.DEFINE_list("datasets", None, "Datasets: mnist, fashion_mnist, omniglot. Overrides the preset.")
flags.DEFINE_list("models", None, "Models: linear, nonlinear, linear_2layer, linear_3layer, linear_4layer. "
                  "Overrides the preset.")
flags.DEFINE_list("basket", None, "Variance basket: estimators whose encoder-gradient variance is measured at "
                  "every evaluation at the run's own parameters (basket_var_<name> columns), e.g. "
                  "reinforce_loo,arm,disarm. Single-layer models, single-sample estimators.")
flags.DEFINE_integer("basket_draws", None, "Independent estimates per basket measurement (default 20).")
flags.DEFINE_bool("share_upper_noise", None, "Hierarchical models: the two completions of a layer's pair share "
                  "the uniform noise of the layers above.")
flags.DEFINE_list("estimators", None, "Estimators by registry name: reinforce_loo, arm, disarm, relax; "
                  "vimco_<K>, local_disarm_<m>, local_disarm_sym_<m> for the multi-sample bounds; "
                  "reinforce_loo_<K>. Overrides the preset.")
flags.DEFINE_list("seeds", None, "Integer seeds, e.g. 0,1,2. Overrides the preset.")
flags.DEFINE_integer("num_steps", None, "Training steps per run. Overrides the preset.")
flags.DEFINE_integer("eval_every", None, "Steps between evaluations (paper: 1000). Overrides the preset.")
flags.DEFINE_integer("bound_every", None, "Steps between 100-sample bounds; a multiple of eval_every. "
                     "The final evaluation always has them. Overrides the preset.")
flags.DEFINE_integer("batch_size", None, "Training batch size (paper: 50). Overrides the preset.")
flags.DEFINE_string("results_dir", "results", "Root folder of all sweeps.")
flags.DEFINE_string("sweep_name", None, "Sweep folder under results_dir (default: the preset's name, "
                    "or 'custom' with --preset=none).")
flags.DEFINE_string("data_dir", None, "Folder with the raw dataset files (default: $DISARM_DATA_DIR, "
                    "else ../shared/data beside the repository, else tensorflow_datasets).")
flags.DEFINE_bool("tensorboard", False, "Also write TensorBoard summaries to runs/<run_id>/tensorboard.")
flags.DEFINE_bool("retry_failed", False, "Retry runs that stopped on a numerical failure.")
flags.DEFINE_enum("toy", "auto", ["auto", "none", "quick", "full"],
                  "Also run the toy problem (PROTOCOL.md section 6) into <sweep>/toy for the report's toy "
                  "figures: quick (about a minute), full (a few minutes), none; auto: quick with "
                  "--preset=quick, full with --preset=reduced, none otherwise. Finished toy CSVs are reused.")
flags.DEFINE_bool("report", True, "Make figures, tables and report.md after the sweep.")
flags.DEFINE_string("published", None, "Optional CSV of published numbers for the report's comparison.")
flags.DEFINE_integer("threads", 0, "TensorFlow intra-op threads (0: TensorFlow's default, all cores). "
                     "Two drivers with --threads=1 on the same sweep beat one with 2 threads on 2 cores.",
                     lower_bound=0)
flags.DEFINE_bool("rebuild_summary", False, "Only rebuild summary.csv (and the report) from the run files.")
flags.DEFINE_bool("check", False, "Only check the sweep's run folders against their configs (steps on the "
                  "evaluation cadence, each once, DONE.json consistent, columns, summary.csv); exit code 1 "
                  "if any problem is found.")
flags.DEFINE_integer("num_bound_samples", None, "Samples K of the K-sample bounds (paper: 100; tests use "
                     "a few). Overrides the preset.")
flags.DEFINE_enum("executor", "local", ["local", "ray"], "Where runs train: local (--workers processes on "
                  "this machine) or ray (one Ray task per run; see README, 'Running at scale').")
flags.DEFINE_integer("workers", 1, "Local worker processes training runs in parallel (1: in the driver's "
                     "own process). Each uses --threads, else max(1, cores // workers) TF threads.",
                     lower_bound=1)
flags.DEFINE_string("ray_address", None, "Ray cluster to use (e.g. auto, or HOST:6379); default: start a "
                    "local Ray instance for this sweep.")
flags.DEFINE_float("ray_cpus_per_task", 1.0, "CPUs Ray reserves for each run (also its TF threads unless "
                   "--threads).", lower_bound=0.01)
flags.DEFINE_float("ray_gpus_per_task", 0.0, "GPUs Ray reserves for each run.", lower_bound=0.0)
flags.DEFINE_integer("stack", 5, "At most this many runs of one cell (same dataset, model, estimator and "
                     "settings; different seeds) train together in one graph: same numbers per run as "
                     "training them one by one, fewer, larger kernel calls (benchmarks/README.md). "
                     "1 trains runs one at a time.", lower_bound=1)
flags.DEFINE_integer("max_retries", 2, "Retries of a run whose worker process (or Ray node) died.",
                     lower_bound=0)


def build_grid():
  import dataclasses
  from training.sweep import PRESETS, Grid
  if FLAGS.preset == "none":
    needed = [n for n in ("datasets", "models", "estimators", "seeds", "num_steps") if FLAGS[n].value is None]
    if needed:
      raise app.UsageError(f"--preset=none needs --{', --'.join(needed)}")
    base = Grid(datasets=(), models=(), estimators=(), seeds=(), num_steps=1)
  else:
    base = PRESETS[FLAGS.preset]
  overrides = {}
  for name in ("datasets", "models", "estimators"):
    if FLAGS[name].value is not None:
      overrides[name] = tuple(v.strip() for v in FLAGS[name].value if v.strip())
  if FLAGS.seeds is not None:
    try:
      overrides["seeds"] = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
      raise app.UsageError(f"--seeds must be integers separated by commas, got {','.join(FLAGS.seeds)}")
  if FLAGS.basket is not None:
    overrides["basket"] = tuple(v.strip() for v in FLAGS.basket if v.strip())
  for name in ("num_steps", "eval_every", "bound_every", "batch_size", "num_bound_samples", "basket_draws",
               "share_upper_noise"):
    if FLAGS[name].value is not None:
      overrides[name] = FLAGS[name].value
  if "eval_every" in overrides and "bound_every" not in overrides and base.bound_every % overrides["eval_every"]:
    overrides["bound_every"] = overrides["eval_every"]
  grid = dataclasses.replace(base, **overrides)
  try:
    grid.validate()
  except ValueError as e:
    raise app.UsageError(str(e))
  return grid


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sweep_name = FLAGS.sweep_name or (FLAGS.preset if FLAGS.preset != "none" else "custom")
  sweep_dir = os.path.join(FLAGS.results_dir, sweep_name)
  if FLAGS.check:  # reads files only: no grid, no TensorFlow
    from training import integrity
    if not os.path.isdir(sweep_dir):
      raise app.UsageError(f"no sweep folder {sweep_dir}; pass --results_dir and --sweep_name of a sweep")
    text, problems = integrity.format_report(integrity.check_sweep(sweep_dir), sweep_dir)
    print(text)
    return 1 if problems else 0
  grid = None if FLAGS.rebuild_summary else build_grid()
  executor = None if FLAGS.rebuild_summary else make_executor()
  ensure_writable(sweep_dir)

  from training import results_io
  if FLAGS.rebuild_summary:
    results_io.rebuild_summary(sweep_dir)
  else:
    from training.sweep import run_sweep
    run_sweep(grid, sweep_dir, data_dir=FLAGS.data_dir, tensorboard=FLAGS.tensorboard,
              retry_failed=FLAGS.retry_failed, executor=executor, max_stack=FLAGS.stack)
  print(f"summary: {os.path.join(sweep_dir, 'summary.csv')}")
  toy = FLAGS.toy if FLAGS.toy != "auto" else {"quick": "quick", "reduced": "full"}.get(FLAGS.preset, "none")
  if toy != "none" and not FLAGS.rebuild_summary:
    from training.toy import QUICK, run_toy
    print(f"toy problem ({toy}): {os.path.join(sweep_dir, 'toy')}")
    run_toy(os.path.join(sweep_dir, "toy"), **(QUICK if toy == "quick" else {}))
  if FLAGS.report:
    from plots import make_report
    print(f"report: {make_report(sweep_dir, published_csv=FLAGS.published)}")
  return 0


def make_executor():
  from training.executors import make_executor as make
  try:
    return make(FLAGS.executor, workers=FLAGS.workers, threads=FLAGS.threads, ray_address=FLAGS.ray_address,
                ray_cpus_per_task=FLAGS.ray_cpus_per_task, ray_gpus_per_task=FLAGS.ray_gpus_per_task,
                max_retries=FLAGS.max_retries)
  except ValueError as e:
    raise app.UsageError(str(e))


def ensure_writable(sweep_dir):
  """Creates the sweep folder and proves it writable, before any run starts."""
  import tempfile
  try:
    os.makedirs(sweep_dir, exist_ok=True)
  except OSError as e:
    raise app.UsageError(f"cannot create results folder {sweep_dir} ({e.strerror}). "
                         "Pass a writable --results_dir.")
  try:
    fd, probe = tempfile.mkstemp(dir=sweep_dir, prefix=".tmp-probe-")
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise app.UsageError(f"results folder {sweep_dir} is not writable ({e.strerror}). "
                         "Pass a writable --results_dir.")


def expected_errors():
  """Exceptions that mean 'bad input or environment', reported as one line (no traceback)."""
  errors = [app.UsageError, OSError]
  for module, name in (("training.sweep", "SweepError"), ("datasets.loaders", "DataError"),
                       ("training.runner", "ConfigMismatchError"), ("training.executors", "ExecutorError")):
    if module in sys.modules:
      errors.append(getattr(sys.modules[module], name))
  return tuple(errors)


def main_reporting_errors(argv):
  """main, with every expected failure printed as `error: ...` and exit code 2."""
  try:
    return main(argv)
  except Exception as e:  # noqa: BLE001 - re-raised unless expected
    if not isinstance(e, expected_errors()):
      raise
    message = str(e)
    if isinstance(e, OSError) and not isinstance(e, app.UsageError):
      from training.executors import describe_error
      message = describe_error(e)[1]
    print(f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  app.run(main_reporting_errors)
