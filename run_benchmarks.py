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

Check a new estimator (README.md, "Benchmark your estimator"):
  python run_benchmarks.py --preset=check --estimator_modules=path/to/my_estimator.py --estimators=my_estimator
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# On a GPU, TensorFlow would otherwise reserve almost all of its memory in the first
# process: with growth, several workers (--workers, Ray tasks) share one device.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")

from absl import app, flags  # noqa: E402

from contracts.settings import setting_fields  # noqa: E402

FLAGS = flags.FLAGS
PRESET_NAMES = (
  "quick",
  "reduced",
  "paper",
  "multisample",
  "hierarchical",
  "rodeo",
  "rodeo_hierarchical",
  "check",
  "none",
)
flags.DEFINE_enum(
  "preset",
  "quick",
  PRESET_NAMES,
  "Named grid (training/presets.py): quick (minutes on 2 CPU cores), reduced (the committed "
  "~2 h sweep), paper (the DisARM paper's single-layer grid, 5 seeds, 10^6 steps), multisample "
  "(VIMCO with 2m samples against local DisARM with m pairs, m in 1, 5, 10), hierarchical (2-4 "
  "stochastic layers, one estimate per layer), rodeo (the RODEO paper's Tables 1-2 grid and "
  "protocol), rodeo_hierarchical (its Table 5), check (one new estimator, named by --estimators: "
  "unbiasedness, toy variance and MNIST training against DisARM and RODEO, one-page report in "
  "<results_dir>/check_<name>/; at most 15 minutes on 2 CPU cores), none (flags only).",
)
flags.DEFINE_list("datasets", None, "Datasets: mnist, fashion_mnist, omniglot. Overrides the preset.")
flags.DEFINE_list(
  "models", None, "Models: linear, nonlinear, linear_2layer, linear_3layer, linear_4layer. Overrides the preset."
)
flags.DEFINE_list(
  "estimators",
  None,
  "Estimators by registry name (README, 'Estimators'), e.g. "
  "reinforce_loo,arm,disarm,relax; <family>_<K> for the families (vimco_10, arms_3, rodeo_4). "
  "Overrides the preset.",
)
flags.DEFINE_list("seeds", None, "Integer seeds in 0..2147483647, e.g. 0,1,2. Overrides the preset.")


def _define_setting_flags():
  """One flag per run setting (contracts/settings.py); given explicitly, it overrides the preset."""
  for field in setting_fields():
    meta = field.metadata
    if not meta["flag"]:
      continue
    text = meta["help"] + f" Default: {field.default!r} (DisARM reference), or the preset's."
    if meta["choices"]:
      flags.DEFINE_enum(field.name, None, list(meta["choices"]), text)
    elif meta["kind"] is bool:
      flags.DEFINE_bool(field.name, None, text)
    elif meta["kind"] is int:
      flags.DEFINE_integer(field.name, None, text)
    elif meta["kind"] is float:
      flags.DEFINE_float(field.name, None, text)
    elif meta["kind"] is tuple:
      flags.DEFINE_list(field.name, None, text)
    else:  # pragma: no cover - a new kind of setting needs a flag type here
      raise TypeError(f"no flag type for setting {field.name} of kind {meta['kind']}")


