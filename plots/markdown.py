"""Writing small DataFrames as Markdown pipe tables (no `tabulate` needed)."""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd


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
