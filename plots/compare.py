"""Check PROTOCOL section 7's claims on a sweep (and print the comparison with published numbers).

    python -m plots.compare --results_dir=results/<sweep> [--published=path.csv | --published=none]

prints one verdict per claim, "holds", "fails" or "not enough runs to tell", with the
numbers behind it, the run length and the seeds it rests on. ``check_claims()``
returns the same as objects.

Which estimators each claim compares is data: ``CLAIMS`` below, one row per claim.
The paper's claims are about named estimators (DisARM against ARM, ...), so rows name
them; claim 4 pairs estimators of two families at equal cost, read from each run's
``config.json`` (``estimator_info``: family and ``num_f_evals``), never from names.

Rules (every statistic uses finished runs, status == "done", unless stated; s.e. =
sample std with ddof=1 / sqrt(n); "t" = mean / s.e.; a cell = dataset x model):

Claim 1 (toy: DisARM variance <= ARM variance at every parameter value), from
  toy/toy_variance.csv. Points are matched on (p0, sigma_phi). At each point:
  * if both exact variances are given: violation iff
    var_disarm - var_arm > EXACT_REL_TOL * max(var_disarm, var_arm);
  * else, if a num_samples column is given (gradient draws per point), the
    empirical variances' s.e. is taken as var * sqrt(2 / (num_samples - 1))
    (normal approximation) and a violation is var_disarm - var_arm >
    T_THRESHOLD * sqrt(se_disarm^2 + se_arm^2);
  * else a violation is var_disarm > (1 + TOY_REL_TOL) * var_arm.
  holds: >= 1 matched point and no violation; fails: any violation.
"beats" (2a, 4): the claim's metric paired by seed, d = subject - other; a cell holds
  if t > T_THRESHOLD, fails if t < -T_THRESHOLD, else not enough to tell (within noise).
"matches or beats" (2b): holds if t > -T_THRESHOLD, fails otherwise.
"costs more" (2c): holds if the subject's mean steps_per_sec is below the other's.
"variance below" (3): the ratio subject / other of encoder-gradient variances, per run
  the median over evaluations, per seed the mean over that seed's runs, then mean m and
  s.e. s over seeds. Measured on the variance basket where the cell's runs have both
  basket columns (both estimators' variances measured at the same parameters, so the
  ratio compares estimators, not trajectories); else on the moving-average
  grad_variance of each estimator's own runs, paired by seed (the basis is shown).
  Holds if m + T_THRESHOLD s < 1 (below 1 beyond the noise), fails if
  m - T_THRESHOLD s > 1, else not enough to tell. How far below ("well below") is the
  number shown: m +- s and 1 - m, the variance reduction; plots/README.md says why no
  fixed cut-off is used.
Every cell needs >= MIN_SEEDS paired seeds to be judged; cells with fewer are listed
  in the notes. A claim fails if any judged cell fails, holds if there is a judged
  cell and all hold, otherwise not enough runs to tell.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types

import numpy as np
import pandas as pd

from contracts import results
from plots import loading, stats, style
from plots.markdown import df_to_markdown

HOLDS = "holds"
FAILS = "fails"
NOT_ENOUGH = "not enough runs to tell"

T_THRESHOLD = 2.0
MIN_SEEDS = 2
TOY_REL_TOL = 0.05
EXACT_REL_TOL = 1e-6

# The paper's protocol, for "how far from it" statements next to every verdict.
PAPER_STEPS = 1_000_000
PAPER_SEEDS = 5
PAPER_DATASETS = ("mnist", "fashion_mnist", "omniglot")
PAPER_MODELS = ("linear", "nonlinear")


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of PROTOCOL.md section 7: what it says and which estimators it compares.

  ``subject`` and ``other`` are estimator names, or with ``pair_by_cost`` family names
  (``estimator_info.family``) whose members are paired at equal ``num_f_evals``.
  """

  claim: str
  statement: str
  kind: str  # "toy_variance" | "beats" | "matches" | "costs_more" | "variance_below"
  subject: tuple
  other: tuple
  metric: str = ""
  pair_by_cost: bool = False


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
  ),
  Claim(
    "2b",
    "DisARM matches or beats 2-sample REINFORCE LOO in training ELBO.",
    "matches",
    ("disarm",),
    ("reinforce_loo",),
    "final_train_elbo",
  ),
  Claim(
    "2c",
    "RELAX is competitive but costs more (here: fewer steps per second than DisARM).",
    "costs_more",
    ("relax",),
    ("disarm",),
    "steps_per_sec",
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
      f"Rule: {self.rule}",
      "",
    ]
    if self.basis:
      out += [f"Basis: {self.basis}", ""]
    if not self.details.empty:
      out.append(df_to_markdown(self.details.drop(columns=["judged"], errors="ignore")))
    for n in self.notes:
      out.append(f"- {n}")
    return "\n".join(out).rstrip() + "\n"

  def __str__(self) -> str:
    return self.to_markdown()


