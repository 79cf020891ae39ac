"""Published numbers beside ours: the CSV, the protocols behind it, the comparison and its reference lines.

The default CSV is ``results/published/rodeo_2022.csv`` (the RODEO paper's Tables 1, 2
and 5; its README.md says where the numbers come from). Columns: ``dataset, model,
estimator, metric, value, stderr, steps, source, quote`` (``stderr``, ``steps`` and
``quote`` may be missing or empty; an empty ``stderr`` counts as 0, an empty ``steps``
as unknown).

Every cell of the sweep (dataset x model x estimator) with a published row is compared:
our mean +- s.e. over finished seeds against the published value. Which of our
quantities is set beside a published one, and which settings the published runs used,
is data about the published source (``PROTOCOLS``, keyed by the paper and table named in
the row's ``source``); rows of an unknown source compare the column of the same name.

A difference d = ours - published is judged only where our runs are as long as the
published ones, every setting the protocol names matches, the data set is the paper's
(our Omniglot is not) and we have >= ``verdicts.MIN_N`` seeds. Its s.e. is
sqrt(se_ours^2 + se_published^2), read in Student's t with the Welch-Satterthwaite degrees
of freedom (``stats.welch_df``): ours n - 1, the published value's ``PublishedProtocol.runs``
- 1 (the RODEO tables: mean +- s.e. over 5 runs); for a source of unknown protocol the
published s.e. is taken as known (infinite df), a missing one as 0. "consistent" is an
equivalence statement: TOST within +-``verdicts.MARGIN_NATS`` at level ``verdicts.ALPHA``;
else "ours higher" / "ours lower" where the 95% interval excludes 0; else "no difference
detected" with the smallest detectable difference (``plots.verdicts``). Otherwise the row
says why it is not judged, and the published value is drawn as a reference line on that cell's training-curve figure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
import pandas as pd

from contracts import protocols, results
from plots import stats, style, verdicts
from plots.markdown import int_range, md_cell, md_dataset, range_text

MARGIN_NATS = verdicts.MARGIN_NATS

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PUBLISHED_CSV = os.path.join(REPO_ROOT, "results", "published", "rodeo_2022.csv")
# How the report names the default CSV (a path from the repository root, the same on every machine).
DEFAULT_PUBLISHED_NAME = "results/published/rodeo_2022.csv"
# What a user passes to switch the comparison off (``--published=none``).
DISABLED = ("none", "")

PUBLISHED_COLUMNS = ("dataset", "model", "estimator", "metric", "value", "stderr", "steps", "source", "quote")
REQUIRED_COLUMNS = ("dataset", "model", "estimator", "metric", "value", "source")

OMNIGLOT_NOTE = "not the paper's Omniglot (Omniglot-28* derived by this suite): not directly comparable"

K_BOUND_CAVEAT = (
  "The RODEO code's released evaluation draws the estimator's K samples for what its tables call the "
  "100-sample test bound (PROTOCOL.md section 9: the K = 2 and K = 4 gaps between test bound and train ELBO fit "
  "a K-sample bound); it is set beside our K-sample test bound (final_test_bound_k, K = the estimator's "
  "evaluations of f), not our N-sample one (N = num_bound_samples, 100 by default)."
)


@dataclasses.dataclass(frozen=True)
class PublishedProtocol:
  """The settings behind a published table and which of our quantities matches each of its metrics."""

  name: str
  paper: str  # an identifier found in the rows' source (arXiv number)
  tables: tuple  # table numbers as written in the source ("Table 1")
  settings: dict  # contracts.settings name -> the published runs' value
  dataset_settings: dict  # dataset -> {setting: value} where a data set used other values
  our_metric: dict  # published metric -> our summary.csv column
  caveats: dict  # published metric -> what the reader must know next to the number
  runs: int = 0  # seeds behind each published mean +- s.e. (0: unknown, the s.e. is taken as known)

  def settings_for(self, dataset):
    return {**self.settings, **self.dataset_settings.get(dataset, {})}


# The RODEO paper's protocols (PROTOCOL.md section 9; the RODEO code's launchers).
PROTOCOLS = (
  PublishedProtocol(
    name="RODEO Tables 1-2 (nonlinear VAE)",
    paper="2202.09497",
    tables=("1", "2"),
    settings=protocols.RODEO,
    dataset_settings=protocols.RODEO_DATASETS,
    our_metric={"final_train_elbo": "final_train_elbo", "final_test_bound_100": "final_test_bound_k"},
    caveats={"final_test_bound_100": K_BOUND_CAVEAT},
    runs=5,
  ),
  PublishedProtocol(
    name="RODEO Table 5 (2-4 layer linear VAEs)",
    paper="2202.09497",
    tables=("5",),
    settings=protocols.RODEO_LAYERED,
    dataset_settings={},
    our_metric={"final_train_elbo": "final_train_elbo", "final_test_bound_100": "final_test_bound_n"},
    caveats={},
    runs=5,
  ),
)

_TABLE = re.compile(r"\bTable (\d+)\b")


class PublishedCSVError(ValueError):
  """The published-numbers CSV is missing or malformed."""


def resolve(published_csv):
  """(path or None, name shown in the report) for make_report's ``published_csv`` argument.

  None: the default CSV; "none" or "": no comparison; anything else: that path.
  """
  if published_csv is None:
    return DEFAULT_PUBLISHED_CSV, DEFAULT_PUBLISHED_NAME
  if published_csv is False or str(published_csv).strip().lower() in DISABLED:
    return None, None
  path = str(published_csv)
  absolute = os.path.abspath(path)
  if absolute == os.path.abspath(DEFAULT_PUBLISHED_CSV):
    return path, DEFAULT_PUBLISHED_NAME
  if absolute.startswith(REPO_ROOT + os.sep):
    return path, os.path.relpath(absolute, REPO_ROOT).replace(os.sep, "/")
  return path, path


def _norm(s) -> str:
  return str(s).strip().lower().replace("-", "_").replace(" ", "_")


def load_published(path: str) -> pd.DataFrame:
  try:
    df = pd.read_csv(path)
  except FileNotFoundError:
    raise PublishedCSVError(f"published CSV {path!r} does not exist") from None
  except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
    raise PublishedCSVError(f"published CSV {path!r} cannot be read: {e}") from None
  missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
  if missing:
    raise PublishedCSVError(f"published CSV {path!r} lacks columns {missing}; expected {list(PUBLISHED_COLUMNS)}")
  for c in ("stderr", "steps"):
    df[c] = pd.to_numeric(df[c], errors="coerce") if c in df.columns else math.nan
  if "quote" not in df.columns:
    df["quote"] = ""
  df["dataset"] = df["dataset"].map(_norm)
  df["model"] = df["model"].map(_norm)
  df["estimator"] = df["estimator"].map(_norm)
  df["metric"] = df["metric"].astype(str).str.strip()
  df["value"] = pd.to_numeric(df["value"], errors="coerce")
  df["source"] = df["source"].fillna("").astype(str)
  df["quote"] = df["quote"].fillna("").astype(str)
  return df


def protocol_of(source: str):
  """(protocol or None, table number or '') of a published row, from its source text."""
  match = _TABLE.search(source)
  table = match.group(1) if match else ""
  for protocol in PROTOCOLS:
    if protocol.paper in source and table in protocol.tables:
      return protocol, table
  return None, table


def _same(a, b) -> bool:
  if isinstance(a, bool) or isinstance(b, bool):
    return a is b or a == b
  if isinstance(a, (int, float)) and isinstance(b, (int, float)):
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
  return a == b


def setting_differences(data, dataset, model, estimator, protocol):
  """[(setting, our values, published value)] where a usable run of the cell differs from the protocol."""
  runs = data.runs[
    (data.runs["dataset"] == dataset)
    & (data.runs["model"] == model)
    & (data.runs["estimator"] == estimator)
    & data.runs["usable"]
  ]
  out = []
  # What each run's steps applied (config.json's effective settings: RELAX, VIMCO and local
  # DisARM fix their own decoder sample, whatever the run asked for); runs made before
  # that record existed count with the value they asked for.
  applied = [data.configs.get(run_id, {}).get(results.EFFECTIVE_KEY) or {} for run_id in runs["run_id"]]
  for name, published in protocol.settings_for(dataset).items():
    if name not in runs.columns:
      out.append((name, "not recorded", published))
      continue
    ours = [a.get(name, v) for a, v in zip(applied, runs[name])]
    ours = [v for v in ours if not (isinstance(v, float) and math.isnan(v))]
    if not ours:
      out.append((name, "not recorded", published))
    elif any(not _same(v, published) for v in ours):
      out.append((name, sorted({format_setting(v) for v in ours}), published))
  return out


def format_setting(value) -> str:
  if isinstance(value, bool):
    return "true" if value else "false"
  if value is None:
    return "none"
  if isinstance(value, float):
    return f"{value:g}"
  if isinstance(value, (list, tuple)):
    return ",".join(str(v) for v in value) if value else "(none)"
  return str(value)


def _steps_text(lo, hi) -> str:
  return range_text([x for x in (lo, hi) if x is not None])


def judge_difference(ours, published, published_se, published_df, margin=MARGIN_NATS) -> tuple[dict, str, str]:
  """(test, verdict, reason) of mean(ours) - published (pure; module doc): Welch-Satterthwaite df with
  the published s.e. on ``published_df`` degrees of freedom (inf: known), TOST within +-margin."""
  mean, se, n = stats.mean_se(ours)
  pub_se = published_se if np.isfinite(published_se) else 0.0
  df = stats.welch_df(se, n - 1, pub_se, published_df) if n >= 2 else math.nan
  if n >= 2 and pub_se == 0:
    df = n - 1.0
  test = stats.difference_test(mean - published, math.hypot(se, pub_se), df, n, margin)
  verdict, reason = verdicts.decide_equivalent(test, margin, higher="ours higher", lower="ours lower")
  return test, verdict, reason


# What names a row of the comparison (and of its end-of-training window): the cell, the published
# table and metric, and our quantity set beside it.
ROW_KEYS = ("dataset", "model", "estimator", "table", "published_metric", "our_metric")


# A summary quantity named FINAL_PREFIX + column is that metrics.csv column's last value.
FINAL_PREFIX = "final_"


def metrics_column(our_metric: str) -> str:
  """The metrics.csv column a summary quantity is the last value of (``final_train_elbo`` -> ``train_elbo``)."""
  return our_metric[len(FINAL_PREFIX) :] if our_metric.startswith(FINAL_PREFIX) else our_metric


def _published_df(protocol) -> float:
  """Degrees of freedom of a published s.e.: its protocol's runs - 1, or inf (taken as known)."""
  return protocol.runs - 1.0 if protocol is not None and protocol.runs > 1 else math.inf