_define_setting_flags()
flags.DEFINE_bool(
  "extend",
  False,
  "Let a rerun add datasets, models, estimators or seeds to an existing sweep, or "
  "lengthen its runs (larger --num_steps: finished runs resume to the new length). Without it a "
  "rerun whose grid or settings differ from the sweep's is refused.",
)
flags.DEFINE_bool(
  "allow_download",
  False,
  "Let the loaders download a dataset with tensorflow_datasets when its "
  "files are not in the data folder (needs a network); without it a missing dataset is an error.",
)
flags.DEFINE_bool(
  "restart_damaged",
  False,
  "Train runs whose own files are damaged (unreadable config.json, "
  "metrics.csv or checkpoint; marked failed by an earlier sweep) again from step 0.",
)
flags.DEFINE_list(
  "estimator_modules",
  [],
  "Modules defining estimators of your own: .py file paths (path/to/my_estimator.py) or module "
  "paths importable from the repository root (my_estimators.adaptive_loo). Each module's ESTIMATOR "
  "(an estimators.base.Estimator) is registered unless it calls estimators.register(...) itself.",
)
flags.DEFINE_enum(
  "check_size",
  "full",
  ["full", "smoke"],
  "--preset=check only: full (the check, up to 15 minutes on 2 CPU cores) or smoke (every stage "
  "on a tiny budget, for tests; the unbiasedness check is the full one).",
)
# The committed reference sweeps live in results/<sweep>; a user's own runs go apart from
# them, so that a fresh clone's sweep trains instead of finding the reference runs finished.
DEFAULT_RESULTS_DIR = os.path.join("results", "local")
flags.DEFINE_string(
  "results_dir",
  DEFAULT_RESULTS_DIR,
  "Root folder of the sweeps (the committed reference sweeps are in results/; pass --results_dir=results to "
  "extend or check one of them).",
)
flags.DEFINE_string(
  "sweep_name",
  None,
  "Sweep folder under results_dir (default: the preset's name when --preset is given or no grid or setting "
  "flag is, else 'custom').",
)
flags.DEFINE_string(
  "data_dir",
  None,
  "Folder with the raw dataset files (default: $DISARM_DATA_DIR, "
  "else ../shared/data beside the repository, else tensorflow_datasets).",
)
flags.DEFINE_bool("tensorboard", False, "Also write TensorBoard summaries to runs/<run_id>/tensorboard.")
flags.DEFINE_bool("retry_failed", False, "Retry runs that stopped on a numerical failure.")
flags.DEFINE_enum(
  "toy",
  "auto",
  ["auto", "none", "quick", "full"],
  "Also run the toy problem (PROTOCOL.md section 6) into <sweep>/toy for the report's toy "
  "figures: quick (about a minute), full (a few minutes), none; auto: quick with "
  "--preset=quick, full with --preset=reduced, none otherwise. Finished toy CSVs are reused.",
)
flags.DEFINE_bool("report", True, "Make figures, tables and report.md after the sweep.")
flags.DEFINE_string("published", None, "Optional CSV of published numbers for the report's comparison.")
flags.DEFINE_integer(
  "threads",
  0,
  "TensorFlow intra-op threads (0: TensorFlow's default, all cores). "
  "Two drivers with --threads=1 on the same sweep beat one with 2 threads on 2 cores.",
  lower_bound=0,
)
flags.DEFINE_bool(
  "rebuild_summary",
  False,
  "Only rebuild summary.csv (and the report) from the run files; finished runs' files that carry "
  "an earlier version's column names get the current ones (values unchanged).",
)
flags.DEFINE_bool(
  "check",
  False,
  "Only check the sweep's run folders against their configs (steps on the "
  "evaluation cadence, each once, DONE.json consistent, columns, summary.csv); exit code 1 "
  "if any problem is found.",
)
flags.DEFINE_enum(
  "executor",
  "local",
  ["local", "ray"],
  "Where runs train: local (--workers processes on "
  "this machine) or ray (one Ray task per run; see README, 'Running at scale').",
)
flags.DEFINE_integer(
  "workers",
  1,
  "Local worker processes training runs in parallel (1: in the driver's "
  "own process). Each uses --threads, else max(1, cores // workers) TF threads.",
  lower_bound=1,
)
flags.DEFINE_string(
  "ray_address",
  None,
  "Ray cluster to use (e.g. auto, or HOST:6379); default: start a local Ray instance for this sweep.",
)
flags.DEFINE_float(
  "ray_cpus_per_task", 1.0, "CPUs Ray reserves for each run (also its TF threads unless --threads).", lower_bound=0.01
)
flags.DEFINE_float("ray_gpus_per_task", 0.0, "GPUs Ray reserves for each run.", lower_bound=0.0)
flags.DEFINE_integer(
  "stack",
  5,
  "At most this many runs of one cell (same dataset, model, estimator and "
  "settings; different seeds) train together in one graph: same numbers per run as "
  "training them one by one, fewer, larger kernel calls (benchmarks/README.md). "
  "1 trains runs one at a time.",
  lower_bound=1,
)
flags.DEFINE_integer("max_retries", 2, "Retries of a run whose worker process (or Ray node) died.", lower_bound=0)


GRID_FLAGS = ("datasets", "models", "estimators", "seeds")


def overriding_flags():
  """The grid and setting flags given on the command line (they override the preset)."""
  names = GRID_FLAGS + tuple(f.name for f in setting_fields())
  return [n for n in names if n in FLAGS and FLAGS[n].present]


def default_sweep_name():
  """The preset's name if it was asked for (or nothing overrides it); 'custom' for flags on the default preset.

  A sweep folder belongs to one grid: flags given without --preset would otherwise land
  in the quick preset's folder and be refused there, or read as that preset's runs.
  """
  if FLAGS.preset == "none" or (not FLAGS["preset"].present and overriding_flags()):
    return "custom"
  return FLAGS.preset