def _judged(claim, rule, verdict, details, notes, steps, seeds, basis=""):
  """A claim judged on runs; ``steps`` and ``seeds``: the judged cells' run lengths and seed counts."""
  return ClaimResult(
    claim.claim,
    claim.statement,
    rule,
    verdict,
    details,
    notes,
    _range_text(steps),
    _range_text(seeds, lambda x: str(int(x))),
    basis,
  )


def combine_verdicts(verdicts) -> str:
  """fails if any fails; holds if non-empty and all hold; else not enough to tell."""
  v = list(verdicts)
  if FAILS in v:
    return FAILS
  if v and all(x == HOLDS for x in v):
    return HOLDS
  return NOT_ENOUGH


def _overall(details: pd.DataFrame, notes: list) -> str:
  """Overall verdict over the cells that had enough runs to be judged (column `judged`)."""
  mask = details["judged"].astype(bool)
  judged, skipped = details[mask], details[~mask]
  if len(skipped):
    label = skipped["dataset"] + "/" + skipped["model"]
    if "comparison" in skipped:
      label = label + " (" + skipped["comparison"] + ")"
    notes.append("Not judged, too few runs: " + ", ".join(label))
  return combine_verdicts(judged["verdict"])


def _cells(df: pd.DataFrame):
  cells = []
  for ds in style.order_datasets(df["dataset"].unique()):
    for m in style.order_models(df.loc[df["dataset"] == ds, "model"].unique()):
      cells.append((ds, m))
  return cells


def _missing_paper_cells(df: pd.DataFrame) -> list[str]:
  have = set(zip(df["dataset"], df["model"]))
  missing = [f"{d}/{m}" for d in PAPER_DATASETS for m in PAPER_MODELS if (d, m) not in have]
  if not missing:
    return []
  return ["Cells of the paper's grid not in this sweep (not judged): " + ", ".join(missing)]


def _omniglot_note(cells) -> list[str]:
  if any(style.is_omniglot(d) for d, _ in cells):
    return [
      "Omniglot-28 here is derived by this suite; its numbers are not directly comparable with the "
      "paper's Omniglot numbers."
    ]
  return []


def _range_text(values, fmt=style.format_count) -> str:
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return "n/a"
  lo, hi = min(values), max(values)
  return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


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


def paired_cell(done, ds, m, est_a, est_b, metric) -> dict:
  """Paired-by-seed statistics of metric(est_a) - metric(est_b) in one cell."""
  a = _per_seed(done, ds, m, est_a, metric)
  b = _per_seed(done, ds, m, est_b, metric)
  p = stats.paired_difference(a, b)
  seeds = p["seeds"]
  return {
    "dataset": ds,
    "model": m,
    "n_pairs": p["n"],
    "mean_subject": float(a[seeds].mean()) if seeds else math.nan,
    "mean_other": float(b[seeds].mean()) if seeds else math.nan,
    "mean_diff": p["mean"],
    "se_diff": p["se"],
    "t": p["t"],
    "seeds": seeds,
  }


def _decide_beats(row) -> tuple[str, str]:
  if row["n_pairs"] < MIN_SEEDS:
    return NOT_ENOUGH, f"{row['n_pairs']} paired seed(s) < {MIN_SEEDS}"
  t = row["t"]
  if t > T_THRESHOLD:
    return HOLDS, f"t > {T_THRESHOLD:g}"
  if t < -T_THRESHOLD:
    return FAILS, f"t < -{T_THRESHOLD:g}"
  return NOT_ENOUGH, f"|t| <= {T_THRESHOLD:g}: within noise"


def _decide_matches(row) -> tuple[str, str]:
  if row["n_pairs"] < MIN_SEEDS:
    return NOT_ENOUGH, f"{row['n_pairs']} paired seed(s) < {MIN_SEEDS}"
  if row["t"] > -T_THRESHOLD:
    return HOLDS, f"t > -{T_THRESHOLD:g}"
  return FAILS, f"t <= -{T_THRESHOLD:g}"


