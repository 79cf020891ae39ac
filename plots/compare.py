"""Check PROTOCOL section 7's claims on a sweep (and print the comparison with published numbers).

    python -m plots.compare --results_dir=results/<sweep> [--published=path.csv | --published=none]

prints one verdict per claim, "holds", "fails" or "not enough runs to tell", with the
numbers behind it, the run length and the seeds it rests on. ``check_claims()``
returns the same as objects.

Which estimators each claim compares is data: ``CLAIMS`` below, one row per claim.
The paper's claims are about named estimators (DisARM against ARM, ...), so rows name
them; claim 4 pairs estimators of two families at equal cost, read from each run's
``config.json`` (``estimator_info``: family and ``num_f_evals``), never from names.

Rules (finished runs, status == "done", unless stated; a cell = dataset x model; the
statistics are ``plots.stats``, the decisions ``plots.verdicts``: two-sided level ALPHA =
0.05, Student's t with the difference's own degrees of freedom, every row showing n, df, the
95% confidence interval, the smallest detectable difference at power 0.8; a row with fewer
than MIN_SEEDS = 3 paired seeds is "not judged", never a pass):

Claim 1 (toy), on the implementations' Monte Carlo variances (``toy_points``): per (p0,
  sigma_phi) the log ratio of sample variances with the s.e. of a sample variance
  (``variance_se`` column, else normal theory); a violation where DisARM's is above ARM's
  beyond the noise (Holm over the points), "at most" where the simultaneous upper bound on
  the ratio is below 1 + TOY_RATIO_MARGIN; holds if every point is "at most". The closed
  forms are the reference: whether the Monte Carlo variances agree with them is reported.
"beats" (2a, 4): the metric paired by seed, d = subject - other, paired t (df = n - 1);
  holds if the 95% interval lies above 0, fails if below 0 (Holm over the claim's rows).
"matches or beats" (2b): non-inferiority at MARGIN_NATS (the lower test of TOST).
"costs more" (2c): wall-clock seconds per step (1 / steps_per_sec, one timing per stack)
  at equal stack size; Welch's t on log cost per cell, a t over cells of the cells' log
  ratios; not judged where stack sizes differ or timings are missing.
"variance below" (3): the reduction 1 - r over seeds (r the variance ratio; basket where
  the cell has it, else grad_variance), "beats" 0.
Claims 2a and 2b hold only if every cell of the paper's grid (PAPER_CELLS) holds; layered
  models are listed, not judged (the paper's claims are about single-layer models). Every
  verdict says "k of n cells hold" and names the failing, undecided, not judged and
  missing cells. A claim fails if any row fails.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types

import numpy as np
import pandas as pd

from contracts import protocols, results
from plots import loading, stats, style, verdicts
from plots.markdown import cells, df_to_markdown, range_text

HOLDS, FAILS, NOT_ENOUGH, NOT_JUDGED = verdicts.HOLDS, verdicts.FAILS, verdicts.NOT_ENOUGH, verdicts.NOT_JUDGED
combine_verdicts = verdicts.combine_verdicts

MIN_SEEDS = verdicts.MIN_N  # paired seeds (or seeds on each side, or timings) a row needs to be judged
MARGIN_NATS = verdicts.MARGIN_NATS
# Claim 1: a DisARM variance more than this fraction above ARM's is not "at most" ARM's.
# Far below the variance reductions the claim is about (the closed forms give DisARM / ARM
# ratios well under 1 over most of the grid) and above float and Monte Carlo resolution
# at thousands of draws (s.e. of a log variance about sqrt(2 / n), 3% at n = 2,000).
TOY_RATIO_MARGIN = 0.05
# Claim 1 reads variances' s.e. in the normal (large-sample) approximation: below this many
# draws per point the point is not judged.
TOY_MIN_DRAWS = 100

# The paper's protocol, for "how far from it" statements next to every verdict. plots/ may
# import only contracts/ (tests/test_layout.py), so these repeat training/presets.py's "paper" grid.
PAPER_STEPS, PAPER_SEEDS = protocols.PAPER_STEPS, protocols.PAPER_SEEDS
PAPER_DATASETS, PAPER_MODELS = protocols.PAPER_DATASETS, protocols.PAPER_MODELS
PAPER_CELLS = tuple((d, m) for d in PAPER_DATASETS for m in PAPER_MODELS)


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of PROTOCOL.md section 7: what it says and which estimators it compares.

  ``subject`` and ``other`` are estimator names, or with ``pair_by_cost`` family names
  (``estimator_info.family``) whose members are paired at equal ``num_f_evals``.
  ``models``: the models the claim is about (others are listed, not judged); ``cells``: the
  (dataset, model) cells that must all hold for the claim to hold (None: the judged ones).
  """

  claim: str
  statement: str
  kind: str  # "toy_variance" | "beats" | "matches" | "costs_more" | "variance_below"
  subject: tuple
  other: tuple
  metric: str = ""
  pair_by_cost: bool = False
  models: tuple | None = None
  cells: tuple | None = None


