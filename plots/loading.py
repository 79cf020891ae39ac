"""Reading a sweep directory: summary.csv, per-run metrics.csv / config.json, toy CSVs.

Layout (written by the training driver and the toy runner)::

    results/<sweep>/summary.csv                 one row per run
    results/<sweep>/runs/<run_id>/metrics.csv   one row per evaluation
    results/<sweep>/runs/<run_id>/config.json   the run's configuration
    results/<sweep>/toy/toy_variance.csv        optional, see TOY_VARIANCE_COLUMNS
    results/<sweep>/toy/toy_training.csv        optional, see TOY_TRAINING_COLUMNS

Everything is read with pandas; empty CSV fields become NaN.
"""

from __future__ import annotations

import json
import os
import warnings

import pandas as pd

SUMMARY_COLUMNS = (
    "run_id",
    "dataset",
    "model",
    "estimator",
    "seed",
    "num_steps",
    "status",
    "final_step",
    "final_train_elbo",
    "best_train_elbo",
    "final_valid_bound_100",
    "best_valid_bound_100",
    "final_test_bound_100",
    "test_bound_100_at_best_valid",
    "final_grad_variance",
    "mean_grad_variance",
    "wall_time_s",
    "steps_per_sec",
)
# Without these a summary.csv cannot be used at all; the others may be missing.
SUMMARY_REQUIRED = ("run_id", "dataset", "model", "estimator", "seed", "status")

METRICS_COLUMNS = (
    "step",
    "wall_time_s",
    "steps_per_sec",
    "train_elbo",
    "valid_bound_100",
    "test_bound_100",
    "grad_variance",
    "relax_temperature",
    "relax_scale",
    # The bound with the training K (multi-sample estimators only, NaN otherwise).
    "valid_bound_k",
    "test_bound_k",
)
# Optional metrics.csv columns "basket_var_<estimator>": the gradient variance of
# <estimator> measured at the parameters of the run (which is trained by its own
# estimator), for the variance basket figure and table. Not added when absent.
BASKET_PREFIX = "basket_var_"

# toy/toy_variance.csv: one row per (p0, estimator, sigma_phi) point.
#   p0             the toy target in f(b) = sum_d (b_d - p0)^2
#   estimator      estimator name (same names as the VAE runs)
#   sigma_phi      sigma(phi), the Bernoulli mean at which the variance is measured
#   variance       empirical variance of the gradient estimate (per bit)
#   variance_exact exact variance, NaN where not computable
# Optional: num_samples (gradient draws behind `variance`); when present, claim 1 uses
# it for the estimation error of `variance` (see plots/compare.py).
TOY_VARIANCE_COLUMNS = ("p0", "estimator", "sigma_phi", "variance", "variance_exact")
# toy/toy_training.csv: one row per (p0, estimator, seed, step) evaluation.
TOY_TRAINING_COLUMNS = ("p0", "estimator", "seed", "step", "sigma_phi")

RUN_KEYS = ("run_id", "dataset", "model", "estimator", "seed")


class ResultsDirError(FileNotFoundError):
    """The directory is not a sweep directory (no usable summary.csv)."""


def summary_path(results_dir: str) -> str:
    return os.path.join(results_dir, "summary.csv")


def load_summary(results_dir: str) -> pd.DataFrame:
    """summary.csv as a DataFrame, with string dataset/model/estimator/status columns.

    Raises ResultsDirError with a readable message when the file is missing or lacks
    the identifying columns.
    """
    path = summary_path(results_dir)
    if not os.path.isdir(results_dir):
        raise ResultsDirError(f"results directory {results_dir!r} does not exist")
    if not os.path.isfile(path):
        raise ResultsDirError(
            f"no summary.csv in {results_dir!r}: expected {path!r}, written by the "
            "training driver (one row per run). Point --results_dir at a sweep "
            "directory such as results/<sweep>."
        )
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ResultsDirError(f"{path!r} is empty (not even a header)") from None
    missing = [c for c in SUMMARY_REQUIRED if c not in df.columns]
    if missing:
        raise ResultsDirError(f"{path!r} lacks required columns {missing}")
    for col in SUMMARY_COLUMNS:
        if col not in df.columns:
            df[col] = float("nan")
    for col in ("run_id", "dataset", "model", "estimator", "status"):
        df[col] = df[col].astype(str).str.strip()
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
    if df["seed"].notna().all():
        df["seed"] = df["seed"].astype(int)
    return df


