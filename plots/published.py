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

A difference is judged (ours higher / lower / consistent, by ``diff / sqrt(se_ours^2 +
se_published^2)`` against +-``Z_THRESHOLD``) only where our runs are as long as the
published ones, every setting the protocol names matches, and the data set is the
paper's (our Omniglot is not). Otherwise the row says why it is not judged, and the
published value is drawn as a reference line on that cell's training-curve figure.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

import numpy as np
import pandas as pd

from contracts import protocols
from plots import stats, style

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_PUBLISHED_CSV = os.path.join(REPO_ROOT, "results", "published", "rodeo_2022.csv")
# How the report names the default CSV (a path from the repository root, the same on every machine).
DEFAULT_PUBLISHED_NAME = "results/published/rodeo_2022.csv"
# What a user passes to switch the comparison off (``--published=none``).
DISABLED = ("none", "")

PUBLISHED_COLUMNS = ("dataset", "model", "estimator", "metric", "value", "stderr", "steps", "source", "quote")
REQUIRED_COLUMNS = ("dataset", "model", "estimator", "metric", "value", "source")
Z_THRESHOLD = 2.0

OMNIGLOT_NOTE = "not the paper's Omniglot (Omniglot-28* derived by this suite): not directly comparable"

# Published metrics named as aliases in older CSVs.
METRIC_ALIASES = {
  "train_elbo": "final_train_elbo",
  "elbo": "final_train_elbo",
  "test_bound_100": "final_test_bound_100",
  "test_bound": "final_test_bound_100",
  "valid_bound_100": "final_valid_bound_100",
  "grad_variance": "final_grad_variance",
}
DATASET_ALIASES = {
  "fashionmnist": "fashion_mnist",
  "fmnist": "fashion_mnist",
  "omniglot_28": "omniglot",
  "omniglot28": "omniglot",
}

K_BOUND_CAVEAT = (
  "The RODEO code's released evaluation draws the estimator's K samples for what its tables call the "
  "100-sample test bound (PROTOCOL.md section 9: the K = 2 and K = 4 gaps between test bound and train ELBO fit "
  "a K-sample bound); it is set beside our K-sample test bound (final_test_bound_k, K = the estimator's "
  "evaluations of f), not our 100-sample one."
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
  ),
  PublishedProtocol(
    name="RODEO Table 5 (2-4 layer linear VAEs)",
    paper="2202.09497",
    tables=("5",),
    settings=protocols.RODEO_LAYERED,
    dataset_settings={},
    our_metric={"final_train_elbo": "final_train_elbo", "final_test_bound_100": "final_test_bound_100"},
    caveats={},
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
  df["dataset"] = df["dataset"].map(_norm).map(lambda d: DATASET_ALIASES.get(d, d))
  df["model"] = df["model"].map(_norm)
  df["estimator"] = df["estimator"].map(_norm)
  df["metric"] = df["metric"].astype(str).str.strip().map(lambda m: METRIC_ALIASES.get(m, m))
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
  for name, published in protocol.settings_for(dataset).items():
    if name not in runs.columns:
      out.append((name, "not recorded", published))
      continue
    ours = [v for v in runs[name] if not (isinstance(v, float) and math.isnan(v))]
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
  if lo is None:
    return "n/a"
  return style.format_count(lo) if lo == hi else f"{style.format_count(lo)}-{style.format_count(hi)}"


def compare_published(data, published: pd.DataFrame) -> pd.DataFrame:
  """One row per published row whose cell (dataset, model, estimator) has runs in this sweep.

  Columns: dataset, model, estimator, table, published_metric, our_metric, published,
  published_se, published_steps, ours, ours_se, n, our_steps_min, our_steps_max, diff,
  se_combined, diff_in_se (NaN where not judged), verdict, notes, settings_differ,
  protocol, source.
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
    elif n < 2:
      why_not.append("one seed: our s.e. undefined")
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
    pub_se = float(r.stderr) if np.isfinite(r.stderr) else 0.0
    if not np.isfinite(r.stderr):
      notes.append("published s.e. missing, taken as 0")
    diff = mean - r.value
    comb = math.hypot(se, pub_se) if np.isfinite(se) else math.nan
    z = stats.t_statistic(diff, comb)
    if why_not:
      verdict, diff, z = "not judged", math.nan, math.nan
    elif abs(z) <= Z_THRESHOLD:
      verdict = f"consistent (|z| <= {Z_THRESHOLD:g})"
    else:
      verdict = f"ours {'higher' if z > 0 else 'lower'} (z = {z:.1f})"
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
        "diff": diff,
        "se_combined": comb,
        "diff_in_se": z,
        "verdict": verdict,
        "notes": "; ".join(why_not + notes),
        "settings_differ": bool(differing),
        "protocol": protocol.name if protocol else "",
        "source": r.source,
      }
    )
  columns = [
    "dataset",
    "model",
    "estimator",
    "table",
    "published_metric",
    "our_metric",
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
    "verdict",
    "notes",
    "settings_differ",
    "protocol",
    "source",
  ]
  out = pd.DataFrame(rows, columns=columns)
  return _sorted(out, data.catalogue)


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
    column = r.our_metric[len("final_") :] if r.our_metric.startswith("final_") else r.our_metric
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


def published_markdown(data, comp: pd.DataFrame, published: pd.DataFrame, name: str) -> str:
  """The report section's body: the table, the caveats, and the settings that differ."""
  lines = [
    f"From `{name}`: every cell of this sweep that has a published row. Ours: mean ± s.e. over finished "
    "seeds (n). A difference is judged only where our runs are as long as the published ones, every "
    "setting of the published protocol matches and the data set is the paper's; otherwise the row says "
    "why not, and the published value is a dashed reference line on that cell's training curves.",
    "",
  ]
  missing = unmatched_count(data, published)
  if comp.empty:
    lines.append(f"No cell of this sweep has a published row ({missing} published rows are for other cells).")
    return "\n".join(lines) + "\n"
  labels = data.catalogue.labels(comp["estimator"].unique())
  lines += ["| Dataset | Model | Estimator | Published | Ours | Verdict | Notes |", "|:--|:--|:--|--:|--:|:--|:--|"]
  for r in comp.itertuples(index=False):
    table = f"Table {r.table}, " if r.table else ""
    pub_steps = _count_or_none(r.published_steps)
    pub = (
      f"{_number(r.published, r.published_se)} ({table}{r.published_metric}, {_steps_text(pub_steps, pub_steps)} steps)"
    )
    steps = _steps_text(_count_or_none(r.our_steps_min), _count_or_none(r.our_steps_max))
    ours = f"{_number(r.ours, r.ours_se)} ({r.our_metric}, n={r.n}, {steps} steps)"
    lines.append(
      "| "
      + " | ".join(
        [
          _md_dataset(r.dataset),
          style.model_label(r.model),
          labels[r.estimator],
          pub,
          ours,
          r.verdict,
          _md(r.notes or ""),
        ]
      )
      + " |"
    )
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


def _md(text: str) -> str:
  return str(text).replace("*", "\\*").replace("|", "\\|")


def _md_dataset(ds: str) -> str:
  return _md(style.dataset_label(ds))


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
        out.append(f"- Settings of our {_md_dataset(dataset)} runs that differ from {name}: {text}.")
      else:
        out.append(f"- Our {_md_dataset(dataset)} runs use every setting of {name}.")
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
]