CLAIMS = (
  Claim(
    "1",
    "DisARM's variance is at most ARM's at every parameter value (toy problem).",
    "toy_variance",
    ("disarm",),
    ("arm",),
  ),
  Claim(
    "2a",
    "DisARM reaches a better training ELBO than ARM (all datasets, both models).",
    "beats",
    ("disarm",),
    ("arm",),
    "final_train_elbo",
    models=PAPER_MODELS,
    cells=PAPER_CELLS,
  ),
  Claim(
    "2b",
    "DisARM matches or beats 2-sample REINFORCE LOO in training ELBO (all datasets, both models).",
    "matches",
    ("disarm",),
    ("reinforce_loo",),
    "final_train_elbo",
    models=PAPER_MODELS,
    cells=PAPER_CELLS,
  ),
  Claim(
    "2c",
    "RELAX is competitive but costs more (here: more wall-clock seconds per training step than DisARM).",
    "costs_more",
    ("relax",),
    ("disarm",),
    "steps_per_sec",
    models=PAPER_MODELS,
  ),
  Claim(
    "3",
    "DisARM's gradient variance is well below ARM's throughout training.",
    "variance_below",
    ("disarm",),
    ("arm",),
    "grad_variance",
  ),
  Claim(
    "4",
    "For the multi-sample bound, local DisARM beats VIMCO at equal cost.",
    "beats",
    ("local_disarm", "local_disarm_sym"),
    ("vimco",),
    "final_test_bound_k",
    pair_by_cost=True,
  ),
)


@dataclasses.dataclass
class ClaimResult:
  claim: str
  statement: str
  rule: str
  verdict: str
  details: pd.DataFrame
  notes: list = dataclasses.field(default_factory=list)
  steps: str = "n/a"  # length of the runs the verdict rests on ("20", "1,000-3,000")
  seeds: str = "n/a"  # seeds (pairs) per judged cell ("3", "2-3")
  basis: str = ""
  summary: str = ""  # "k of n cells hold; fails: ...; not judged: ..."

  def scope(self) -> str:
    """'runs of 20 steps, 3 seeds (paper: 1,000,000 steps, 5 seeds)'."""
    if self.claim == "1":
      return "toy problem" + (f", {self.seeds} gradient draws per point" if self.seeds != "n/a" else "")
    if self.steps == "n/a":
      return "no runs compared"
    return (
      f"runs of {self.steps} steps, {self.seeds} seed(s) per cell (paper: {style.format_count(PAPER_STEPS)} "
      f"steps, {PAPER_SEEDS} seeds)"
    )

  def to_markdown(self) -> str:
    out = [
      f"### Claim {self.claim}: **{self.verdict}** ({self.scope()})",
      "",
      f"*{self.statement}*",
      "",
    ]
    if self.summary:
      out += [f"Verdict: {self.summary}.", ""]
    out += [f"Rule: {self.rule}", ""]
    if self.basis:
      out += [f"Basis: {self.basis}", ""]
    if not self.details.empty:
      out.append(df_to_markdown(self.details.drop(columns=["judged", "subject", "other"], errors="ignore")))
    for n in self.notes:
      out.append(f"- {n}")
    return "\n".join(out).rstrip() + "\n"

  def __str__(self) -> str:
    return self.to_markdown()


def _judged(claim, rule, verdict, details, notes, steps, seeds, basis="", summary=""):
  """A claim judged on runs; ``steps`` and ``seeds``: the judged cells' run lengths and seed counts."""
  return ClaimResult(
    claim.claim,
    claim.statement,
    rule,
    verdict,
    details,
    notes,
    range_text(steps),
    range_text(seeds, lambda x: str(int(x))),
    basis,
    summary,
  )


def _statistics_text() -> str:
  return (
    f"Tests: two-sided level {verdicts.ALPHA:g}, Student's t with the difference's degrees of freedom; "
    f"`ci_low`-`ci_high` the {1 - verdicts.ALPHA:.0%} confidence interval of the difference, `sdd` the "
    f"smallest difference detectable with power {verdicts.POWER:g} at this n and s.e.; rows with n < "
    f"{MIN_SEEDS} are not judged."
  )


def _omniglot_note(cells) -> list[str]:
  if any(style.is_omniglot(d) for d, _ in cells):
    return [
      "Omniglot-28 here is derived by this suite; its numbers are not directly comparable with the "
      "paper's Omniglot numbers."
    ]
  return []


def comparisons(claim: Claim, catalogue: style.Catalogue, estimators) -> list[tuple[str, str]]:
  """(subject, other) estimator pairs of ``claim`` among ``estimators`` (those of one cell)."""
  present = catalogue.order(estimators)
  if not claim.pair_by_cost:
    return [(a, b) for a in claim.subject for b in claim.other if a in present and b in present]
  subjects = [e for e in present if catalogue.info(e) is not None and catalogue.family(e) in claim.subject]
  others = [e for e in present if catalogue.info(e) is not None and catalogue.family(e) in claim.other]
  return [
    (a, b)
    for a in subjects
    for b in others
    if catalogue.num_f_evals(a) is not None and catalogue.num_f_evals(a) == catalogue.num_f_evals(b)
  ]


def _per_seed(done, ds, m, est, metric) -> pd.Series:
  d = done[(done["dataset"] == ds) & (done["model"] == m) & (done["estimator"] == est)]
  if metric not in d.columns:
    return pd.Series(dtype=float)
  return pd.Series(pd.to_numeric(d[metric], errors="coerce").to_numpy(), index=d["seed"].to_numpy()).dropna()


def _steps_of(done, ds, m, ests, seeds=None):
  d = done[(done["dataset"] == ds) & (done["model"] == m) & done["estimator"].isin(ests)]
  if seeds is not None:
    d = d[d["seed"].isin(seeds)]
  return [float(x) for x in pd.to_numeric(d["final_step"], errors="coerce").dropna()]


def paired_cell(done, ds, m, est_a, est_b, metric, margin=None) -> dict:
  """Paired-by-seed t test of metric(est_a) - metric(est_b) in one cell (``stats.paired_test``), with the
  two estimators' means over the common seeds."""
  a = _per_seed(done, ds, m, est_a, metric)
  b = _per_seed(done, ds, m, est_b, metric)
  test = stats.paired_test(a, b, margin)
  seeds = test["seeds"]
  test["mean_subject"] = float(a[seeds].mean()) if seeds else math.nan
  test["mean_other"] = float(b[seeds].mean()) if seeds else math.nan
  return test


