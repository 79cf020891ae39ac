"""Small statistics used by the figures, tables and claim checks.

Standard error everywhere: sample standard deviation with ddof=1 divided by sqrt(n);
undefined (NaN) for n < 2. NaN inputs are dropped before anything is computed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def mean_se(values) -> tuple[float, float, int]:
  """(mean, standard error, n) of the finite values; se is NaN when n < 2."""
  v = np.asarray(values, dtype=float)
  v = v[np.isfinite(v)]
  n = int(v.size)
  if n == 0:
    return math.nan, math.nan, 0
  mean = float(v.mean())
  se = float(v.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
  return mean, se, n


def group_mean_se(df: pd.DataFrame, by, value: str) -> pd.DataFrame:
  """mean, se, n of `value` per group (NaN values dropped first)."""
  d = df.dropna(subset=[value])
  if d.empty:
    return pd.DataFrame(columns=list(by) + ["mean", "se", "n"])
  g = d.groupby(list(by), sort=False)[value].agg(["mean", "std", "count"])
  g = g.rename(columns={"count": "n"})
  g["se"] = np.where(g["n"] >= 2, g["std"] / np.sqrt(g["n"]), np.nan)
  return g.drop(columns="std").reset_index()[list(by) + ["mean", "se", "n"]]


def aggregate_over_seeds(df: pd.DataFrame, value: str, step: str = "step", seed: str = "seed") -> pd.DataFrame:
  """Mean and s.e. over seeds of `value` at each step.

  Rows where `value` is NaN are dropped first (the 100-sample bounds are only
  computed on some evaluations), then seeds are aligned on the step: at a step the
  mean is over the seeds that have a value there, and `n` says how many. If a seed
  logged the same step twice (a resumed run), its last row counts.

  Returns columns step, mean, se, n sorted by step.
  """
  d = df[[step, seed, value]].dropna(subset=[value])
  d = d.drop_duplicates([step, seed], keep="last")
  if d.empty:
    return pd.DataFrame({"step": [], "mean": [], "se": [], "n": []})
  out = group_mean_se(d, [step], value).sort_values(step).reset_index(drop=True)
  return out.rename(columns={step: "step"})


def t_statistic(mean: float, se: float) -> float:
  """mean / se, with a zero s.e. giving +-inf (or 0 when the mean is 0 too)."""
  if mean is None or se is None or not (np.isfinite(mean) and np.isfinite(se)):
    return math.nan
  if se == 0:
    if mean == 0:
      return 0.0
    return math.copysign(math.inf, mean)
  return mean / se


def paired_difference(a: pd.Series, b: pd.Series) -> dict:
  """Paired comparison of a - b, both indexed by seed.

  Only seeds present (and finite) in both are used. Returns n (pairs), mean and se
  (ddof=1) of the per-seed differences, t = mean / se, and the seeds used.
  """
  a = pd.Series(a, dtype=float).dropna()
  b = pd.Series(b, dtype=float).dropna()
  seeds = sorted(set(a.index) & set(b.index))
  d = np.array([a[s] - b[s] for s in seeds], dtype=float)
  mean, se, n = mean_se(d)
  return {"n": n, "mean": mean, "se": se, "t": t_statistic(mean, se), "seeds": seeds}