def compare_published(data, published: pd.DataFrame) -> pd.DataFrame:
  """One row per published row whose cell (dataset, model, estimator) has runs in this sweep.

  Columns: dataset, model, estimator, table, published_metric, our_metric, published,
  published_se, published_steps, ours, ours_se, n, our_steps_min, our_steps_max, diff,
  se_combined, diff_in_se (t), df, ci_low, ci_high (95% interval of diff), sdd (smallest
  detectable difference), p_equivalent (TOST) -- NaN where not judged -- verdict, notes,
  settings_differ, protocol, source.
  """
  done = data.done
  cells = set(zip(data.summary["dataset"], data.summary["model"], data.summary["estimator"]))
  rows = []
  for r in published.itertuples(index=False):
    if (r.dataset, r.model, r.estimator) not in cells:
      continue
    protocol, table = protocol_of(r.source)
    our_metric = protocol.our_metric.get(r.metric, r.metric) if protocol else r.metric
    d = done[(done["dataset"] == r.dataset) & (done["model"] == r.model) & (done["estimator"] == r.estimator)]
    notes, why_not = [], []
    if our_metric in d.columns:
      mean, se, n = stats.mean_se(pd.to_numeric(d[our_metric], errors="coerce"))
    else:
      mean, se, n = math.nan, math.nan, 0
    # Run length is a property of the runs, whether or not they logged this quantity.
    steps = pd.to_numeric(d["final_step"], errors="coerce").dropna()
    lo, hi = (int(steps.min()), int(steps.max())) if len(steps) else (None, None)
    if n == 0:
      hint = " (runs log it with --log_bound_k)" if our_metric.endswith("_k") else ""
      why_not.append(f"no finished run logged {our_metric}{hint}")
    elif n < verdicts.MIN_N:
      why_not.append(f"{n} seed(s) < {verdicts.MIN_N}")
    pub_steps = r.steps if np.isfinite(r.steps) else None
    if pub_steps is None:
      notes.append("published run length unknown")
    elif lo is not None and lo < pub_steps:
      why_not.append(
        f"our runs are shorter than the published ones ({_steps_text(lo, hi)} vs {style.format_count(pub_steps)} steps)"
      )
    caveat = protocol.caveats.get(r.metric) if protocol else None
    if caveat:
      k = data.catalogue.num_f_evals(r.estimator)
      notes.append(f"ours: the K-sample test bound (K = {k if k is not None else '?'}), see the note on Table 2 below")
    differing = setting_differences(data, r.dataset, r.model, r.estimator, protocol) if protocol else []
    if differing:
      unrecorded = sum(ours == "not recorded" for _, ours, _ in differing)
      text = f"{len(differing) - unrecorded} setting(s) differ from the published protocol"
      text += f", {unrecorded} not recorded by our runs" if unrecorded else ""
      why_not.append(text + " (listed below the table)")
    elif protocol is None:
      notes.append("protocol of this source unknown: settings not checked")
    if style.is_omniglot(r.dataset):
      why_not.append(OMNIGLOT_NOTE)
    if not np.isfinite(r.stderr):
      notes.append("published s.e. missing, taken as 0")
    published_df = _published_df(protocol)
    values = pd.to_numeric(d[our_metric], errors="coerce") if our_metric in d.columns else []
    test, verdict, reason = judge_difference(values, r.value, r.stderr, published_df)
    if why_not:
      verdict, reason, test = "not judged", "", verdicts.nan_test(n)
    elif reason:
      notes.insert(0, reason)
    rows.append(
      {
        "dataset": r.dataset,
        "model": r.model,
        "estimator": r.estimator,
        "table": table,
        "published_metric": r.metric,
        "our_metric": our_metric,
        "published": r.value,
        "published_se": r.stderr,
        "published_steps": pub_steps if pub_steps is not None else math.nan,
        "ours": mean,
        "ours_se": se,
        "n": n,
        "our_steps_min": lo if lo is not None else math.nan,
        "our_steps_max": hi if hi is not None else math.nan,
        "diff": test["diff"],
        "se_combined": test["se"],
        "diff_in_se": test["t"],
        "df": test["df"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
        "sdd": test["sdd"],
        "p_equivalent": test.get("p_equivalent", math.nan),
        "verdict": verdict,
        "notes": "; ".join(why_not + notes),
        "settings_differ": bool(differing),
        "protocol": protocol.name if protocol else "",
        "source": r.source,
      }
    )
  columns = [
    *ROW_KEYS,
    "published",
    "published_se",
    "published_steps",
    "ours",
    "ours_se",
    "n",
    "our_steps_min",
    "our_steps_max",
    "diff",
    "se_combined",
    "diff_in_se",
    "df",
    "ci_low",
    "ci_high",
    "sdd",
    "p_equivalent",
    "verdict",
    "notes",
    "settings_differ",
    "protocol",
    "source",
  ]
  out = pd.DataFrame(rows, columns=columns)
  return _sorted(out, data.catalogue)


# The end-of-training window: a run's evaluations in the last WINDOW_FRACTION of its steps
# (step >= (1 - WINDOW_FRACTION) x its final step), used where a run has at least
# MIN_WINDOW_EVALS evaluations of the quantity there (fewer would barely differ from the final one).
WINDOW_FRACTION = 0.1
MIN_WINDOW_EVALS = 3
WINDOW_COLUMNS = (
  *ROW_KEYS,
  "window_column",
  "window_start_min",
  "evals_min",
  "evals_max",
  "published",
  "published_se",
  "n",
  "ours_final",
  "ours_final_se",
  "ours_window",
  "ours_window_se",
  "window_minus_final",
  "window_minus_final_se",
  "diff",
  "se_combined",
  "df",
  "ci_low",
  "ci_high",
)


def window_comparison(data, comp: pd.DataFrame, fraction=WINDOW_FRACTION, min_evals=MIN_WINDOW_EVALS):
  """(rows, left_out): the judged rows of ``comp`` again with each run's quantity averaged over its
  end-of-training window instead of taken at its final evaluation.

  The published tables do not say whether they report the final evaluation, the best one or a
  mean over the end of training, and successive evaluations of one run move together by more
  than one evaluation's noise; this says how much that choice moves our number. Per run: the mean
  of the metrics column behind ``our_metric`` (``final_train_elbo`` -> ``train_elbo``) over the
  evaluations with step >= (1 - fraction) x the run's final step. Over seeds: mean +- s.e. of those
  window means; ``window_minus_final``: mean +- s.e. over seeds of (window mean - final value);
  ``diff`` ... ``ci_high``: window mean - published in the same Welch t as the verdicts, given for
  scale only (no verdict: it is not the quantity the verdict rests on). Only rows with a verdict
  are repeated; ``left_out`` counts those whose runs have fewer than ``min_evals`` evaluations of
  the quantity in the window.
  """
  rows, left_out = [], 0
  judged = comp[comp["verdict"] != "not judged"] if not comp.empty else comp
  done = data.done
  by_run = dict(tuple(data.metrics.groupby("run_id"))) if "run_id" in data.metrics.columns else {}
  for r in judged.itertuples(index=False):
    if not r.our_metric.startswith(FINAL_PREFIX):  # only an end-of-training value has a window to compare
      continue
    column = metrics_column(r.our_metric)
    if column not in data.metrics.columns:
      left_out += 1
      continue
    d = done[(done["dataset"] == r.dataset) & (done["model"] == r.model) & (done["estimator"] == r.estimator)]
    d = d.assign(final=pd.to_numeric(d[r.our_metric], errors="coerce"))
    d = d[np.isfinite(d["final"]) & np.isfinite(d["final_step"]) & d["run_id"].isin(by_run)]
    starts = (1.0 - fraction) * d["final_step"].to_numpy(dtype=float)
    windows, counts = [], []
    for run_id, start in zip(d["run_id"], starts):
      m = by_run[run_id]
      values = pd.to_numeric(m.loc[m["step"] >= start, column], errors="coerce").dropna()
      windows.append(float(values.mean()) if len(values) else math.nan)
      counts.append(len(values))
    if not counts or min(counts) < min_evals:
      left_out += 1
      continue
    finals = d["final"].to_numpy(dtype=float)
    protocol = next((p for p in PROTOCOLS if p.name == r.protocol), None)
    test, _, _ = judge_difference(windows, r.published, r.published_se, _published_df(protocol))
    final_mean, final_se, n = stats.mean_se(finals)
    window_mean, window_se, _ = stats.mean_se(windows)
    shift, shift_se, _ = stats.mean_se(np.subtract(windows, finals))
    rows.append(
      {
        **{key: getattr(r, key) for key in ROW_KEYS},
        "window_column": column,
        "window_start_min": float(starts.min()),
        "evals_min": min(counts),
        "evals_max": max(counts),
        "published": r.published,
        "published_se": r.published_se,
        "n": n,
        "ours_final": final_mean,
        "ours_final_se": final_se,
        "ours_window": window_mean,
        "ours_window_se": window_se,
        "window_minus_final": shift,
        "window_minus_final_se": shift_se,
        "diff": test["diff"],
        "se_combined": test["se"],
        "df": test["df"],
        "ci_low": test["ci_low"],
        "ci_high": test["ci_high"],
      }
    )
  return pd.DataFrame(rows, columns=WINDOW_COLUMNS), left_out


def _cell_row(r, labels, *rest) -> str:
  """A Markdown table row: the row's data set, model and estimator label, then ``rest``."""
  return "| " + " | ".join([md_dataset(r.dataset), style.model_label(r.model), labels[r.estimator], *rest]) + " |"


def window_markdown(
  data, window: pd.DataFrame, left_out: int, fraction=WINDOW_FRACTION, min_evals=MIN_WINDOW_EVALS
) -> list:
  """The report's subsection on the end-of-training window (lines; empty where there is nothing to show)."""
  if window.empty and not left_out:
    return []
  percent = f"{100 * fraction:g}%"
  lines = [
    "### The final evaluation against an end-of-training mean",
    "",
    "The published tables do not say whether they report the final evaluation, the best one or a mean over the "
    "end of training, and successive evaluations of one run move together by more than one evaluation's own noise. "
    f"So each judged row again, with each run's quantity averaged over its evaluations in the last {percent} of its "
    f"steps (step >= {1 - fraction:g} x its final step), then mean ± s.e. over seeds. 'Window - final': mean ± s.e. "
    "over seeds of each run's window mean minus its final value. 'Window - published': the same Welch t interval as "
    "above, for scale only; the verdicts above rest on the final evaluation.",
    "",
  ]
  if not window.empty:
    labels = data.catalogue.labels(window["estimator"].unique())
    lines += [
      "| Dataset | Model | Estimator | Published | Ours, final | Ours, window mean (evaluations per run) "
      "| Window - final | Window - published (95% CI; df) |",
      "|:--|:--|:--|--:|--:|--:|--:|--:|",
    ]
    for r in window.itertuples(index=False):
      table = f"Table {r.table}, " if r.table else ""
      evals = int_range([r.evals_min, r.evals_max])
      lines.append(
        _cell_row(
          r,
          labels,
          f"{_number(r.published, r.published_se)} ({table}{r.published_metric})",
          f"{_number(r.ours_final, r.ours_final_se)} ({r.our_metric}, n={r.n})",
          f"{_number(r.ours_window, r.ours_window_se)} ({r.window_column}, {evals} evaluations)",
          _number(r.window_minus_final, r.window_minus_final_se),
          _difference(r),
        )
      )
    lines.append("")
  if left_out:
    lines += [
      f"{left_out} judged row(s) left out: their runs have fewer than {min_evals} evaluations of the quantity "
      f"in the last {percent} of their steps.",
      "",
    ]
  return lines


def _sorted(comp: pd.DataFrame, catalogue) -> pd.DataFrame:
  """Rows in the report's order: dataset, model, estimator (by cost), then the published metric."""
  if comp.empty:
    return comp
  ds_rank = {d: i for i, d in enumerate(style.order_datasets(comp["dataset"].unique()))}
  model_rank = {m: i for i, m in enumerate(style.order_models(comp["model"].unique()))}
  est_rank = {e: i for i, e in enumerate(catalogue.order(comp["estimator"].unique()))}
  key = comp.apply(
    lambda r: (
      ds_rank[r["dataset"]],
      model_rank[r["model"]],
      est_rank[r["estimator"]],
      int(r["table"]) if str(r["table"]).isdigit() else 1 << 30,
      r["published_metric"],
    ),
    axis=1,
  )
  return comp.iloc[sorted(range(len(comp)), key=lambda i: key.iloc[i])].reset_index(drop=True)


def unmatched_count(data, published: pd.DataFrame) -> int:
  cells = set(zip(data.summary["dataset"], data.summary["model"], data.summary["estimator"]))
  return int(sum((r.dataset, r.model, r.estimator) not in cells for r in published.itertuples(index=False)))


def reference_lines(comp: pd.DataFrame) -> dict:
  """{(dataset, model): [(metrics column, estimator, value, text)]}: the published values to draw on
  each cell's training curves (on the panel of the quantity they are compared with)."""
  out = {}
  if comp is None or comp.empty:
    return out
  for r in comp.itertuples(index=False):
    if not np.isfinite(r.published):
      continue
    column = metrics_column(r.our_metric)
    where = f"Table {r.table}" if r.table else "published"
    out.setdefault((r.dataset, r.model), []).append((column, r.estimator, float(r.published), where))
  return out


def _count_or_none(x):
  return int(x) if x is not None and np.isfinite(x) else None


def _number(x, se=None) -> str:
  if x is None or not np.isfinite(x):
    return "n/a"
  if se is None:
    return f"{x:.2f}"
  return f"{x:.2f} ± " + (f"{se:.2f}" if np.isfinite(se) else "n/a")


def _difference(r) -> str:
  """'-0.52 (-0.91, -0.13; df 5.2)' or 'n/a'."""
  if not np.isfinite(r.diff):
    return "n/a"
  return f"{r.diff:.2f} ({_number(r.ci_low)}, {_number(r.ci_high)}; df {r.df:.3g})"


def published_markdown(data, comp: pd.DataFrame, published: pd.DataFrame, name: str) -> str:
  """The report section's body: the table, the caveats, and the settings that differ."""
  lines = [
    f"From `{name}`: every cell of this sweep that has a published row. Ours: mean ± s.e. over finished "
    f"seeds (n). A difference is judged only where our runs are as long as the published ones, every "
    f"setting of the published protocol matches, the data set is the paper's and n >= {verdicts.MIN_N}; "
    "otherwise the row says why not, and the published value is a dashed reference line on that cell's "
    "training curves. Judged: ours - published with its 95% confidence interval in Student's t "
    "(Welch-Satterthwaite df; the published s.e. from its source's runs, or taken as known where the "
    f"source's runs are unknown); 'consistent' means equivalent within ±{MARGIN_NATS:g} nats (two one-sided "
    f"tests at level {verdicts.ALPHA:g}); 'Detectable' is the smallest difference the test would detect with "
    f"power {verdicts.POWER:g}.",
    "",
  ]
  missing = unmatched_count(data, published)
  if comp.empty:
    lines.append(f"No cell of this sweep has a published row ({missing} published rows are for other cells).")
    return "\n".join(lines) + "\n"
  labels = data.catalogue.labels(comp["estimator"].unique())
  lines += [
    "| Dataset | Model | Estimator | Published | Ours | Difference (95% CI; df) | Detectable | Verdict | Notes |",
    "|:--|:--|:--|--:|--:|--:|--:|:--|:--|",
  ]
  for r in comp.itertuples(index=False):
    table = f"Table {r.table}, " if r.table else ""
    pub_steps = _count_or_none(r.published_steps)
    pub = (
      f"{_number(r.published, r.published_se)} ({table}{r.published_metric}, {_steps_text(pub_steps, pub_steps)} steps)"
    )
    steps = _steps_text(_count_or_none(r.our_steps_min), _count_or_none(r.our_steps_max))
    ours = f"{_number(r.ours, r.ours_se)} ({r.our_metric}, n={r.n}, {steps} steps)"
    lines.append(_cell_row(r, labels, pub, ours, _difference(r), _number(r.sdd), r.verdict, md_cell(r.notes or "")))
  lines.append("")
  if (comp["published_metric"] == "final_test_bound_100").any() and (comp["our_metric"] == "final_test_bound_k").any():
    lines += [f"Note on Table 2 (test bound): {K_BOUND_CAVEAT}", ""]
  lines += _settings_notes(data, comp)
  if any(style.is_omniglot(d) for d in comp["dataset"]):
    lines += [style.OMNIGLOT_FOOTNOTE, ""]
  if missing:
    lines += [f"{missing} published rows are for cells not in this sweep.", ""]
  if comp["source"].str.contains("not published", case=False).any():
    lines += ["**Some rows are marked as format examples, not published values.**", ""]
  return "\n".join(lines)


def _settings_notes(data, comp: pd.DataFrame) -> list:
  """Per published protocol and data set: our settings that differ from it (one line each)."""
  out = []
  seen = set()
  for r in comp.itertuples(index=False):
    protocol = next((p for p in PROTOCOLS if p.name == r.protocol), None)
    if protocol is None or (protocol.name, r.dataset, r.model, r.estimator) in seen:
      continue
    seen.add((protocol.name, r.dataset, r.model, r.estimator))
  by_protocol = {}
  for name, dataset, model, estimator in sorted(seen):
    protocol = next(p for p in PROTOCOLS if p.name == name)
    differing = setting_differences(data, dataset, model, estimator, protocol)
    text = ", ".join(
      f"{s} {','.join(v) if isinstance(v, list) else v} (published {format_setting(p)})" for s, v, p in differing
    )
    by_protocol.setdefault((name, dataset), set()).add(text)
  for (name, dataset), texts in sorted(by_protocol.items()):
    for text in sorted(texts):
      if text:
        out.append(f"- Settings of our {md_dataset(dataset)} runs that differ from {name}: {text}.")
      else:
        out.append(f"- Our {md_dataset(dataset)} runs use every setting of {name}.")
  return out + ([""] if out else [])


def write_comparison_csv(comp: pd.DataFrame, path: str) -> str:
  comp.to_csv(path, index=False, float_format="%.6g")
  return path


__all__ = [
  "DEFAULT_PUBLISHED_CSV",
  "PROTOCOLS",
  "PublishedCSVError",
  "compare_published",
  "load_published",
  "published_markdown",
  "reference_lines",
  "resolve",
  "window_comparison",
  "window_markdown",
]