def _compared(claim, catalogue, frame) -> list:
  """Every estimator a claim compares somewhere in ``frame``: their labels are made together, so that a
  claim that compares several sizes of one family tells them apart."""
  names = []
  for ds, m in cells(frame):
    cell = frame[(frame["dataset"] == ds) & (frame["model"] == m)]
    for pair in comparisons(claim, catalogue, cell["estimator"].unique()):
      names += pair
  return list(dict.fromkeys(names))


def _out_of_scope(claim: Claim, model: str) -> bool:
  return claim.models is not None and model not in claim.models


OUT_OF_SCOPE = "outside the claim (about single-layer linear and nonlinear models): not pooled"


def _row(ds, m, comparison, test, verdict, reason, **extra) -> dict:
  row = {"dataset": ds, "model": m, "comparison": comparison, **extra}
  row.update({k: test[k] for k in verdicts.TEST_COLUMNS})
  row["verdict"], row["reason"] = verdict, reason
  return row


def paired_table(claim: Claim, done: pd.DataFrame, catalogue: style.Catalogue) -> pd.DataFrame:
  """One row per compared pair and cell: the paired test of ``claim.metric`` and its verdict (pure).

  Columns: dataset, model, comparison, [K,] n, df, diff, se, ci_low, ci_high, sdd, t, p, verdict, reason,
  mean_subject, mean_other, steps (the runs' final steps)."""
  matches = claim.kind == "matches"
  rows = []
  labels = catalogue.labels(_compared(claim, catalogue, done))
  for ds, m in cells(done):
    cell = done[(done["dataset"] == ds) & (done["model"] == m)]
    for a, b in comparisons(claim, catalogue, cell["estimator"].unique()):
      test = paired_cell(done, ds, m, a, b, claim.metric, MARGIN_NATS if matches else None)
      if _out_of_scope(claim, m):
        verdict, reason = NOT_JUDGED, OUT_OF_SCOPE
      elif matches:
        verdict, reason = verdicts.decide_noninferior(test)
      else:
        verdict, reason = verdicts.decide_beats(test)
      extra = {"K": catalogue.num_f_evals(a)} if claim.pair_by_cost else {}
      row = _row(ds, m, f"{labels[a]} vs {labels[b]}", test, verdict, reason, **extra)
      row.update(
        subject=a,
        other=b,
        mean_subject=test["mean_subject"],
        mean_other=test["mean_other"],
        steps=_steps_of(done, ds, m, [a, b], test["seeds"]),
      )
      rows.append(row)
  return verdicts.holm_fails(pd.DataFrame(rows))


def _names(names) -> str:
  return "/".join(names)


def _paired_rule(claim: Claim) -> str:
  pairing = (
    f"{_names(claim.subject)} against {_names(claim.other)} at equal num_f_evals"
    if claim.pair_by_cost
    else f"{_names(claim.subject)} - {_names(claim.other)}"
  )
  level = f"{1 - verdicts.ALPHA:.0%}"
  if claim.kind == "beats":
    decision = (
      f"paired t test (df = n - 1); a row holds if the {level} confidence interval of mean(d) lies above 0, "
      f"fails if it lies below 0 (Holm over the rows), else no difference detected"
    )
  else:
    decision = (
      f"non-inferiority at a margin of {MARGIN_NATS:g} nats (the lower test of TOST): a row holds if the one-sided "
      f"{level} lower bound of mean(d) is above -{MARGIN_NATS:g}, fails if the one-sided upper bound is below "
      f"-{MARGIN_NATS:g}, else undecided"
    )
  scope = (
    " The claim holds only if every cell of the paper's grid (3 datasets x linear, nonlinear) holds; "
    "layered models are listed, not pooled."
    if claim.cells
    else " Over the rows: fails if any fails, holds if all hold."
  )
  return f"`{claim.metric}` paired by seed, d = {pairing}; {decision}; n >= {MIN_SEEDS} paired seeds.{scope}"


def _details(table: pd.DataFrame) -> pd.DataFrame:
  return table.drop(columns=["steps"], errors="ignore")


def _paired_claim(claim: Claim, data) -> ClaimResult:
  done, catalogue = data.done, data.catalogue
  table = paired_table(claim, done, catalogue)
  rule = _paired_rule(claim)
  notes = []
  if table.empty:
    notes.append(
      f"No finished runs of {_names(claim.subject)} and {_names(claim.other)} in the same cell"
      + (" at equal cost (num_f_evals from config.json)." if claim.pair_by_cost else ".")
    )
    return ClaimResult(claim.claim, claim.statement, rule, NOT_ENOUGH, table, notes)
  in_scope = table[[not _out_of_scope(claim, m) for m in table["model"]]]
  verdict, summary = verdicts.overall(in_scope, claim.cells, "cells" if not claim.pair_by_cost else "comparisons")
  judged = in_scope  # run lengths and seeds of every row the verdict reads, judged or not
  notes.append(_statistics_text())
  notes += _omniglot_note(cells(done))
  if claim.pair_by_cost:
    notes.append(
      "Compared: local DisARM with m pairs (2m evaluations of f) trains the m-sample bound, VIMCO with 2m "
      "samples trains the 2m-sample bound; both are judged on the same 2m-sample test bound (final_test_bound_k, "
      "K = num_f_evals from config.json)."
    )
  if claim.pair_by_cost:
    table = variance_beside(table, claim, getattr(data, "metrics", pd.DataFrame()), catalogue)
    notes.append(
      "Gradient variance beside it (not part of the verdict): `var_ratio` = subject / other encoder-gradient "
      "variance, per seed as in claim 3, with its confidence interval and verdict (`var_verdict`, below 1 "
      "beyond the noise: holds); measured on the variance basket (same parameters) where the cell has it, "
      "else each estimator's grad_variance along its own runs, i.e. the gradient of its own objective "
      "(column `var_basis`); not judged where neither was logged."
    )
  steps = [s for lst in judged["steps"] for s in lst] if len(judged) else []
  return _judged(claim, rule, verdict, _details(table), notes, steps, list(judged["n"]), summary=summary)