def _labels(catalogue, names):
  return catalogue.labels(names)


def _compared(claim, catalogue, frame) -> list:
  """Every estimator a claim compares somewhere in ``frame``: their labels are made together, so that a
  claim that compares several sizes of one family tells them apart."""
  names = []
  for ds, m in _cells(frame):
    cell = frame[(frame["dataset"] == ds) & (frame["model"] == m)]
    for pair in comparisons(claim, catalogue, cell["estimator"].unique()):
      names += pair
  return list(dict.fromkeys(names))


def _paired_claim(claim: Claim, data) -> ClaimResult:
  done, catalogue = data.done, data.catalogue
  decide = _decide_beats if claim.kind == "beats" else _decide_matches
  rows, steps, seeds = [], [], []
  labels = _labels(catalogue, _compared(claim, catalogue, done))
  for ds, m in _cells(done):
    cell = done[(done["dataset"] == ds) & (done["model"] == m)]
    for a, b in comparisons(claim, catalogue, cell["estimator"].unique()):
      r = paired_cell(done, ds, m, a, b, claim.metric)
      row = {"dataset": ds, "model": m, "comparison": f"{labels[a]} vs {labels[b]}"}
      if claim.pair_by_cost:
        row["K"] = catalogue.num_f_evals(a)
      row.update({k: v for k, v in r.items() if k not in ("dataset", "model", "seeds")})
      row["verdict"], row["reason"] = decide(r)
      row["judged"] = r["n_pairs"] >= MIN_SEEDS
      rows.append(row)
      steps += _steps_of(done, ds, m, [a, b], r["seeds"])
      seeds.append(r["n_pairs"])
  details = pd.DataFrame(rows)
  rule = _paired_rule(claim)
  notes = []
  if not rows:
    notes.append(
      f"No finished runs of {_names(claim.subject)} and {_names(claim.other)} in the same cell"
      + (" at equal cost (num_f_evals from config.json)." if claim.pair_by_cost else ".")
    )
    return ClaimResult(claim.claim, claim.statement, rule, NOT_ENOUGH, details, notes)
  verdict = _overall(details, notes)
  notes += _missing_paper_cells(done) + _omniglot_note(_cells(done))
  if claim.pair_by_cost:
    notes.append(
      "Pairs have equal num_f_evals in their runs' config.json (evaluations of f per example, also "
      "the K of the bound both are evaluated with)."
    )
  return _judged(claim, rule, verdict, details, notes, steps, seeds)


def _names(names) -> str:
  return "/".join(names)


def _paired_rule(claim: Claim) -> str:
  pairing = (
    f"{_names(claim.subject)} against {_names(claim.other)} at equal num_f_evals"
    if claim.pair_by_cost
    else f"{_names(claim.subject)} - {_names(claim.other)}"
  )
  if claim.kind == "beats":
    decision = (
      f"per cell holds if t = mean(d)/se(d) > {T_THRESHOLD:g}, fails if t < -{T_THRESHOLD:g}, else not enough to tell"
    )
  else:
    decision = f"per cell holds if mean(d) > -{T_THRESHOLD:g} se(d), fails otherwise"
  return (
    f"`{claim.metric}` paired by seed, d = {pairing}; {decision}; needs >= {MIN_SEEDS} paired seeds. "
    "Overall, over cells with enough runs: fails if any fails, holds if all hold."
  )