def describe_start(grid, sweep_dir):
  """The first console lines: the preset, where the sweep goes, and every setting that differs from the preset."""
  from training.presets import PRESETS

  how = "given" if FLAGS["preset"].present else "the default: no --preset given"
  lines = [f"preset: {FLAGS.preset} ({how}); sweep folder: {sweep_dir}"]
  if FLAGS.preset != "none":
    base = PRESETS[FLAGS.preset]
    changed = [
      f"{n}: {getattr(base, n)!r} -> {getattr(grid, n)!r}" for n in GRID_FLAGS if getattr(base, n) != getattr(grid, n)
    ]
    changed += [
      f"{n}: {getattr(base.settings, n)!r} -> {getattr(grid.settings, n)!r}"
      for n in base.settings.differences(grid.settings)
    ]
    lines.append("differs from the preset: " + ("; ".join(changed) if changed else "nothing"))
  else:
    lines.append("settings: the flags given, defaults (the DisARM reference's) for the rest")
  return lines


def build_grid():
  """The grid: the preset's, with every grid flag and setting flag given explicitly applied on top."""
  from contracts.settings import Grid, check_seed

  # Flag checks that need no data and no TensorFlow come first: a typo is refused in a
  # fraction of a second, before the presets' imports load TensorFlow (seconds).
  if FLAGS.preset == "none":
    needed = [n for n in ("datasets", "models", "estimators", "seeds", "num_steps") if FLAGS[n].value is None]
    if needed:
      raise app.UsageError(f"--preset=none needs --{', --'.join(needed)}")
  overrides = {}
  if FLAGS.seeds is not None:
    try:
      overrides["seeds"] = tuple(int(s) for s in FLAGS.seeds)
      for seed in overrides["seeds"]:
        check_seed(seed)
    except ValueError as e:
      raise app.UsageError(
        f"--seeds must be whole numbers in 0..2147483647 separated by commas, got {','.join(FLAGS.seeds)} ({e})"
      ) from None
  from training.presets import PRESETS

  base = Grid(datasets=(), models=(), estimators=(), seeds=()) if FLAGS.preset == "none" else PRESETS[FLAGS.preset]
  for name in ("datasets", "models", "estimators"):
    if FLAGS[name].value is not None:
      overrides[name] = tuple(v.strip() for v in FLAGS[name].value if v.strip())
  for field in setting_fields():
    value = FLAGS[field.name].value if field.name in FLAGS else None
    if value is not None:
      overrides[field.name] = tuple(v.strip() for v in value if v.strip()) if field.metadata["kind"] is tuple else value
  if "eval_every" in overrides and "bound_every" not in overrides and base.bound_every % overrides["eval_every"]:
    overrides["bound_every"] = overrides["eval_every"]
  grid = base.replace(**overrides)
  try:
    from training.validation import canonical_grid, validate_grid

    grid = canonical_grid(grid)
    validate_grid(grid)
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  return grid


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  sweep_name = FLAGS.sweep_name or default_sweep_name()
  sweep_dir = os.path.join(FLAGS.results_dir, sweep_name)
  if FLAGS.check:  # reads files only: no grid, no TensorFlow
    from training import integrity

    if not os.path.isdir(sweep_dir):
      raise app.UsageError(f"no sweep folder {sweep_dir}; pass --results_dir and --sweep_name of a sweep")
    text, problems = integrity.format_report(integrity.check_sweep(sweep_dir), sweep_dir)
    print(text)
    return 1 if problems else 0
  plugins = ()
  if FLAGS.estimator_modules:
    from estimators import import_estimator_modules

    try:
      plugins, _ = import_estimator_modules(FLAGS.estimator_modules)
    except ValueError as e:
      raise app.UsageError(str(e)) from None
  if FLAGS.preset == "check":
    return run_check(plugins)
  grid = None if FLAGS.rebuild_summary else build_grid()
  executor = None if FLAGS.rebuild_summary else make_executor()
  ensure_writable(sweep_dir)
  if grid is not None:
    for line in describe_start(grid, sweep_dir):
      print(line, flush=True)

  from training import results_io

  if FLAGS.rebuild_summary:
    upgraded = results_io.upgrade_legacy_names(sweep_dir)
    if upgraded:
      print(f"renamed columns of an earlier version in {len(upgraded)} file(s) (values unchanged)", flush=True)
    results_io.rebuild_summary(sweep_dir)
  else:
    from training.sweep import run_sweep

    summary = run_sweep(
      grid,
      sweep_dir,
      data_dir=FLAGS.data_dir,
      tensorboard=FLAGS.tensorboard,
      retry_failed=FLAGS.retry_failed,
      executor=executor,
      max_stack=FLAGS.stack,
      extend=FLAGS.extend,
      plugins=tuple(plugins),
      allow_download=FLAGS.allow_download,
      restart_damaged=FLAGS.restart_damaged,
    )
  print(f"summary: {os.path.join(sweep_dir, 'summary.csv')}")
  toy = FLAGS.toy if FLAGS.toy != "auto" else {"quick": "quick", "reduced": "full"}.get(FLAGS.preset, "none")
  if toy != "none" and not FLAGS.rebuild_summary:
    from experiments.toy import QUICK, run_toy

    toy_estimators = toy_estimators_of(grid)
    if toy_estimators:
      print(f"toy problem ({toy}, {', '.join(toy_estimators)}): {os.path.join(sweep_dir, 'toy')}")
      run_toy(os.path.join(sweep_dir, "toy"), estimators=toy_estimators, **(QUICK if toy == "quick" else {}))
    else:
      print("toy problem: skipped (it compares estimators of d E[f]; the grid has only multi-sample bounds)")
  if FLAGS.report:
    from plots import make_report

    print(f"report: {make_report(sweep_dir, published_csv=FLAGS.published)}")
  if not FLAGS.rebuild_summary:
    failed = summary[summary["status"].isin(["failed", "invalid"])]
    if len(failed):
      print(
        f"error: {len(failed)} run(s) failed or have damaged files (their FAILED.json and summary.csv's reason "
        f"say why): {', '.join(failed['run_id'])}. The other runs finished; --retry_failed retries runs that "
        "stopped on a non-finite loss, --restart_damaged trains damaged ones again from step 0.",
        file=sys.stderr,
      )
      return EXIT_RUNS_FAILED
    if summary.attrs.get("reused_line"):
      print(summary.attrs["reused_line"])  # last, too: the console's end says the sweep was not (all) trained now
  return 0