def variance_beside(table: pd.DataFrame, claim: Claim, metrics: pd.DataFrame, catalogue) -> pd.DataFrame:
  """Claim 4's rows with the gradient-variance comparison of the same pairs (columns var_*)."""
  out = table.copy()
  for c in ("var_basis", "var_ratio", "var_ci_low", "var_ci_high", "var_verdict"):
    out[c] = "" if c in ("var_basis", "var_verdict") else math.nan
  if metrics is None or metrics.empty:
    out["var_verdict"] = NOT_JUDGED
    return out
  v = variance_table(dataclasses.replace(claim, kind="variance_below", metric="grad_variance"), metrics, catalogue)
  look = {} if v.empty else {(r.dataset, r.model, r.subject, r.other): r for r in v.itertuples()}
  for i, r in out.iterrows():
    hit = look.get((r["dataset"], r["model"], r["subject"], r["other"]))
    if hit is None:
      out.loc[i, "var_verdict"] = NOT_JUDGED
      continue
    out.loc[i, ["var_basis", "var_verdict"]] = [hit.basis, hit.verdict]
    out.loc[i, ["var_ratio", "var_ci_low", "var_ci_high"]] = [hit.ratio_mean, 1 - hit.ci_high, 1 - hit.ci_low]
  return out


# --------------------------------------------------------------------------- claim 2c: cost per step
def _stack_sizes(done: pd.DataFrame, metrics: pd.DataFrame | None) -> pd.Series:
  """Runs trained together per run_id: member_steps_per_sec / steps_per_sec from summary.csv, else the
  last ``stack_size`` its metrics.csv logged; NaN where neither says."""
  sps = pd.to_numeric(done["steps_per_sec"], errors="coerce")
  member = pd.to_numeric(done.get("member_steps_per_sec", pd.Series(np.nan, index=done.index)), errors="coerce")
  size = pd.Series((member / sps).round().to_numpy(), index=done["run_id"].to_numpy())
  if metrics is not None and not metrics.empty and "stack_size" in metrics:
    logged = metrics.dropna(subset=["stack_size"]).groupby("run_id")["stack_size"].last()
    size = size.fillna(logged.reindex(size.index))
  return size


def timings(done: pd.DataFrame, metrics=None) -> pd.DataFrame:
  """One row per independent timing: dataset, model, estimator, stack_size, sec_per_step (pure).

  A stack's runs share one wall clock (their steps_per_sec are one number), so runs with the
  same cell, estimator, stack size and steps_per_sec are one measurement. sec_per_step =
  1 / steps_per_sec: the wall-clock seconds of one step of the whole stack."""
  d = done.assign(
    stack_size=_stack_sizes(done, metrics).to_numpy(), steps_per_sec=pd.to_numeric(done["steps_per_sec"], "coerce")
  )
  d = d[np.isfinite(d["steps_per_sec"]) & (d["steps_per_sec"] > 0)]
  d = d.drop_duplicates(["dataset", "model", "estimator", "stack_size", "steps_per_sec"])
  return d.assign(sec_per_step=1.0 / d["steps_per_sec"])[
    ["dataset", "model", "estimator", "stack_size", "sec_per_step"]
  ].reset_index(drop=True)


def speed_table(claim: Claim, done: pd.DataFrame, catalogue: style.Catalogue, metrics=None) -> pd.DataFrame:
  """Claim 2c per cell (pure): log(seconds per step of subject / of other) at one common stack size.

  Per cell the stack size with the most timings on both sides is used; Welch's t on log
  seconds per step (Welch-Satterthwaite df) where both sides have >= MIN_SEEDS timings,
  else the row is not judged on its own (column ``log_ratio`` still feeds the test over cells)."""
  t = timings(done, metrics)
  labels = catalogue.labels(_compared(claim, catalogue, done))
  rows = []
  for ds, m in cells(done):
    cell = done[(done["dataset"] == ds) & (done["model"] == m)]
    for a, b in comparisons(claim, catalogue, cell["estimator"].unique()):
      ta = t[(t["dataset"] == ds) & (t["model"] == m) & (t["estimator"] == a)]
      tb = t[(t["dataset"] == ds) & (t["model"] == m) & (t["estimator"] == b)]
      common = sorted(set(ta["stack_size"].dropna()) & set(tb["stack_size"].dropna()))
      extra = {"stack_size": math.nan, "timings": "0/0", "sec_per_step_subject": math.nan}
      extra.update(sec_per_step_other=math.nan, log_ratio=math.nan)
      if _out_of_scope(claim, m):
        test, verdict, reason = verdicts.nan_test(), NOT_JUDGED, OUT_OF_SCOPE
      elif not common:
        sizes = f"{_sizes(ta)} vs {_sizes(tb)}"
        why = "missing timings" if ta.empty or tb.empty else f"no common stack size ({sizes})"
        test, verdict, reason = verdicts.nan_test(), NOT_JUDGED, f"not comparable: {why}"
      else:
        size = max(common, key=lambda s: (min((ta["stack_size"] == s).sum(), (tb["stack_size"] == s).sum()), -s))
        xa = np.log(ta.loc[ta["stack_size"] == size, "sec_per_step"])
        xb = np.log(tb.loc[tb["stack_size"] == size, "sec_per_step"])
        test = stats.welch_test(xa, xb)
        verdict, reason = verdicts.decide_beats(test, unit="")
        if verdict == NOT_JUDGED:
          reason = f"{len(xa)} and {len(xb)} timing(s) (the runs of one stack share one): " + reason
        extra = {
          "stack_size": size,
          "timings": f"{len(xa)}/{len(xb)}",
          "sec_per_step_subject": float(np.exp(xa.mean())),
          "sec_per_step_other": float(np.exp(xb.mean())),
          "log_ratio": float(xa.mean() - xb.mean()),
        }
      runs_a, runs_b = (cell.loc[cell["estimator"] == e, "seed"].nunique() for e in (a, b))
      extra.update(seeds=min(runs_a, runs_b))
      extra.update(f_evals_subject=catalogue.num_f_evals(a), f_evals_other=catalogue.num_f_evals(b))
      row = _row(ds, m, f"{labels[a]} vs {labels[b]}", test, verdict, reason, **extra)
      row["steps"] = _steps_of(done, ds, m, [a, b])
      rows.append(row)
  return verdicts.holm_fails(pd.DataFrame(rows))


