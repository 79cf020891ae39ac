"""Statistics used by the figures, tables, claim checks and the published comparison.

Standard error everywhere: sample standard deviation with ddof=1 divided by sqrt(n);
undefined (NaN) for n < 2. NaN inputs are dropped before anything is computed. The
tests on a difference (paired, Welch, TOST, smallest detectable difference, Holm) read
Student's t with the difference's own degrees of freedom; formulas in the section
header below. Decisions built on them live in ``plots.verdicts``.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
from scipy import optimize as scipy_optimize
from scipy import special as scipy_special


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


# ---------------------------------------------------------------------------- tests on a difference
# Every verdict of plots/ rests on one estimated difference d with standard error s and
# degrees of freedom nu, and reads the t distribution with nu degrees of freedom
# (nu = inf: the normal). Formulas:
#   paired:  d = mean of the n per-seed differences, s = sd(d, ddof=1) / sqrt(n), nu = n - 1;
#   Welch:   d = mean_a - mean_b, s = sqrt(s_a^2 + s_b^2) with s_x = sd_x / sqrt(n_x), and the
#            Welch-Satterthwaite nu = (s_a^2 + s_b^2)^2 / (s_a^4 / nu_a + s_b^4 / nu_b), nu_x = n_x - 1
#            (Welch 1947; Satterthwaite 1946); a term with nu_x = inf (a known s.e.) drops out;
#   t = d / s; two-sided p = 2 P(T_nu > |t|); confidence interval d +- t_{1-alpha/2, nu} s;
#   equivalence within +-m (TOST, Schuirmann 1987): both one-sided tests at level alpha,
#            p_low = P(T_nu > (d + m) / s), p_high = P(T_nu < (d - m) / s), equivalent iff
#            max(p_low, p_high) < alpha, i.e. the (1 - 2 alpha) interval lies inside (-m, m);
#   non-inferiority at margin m: p_low < alpha alone;
#   smallest detectable difference (two-sided level alpha, power 1 - beta, the observed s):
#            the delta > 0 with P(|T'| > t_{1-alpha/2, nu}) = 1 - beta, T' noncentral t with nu
#            degrees of freedom and noncentrality delta / s (about (t_{1-alpha/2,nu} + t_{1-beta,nu}) s).

ALPHA = 0.05  # two-sided level of every test; each one-sided test of TOST runs at ALPHA as well
POWER = 0.8  # power at which the smallest detectable difference is quoted


def t_quantile(p: float, df: float) -> float:
  """Quantile of Student's t with ``df`` degrees of freedom (df = inf: the standard normal)."""
  if not df > 0:
    return math.nan
  # The special functions behind scipy.stats.t and .norm (stdtrit, ndtri), called directly: the
  # same values without the distribution objects' argument handling, which cost ~100x the
  # arithmetic in the verdicts' thousands of calls.
  return float(scipy_special.ndtri(p) if math.isinf(df) else scipy_special.stdtrit(df, p))


def t_sf(x: float, df: float) -> float:
  """P(T > x), T ~ t with ``df`` degrees of freedom (df = inf: normal)."""
  if not df > 0 or math.isnan(x):
    return math.nan
  return float(scipy_special.ndtr(-x) if math.isinf(df) else scipy_special.stdtr(df, -x))


def welch_df(se_a: float, df_a: float, se_b: float, df_b: float) -> float:
  """Welch-Satterthwaite degrees of freedom of se_a^2 + se_b^2 (a term with df = inf is known exactly)."""
  va, vb = se_a**2, se_b**2
  den = (va * va / df_a if not math.isinf(df_a) else 0.0) + (vb * vb / df_b if not math.isinf(df_b) else 0.0)
  if den == 0:
    return math.inf if va + vb > 0 else math.nan
  return (va + vb) ** 2 / den


def smallest_detectable(se: float, df: float, alpha: float = ALPHA, power: float = POWER) -> float:
  """Smallest true difference a two-sided level-``alpha`` t test with this s.e. and df detects with ``power``.

  Exact in the noncentral t: solves P(|T'| > t_{1-alpha/2, df}) = power for the noncentrality
  delta / se (header of this section); delta is se times a factor of (df, alpha, power) alone."""
  if not (np.isfinite(se) and se > 0 and df > 0):
    return math.nan
  return _detectable_factor(float(df), float(alpha), float(power)) * se