# Exit codes: 0 all runs finished; 1 --check found problems (or a flag the parser refused);
# 2 bad input or environment (one "error:" line); 3 the sweep finished but runs failed.
# --preset=check (experiments/check.py): 0 every check passed; 4 the estimator is biased;
# 5 it cannot be run as declared (the message says what to fix); 6 a later check failed.
EXIT_RUNS_FAILED = 3


def toy_estimators_of(grid):
  """The grid's estimators the toy problem can compare: those of d E[f] (not multi-sample bounds)."""
  from estimators import get_estimator

  return tuple(name for name in grid.estimators if not get_estimator(name).bound_estimator)


def run_check(plugins):
  """--preset=check: the check of the one estimator --estimators names; returns its exit code."""
  from estimators import get_estimator

  names = [v.strip() for v in FLAGS.estimators or [] if v.strip()]
  if len(names) != 1:
    raise app.UsageError(
      "--preset=check checks one estimator: name it with --estimators=<name> (and load its file with "
      "--estimator_modules=path/to/my_estimator.py)"
    )
  try:
    name = get_estimator(names[0]).name
  except ValueError as e:
    raise app.UsageError(f"{e}. Load the estimator's file with --estimator_modules=path/to/my_estimator.py") from None
  out_dir = os.path.join(FLAGS.results_dir, FLAGS.sweep_name or f"check_{name}")
  ensure_writable(out_dir)
  from experiments.check import run_check as check

  return check(
    name,
    out_dir,
    size=FLAGS.check_size,
    data_dir=FLAGS.data_dir,
    plugins=tuple(plugins),
    executor=make_executor(),
    basket_state=FLAGS.basket_state or "frozen",
  )


def make_executor():
  from training.executors import make_executor as make

  try:
    return make(
      FLAGS.executor,
      workers=FLAGS.workers,
      threads=FLAGS.threads,
      ray_address=FLAGS.ray_address,
      ray_cpus_per_task=FLAGS.ray_cpus_per_task,
      ray_gpus_per_task=FLAGS.ray_gpus_per_task,
      max_retries=FLAGS.max_retries,
    )
  except ValueError as e:
    raise app.UsageError(str(e)) from None


def ensure_writable(sweep_dir):
  """Creates the sweep folder and proves it writable, before any run starts."""
  import tempfile

  try:
    os.makedirs(sweep_dir, exist_ok=True)
  except OSError as e:
    raise app.UsageError(
      f"cannot create results folder {sweep_dir} ({e.strerror}). Pass a writable --results_dir."
    ) from None
  try:
    fd, probe = tempfile.mkstemp(dir=sweep_dir, prefix=".tmp-probe-")
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    raise app.UsageError(
      f"results folder {sweep_dir} is not writable ({e.strerror}). Pass a writable --results_dir."
    ) from None


def expected_errors():
  """Exceptions that mean 'bad input or environment', reported as one line (no traceback)."""
  errors = [app.UsageError, OSError]
  for module, name in (
    ("training.sweep", "SweepError"),
    ("datasets.loaders", "DataError"),
    ("training.runner", "ConfigMismatchError"),
    ("training.executors", "ExecutorError"),
  ):
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