def _sizes(t: pd.DataFrame) -> str:
  sizes = sorted({int(s) for s in t["stack_size"].dropna()})
  return ",".join(map(str, sizes)) if sizes else "unknown"


def speed_over_cells(table: pd.DataFrame) -> dict:
  """One-sample t test over cells of the comparable cells' log ratios (each cell one pair: df = cells - 1)."""
  x = table["log_ratio"].dropna() if len(table) else pd.Series(dtype=float)
  mean, se, n = stats.mean_se(x)
  return stats.difference_test(mean, se, n - 1, n)


def _costs_more_claim(claim: Claim, data) -> ClaimResult:
  done, catalogue = data.done, data.catalogue
  rule = (
    f"cost = wall-clock seconds per training step of a stack (1 / steps_per_sec), compared only between runs "
    f"trained in stacks of the same size; d = log(cost of {_names(claim.subject)} / cost of "
    f"{_names(claim.other)}). Per cell Welch's t on log cost (Welch-Satterthwaite df), judged with >= "
    f"{MIN_SEEDS} timings each (a stack's runs share one timing); over cells a one-sample t on the cells' "
    f"d (df = cells - 1, >= {MIN_SEEDS} cells). Holds if the {1 - verdicts.ALPHA:.0%} confidence interval of "
    "d lies above 0, fails if below 0. num_f_evals (config.json) is shown; 'competitive' is not judged."
  )
  table = speed_table(claim, done, catalogue, getattr(data, "metrics", None))
  notes = ["Timings are only comparable when runs shared the same hardware and load; the report's throughput says how."]
  if table.empty:
    notes.append(f"No finished {_names(claim.subject)} and {_names(claim.other)} runs in the same cell.")
    return ClaimResult(claim.claim, claim.statement, rule, NOT_ENOUGH, table, notes)
  in_scope = table[[not _out_of_scope(claim, m) for m in table["model"]]]
  pooled = speed_over_cells(in_scope)
  pv, preason = verdicts.decide_beats(pooled, unit="")
  cell_verdict, summary = verdicts.overall(in_scope)
  if cell_verdict == FAILS:
    verdict = FAILS
    summary = f"a cell fails; over cells: {pv} ({preason}); per cell: {summary}"
  elif pv != NOT_JUDGED:
    verdict = {verdicts.HOLDS: HOLDS, verdicts.FAILS: FAILS}.get(pv, NOT_ENOUGH)
    summary = f"over {pooled['n']} comparable cells: {pv} ({preason}); per cell: {summary}"
  else:
    verdict = cell_verdict
    summary = f"over cells: not judged ({preason}); per cell: {summary}"
  notes.append(_statistics_text())
  judged = in_scope  # run lengths and seeds of every row the verdict reads, judged or not
  steps = [s for lst in judged["steps"] for s in lst] if len(judged) else []
  return _judged(claim, rule, verdict, _details(table), notes, steps, list(judged["seeds"]), summary=summary)


def _run_medians(frame: pd.DataFrame, num_col: str, den_col: str) -> pd.DataFrame:
  """Per run (run_id, seed): median over evaluations of num/den where both are finite and > 0."""
  num = pd.to_numeric(frame[num_col], errors="coerce")
  den = pd.to_numeric(frame[den_col], errors="coerce")
  ok = np.isfinite(num) & np.isfinite(den) & (num > 0) & (den > 0)
  d = frame.loc[ok, ["run_id", "seed", "step"]].assign(ratio=(num[ok] / den[ok]).to_numpy())
  d = d.drop_duplicates(["run_id", "step"], keep="last")  # a resumed run may log a step twice
  g = d.groupby(["run_id", "seed"])["ratio"]
  return g.agg(median="median", evaluations="count", below=lambda r: float((r < 1).mean())).reset_index()