def _costs_more_claim(claim: Claim, data) -> ClaimResult:
  done, catalogue = data.done, data.catalogue
  rule = (
    f"per cell, mean steps_per_sec of {_names(claim.subject)} < that of {_names(claim.other)} (>= "
    f"{MIN_SEEDS} finished runs each) holds, else fails. Evaluations of f per step (num_f_evals, "
    "config.json) and the paired ELBO difference are shown for 'competitive', not judged."
  )
  rows, steps, seeds = [], [], []
  labels = _labels(catalogue, _compared(claim, catalogue, done))
  for ds, m in _cells(done):
    cell = done[(done["dataset"] == ds) & (done["model"] == m)]
    for a, b in comparisons(claim, catalogue, cell["estimator"].unique()):
      sps = {}
      for est in (a, b):
        v = pd.to_numeric(cell.loc[cell["estimator"] == est, "steps_per_sec"], errors="coerce").dropna()
        sps[est] = (float(v.mean()) if len(v) else math.nan, len(v))
      p = paired_cell(done, ds, m, a, b, "final_train_elbo")
      row = {
        "dataset": ds,
        "model": m,
        "comparison": f"{labels[a]} vs {labels[b]}",
        "f_evals_subject": catalogue.num_f_evals(a),
        "f_evals_other": catalogue.num_f_evals(b),
        "steps_per_sec_subject": sps[a][0],
        "steps_per_sec_other": sps[b][0],
        "speed_ratio": sps[a][0] / sps[b][0] if sps[b][0] else math.nan,
        "elbo_diff": p["mean_diff"],
        "se_diff": p["se_diff"],
        "n_pairs": p["n_pairs"],
      }
      row["judged"] = bool(min(sps[a][1], sps[b][1]) >= MIN_SEEDS and np.isfinite(row["speed_ratio"]))
      if not row["judged"]:
        row["verdict"], row["reason"] = NOT_ENOUGH, f"< {MIN_SEEDS} runs with a speed"
      elif row["speed_ratio"] < 1:
        row["verdict"], row["reason"] = HOLDS, "slower"
      else:
        row["verdict"], row["reason"] = FAILS, "not slower"
      rows.append(row)
      steps += _steps_of(done, ds, m, [a, b])
      seeds.append(min(sps[a][1], sps[b][1]))
  details = pd.DataFrame(rows)
  notes = ["Speeds are only comparable when runs shared the same hardware, load and stacking."]
  if not rows:
    notes.append(f"No finished {_names(claim.subject)} and {_names(claim.other)} runs in the same cell.")
    return ClaimResult(claim.claim, claim.statement, rule, NOT_ENOUGH, details, notes)
  verdict = _overall(details, notes)
  notes += _missing_paper_cells(done)
  return _judged(claim, rule, verdict, details, notes, steps, seeds)


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


def _variance_claim(claim: Claim, data) -> ClaimResult:
  metrics, catalogue = data.metrics, data.catalogue
  rule = (
    f"r = variance of {_names(claim.subject)} / variance of {_names(claim.other)}; per run the median of r "
    f"over evaluations, per seed the mean over that seed's runs, then m ± s (mean ± s.e. over seeds). A "
    f"cell holds if m + {T_THRESHOLD:g}s < 1, fails if m - {T_THRESHOLD:g}s > 1, else not enough to tell; "
    f"needs >= {MIN_SEEDS} seeds. 'Well below' is the reduction 1 - m shown, not a cut-off. Basis: the "
    "variance basket where the cell has it, else grad_variance (column `basis`)."
  )
  rows, steps, seeds, bases = [], [], [], set()
  if not metrics.empty:
    for ds, m in _cells(metrics):
      cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == m)]
      ests = set(cell["estimator"]) | {loading.basket_measured(c) for c in loading.basket_columns(cell)}
      for a, b in comparisons(claim, catalogue, ests):
        basis, per_seed, evaluations, frac, max_step = _variance_cell(metrics, ds, m, a, b)
        if per_seed.empty:
          continue
        mean, se, n = stats.mean_se(per_seed)
        labels = _labels(catalogue, [a, b])
        row = {
          "dataset": ds,
          "model": m,
          "comparison": f"{labels[a]} / {labels[b]}",
          "basis": basis,
          "seeds": n,
          "evaluations": evaluations,
          "ratio_mean": mean,
          "ratio_se": se,
          "upper": mean + T_THRESHOLD * se if np.isfinite(se) else math.nan,
          "reduction": 1.0 - mean,
          "frac_evals_below_1": frac,
        }
        row["judged"] = n >= MIN_SEEDS and np.isfinite(se)
        if not row["judged"]:
          row["verdict"], row["reason"] = NOT_ENOUGH, f"< {MIN_SEEDS} seeds"
        elif mean + T_THRESHOLD * se < 1:
          row["verdict"], row["reason"] = HOLDS, f"m + {T_THRESHOLD:g}s < 1"
        elif mean - T_THRESHOLD * se > 1:
          row["verdict"], row["reason"] = FAILS, f"m - {T_THRESHOLD:g}s > 1"
        else:
          row["verdict"], row["reason"] = NOT_ENOUGH, "within noise of 1"
        rows.append(row)
        bases.add(basis)
        seeds.append(n)
        if np.isfinite(max_step):
          steps.append(float(max_step))
  details = pd.DataFrame(rows)
  if not rows:
    return ClaimResult(
      claim.claim,
      claim.statement,
      rule,
      NOT_ENOUGH,
      details,
      [
        f"No {_names(claim.subject)} and {_names(claim.other)} gradient variances (basket or "
        "training curves) in the same cell."
      ],
    )
  notes = []
  verdict = _overall(details, notes)
  notes += _missing_paper_cells(metrics)
  basis = "; ".join(BASIS_TEXT[b] for b in sorted(bases))
  return _judged(claim, rule, verdict, details, notes, steps, seeds, basis)


