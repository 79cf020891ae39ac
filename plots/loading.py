"""Reading a sweep folder: summary.csv, each run's config.json and metrics.csv, sweep.json, toy CSVs.

The format (file names, columns) is ``contracts.results``; nothing here repeats it.
``load_sweep`` reads everything once and never stops on one run's damaged files: a
``config.json`` that does not parse or describes another run, a ``metrics.csv`` that
does not parse, a run marked ``invalid`` in summary.csv are recorded in
``SweepData.damaged`` (run id and problem) and that run is left out of every figure,
table and claim; a ``metrics.csv`` that lacks columns or holds non-numeric values is
recorded too and used for what it has. Extra ``metrics.csv`` columns (estimator
scalars such as ``relax_temperature``, ``basket_var_<name>``) are kept as they are.

What is known about each run's estimator (label, family, size, evaluations of ``f``,
the K of its bound) comes from its ``config.json`` (``estimator_info``), never from
its name: ``SweepData.catalogue`` (``plots.style.Catalogue``) holds it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os

import numpy as np
import pandas as pd

from contracts import results
from contracts.settings import setting_names
from plots import style

SUMMARY_COLUMNS = results.SUMMARY_COLUMNS
METRIC_COLUMNS = results.METRIC_COLUMNS
BASKET_PREFIX = results.BASKET_PREFIX
# Without these a summary.csv cannot be used at all; the others may be missing.
SUMMARY_REQUIRED = results.SUMMARY_KEYS
RUN_KEYS = ("run_id", "dataset", "model", "estimator", "seed")
# The setting that says how many samples the ``*_bound_n`` columns hold: load_sweep adds it to
# the metrics and summary frames, so that labels can say the number (bound_samples_text).
BOUND_SAMPLES = "num_bound_samples"
# metrics.csv columns that files written before they existed lack; absent, they are
# not a damage (stack_size: runs then trained one at a time).
LATER_METRIC_COLUMNS = {"stack_size": 1.0}
# Status of the runs whose curves are drawn (a failed run's curve stops at its failure).
CURVE_STATUSES = ("done", "running")
# Values of a metrics.csv field that mean "not computed" rather than damage.
_NAN_TOKENS = {"", "nan", "na", "n/a", "null", "none"}


class ResultsDirError(FileNotFoundError):
  """The directory is not a sweep directory (no usable summary.csv)."""


@dataclasses.dataclass(frozen=True)
class EstimatorInfo:
  """What a run's config.json recorded about its estimator (contracts.results.ESTIMATOR_INFO_FIELDS)."""

  name: str
  label: str
  family: str
  size: object = None
  num_f_evals: object = None
  bound_samples: object = None
  trainable: object = None
  reference: str = ""
  # Declared costs besides f: gradient (backward) passes and network evaluations per step; None: not recorded.
  num_grad_evals: object = None
  num_network_evals: object = None

  @classmethod
  def from_config(cls, name, info):
    """From ``config[ESTIMATOR_INFO_KEY]``; raises ValueError where it is not a usable record."""
    if not isinstance(info, dict):
      raise ValueError(f"{results.ESTIMATOR_INFO_KEY} is not an object")
    evals = info.get("num_f_evals")
    if evals is not None and (isinstance(evals, bool) or not isinstance(evals, int) or evals < 1):
      raise ValueError(f"{results.ESTIMATOR_INFO_KEY}.num_f_evals is {evals!r}")
    return cls(
      name=str(name),
      label=str(info.get("label") or name),
      family=str(info.get("family") or name),
      size=info.get("size"),
      num_f_evals=evals,
      bound_samples=info.get("bound_samples"),
      trainable=info.get("trainable"),
      reference=str(info.get("reference") or ""),
      num_grad_evals=info.get("num_grad_evals"),
      num_network_evals=info.get("num_network_evals"),
    )