def _variance_cell(metrics, ds, m, a, b):
  """(basis, per-seed ratios Series, evaluations, fraction of evaluations below 1, max step)."""
  cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == m)]
  col_a, col_b = results.basket_column(a), results.basket_column(b)
  if col_a in cell.columns and col_b in cell.columns:
    per_run = _run_medians(cell, col_a, col_b)
    if len(per_run):
      per_seed = per_run.groupby("seed")["median"].mean()
      frac = float(np.average(per_run["below"], weights=per_run["evaluations"]))
      steps = cell.loc[cell["run_id"].isin(per_run["run_id"]), "step"].max()
      return "basket", per_seed, int(per_run["evaluations"].sum()), frac, steps
  # No basket here: each estimator's own runs, paired by seed and step.
  ra = cell[cell["estimator"] == a][["seed", "step", "grad_variance"]].rename(columns={"grad_variance": "a"})
  rb = cell[cell["estimator"] == b][["seed", "step", "grad_variance"]].rename(columns={"grad_variance": "b"})
  j = ra.drop_duplicates(["seed", "step"], keep="last").merge(
    rb.drop_duplicates(["seed", "step"], keep="last"), on=["seed", "step"]
  )
  if j.empty:
    return "grad_variance", pd.Series(dtype=float), 0, math.nan, math.nan
  j = j.assign(run_id=j["seed"])
  per_run = _run_medians(j, "a", "b")
  if per_run.empty:
    return "grad_variance", pd.Series(dtype=float), 0, math.nan, math.nan
  frac = float(np.average(per_run["below"], weights=per_run["evaluations"]))
  return (
    "grad_variance",
    per_run.set_index("seed")["median"],
    int(per_run["evaluations"].sum()),
    frac,
    float(j["step"].max()),
  )


BASIS_TEXT = {
  "basket": "variance basket (basket_var_<estimator> columns: both estimators' encoder-gradient variances "
  "measured at the same parameters, along every run of the cell)",
  "grad_variance": "moving-average grad_variance of each estimator along its own runs, paired by seed and step "
  "(no variance basket in this cell)",
}


def variance_table(claim: Claim, metrics: pd.DataFrame, catalogue: style.Catalogue) -> pd.DataFrame:
  """Claim 3 per cell (pure): per-seed ratios r = subject / other variance; the test is on the reduction
  1 - r (one sample over seeds, df = n - 1), "beats" 0 (``verdicts.decide_beats``)."""
  rows = []
  if metrics.empty:
    return pd.DataFrame(rows)
  for ds, m in cells(metrics):
    cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == m)]
    ests = set(cell["estimator"]) | {loading.basket_measured(c) for c in loading.basket_columns(cell)}
    for a, b in comparisons(claim, catalogue, ests):
      basis, per_seed, evaluations, frac, max_step = _variance_cell(metrics, ds, m, a, b)
      if per_seed.empty:
        continue
      mean, se, n = stats.mean_se(1.0 - per_seed)
      test = stats.difference_test(mean, se, n - 1, n)
      verdict, reason = verdicts.decide_beats(test, unit="")
      labels = catalogue.labels([a, b])
      row = _row(ds, m, f"{labels[a]} / {labels[b]}", test, verdict, reason, basis=basis, evaluations=evaluations)
      row.update(subject=a, other=b)
      row.update(ratio_mean=1.0 - mean, frac_evals_below_1=frac, steps=[float(max_step)])
      rows.append(row)
  return verdicts.holm_fails(pd.DataFrame(rows))


def _variance_claim(claim: Claim, data) -> ClaimResult:
  metrics, catalogue = data.metrics, data.catalogue
  rule = (
    f"r = variance of {_names(claim.subject)} / variance of {_names(claim.other)}; per run the median of r "
    "over evaluations, per seed the mean over that seed's runs; d = 1 - r (the variance reduction), a one-sample "
    f"t test over seeds (df = n - 1, n >= {MIN_SEEDS}). A cell holds if the {1 - verdicts.ALPHA:.0%} confidence "
    "interval of d lies above 0, fails if below 0 (Holm over the cells), else no difference detected. 'Well "
    "below' is the reduction shown (`diff`, `ci_low`-`ci_high`), not a cut-off. Basis: the variance basket where "
    "the cell has it, else grad_variance (column `basis`)."
  )
  table = variance_table(claim, metrics, catalogue)
  if table.empty:
    return ClaimResult(
      claim.claim,
      claim.statement,
      rule,
      NOT_ENOUGH,
      table,
      [
        f"No {_names(claim.subject)} and {_names(claim.other)} gradient variances (basket or "
        "training curves) in the same cell."
      ],
    )
  verdict, summary = verdicts.overall(table)
  notes = [_statistics_text()]
  basis = "; ".join(BASIS_TEXT[b] for b in sorted(set(table["basis"])))
  judged = table
  steps = [s for lst in judged["steps"] for s in lst if np.isfinite(s)] if len(judged) else []
  return _judged(claim, rule, verdict, _details(table), notes, steps, list(judged["n"]), basis, summary)


# --------------------------------------------------------------------------- claim 1: the toy problem
def _variance_se(v: pd.Series, n: pd.Series, given: pd.Series | None) -> pd.Series:
  """s.e. of a sample variance of n draws: the ``variance_se`` column where the CSV has it (any
  distribution with a finite fourth moment: sqrt((m4 - m2^2) / n)), else the normal-theory
  v * sqrt(2 / (n - 1)), which understates it for heavy-tailed draws."""
  normal = v * np.sqrt(2.0 / (n - 1))
  if given is None:
    return normal
  return pd.to_numeric(given, errors="coerce").fillna(normal)