def _toy_claim(claim: Claim, data) -> ClaimResult:
  toy_variance = data.toy_variance
  rule = (
    "points matched on (p0, sigma_phi); with both exact variances a violation is "
    f"subject - other > {EXACT_REL_TOL:g} x max; else with num_samples, subject - other > "
    f"{T_THRESHOLD:g} x combined s.e. (s.e. of a variance ~ var x sqrt(2/(n-1))); else "
    f"subject > (1 + {TOY_REL_TOL:g}) x other. Holds if no violation, fails on any."
  )
  notes = [
    "Only the variance half of the claim is checked here; unbiasedness is covered by the estimators' unit tests."
  ]
  a, b = claim.subject[0], claim.other[0]
  if toy_variance is None or toy_variance.empty:
    return ClaimResult(
      claim.claim, claim.statement, rule, NOT_ENOUGH, pd.DataFrame(), notes + ["No toy/toy_variance.csv in this sweep."]
    )
  d = toy_variance[toy_variance["estimator"].isin([a, b])].copy()
  d["sigma_key"] = d["sigma_phi"].astype(float).round(10)
  has_n = "num_samples" in d.columns
  agg_cols = {"variance": "mean", "variance_exact": "mean"}
  if has_n:
    agg_cols["num_samples"] = "sum"
  g = d.groupby(["p0", "sigma_key", "estimator"]).agg(agg_cols).unstack("estimator")
  rows = []
  if ("variance", a) in g.columns and ("variance", b) in g.columns:
    for (p0, sk), r in g.iterrows():
      va, vb = r[("variance", a)], r[("variance", b)]
      ea, eb = r[("variance_exact", a)], r[("variance_exact", b)]
      if np.isfinite(ea) and np.isfinite(eb):
        basis, x_a, x_b = "exact", ea, eb
        tol = EXACT_REL_TOL * max(abs(ea), abs(eb))
      elif not (np.isfinite(va) and np.isfinite(vb)):
        continue
      elif has_n and r[("num_samples", a)] > 1 and r[("num_samples", b)] > 1:
        basis, x_a, x_b = "estimated, s.e. from num_samples", va, vb
        se_a = va * math.sqrt(2.0 / (r[("num_samples", a)] - 1))
        se_b = vb * math.sqrt(2.0 / (r[("num_samples", b)] - 1))
        tol = T_THRESHOLD * math.hypot(se_a, se_b)
      else:
        basis, x_a, x_b = f"estimated, {TOY_REL_TOL:.0%} tolerance", va, vb
        tol = TOY_REL_TOL * vb
      rows.append(
        {
          "p0": p0,
          "sigma_phi": sk,
          "basis": basis,
          "ratio": x_a / x_b if x_b > 0 else math.nan,
          "violation": bool(x_a - x_b > tol),
        }
      )
  pts = pd.DataFrame(rows)
  if pts.empty:
    return ClaimResult(
      claim.claim,
      claim.statement,
      rule,
      NOT_ENOUGH,
      pd.DataFrame(),
      notes + [f"toy_variance.csv has no (p0, sigma_phi) point with both {a} and {b} variances."],
    )
  details = (
    pts.groupby(["p0", "basis"])
    .agg(
      points=("ratio", "size"),
      violations=("violation", "sum"),
      median_ratio=("ratio", "median"),
      max_ratio=("ratio", "max"),
    )
    .reset_index()
  )
  details["violations"] = details["violations"].astype(int)
  verdict = FAILS if pts["violation"].any() else HOLDS
  bad = pts[pts["violation"]]
  if not bad.empty:
    notes.append(
      "Violations at (p0, sigma_phi): " + ", ".join(f"({p:g}, {s:.4g})" for p, s in zip(bad["p0"], bad["sigma_phi"]))
    )
  draws = d["num_samples"] if has_n else pd.Series(dtype=float)
  return ClaimResult(
    claim.claim,
    claim.statement,
    rule,
    verdict,
    details,
    notes,
    "n/a",
    _range_text([float(x) for x in pd.to_numeric(draws, errors="coerce").dropna()]),
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
