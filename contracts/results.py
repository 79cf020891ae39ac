"""The results format: what ``training`` writes and ``plots`` reads, in one place.

Layout of a sweep folder (``results/<sweep>/``)::

    sweep.json                   the grid (contracts.settings.Grid.to_dict)
    sweep_log.jsonl              one line per driver invocation: what it trained, in what clock time
    notes.md                     optional, written by whoever ran the sweep (why this length, what
                                 differs); the report quotes it near the top
    summary.csv                  one row per run (SUMMARY_COLUMNS), rebuilt from the run folders
    runs/<run_id>/config.json    the run's RunConfig.to_dict(), plus ESTIMATOR_INFO_KEY, EFFECTIVE_KEY
                                 and PROVENANCE_KEY (one record per trained segment)
    runs/<run_id>/metrics.csv    one row per evaluation (METRIC_COLUMNS, then extra columns)
    runs/<run_id>/DONE.json      written last: the run finished (its summary row and provenance)
    runs/<run_id>/FAILED.json    the run stopped: {"reason", "step"}
    runs/<run_id>/checkpoint/state.npz   training state for resuming (not committed)
    toy/                         the toy problem's CSVs (experiments/toy.py)
    figures/, tables.md, tables.tex, report.md    made by plots/

Extra ``metrics.csv`` columns, after the fixed ones: ``basket_var_<estimator>`` (the
variance basket) and ``<estimator>_<scalar>`` (scalars an estimator reports about
its own state, e.g. ``relax_temperature``; ``<estimator>_<scalar>_layer<l>`` for a
layered model). Empty fields are "not computed here" (NaN).
"""

SWEEP_JSON = "sweep.json"
SWEEP_LOG = "sweep_log.jsonl"  # one line per driver run: clock time, member-steps trained, executor
SWEEP_NOTES = "notes.md"  # a person's notes on the sweep, quoted by the report
SUMMARY_CSV = "summary.csv"
RUNS_DIR = "runs"
CONFIG_JSON = "config.json"
METRICS_CSV = "metrics.csv"
DONE_JSON = "DONE.json"
FAILED_JSON = "FAILED.json"
CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.npz"
TOY_DIR = "toy"
LOCK_FILE = "run.lock"

# config.json: what the suite knew about the run's estimator when it ran, so that
# readers need not parse names (cost, the K of its bound, its family and size).
ESTIMATOR_INFO_KEY = "estimator_info"
# ... and the same record for each estimator of the run's variance basket (its ``basket`` setting).
BASKET_INFO_KEY = "basket_estimator_info"
# config.json: one record per trained segment of the run (training.provenance.segment):
# commit and whether the tree was dirty, package versions, CPU and GPUs, data source and
# split digest; DONE.json repeats the list.
PROVENANCE_KEY = "provenance"
# config.json: the settings as the run's steps applied them, where an estimator or the
# model overrides the requested value (decoder_sample, decoder_reduction, the estimator's
# learning rate, the K of a K-sample train ELBO).
EFFECTIVE_KEY = "effective_settings"
ESTIMATOR_INFO_FIELDS = (
  "label",
  "family",
  "size",
  "num_f_evals",
  "num_grad_evals",  # of the f evaluations, those that also backpropagate through f
  "num_network_evals",  # evaluations of the estimator's own networks at the run's D
  "bound_samples",
  "num_samples",
  "needs",
  "trainable",
  "description",
  "reference",
)

METRIC_COLUMNS = (
  "step",  # training steps done (0: before training)
  "wall_time_s",  # seconds of training and evaluation in this run so far
  "steps_per_sec",  # training steps per second over the block before this evaluation
  "stack_size",  # runs trained together in the graph that trained this one (member-steps = steps x this)
  "train_elbo",  # single-sample ELBO averaged over one pass of the training split
  "valid_bound_n",  # log mean_{k<=N} exp ELBO, N = the run's num_bound_samples (100 by default), averaged
  "test_bound_n",  # over the split (NaN where not computed)
  "grad_variance",  # mean over encoder parameters of EMA[g^2] - EMA[g]^2
  "valid_bound_k",  # the bound with K = the estimator's f evaluations (multi-sample or log_bound_k)
  "test_bound_k",
)
BASKET_PREFIX = "basket_var_"

SUMMARY_COLUMNS = (
  "run_id",
  "dataset",
  "model",
  "estimator",
  "seed",
  "num_steps",
  "status",
  "reason",
  "final_step",
  "final_train_elbo",
  "best_train_elbo",
  "final_valid_bound_n",
  "best_valid_bound_n",
  "final_test_bound_n",
  "test_bound_n_at_best_valid",
  "final_grad_variance",
  "mean_grad_variance",
  "wall_time_s",
  "steps_per_sec",
  "member_steps_per_sec",
  "final_valid_bound_k",
  "final_test_bound_k",
)
# Names the files of earlier versions gave these columns (the ``_100`` names held the
# num_bound_samples bound whatever that number was): readers rename them on reading, and a
# resumed run's metrics.csv is rewritten under the current names at its next evaluation.
LEGACY_COLUMNS = {
  "valid_bound_100": "valid_bound_n",
  "test_bound_100": "test_bound_n",
  "final_valid_bound_100": "final_valid_bound_n",
  "best_valid_bound_100": "best_valid_bound_n",
  "final_test_bound_100": "final_test_bound_n",
  "test_bound_100_at_best_valid": "test_bound_n_at_best_valid",
}
SUMMARY_KEYS = ("run_id", "dataset", "model", "estimator", "seed", "status")
STATUSES = ("done", "failed", "running", "invalid")


def legacy_renames(columns):
  """{old: current} for the columns among ``columns`` that carry an earlier version's name
  (for ``DataFrame.rename``); a file holding both names keeps the current one."""
  names = set(columns)
  return {old: new for old, new in LEGACY_COLUMNS.items() if old in names and new not in names}


def run_id(dataset, model, estimator, seed, share_upper_noise=False):
  """``<dataset>-<model>-<estimator>[-shared]-seed<seed>``: a run's folder name."""
  shared = "-shared" if share_upper_noise else ""
  return f"{dataset}-{model}-{estimator}{shared}-seed{seed}"


def estimator_scalar_column(estimator, scalar, layer=None):
  """The metrics column of a scalar an estimator reports (``relax_temperature``)."""
  return f"{estimator}_{scalar}" + ("" if layer is None else f"_layer{layer}")


def basket_column(estimator):
  return BASKET_PREFIX + estimator


def metric_columns(names):
  """METRIC_COLUMNS, then the extra columns among ``names`` in their order."""
  return list(METRIC_COLUMNS) + [n for n in names if n not in METRIC_COLUMNS]


# toy/: the toy problem's CSVs (experiments/toy.py writes them, plots/ reads them).
TOY_VARIANCE_CSV = "toy_variance.csv"  # one row per (p0, estimator, sigma_phi) point
TOY_TRAINING_CSV = "toy_training.csv"  # one row per (p0, estimator, seed, step) evaluation
TOY_VARIANCE_COLUMNS = ("p0", "estimator", "sigma_phi", "variance", "variance_exact", "num_samples")
TOY_TRAINING_COLUMNS = ("p0", "estimator", "seed", "step", "sigma_phi")
# Optional toy_variance.csv column: the s.e. of ``variance`` from the draws' fourth moment;
# without it readers fall back to the normal-theory s.e.
TOY_VARIANCE_SE_COLUMN = "variance_se"