def toy_points(toy_variance: pd.DataFrame, a: str, b: str, alpha: float = verdicts.ALPHA) -> pd.DataFrame:
  """Claim 1 at every (p0, sigma_phi) point with both estimators' Monte Carlo variances (pure).

  Per point r = log(v_a / v_b) of the implementations' sample variances (``variance``, over
  ``num_samples`` draws), s.e. by the delta method sqrt((se_a / v_a)^2 + (se_b / v_b)^2)
  (``_variance_se``), read in the normal (df = inf; n >= TOY_MIN_DRAWS). With m judged points:
    * violation: H0 "v_a <= v_b" rejected, one-sided p = P(Z > r / se), Holm over the m points;
    * shown at most: the simultaneous (Bonferroni) one-sided upper bound r + z_{1-alpha/m} se
      lies below log(1 + TOY_RATIO_MARGIN).
  v_a = 0 < v_b is at most with certainty; both 0 is equal (at most). Closed forms
  (``variance_exact``) are the reference: ``exact_ratio``, and per estimator whether the Monte
  Carlo variance agrees with its closed form (two-sided z on (v - exact) / se, Holm over all
  points of both estimators: ``mc_exact_disagree``)."""
  d = toy_variance[toy_variance["estimator"].isin([a, b])].copy()
  if d.empty or "num_samples" not in d:
    return pd.DataFrame()
  d["sigma_key"] = d["sigma_phi"].astype(float).round(10)
  d = d.drop_duplicates(["p0", "sigma_key", "estimator"], keep="last")
  d["n"] = pd.to_numeric(d["num_samples"], errors="coerce")
  d["v"] = pd.to_numeric(d["variance"], errors="coerce")
  d["exact"] = pd.to_numeric(d.get("variance_exact", pd.Series(np.nan, index=d.index)), errors="coerce")
  d["se"] = _variance_se(d["v"], d["n"], d.get(results.TOY_VARIANCE_SE_COLUMN))
  # Monte Carlo against closed form, per estimator and point.
  z = (d["v"] - d["exact"]) / d["se"]
  p = z.abs().map(lambda x: min(1.0, 2 * stats.t_sf(x, math.inf)) if np.isfinite(x) else math.nan)
  d["disagree"] = stats.holm(p.to_numpy(), alpha)
  wide = d.set_index(["p0", "sigma_key", "estimator"])[["v", "se", "n", "exact", "disagree"]].unstack("estimator")
  if (("v", a) not in wide.columns) or (("v", b) not in wide.columns):
    return pd.DataFrame()
  out = pd.DataFrame(
    {
      "p0": wide.index.get_level_values(0),
      "sigma_phi": wide.index.get_level_values(1),
      "v_subject": wide[("v", a)].to_numpy(),
      "v_other": wide[("v", b)].to_numpy(),
      "se_subject": wide[("se", a)].to_numpy(),
      "se_other": wide[("se", b)].to_numpy(),
      "draws": np.fmin(wide[("n", a)].to_numpy(), wide[("n", b)].to_numpy()),
      "exact_ratio": (wide[("exact", a)] / wide[("exact", b)]).to_numpy(),
      "mc_exact_disagree": (wide[("disagree", a)].fillna(False) | wide[("disagree", b)].fillna(False)).to_numpy(),
    }
  )
  out = out[np.isfinite(out["v_subject"]) & np.isfinite(out["v_other"])].reset_index(drop=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    out["ratio"] = out["v_subject"] / out["v_other"]
    out["log_ratio"] = np.log(out["ratio"])
    out["log_se"] = np.hypot(out["se_subject"] / out["v_subject"], out["se_other"] / out["v_other"])
  judged = (out["draws"] >= TOY_MIN_DRAWS).to_numpy()
  m = int(judged.sum())
  certain_below = (out["v_subject"] == 0) & (out["v_other"] > 0)
  both_zero = (out["v_subject"] == 0) & (out["v_other"] == 0)
  regular = judged & ~certain_below & ~both_zero & np.isfinite(out["log_se"]) & (out["log_se"] > 0)
  p_violation = np.full(len(out), np.nan)
  p_violation[regular] = [stats.t_sf(x, math.inf) for x in (out["log_ratio"] / out["log_se"])[regular]]
  z_simultaneous = stats.t_quantile(1 - alpha / max(m, 1), math.inf)
  out["upper_ratio"] = np.where(
    regular, np.exp(out["log_ratio"] + z_simultaneous * out["log_se"]), np.where(certain_below | both_zero, 0, np.nan)
  )
  out["upper_ratio"] = np.where(both_zero, 1.0, out["upper_ratio"])
  out["violation"] = stats.holm(np.where(judged, p_violation, np.nan), alpha)
  out["at_most"] = judged & (out["upper_ratio"] < 1 + TOY_RATIO_MARGIN)
  out["judged"] = judged
  return out


def _toy_claim(claim: Claim, data) -> ClaimResult:
  toy_variance = data.toy_variance
  level = verdicts.ALPHA
  rule = (
    "on the implementations' Monte Carlo variances (`variance`, `num_samples` draws per point), points matched "
    f"on (p0, sigma_phi), r = log(var {claim.subject[0]} / var {claim.other[0]}) with the s.e. of a sample "
    "variance (`variance_se` where the CSV has it, else normal theory var x sqrt(2/(n-1))) by the delta method. "
    f"A point violates the claim if r > 0 beyond the noise (one-sided z, Holm over the points, family-wise "
    f"level {level:g}); it shows 'at most' if its simultaneous (Bonferroni) one-sided {1 - level:.0%} upper bound "
    f"on the ratio is below 1 + {TOY_RATIO_MARGIN:g}. Fails on any violation; holds if every point shows 'at "
    f"most'; else not enough to tell. Points with < {TOY_MIN_DRAWS} draws are not judged. The closed forms "
    "(`variance_exact`) are the reference, not the basis."
  )
  notes = [
    "Only the variance half of the claim is checked here; unbiasedness is covered by the estimators' unit tests."
  ]
  a, b = claim.subject[0], claim.other[0]
  if toy_variance is None or toy_variance.empty:
    return ClaimResult(
      claim.claim, claim.statement, rule, NOT_ENOUGH, pd.DataFrame(), notes + ["No toy/toy_variance.csv in this sweep."]
    )
  pts = toy_points(toy_variance, a, b)
  if pts.empty:
    return ClaimResult(
      claim.claim,
      claim.statement,
      rule,
      NOT_ENOUGH,
      pd.DataFrame(),
      notes + [f"toy_variance.csv has no (p0, sigma_phi) point with both {a} and {b} Monte Carlo variances."],
    )
  judged = pts[pts["judged"]]
  details = (
    pts.groupby("p0")
    .agg(
      points=("ratio", "size"),
      judged=("judged", "sum"),
      violations=("violation", "sum"),
      at_most=("at_most", "sum"),
      median_ratio=("ratio", "median"),
      max_ratio=("ratio", "max"),
      max_upper_ratio=("upper_ratio", "max"),
      max_exact_ratio=("exact_ratio", "max"),
      mc_exact_disagree=("mc_exact_disagree", "sum"),
    )
    .reset_index()
  )
  for c in ("judged", "violations", "at_most", "mc_exact_disagree"):
    details[c] = details[c].astype(int)
  details = details.rename(columns={"judged": "points_judged"})
  if judged.empty:
    verdict = NOT_ENOUGH
  elif judged["violation"].any():
    verdict = FAILS
  elif judged["at_most"].all() and len(judged) == len(pts):
    verdict = HOLDS
  else:
    verdict = NOT_ENOUGH
  summary = (
    f"{int(judged['at_most'].sum())} of {len(pts)} points show 'at most', {int(judged['violation'].sum())} "
    f"violate it, {len(pts) - len(judged)} not judged (< {TOY_MIN_DRAWS} draws)"
  )
  bad = pts[pts["violation"]]
  if not bad.empty:
    notes.append(
      "Violations at (p0, sigma_phi): " + ", ".join(f"({p:g}, {s:.4g})" for p, s in zip(bad["p0"], bad["sigma_phi"]))
    )
  has_exact = np.isfinite(pts["exact_ratio"])
  disagree = pts[pts["mc_exact_disagree"]]
  if has_exact.any():
    notes.append(
      f"Monte Carlo against closed form: the implementations' variances agree with `variance_exact` within the "
      f"Monte Carlo uncertainty (two-sided z, Holm over all points of both estimators, level {level:g}) at "
      f"{int(has_exact.sum()) - len(disagree)} of {int(has_exact.sum())} points"
      + (
        "; disagree at (p0, sigma_phi): "
        + ", ".join(f"({p:g}, {s:.4g})" for p, s in zip(disagree["p0"], disagree["sigma_phi"]))
        if len(disagree)
        else ""
      )
      + "."
    )
  else:
    notes.append("No closed-form variances (`variance_exact`) to check the Monte Carlo ones against.")
  if results.TOY_VARIANCE_SE_COLUMN not in toy_variance.columns:
    notes.append(
      f"The CSV has no `{results.TOY_VARIANCE_SE_COLUMN}` column: s.e. of the variances from normal theory, "
      "which understates them for heavy-tailed draws."
    )
  return ClaimResult(
    claim.claim,
    claim.statement,
    rule,
    verdict,
    details,
    notes,
    "n/a",
    range_text([float(x) for x in pts["draws"].dropna()]),
    summary=summary,
  )


def check_claim1(toy_variance) -> ClaimResult:
  """Claim 1 on a toy_variance.csv frame alone (for experiments/toy.py and its tests)."""
  return _toy_claim(claim_by_name("1"), types.SimpleNamespace(toy_variance=toy_variance))


CHECKS = {
  "toy_variance": _toy_claim,
  "beats": _paired_claim,
  "matches": _paired_claim,
  "costs_more": _costs_more_claim,
  "variance_below": _variance_claim,
}


def check_claim(claim: Claim, data) -> ClaimResult:
  return CHECKS[claim.kind](claim, data)


def claim_by_name(name: str) -> Claim:
  return next(c for c in CLAIMS if c.claim == name)


def check_claims(data) -> list[ClaimResult]:
  """Every claim of ``CLAIMS`` on a sweep (``plots.loading.load_sweep``'s result, or a folder path)."""
  if isinstance(data, str):
    data = loading.load_sweep(data)
  return [check_claim(c, data) for c in CLAIMS]


def claims_markdown(claims: list[ClaimResult]) -> str:
  head = pd.DataFrame(
    {
      "claim": [c.claim for c in claims],
      "verdict": [c.verdict for c in claims],
      "steps": [c.steps if c.claim != "1" else "toy" for c in claims],
      "seeds": [c.seeds if c.claim != "1" else f"{c.seeds} draws" for c in claims],
      "statement": [c.statement for c in claims],
    }
  )
  return df_to_markdown(head) + "\n" + "\n".join(c.to_markdown() for c in claims)


def run(results_dir: str, published_csv=None, out=sys.stdout):
  """Check the claims (and the published comparison), print them, return both."""
  from plots import published

  path, name = published.resolve(published_csv)
  table = published.load_published(path) if path else None
  data = loading.load_sweep(results_dir)
  claims = check_claims(data)
  print(claims_markdown(claims), file=out)
  comp = None
  if table is not None:
    comp = published.compare_published(data, table)
    print("## Comparison with published numbers\n", file=out)
    print(published.published_markdown(data, comp, table, name), file=out)
  return claims, comp


def main(argv):
  from absl import flags

  from plots.published import PublishedCSVError

  del argv
  FLAGS = flags.FLAGS
  try:
    run(FLAGS.results_dir, FLAGS.published)
  except (loading.ResultsDirError, PublishedCSVError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string("results_dir", None, "Sweep directory holding summary.csv, e.g. results/<sweep>.", required=True)
  flags.DEFINE_string(
    "published", None, "CSV of published numbers (default: results/published/rodeo_2022.csv; 'none': no comparison)."
  )
  app.run(main)