@dataclasses.dataclass
class SweepData:
  """Everything a report is made from, read once by ``load_sweep``."""

  results_dir: str
  summary: pd.DataFrame  # summary.csv rows of usable runs (damaged ones removed)
  all_summary: pd.DataFrame  # every row of summary.csv as read
  runs: pd.DataFrame  # one row per summary.csv run: keys, status, usable, settings from config.json
  metrics: pd.DataFrame  # metrics.csv rows of usable done/running runs, with RUN_KEYS
  configs: dict  # run_id -> config.json dict (usable runs)
  catalogue: style.Catalogue  # estimator name -> what its runs recorded (estimator_info)
  damaged: list  # (run_id, problem, used: bool) for every run file problem found
  without_info: list  # run ids whose config.json has no estimator_info (older format)
  sweep_json: dict | None  # sweep.json (contracts.settings.Grid.to_dict), None if absent or unreadable
  sweep_json_problem: str | None
  toy_variance: pd.DataFrame | None
  toy_training: pd.DataFrame | None

  @property
  def done(self) -> pd.DataFrame:
    return done_runs(self.summary)


def summary_path(results_dir: str) -> str:
  return os.path.join(results_dir, results.SUMMARY_CSV)


def run_dir(results_dir: str, run_id: str) -> str:
  return os.path.join(results_dir, results.RUNS_DIR, run_id)


def load_summary(results_dir: str) -> pd.DataFrame:
  """summary.csv as a DataFrame, with string dataset/model/estimator/status columns.

  Raises ResultsDirError with a readable message when the file is missing or lacks
  the identifying columns. Columns of SUMMARY_COLUMNS it lacks are added as NaN.
  """
  path = summary_path(results_dir)
  if not os.path.isdir(results_dir):
    raise ResultsDirError(f"results directory {results_dir!r} does not exist")
  if not os.path.isfile(path):
    raise ResultsDirError(
      f"no summary.csv in {results_dir!r}: expected {path!r}, written by the training driver (one row per run). "
      "Point --results_dir at a sweep directory such as results/<sweep>."
    )
  try:
    df = pd.read_csv(path, keep_default_na=True)
    df = df.rename(columns=results.legacy_renames(df.columns))
  except pd.errors.EmptyDataError:
    raise ResultsDirError(f"{path!r} is empty (not even a header)") from None
  except (pd.errors.ParserError, UnicodeDecodeError) as e:
    raise ResultsDirError(f"{path!r} does not parse as CSV ({type(e).__name__}: {e})") from None
  missing = [c for c in SUMMARY_REQUIRED if c not in df.columns]
  if missing:
    raise ResultsDirError(f"{path!r} lacks required columns {missing}")
  for col in SUMMARY_COLUMNS:
    if col not in df.columns:
      df[col] = math.nan
  for col in ("run_id", "dataset", "model", "estimator", "status"):
    df[col] = df[col].astype(str).str.strip()
  df["reason"] = df["reason"].fillna("").astype(str)
  df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
  for col in SUMMARY_COLUMNS:
    if col not in ("run_id", "dataset", "model", "estimator", "status", "reason", "seed"):
      df[col] = pd.to_numeric(df[col], errors="coerce")
  return df


def done_runs(summary: pd.DataFrame) -> pd.DataFrame:
  """Finished runs only; one row per (dataset, model, estimator, seed).

  If a seed was run twice (e.g. a rerun after a failure), the last row in
  summary.csv wins.
  """
  d = summary[summary["status"] == "done"]
  return d.drop_duplicates(["dataset", "model", "estimator", "seed"], keep="last")


def read_config(path: str):
  """(config dict, None) or (None, problem) for one run's config.json."""
  if not os.path.isfile(path):
    return None, f"no {results.CONFIG_JSON}"
  return _read_json_object(path, results.CONFIG_JSON)


def _read_json_object(path, name):
  """(dict, None), or (None, problem) when the file ``name`` does not parse or holds no JSON object."""
  try:
    with open(path, encoding="utf-8") as f:
      value = json.load(f)
  except (OSError, UnicodeDecodeError, ValueError) as e:
    return None, f"{name} does not parse ({type(e).__name__}: {_short(e)})"
  if not isinstance(value, dict):
    return None, f"{name} is not a JSON object"
  return value, None


def _short(e, limit=120):
  text = str(e).replace("\n", " ")
  return text if len(text) <= limit else text[:limit] + "..."


def _complete_lines(path: str) -> str:
  """The file's text up to its last newline: a torn last line (a kill mid-append) is not a row yet."""
  with open(path, encoding="utf-8", newline="") as f:
    text = f.read()
  return text if text.endswith("\n") else text[: text.rfind("\n") + 1]