@functools.lru_cache(maxsize=4096)
def _detectable_factor(df: float, alpha: float, power: float) -> float:
  crit = t_quantile(1 - alpha / 2, df)

  def reject(ncp):
    if math.isinf(df):
      return scipy_special.ndtr(ncp - crit) + scipy_special.ndtr(-crit - ncp)
    # Noncentral t's cdf (nctdtr, what scipy.stats.nct.cdf calls); the power sits near 0.8, where
    # 1 - cdf loses nothing. The far (wrong-sign) tail is below 1e-8 where the series may return
    # NaN: count it as 0.
    return 1.0 - scipy_special.nctdtr(df, ncp, crit) + np.nan_to_num(scipy_special.nctdtr(df, ncp, -crit), nan=0.0)

  hi = crit + t_quantile(power, df) + 1.0
  while reject(hi) < power:
    hi *= 2
  return float(scipy_optimize.brentq(lambda ncp: reject(ncp) - power, 0.0, hi, xtol=1e-10))


def difference_test(diff, se, df, n, margin=None, alpha: float = ALPHA, power: float = POWER) -> dict:
  """Everything a verdict on a difference shows: n, df, d, se, t, p (two-sided), the (1 - alpha)
  confidence interval, the smallest detectable difference and, with a ``margin``, the TOST p-values
  (``p_noninferior`` for H0: d <= -margin, ``p_equivalent`` = max of both one-sided p) (header above)."""
  out = {"n": int(n), "df": float(df), "diff": float(diff), "se": float(se)}
  ok = np.isfinite(diff) and np.isfinite(se) and df > 0
  if ok and se == 0:  # no spread at all: every interval is the point itself
    out.update(t=t_statistic(diff, se), p=0.0 if diff != 0 else 1.0, ci_low=diff, ci_high=diff, sdd=0.0)
  elif ok:
    crit = t_quantile(1 - alpha / 2, df)
    t = diff / se
    out.update(
      t=t,
      p=min(1.0, 2 * t_sf(abs(t), df)),
      ci_low=diff - crit * se,
      ci_high=diff + crit * se,
      sdd=smallest_detectable(se, df, alpha, power),
    )
  else:
    out.update(t=math.nan, p=math.nan, ci_low=math.nan, ci_high=math.nan, sdd=math.nan)
  if margin is not None:
    if ok and se == 0:
      p_low, p_high = float(diff <= -margin), float(diff >= margin)
    elif ok:
      p_low, p_high = t_sf((diff + margin) / se, df), t_sf((margin - diff) / se, df)
    else:
      p_low = p_high = math.nan
    out.update(margin=float(margin), p_noninferior=p_low, p_equivalent=max(p_low, p_high))
  return out


def paired_test(a: pd.Series, b: pd.Series, margin=None, alpha: float = ALPHA, power: float = POWER) -> dict:
  """Paired t test of a - b (both indexed by seed; common finite seeds only): nu = n - 1."""
  p = paired_difference(a, b)
  out = difference_test(p["mean"], p["se"], p["n"] - 1, p["n"], margin, alpha, power)
  out["seeds"] = p["seeds"]
  return out


def welch_test(a, b, margin=None, alpha: float = ALPHA, power: float = POWER) -> dict:
  """Welch's unequal-variance t test of mean(a) - mean(b), independent samples; ``n`` = min(n_a, n_b)."""
  ma, sa, na = mean_se(a)
  mb, sb, nb = mean_se(b)
  df = welch_df(sa, na - 1, sb, nb - 1) if na >= 2 and nb >= 2 else math.nan
  out = difference_test(ma - mb, math.hypot(sa, sb), df, min(na, nb), margin, alpha, power)
  out.update(n_a=na, n_b=nb, mean_a=ma, mean_b=mb)
  return out


def holm(pvalues, alpha: float = ALPHA) -> np.ndarray:
  """Holm's step-down procedure (Holm 1979): which hypotheses to reject with family-wise error <= alpha.

  Sort the m p-values ascending; reject p_(1..k) where k is the last index with
  p_(j) <= alpha / (m - j + 1) for every j <= k. NaN p-values are never rejected (and count in m)."""
  p = np.asarray(pvalues, dtype=float)
  m = p.size
  reject = np.zeros(m, dtype=bool)
  order = np.argsort(np.where(np.isnan(p), np.inf, p), kind="stable")
  for j, i in enumerate(order):
    if not p[i] <= alpha / (m - j):
      break
    reject[i] = True
  return reject