def done_runs(summary: pd.DataFrame) -> pd.DataFrame:
    """Finished runs only; one row per (dataset, model, estimator, seed).

    If a seed was run twice (e.g. a rerun after a failure), the last row in
    summary.csv wins.
    """
    d = summary[summary["status"] == "done"]
    return d.drop_duplicates(["dataset", "model", "estimator", "seed"], keep="last")


def load_config(results_dir: str, run_id: str) -> dict | None:
    path = os.path.join(results_dir, "runs", run_id, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        warnings.warn(f"could not read {path}: {e}")
        return None


def load_configs(results_dir: str, summary: pd.DataFrame) -> pd.DataFrame:
    """One row per run of summary.csv with the keys of its config.json (NaN if none)."""
    rows = []
    for run_id in summary["run_id"]:
        cfg = load_config(results_dir, run_id) or {}
        row = {k: v for k, v in cfg.items() if not isinstance(v, (dict, list))}
        row["run_id"] = run_id
        row["_has_config"] = bool(cfg)
        rows.append(row)
    return pd.DataFrame(rows)


def load_metrics(
    results_dir: str,
    summary: pd.DataFrame,
    statuses=("done", "running"),
) -> pd.DataFrame:
    """All runs' metrics.csv stacked, with run_id/dataset/model/estimator/seed added.

    Only runs of summary.csv whose status is in `statuses` are read (by default failed
    runs are left out of the curves). Runs without a metrics.csv are skipped.
    """
    frames = []
    runs = summary[summary["status"].isin(statuses)]
    for _, run in runs.iterrows():
        path = os.path.join(results_dir, "runs", run["run_id"], "metrics.csv")
        if not os.path.isfile(path):
            continue
        try:
            m = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            continue
        if m.empty or "step" not in m.columns:
            continue
        for col in METRICS_COLUMNS:
            if col not in m.columns:
                m[col] = float("nan")
        for key in RUN_KEYS:
            m[key] = run[key]
        frames.append(m)
    if not frames:
        return pd.DataFrame(columns=list(RUN_KEYS) + list(METRICS_COLUMNS))
    return pd.concat(frames, ignore_index=True)


def basket_columns(metrics: pd.DataFrame) -> list[str]:
    """The basket_var_<estimator> columns of the metrics that hold a finite value."""
    cols = [c for c in metrics.columns if str(c).startswith(BASKET_PREFIX)]
    return [c for c in cols
            if pd.to_numeric(metrics[c], errors="coerce").notna().any()]


def unlisted_run_dirs(results_dir: str, summary: pd.DataFrame) -> list[str]:
    """Directories under runs/ that summary.csv does not mention."""
    runs_dir = os.path.join(results_dir, "runs")
    if not os.path.isdir(runs_dir):
        return []
    listed = set(summary["run_id"])
    return sorted(
        d
        for d in os.listdir(runs_dir)
        if os.path.isdir(os.path.join(runs_dir, d)) and d not in listed
    )


def _load_optional_csv(path: str, required) -> pd.DataFrame | None:
    if not os.path.isfile(path):
        return None
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None
    missing = [c for c in required if c not in df.columns]
    if missing:
        warnings.warn(f"{path} lacks columns {missing}; ignored")
        return None
    df["estimator"] = df["estimator"].astype(str).str.strip()
    return df


def load_toy_variance(results_dir: str) -> pd.DataFrame | None:
    """toy/toy_variance.csv, or None if absent. variance_exact may be all NaN."""
    path = os.path.join(results_dir, "toy", "toy_variance.csv")
    df = _load_optional_csv(path, [c for c in TOY_VARIANCE_COLUMNS if c != "variance_exact"])
    if df is not None and "variance_exact" not in df.columns:
        df["variance_exact"] = float("nan")
    return df


def load_toy_training(results_dir: str) -> pd.DataFrame | None:
    """toy/toy_training.csv, or None if absent."""
    path = os.path.join(results_dir, "toy", "toy_training.csv")
    return _load_optional_csv(path, TOY_TRAINING_COLUMNS)