def read_metrics_file(path: str):
  """(frame or None, problems) for one run's metrics.csv.

  None (with the problem) when the file is absent, does not parse or has no ``step``
  column; otherwise the numeric frame, with METRIC_COLUMNS it lacks added as NaN and a
  problem naming them (except LATER_METRIC_COLUMNS), and a problem naming columns
  whose fields are not numbers (those fields become NaN).
  """
  if not os.path.isfile(path):
    return None, [f"no {results.METRICS_CSV}"]
  try:
    text = _complete_lines(path)
    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    raw = raw.rename(columns=results.legacy_renames(raw.columns))
  except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
    return None, [f"{results.METRICS_CSV} does not parse ({type(e).__name__}: {_short(e)})"]
  if "step" not in raw.columns:
    return None, [f"{results.METRICS_CSV} has no step column"]
  problems = []
  frame = pd.DataFrame(index=raw.index)
  bad_columns = []
  for col in raw.columns:
    text_values = raw[col].astype(str).str.strip()
    values = pd.to_numeric(text_values.where(~text_values.str.lower().isin(_NAN_TOKENS)), errors="coerce")
    if (values.isna() & ~text_values.str.lower().isin(_NAN_TOKENS)).any():
      bad_columns.append(col)
    frame[col] = values.astype(float)
  if bad_columns:
    problems.append(f"{results.METRICS_CSV} has non-numeric values in {', '.join(bad_columns)} (read as empty)")
  missing = [c for c in METRIC_COLUMNS if c not in frame.columns and c not in LATER_METRIC_COLUMNS]
  if missing:
    problems.append(f"{results.METRICS_CSV} lacks columns {', '.join(missing)}")
  for col in METRIC_COLUMNS:
    if col not in frame.columns:
      frame[col] = LATER_METRIC_COLUMNS.get(col, math.nan)
  frame = frame[frame["step"].notna()]
  if frame.empty:
    problems.append(f"{results.METRICS_CSV} has no evaluation")
  return frame, problems


def load_sweep(results_dir: str) -> SweepData:
  """Reads a sweep folder (see the module docstring). Raises ResultsDirError without a usable summary.csv."""
  summary = load_summary(results_dir)
  damaged, without_info, configs, infos = [], [], {}, {}
  run_rows, frames, basket_infos = [], [], []
  names = setting_names()
  for row in summary.itertuples(index=False):
    problem, used_problems = None, []
    config = None
    if not np.isfinite(row.seed) or row.seed != int(row.seed):
      problem = "summary.csv row has no whole-number seed"
    elif row.status == "invalid":
      problem = f"marked invalid in summary.csv ({row.reason or 'no reason given'})"
    else:
      config, problem = read_config(os.path.join(run_dir(results_dir, row.run_id), results.CONFIG_JSON))
    if config is not None:
      problem = _config_mismatch(config, row)
    info = None
    if problem is None and results.ESTIMATOR_INFO_KEY in config:
      try:
        info = EstimatorInfo.from_config(row.estimator, config[results.ESTIMATOR_INFO_KEY])
      except ValueError as e:
        problem = f"{results.CONFIG_JSON}: {e}"
    frame = None
    if problem is None and row.status in CURVE_STATUSES:
      frame, used_problems = read_metrics_file(os.path.join(run_dir(results_dir, row.run_id), results.METRICS_CSV))
      if frame is None:
        problem, used_problems = used_problems[0], []
    usable = problem is None
    if not usable:
      damaged.append((row.run_id, problem, False))
    else:
      damaged.extend((row.run_id, p, True) for p in used_problems)
      configs[row.run_id] = config
      if info is None:
        without_info.append(row.run_id)
      else:
        infos.setdefault(row.estimator, info)
      basket_infos.append(_basket_infos(config))
      if frame is not None and not frame.empty:
        for key in RUN_KEYS:
          frame[key] = int(row.seed) if key == "seed" else getattr(row, key)
        frame[BOUND_SAMPLES] = config.get(BOUND_SAMPLES, math.nan)
        frames.append(frame)
    record = {k: getattr(row, k) for k in ("run_id", "dataset", "model", "estimator", "seed", "status", "final_step")}
    record["usable"] = usable
    for name in names:
      if config is not None and name in config:
        value = config[name]
        record[name] = tuple(value) if isinstance(value, list) else value
    run_rows.append(record)
  # A run's own estimator_info first; basket records only name estimators no run trained.
  for recorded in basket_infos:
    for name, info in recorded.items():
      infos.setdefault(name, info)
  runs = pd.DataFrame(run_rows)
  bad = {run_id for run_id, _, used in damaged if not used}
  usable_summary = summary[~summary["run_id"].isin(bad)].copy()
  usable_summary["seed"] = usable_summary["seed"].astype(int)
  usable_summary[BOUND_SAMPLES] = usable_summary["run_id"].map(
    {run_id: config.get(BOUND_SAMPLES, math.nan) for run_id, config in configs.items()}
  )
  metrics = (
    pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RUN_KEYS) + list(METRIC_COLUMNS))
  )
  sweep_json, sweep_problem = _read_sweep_json(results_dir)
  return SweepData(
    results_dir=results_dir,
    summary=usable_summary,
    all_summary=summary,
    runs=runs,
    metrics=metrics,
    configs=configs,
    catalogue=style.Catalogue(infos),
    damaged=damaged,
    without_info=without_info,
    sweep_json=sweep_json,
    sweep_json_problem=sweep_problem,
    toy_variance=load_toy_variance(results_dir),
    toy_training=load_toy_training(results_dir),
  )


