"""Rendering helpers shared by plots/: Markdown pipe tables (no `tabulate` needed), escaping, ranges, cell lists.

The one home of these helpers: report text, tables, claims and the published comparison
use them rather than their own copies.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from plots import style


def format_value(v, fmt: str = "{:.4g}") -> str:
  if v is None:
    return ""
  if isinstance(v, (bool, np.bool_)):
    return "yes" if v else "no"
  if isinstance(v, numbers.Integral):
    return str(int(v))
  if isinstance(v, numbers.Real):
    if math.isnan(v):
      return "n/a"
    if math.isinf(v):
      return "inf" if v > 0 else "-inf"
    return fmt.format(v)
  if isinstance(v, (list, tuple)):
    return ", ".join(format_value(x, fmt) for x in v)
  return str(v).replace("|", "\\|").replace("\n", " ")


def bound_samples_text(frame: pd.DataFrame, column: str) -> str:
  """The N of the ``*_bound_n`` columns of ``frame``'s runs (``column`` holds their num_bound_samples):
  "100", "100 or 1,000" where runs differ, "N" where no run records it."""
  if column not in frame.columns:
    return "N"
  values = sorted({int(v) for v in pd.to_numeric(frame[column], errors="coerce").dropna()})
  return " or ".join(f"{v:,}" for v in values) if values else "N"


def df_to_markdown(df: pd.DataFrame, formats: dict | None = None, default: str = "{:.4g}") -> str:
  """Pipe table; numbers right-aligned, `formats` maps column -> format string."""
  formats = formats or {}
  if df.empty:
    return "(none)\n"
  cols = list(df.columns)
  numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in cols]
  lines = [
    "| " + " | ".join(str(c) for c in cols) + " |",
    "|" + "|".join("--:" if n else ":--" for n in numeric) + "|",
  ]
  for row in df.itertuples(index=False):
    cells = [format_value(v, formats.get(c, default)) for c, v in zip(cols, row)]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def md_text(text) -> str:
  """Text safe in Markdown prose and headings (the Omniglot-28* marker would start emphasis)."""
  return str(text).replace("*", "\\*")


def md_cell(text) -> str:
  """Text safe in a Markdown table cell: ``*`` and ``|`` escaped."""
  return md_text(text).replace("|", "\\|")


def md_dataset(dataset: str) -> str:
  """A data set's title for Markdown ('Omniglot-28\\*')."""
  return md_cell(style.dataset_label(dataset))


def range_text(values, fmt=style.format_count) -> str:
  """'20' or '1,000-3,000' over the finite values; 'n/a' when there are none."""
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return "n/a"
  lo, hi = min(values), max(values)
  return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


def int_range(values, empty: str = "n/a") -> str:
  """'3' or '2-5' for counts; ``empty`` when there are none."""
  text = range_text(values, lambda x: str(int(x)))
  return empty if text == "n/a" else text


def cells(df: pd.DataFrame) -> list[tuple[str, str]]:
  """(dataset, model) pairs present in ``df``, in the report's order."""
  out = []
  for ds in style.order_datasets(df["dataset"].unique()):
    for m in style.order_models(df.loc[df["dataset"] == ds, "model"].unique()):
      out.append((ds, m))
  return out


def cell_name(dataset: str, model: str) -> str:
  return f"{dataset}/{model}"
