"""Decision rules: from a test on a difference (``plots.stats.difference_test``) to a verdict.

Every rule reads a two-sided level-``ALPHA`` test in Student's t with the difference's own
degrees of freedom, and every verdict row shows n, df, the (1 - ALPHA) confidence interval
of the difference and the smallest detectable difference (``stats.smallest_detectable``:
two-sided level ALPHA, power ``stats.POWER``, the observed s.e.).

* "beats" (d = subject - other > 0): holds if the confidence interval lies above 0, fails if
  it lies below 0, else "no difference detected" with the smallest detectable difference.
  Under no effect each direction is wrong with probability ALPHA / 2.
* "matches or beats" (non-inferiority at margin m, the lower one-sided test of TOST): holds
  if d > -m beyond the noise (one-sided p < ALPHA, i.e. d - t_{1-ALPHA} se > -m); fails if
  d < -m beyond the noise (d + t_{1-ALPHA} se < -m); else undecided.
* "consistent" (equivalence within +-m, TOST): both one-sided tests reject at ALPHA, i.e.
  the (1 - 2 ALPHA) interval lies inside (-m, m); else "higher"/"lower" where the
  (1 - ALPHA) interval excludes 0; else "no difference detected".

A row with fewer than ``MIN_N`` observations (paired seeds, or seeds on each side) is
"not judged", never a pass: with 2 pairs the paired t has 1 degree of freedom, whose
97.5% quantile is 12.7, so only a difference above about 16 s.e. (the smallest
detectable one at 80% power) would ever be seen, and the one variance estimate behind it
has 1 degree of freedom. From 3 the quantile is 4.3 (df 2) and falls fast (2.8 at df 4).
3 is the smallest n at which the test says something; the paper's 5 seeds is the target.

``MARGIN_NATS`` is the equivalence margin for ELBOs and bounds, in nats: half a nat. The
gaps that the papers' tables rank estimators by are about this size and larger (RODEO's
Table 1, MNIST nonlinear: DisARM -102.75 +- 0.08 against Double CV -102.14 +- 0.06, a
0.61-nat gap); a "match" or "consistent" within +-0.5 nat cannot hide a gap of that size,
and at 1M steps the papers' seed-to-seed s.e. (0.04-0.16 nat) make it reachable with 5 seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from plots import stats

HOLDS = "holds"
FAILS = "fails"
NOT_ENOUGH = "not enough runs to tell"  # a claim that is neither shown nor refuted
NOT_JUDGED = "not judged"  # a row that cannot be tested (too few runs, incomparable data)
NO_DIFFERENCE = "no difference detected"
UNDECIDED = "undecided"
CONSISTENT = "consistent"

ALPHA = stats.ALPHA
POWER = stats.POWER
MIN_N = 3
MARGIN_NATS = 0.5

# The columns every verdict row carries, in this order, after its identifying columns.
TEST_COLUMNS = ("n", "df", "diff", "se", "ci_low", "ci_high", "sdd", "t", "p")


def _fmt(x) -> str:
  return f"{x:.3g}" if np.isfinite(x) else "n/a"


def too_few(test: dict, min_n: int = MIN_N) -> str | None:
  """Why a test cannot be judged (too few observations, no s.e.), or None."""
  if test["n"] < min_n:
    return f"n = {test['n']} < {min_n}"
  if not (np.isfinite(test["se"]) and test["df"] > 0):
    return "no standard error"
  return None


def undetected(test: dict, unit: str = " nats") -> str:
  return f"no difference detected; smallest detectable difference {_fmt(test['sdd'])}{unit} at n = {test['n']}"


def decide_beats(test: dict, min_n: int = MIN_N, unit: str = " nats") -> tuple[str, str]:
  """(verdict, reason) for "subject beats other" on d = subject - other (module doc)."""
  why = too_few(test, min_n)
  if why:
    return NOT_JUDGED, why
  level = f"{1 - ALPHA:.0%} CI"
  if test["ci_low"] > 0:
    return HOLDS, f"{level} above 0"
  if test["ci_high"] < 0:
    return FAILS, f"{level} below 0"
  return NO_DIFFERENCE, undetected(test, unit)


def one_sided_bounds(test: dict, alpha: float = ALPHA) -> tuple[float, float]:
  """(d - t_{1-alpha} se, d + t_{1-alpha} se): the one-sided (1 - alpha) bounds, the ends of the TOST interval."""
  q = stats.t_quantile(1 - alpha, test["df"]) * test["se"]
  return test["diff"] - q, test["diff"] + q


def decide_noninferior(test: dict, margin: float = MARGIN_NATS, min_n: int = MIN_N, unit=" nats") -> tuple[str, str]:
  """(verdict, reason) for "subject matches or beats other" at ``margin`` (module doc)."""
  why = too_few(test, min_n)
  if why:
    return NOT_JUDGED, why
  low, high = one_sided_bounds(test)
  if low > -margin:
    return HOLDS, f"one-sided {1 - ALPHA:.0%} lower bound {_fmt(low)} > -{margin:g}{unit}"
  if high < -margin:
    return FAILS, f"one-sided {1 - ALPHA:.0%} upper bound {_fmt(high)} < -{margin:g}{unit}"
  return UNDECIDED, f"bounds ({_fmt(low)}, {_fmt(high)}) straddle -{margin:g}{unit}; " + undetected(test, unit)


def decide_equivalent(
  test: dict, margin: float = MARGIN_NATS, min_n: int = MIN_N, unit=" nats", higher="higher", lower="lower"
) -> tuple[str, str]:
  """(verdict, reason): consistent within +-margin (TOST), else higher / lower, else no difference detected."""
  why = too_few(test, min_n)
  if why:
    return NOT_JUDGED, why
  low, high = one_sided_bounds(test)
  if -margin < low and high < margin:
    return f"{CONSISTENT} (within ±{margin:g}{unit})", f"TOST p = {_fmt(test['p_equivalent'])}"
  if test["ci_low"] > 0:
    return higher, f"{1 - ALPHA:.0%} CI above 0, not within ±{margin:g}{unit}"
  if test["ci_high"] < 0:
    return lower, f"{1 - ALPHA:.0%} CI below 0, not within ±{margin:g}{unit}"
  return NO_DIFFERENCE, undetected(test, unit)


def holm_fails(details: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
  """Keep a row's "fails" only where Holm's procedure over the claim's tested rows rejects it.

  A claim fails if any row fails, a union of tests: without a correction its error under
  no effect would grow with the number of rows (six cells: about 6 x ALPHA / 2). Holm over
  the rows' one-sided p-values of the failing direction (p / 2 when d < 0), at level
  ALPHA / 2 (the level of one row's "fails"), keeps the chance of a false "fails" anywhere
  in the claim at most ALPHA / 2. A claim holds only if every row holds, an intersection of
  tests (Berger 1982), which needs no correction."""
  if details.empty or "p" not in details:
    return details
  tested = details["verdict"].isin([HOLDS, FAILS, NO_DIFFERENCE, UNDECIDED])
  if not tested.any():
    return details
  d = details.copy()
  p_fail = np.where(d["diff"] < 0, d["p"] / 2, 1 - d["p"] / 2)
  keep = stats.holm(np.where(tested, p_fail, np.nan), alpha / 2)
  demote = (d["verdict"] == FAILS) & ~keep
  if demote.any():
    d.loc[demote, "verdict"] = NO_DIFFERENCE
    d.loc[demote, "reason"] = d.loc[demote, "reason"] + f"; not significant after Holm over {int(tested.sum())} rows"
  return d


def combine_verdicts(verdicts) -> str:
  """fails if any fails; holds if non-empty and all hold; else not enough to tell."""
  v = list(verdicts)
  if FAILS in v:
    return FAILS
  if v and all(x == HOLDS for x in v):
    return HOLDS
  return NOT_ENOUGH


def overall(details: pd.DataFrame, required=None, unit: str = "cells") -> tuple[str, str]:
  """(claim verdict, 'k of n cells hold; fails: ...; not judged: ...; not run: ...').

  ``details`` has dataset, model, verdict (and comparison where a cell holds several).
  With ``required`` (the (dataset, model) cells the claim is about) the claim holds only if
  every required cell is present and holds; without, if every row holds."""
  label = details["dataset"] + "/" + details["model"] if len(details) else pd.Series(dtype=str)
  if len(details) and "comparison" in details:
    label = label + " (" + details["comparison"].astype(str) + ")"
  verdicts = list(details["verdict"]) if len(details) else []
  missing = []
  if required is not None:
    have = set(zip(details["dataset"], details["model"])) if len(details) else set()
    missing = [f"{d}/{m}" for d, m in required if (d, m) not in have]
  total = len(verdicts) + len(missing)
  holding = sum(v == HOLDS for v in verdicts)
  parts = [f"{holding} of {total} {unit} hold"]
  for name, which in (("fails", [FAILS]), ("not judged", [NOT_JUDGED])):
    hit = [x for x, v in zip(label, verdicts) if v in which]
    if hit:
      parts.append(f"{name}: " + ", ".join(hit))
  open_rows = [x for x, v in zip(label, verdicts) if v not in (HOLDS, FAILS, NOT_JUDGED)]
  if open_rows:
    parts.append("undecided: " + ", ".join(open_rows))
  if missing:
    parts.append("not run: " + ", ".join(missing))
  verdict = combine_verdicts(verdicts + [NOT_ENOUGH] * len(missing))
  return verdict, "; ".join(parts)


def nan_test(n: int = 0) -> dict:
  """The test of a row that has no data: every number NaN."""
  return stats.difference_test(math.nan, math.nan, math.nan, n)