def _config_mismatch(config, row):
  """A problem when config.json describes another run than its summary.csv row, else None."""
  for key in ("run_id", "dataset", "model", "estimator", "seed"):
    if key in config and str(config[key]) != str(int(row.seed) if key == "seed" else getattr(row, key)):
      return f"{results.CONFIG_JSON} describes {key} {config[key]!r}, summary.csv {getattr(row, key)!r}"
  return None


def _basket_infos(config):
  """{name: EstimatorInfo} for the basket's estimators a config.json recorded; unusable records are left out.

  They only name and order the basket's columns, so a bad record costs a label, not the run.
  """
  recorded = config.get(results.BASKET_INFO_KEY)
  if not isinstance(recorded, dict):
    return {}
  infos = {}
  for name, raw in recorded.items():
    try:
      infos[str(name)] = EstimatorInfo.from_config(str(name), raw)
    except ValueError:
      continue
  return infos


def _read_sweep_json(results_dir):
  path = os.path.join(results_dir, results.SWEEP_JSON)
  if not os.path.isfile(path):
    return None, None
  return _read_json_object(path, results.SWEEP_JSON)


def basket_columns(metrics: pd.DataFrame) -> list[str]:
  """The basket_var_<estimator> columns of the metrics that hold a finite value, in column order."""
  cols = [c for c in metrics.columns if str(c).startswith(BASKET_PREFIX)]
  return [c for c in cols if np.isfinite(pd.to_numeric(metrics[c], errors="coerce")).any()]


def basket_measured(column: str) -> str:
  """'disarm' for 'basket_var_disarm'."""
  return str(column)[len(BASKET_PREFIX) :]


def unlisted_run_dirs(results_dir: str, summary: pd.DataFrame) -> list[str]:
  """Directories under runs/ that summary.csv does not mention."""
  runs_dir = os.path.join(results_dir, results.RUNS_DIR)
  if not os.path.isdir(runs_dir):
    return []
  listed = set(summary["run_id"])
  return sorted(d for d in os.listdir(runs_dir) if os.path.isdir(os.path.join(runs_dir, d)) and d not in listed)


def _load_optional_csv(path: str, required) -> pd.DataFrame | None:
  if not os.path.isfile(path):
    return None
  try:
    df = pd.read_csv(path)
  except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
    return None
  if any(c not in df.columns for c in required):
    return None
  df["estimator"] = df["estimator"].astype(str).str.strip()
  return df


def load_toy_variance(results_dir: str) -> pd.DataFrame | None:
  """toy/toy_variance.csv, or None if absent or unreadable. variance_exact may be all NaN."""
  path = os.path.join(results_dir, results.TOY_DIR, results.TOY_VARIANCE_CSV)
  # The closed form is known for some estimators only (an empty column otherwise).
  df = _load_optional_csv(path, [c for c in results.TOY_VARIANCE_COLUMNS if c != "variance_exact"])
  if df is not None and "variance_exact" not in df.columns:
    df["variance_exact"] = math.nan
  return df


def load_toy_training(results_dir: str) -> pd.DataFrame | None:
  """toy/toy_training.csv, or None if absent or unreadable."""
  path = os.path.join(results_dir, results.TOY_DIR, results.TOY_TRAINING_CSV)
  return _load_optional_csv(path, results.TOY_TRAINING_COLUMNS)
