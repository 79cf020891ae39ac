"""Check PROTOCOL section 7's claims on a sweep, and compare with published numbers.

    python -m plots.compare --results_dir=results/<sweep> [--published=path.csv]

prints one verdict per claim, "holds", "fails" or "not enough runs to tell", with the
numbers behind it; `check_claims()` / `compare_published()` return the same as objects.

Rules (constants below; every statistic uses finished runs, status == "done", unless
stated; s.e. = sample std with ddof=1 / sqrt(n); "t" = mean / s.e.):

Claim 1 (toy: DisARM variance <= ARM variance at every parameter value), from
  toy/toy_variance.csv. Points are matched on (p0, sigma_phi). At each point:
  * if both exact variances are given: violation iff
    var_disarm - var_arm > EXACT_REL_TOL * max(var_disarm, var_arm);
  * else, if a num_samples column is given (gradient draws per point), the
    empirical variances' s.e. is taken as var * sqrt(2 / (num_samples - 1))
    (normal approximation) and a violation is var_disarm - var_arm >
    T_THRESHOLD * sqrt(se_disarm^2 + se_arm^2);
  * else a violation is var_disarm > (1 + TOY_REL_TOL) * var_arm.
  holds: >= 1 matched point and no violation; fails: any violation; not enough:
  no file or no matched point. (Unbiasedness is the estimators' unit tests' job.)

Claim 2 (DisARM beats ARM and matches or beats REINFORCE LOO in train ELBO; RELAX
  costs more). Per dataset x model cell, final_train_elbo paired by seed:
  d_s = ELBO_disarm(seed s) - ELBO_other(seed s), over seeds finished for both.
  With n < MIN_SEEDS pairs a cell is "not enough runs to tell".
  2a DisARM vs ARM: cell holds if t > T_THRESHOLD, fails if t < -T_THRESHOLD,
     otherwise (|t| <= T_THRESHOLD, difference within noise) not enough to tell.
  2b DisARM vs REINFORCE LOO ("matches or beats"): cell holds if t > -T_THRESHOLD
     (mean difference > -2 s.e.), fails otherwise.
  2c RELAX costs more: cell holds if RELAX's mean steps_per_sec is below DisARM's,
     fails otherwise (needs MIN_SEEDS finished runs of each). The paired ELBO
     difference RELAX - DisARM is shown for "competitive" but not judged.
Claim 3 (DisARM's gradient variance well below ARM's throughout training), from
  metrics.csv of runs not failed. Per cell, the seed-mean grad_variance of each
  estimator at each step, the per-step ratio DisARM / ARM over steps both have, then
  its median. Cell holds if median ratio < VARIANCE_RATIO_THRESHOLD and the ratio is
  below 1 at >= MIN_FRACTION_BELOW_ONE of the steps; fails otherwise; not enough if
  either estimator has < MIN_SEEDS seeds or < MIN_COMMON_STEPS common steps.
Claim 4 (local DisARM beats VIMCO at equal cost): as 2a but on final_test_bound_k
  (the test bound with the K = 2m samples both spend), for each estimator named
  local_disarm* against VIMCO at the same cost: local_disarm_m and local_disarm_sym_m
  (m pairs, 2m evaluations) against vimco_{2m}; for other local_disarm* names the same
  name with "local_disarm" replaced by "vimco" if such runs exist; else "vimco". Not
  enough runs when the sweep has none.
Overall verdict of a claim (2a, 2b, 2c, 3, 4 combine their cells): a cell is judged
  when it has enough runs (>= MIN_SEEDS paired seeds, or seeds per estimator for 3
  and 2c); cells with fewer are listed in the notes and left out. Then: fails if any
  judged cell fails; holds if there is at least one judged cell and all hold;
  otherwise (no judged cell, or a judged cell within noise) not enough runs to tell.
  Cells of the paper's 3 x 2 grid absent from the sweep are listed, not judged.

Published comparison: a CSV with columns dataset, model, estimator, metric, value,
  stderr, source (see results/published_example.csv). metric is a summary.csv column
  (final_train_elbo, final_test_bound_100, ...) or an alias (train_elbo, test_bound_100,
  ...). For each row: our mean, s.e., n (finished runs), diff = ours - published, and
  diff / sqrt(se_ours^2 + se_published^2) with a missing published stderr taken as 0.
  Omniglot rows are flagged as not directly comparable.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import pandas as pd

from plots import loading, stats, style
from plots.markdown import df_to_markdown

HOLDS = "holds"
FAILS = "fails"
NOT_ENOUGH = "not enough runs to tell"

T_THRESHOLD = 2.0
MIN_SEEDS = 2
VARIANCE_RATIO_THRESHOLD = 0.8
MIN_FRACTION_BELOW_ONE = 0.9
MIN_COMMON_STEPS = 3
TOY_REL_TOL = 0.05
EXACT_REL_TOL = 1e-6

PAPER_DATASETS = ("mnist", "fashion_mnist", "omniglot")
PAPER_MODELS = ("linear", "nonlinear")

OMNIGLOT_NOTE = "not directly comparable (Omniglot-28 derived by this suite)"

METRIC_ALIASES = {
    "train_elbo": "final_train_elbo",
    "elbo": "final_train_elbo",
    "test_bound_100": "final_test_bound_100",
    "test_bound": "final_test_bound_100",
    "valid_bound_100": "final_valid_bound_100",
    "grad_variance": "final_grad_variance",
}

PUBLISHED_COLUMNS = ("dataset", "model", "estimator", "metric", "value", "stderr", "source")


@dataclasses.dataclass
class ClaimResult:
    claim: str
    statement: str
    rule: str
    verdict: str
    details: pd.DataFrame
    notes: list = dataclasses.field(default_factory=list)

    def to_markdown(self) -> str:
        out = [
            f"### Claim {self.claim}: **{self.verdict}**",
            "",
            f"*{self.statement}*",
            "",
            f"Rule: {self.rule}",
            "",
        ]
        if not self.details.empty:
            out.append(df_to_markdown(self.details))
        for n in self.notes:
            out.append(f"- {n}")
        return "\n".join(out).rstrip() + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


def combine_verdicts(verdicts) -> str:
    """fails if any fails; holds if non-empty and all hold; else not enough to tell."""
    v = list(verdicts)
    if FAILS in v:
        return FAILS
    if v and all(x == HOLDS for x in v):
        return HOLDS
    return NOT_ENOUGH


def _overall(details: pd.DataFrame, notes: list) -> str:
    """Overall verdict over the cells that had enough runs to be judged (column
    `judged`); the others are listed in `notes`. No judged cell: not enough runs."""
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
        return ["Omniglot-28 here is derived by this suite; its numbers are not directly "
                "comparable with the paper's Omniglot numbers."]
    return []


def _per_seed(done: pd.DataFrame, ds, m, est, metric) -> pd.Series:
    d = done[(done["dataset"] == ds) & (done["model"] == m) & (done["estimator"] == est)]
    if metric not in d.columns:  # a summary written before the column existed: no values
        return pd.Series(dtype=float)
    return pd.Series(pd.to_numeric(d[metric], errors="coerce").to_numpy(),
                     index=d["seed"].to_numpy()).dropna()


def paired_cell(done, ds, m, est_a, est_b, metric="final_train_elbo") -> dict:
    """Paired-by-seed statistics of metric(est_a) - metric(est_b) in one cell."""
    a = _per_seed(done, ds, m, est_a, metric)
    b = _per_seed(done, ds, m, est_b, metric)
    p = stats.paired_difference(a, b)
    seeds = p["seeds"]
    return {
        "dataset": ds,
        "model": m,
        "n_pairs": p["n"],
        f"mean_{est_a}": float(a[seeds].mean()) if seeds else math.nan,
        f"mean_{est_b}": float(b[seeds].mean()) if seeds else math.nan,
        "mean_diff": p["mean"],
        "se_diff": p["se"],
        "t": p["t"],
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


def _paired_claim(done, est_a, est_b, decide, claim, statement, rule, extra_notes=()):
    cells = [c for c in _cells(done)
             if not done[(done["dataset"] == c[0]) & (done["model"] == c[1])
                         & done["estimator"].isin([est_a, est_b])].empty]
    rows = []
    for ds, m in cells:
        r = paired_cell(done, ds, m, est_a, est_b)
        r["verdict"], r["reason"] = decide(r)
        r["judged"] = r["n_pairs"] >= MIN_SEEDS
        rows.append(r)
    details = pd.DataFrame(rows)
    notes = list(extra_notes)
    if not rows:
        notes.append(f"No finished {style.estimator_label(est_a)} or "
                     f"{style.estimator_label(est_b)} runs in this sweep.")
        verdict = NOT_ENOUGH
    else:
        verdict = _overall(details, notes)
        notes += _missing_paper_cells(done) + _omniglot_note(cells)
    return ClaimResult(claim, statement, rule, verdict, details, notes)


def check_claim2(summary: pd.DataFrame) -> list[ClaimResult]:
    done = loading.done_runs(summary)
    c2a = _paired_claim(
        done, "disarm", "arm", _decide_beats, "2a",
        "DisARM reaches a better training ELBO than ARM (all datasets, both models).",
        f"final_train_elbo paired by seed, d = DisARM - ARM; per cell holds if "
        f"t = mean(d)/se(d) > {T_THRESHOLD:g}, fails if t < -{T_THRESHOLD:g}, else not "
        f"enough to tell; needs >= {MIN_SEEDS} paired seeds. Overall, over cells with "
        "enough runs: fails if any fails, holds if all hold (else not enough to tell).",
    )
    c2b = _paired_claim(
        done, "disarm", "reinforce_loo", _decide_matches, "2b",
        "DisARM matches or beats 2-sample REINFORCE LOO in training ELBO.",
        f"final_train_elbo paired by seed, d = DisARM - REINFORCE LOO; per cell holds if "
        f"mean(d) > -{T_THRESHOLD:g} se(d), fails otherwise; needs >= {MIN_SEEDS} paired "
        "seeds. Overall, over cells with enough runs: fails if any fails, holds if all hold.",
    )
    return [c2a, c2b, check_claim2c(summary)]


def check_claim2c(summary: pd.DataFrame) -> ClaimResult:
    done = loading.done_runs(summary)
    statement = "RELAX is competitive but costs more (here: fewer steps per second than DisARM)."
    rule = (f"per cell, mean steps_per_sec of RELAX < that of DisARM (>= {MIN_SEEDS} finished "
            "runs each) holds, else fails. The paired ELBO difference RELAX - DisARM is "
            "reported for 'competitive' and not judged.")
    rows = []
    for ds, m in _cells(done):
        cell = done[(done["dataset"] == ds) & (done["model"] == m)]
        if not {"relax", "disarm"} & set(cell["estimator"]):
            continue
        sps = {}
        for est in ("relax", "disarm"):
            v = pd.to_numeric(cell.loc[cell["estimator"] == est, "steps_per_sec"],
                              errors="coerce").dropna()
            sps[est] = (float(v.mean()) if len(v) else math.nan, len(v))
        p = paired_cell(done, ds, m, "relax", "disarm")
        row = {
            "dataset": ds, "model": m,
            "steps_per_sec_relax": sps["relax"][0], "steps_per_sec_disarm": sps["disarm"][0],
            "speed_ratio": sps["relax"][0] / sps["disarm"][0] if sps["disarm"][0] else math.nan,
            "elbo_diff_relax_minus_disarm": p["mean_diff"], "se_diff": p["se_diff"],
            "n_pairs": p["n_pairs"],
        }
        row["judged"] = bool(min(sps["relax"][1], sps["disarm"][1]) >= MIN_SEEDS
                             and np.isfinite(row["speed_ratio"]))
        if not row["judged"]:
            row["verdict"], row["reason"] = NOT_ENOUGH, f"< {MIN_SEEDS} runs with a speed"
        elif row["speed_ratio"] < 1:
            row["verdict"], row["reason"] = HOLDS, "RELAX slower"
        else:
            row["verdict"], row["reason"] = FAILS, "RELAX not slower"
        rows.append(row)
    details = pd.DataFrame(rows)
    notes = ["Speeds are only comparable when runs shared the same hardware and load."]
    if rows:
        verdict = _overall(details, notes)
        notes += _missing_paper_cells(done)
    else:
        verdict = NOT_ENOUGH
        notes.append("No finished RELAX or DisARM runs in this sweep.")
    return ClaimResult("2c", statement, rule, verdict, details, notes)


def _seed_median_ratios(a: pd.DataFrame, b: pd.DataFrame) -> list[float]:
    """Per common seed: median over common steps of a's / b's grad_variance."""
    out = []
    for seed in sorted(set(a["seed"]) & set(b["seed"])):
        sa = a[a["seed"] == seed].dropna(subset=["grad_variance"]).drop_duplicates("step", keep="last")
        sb = b[b["seed"] == seed].dropna(subset=["grad_variance"]).drop_duplicates("step", keep="last")
        j = sa.set_index("step")["grad_variance"].to_frame("a").join(
            sb.set_index("step")["grad_variance"].to_frame("b"), how="inner")
        j = j[(j["a"] > 0) & (j["b"] > 0)]
        if len(j):
            out.append(float(np.median(j["a"] / j["b"])))
    return out


def check_claim3(metrics: pd.DataFrame) -> ClaimResult:
    statement = "DisARM's gradient variance is well below ARM's throughout training."
    rule = (f"per cell, r(step) = mean over seeds of DisARM grad_variance / the same for ARM; "
            f"holds if median_step r < {VARIANCE_RATIO_THRESHOLD:g} and r < 1 at >= "
            f"{MIN_FRACTION_BELOW_ONE:.0%} of steps, fails otherwise; needs >= {MIN_SEEDS} "
            f"seeds of each and >= {MIN_COMMON_STEPS} common steps. Overall, over cells "
            "with enough runs: fails if any fails, holds if all hold.")
    rows = []
    if not metrics.empty:
        for ds, m in _cells(metrics):
            cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == m)]
            a = cell[cell["estimator"] == "disarm"]
            b = cell[cell["estimator"] == "arm"]
            if a.empty and b.empty:
                continue
            sa = stats.aggregate_over_seeds(a, "grad_variance")
            sb = stats.aggregate_over_seeds(b, "grad_variance")
            j = sa.set_index("step")["mean"].to_frame("disarm").join(
                sb.set_index("step")["mean"].to_frame("arm"), how="inner")
            j = j[(j["disarm"] > 0) & (j["arm"] > 0)]
            ratio = (j["disarm"] / j["arm"]).to_numpy()
            per_seed = _seed_median_ratios(a, b)
            row = {
                "dataset": ds, "model": m,
                "seeds_disarm": a["seed"].nunique(), "seeds_arm": b["seed"].nunique(),
                "common_steps": len(ratio),
                "median_ratio": float(np.median(ratio)) if len(ratio) else math.nan,
                "frac_steps_ratio_below_1": float(np.mean(ratio < 1)) if len(ratio) else math.nan,
                "max_ratio": float(np.max(ratio)) if len(ratio) else math.nan,
                "per_seed_median_ratio_min": min(per_seed) if per_seed else math.nan,
                "per_seed_median_ratio_max": max(per_seed) if per_seed else math.nan,
            }
            row["judged"] = bool(min(row["seeds_disarm"], row["seeds_arm"]) >= MIN_SEEDS
                                 and row["common_steps"] >= MIN_COMMON_STEPS)
            if min(row["seeds_disarm"], row["seeds_arm"]) < MIN_SEEDS:
                row["verdict"], row["reason"] = NOT_ENOUGH, f"< {MIN_SEEDS} seeds of each"
            elif row["common_steps"] < MIN_COMMON_STEPS:
                row["verdict"], row["reason"] = NOT_ENOUGH, f"< {MIN_COMMON_STEPS} common steps"
            elif (row["median_ratio"] < VARIANCE_RATIO_THRESHOLD
                  and row["frac_steps_ratio_below_1"] >= MIN_FRACTION_BELOW_ONE):
                row["verdict"], row["reason"] = HOLDS, "well below throughout"
            else:
                row["verdict"], row["reason"] = FAILS, "not well below throughout"
            rows.append(row)
    details = pd.DataFrame(rows)
    if rows:
        notes = []
        verdict = _overall(details, notes)
        notes += _missing_paper_cells(metrics)
    else:
        verdict = NOT_ENOUGH
        notes = ["No DisARM or ARM training curves (metrics.csv) in this sweep."]
    return ClaimResult("3", statement, rule, verdict, details, notes)


def check_claim1(toy_variance: pd.DataFrame | None) -> ClaimResult:
    statement = "DisARM's variance is at most ARM's at every parameter value (toy problem)."
    rule = ("points matched on (p0, sigma_phi); with both exact variances a violation is "
            f"disarm - arm > {EXACT_REL_TOL:g} x max; else with num_samples, disarm - arm > "
            f"{T_THRESHOLD:g} x combined s.e. (s.e. of a variance ~ var x sqrt(2/(n-1))); else "
            f"disarm > (1 + {TOY_REL_TOL:g}) x arm. Holds if no violation, fails on any.")
    notes = ["Only the variance half of the claim is checked here; unbiasedness is covered "
             "by the estimators' unit tests."]
    if toy_variance is None or toy_variance.empty:
        return ClaimResult("1", statement, rule, NOT_ENOUGH, pd.DataFrame(),
                           notes + ["No toy/toy_variance.csv in this sweep."])
    d = toy_variance[toy_variance["estimator"].isin(["disarm", "arm"])].copy()
    d["sigma_key"] = d["sigma_phi"].astype(float).round(10)
    has_n = "num_samples" in d.columns
    agg_cols = {"variance": "mean", "variance_exact": "mean"}
    if has_n:
        agg_cols["num_samples"] = "sum"
    g = d.groupby(["p0", "sigma_key", "estimator"]).agg(agg_cols).unstack("estimator")
    rows = []
    if ("variance", "disarm") in g.columns and ("variance", "arm") in g.columns:
        for (p0, sk), r in g.iterrows():
            vd, va = r[("variance", "disarm")], r[("variance", "arm")]
            ed, ea = r[("variance_exact", "disarm")], r[("variance_exact", "arm")]
            if np.isfinite(ed) and np.isfinite(ea):
                basis, x_d, x_a = "exact", ed, ea
                tol = EXACT_REL_TOL * max(abs(ed), abs(ea))
            elif not (np.isfinite(vd) and np.isfinite(va)):
                continue
            elif has_n and r[("num_samples", "disarm")] > 1 and r[("num_samples", "arm")] > 1:
                basis, x_d, x_a = "estimated, s.e. from num_samples", vd, va
                se_d = vd * math.sqrt(2.0 / (r[("num_samples", "disarm")] - 1))
                se_a = va * math.sqrt(2.0 / (r[("num_samples", "arm")] - 1))
                tol = T_THRESHOLD * math.hypot(se_d, se_a)
            else:
                basis, x_d, x_a = f"estimated, {TOY_REL_TOL:.0%} tolerance", vd, va
                tol = TOY_REL_TOL * va
            rows.append({"p0": p0, "sigma_phi": sk, "basis": basis,
                         "ratio": x_d / x_a if x_a > 0 else math.nan,
                         "violation": bool(x_d - x_a > tol)})
    pts = pd.DataFrame(rows)
    if pts.empty:
        return ClaimResult("1", statement, rule, NOT_ENOUGH, pd.DataFrame(),
                           notes + ["toy_variance.csv has no (p0, sigma_phi) point with both "
                                    "DisARM and ARM variances."])
    details = (pts.groupby(["p0", "basis"])
               .agg(points=("ratio", "size"), violations=("violation", "sum"),
                    median_ratio=("ratio", "median"), max_ratio=("ratio", "max"))
               .reset_index())
    details["violations"] = details["violations"].astype(int)
    verdict = FAILS if pts["violation"].any() else HOLDS
    bad = pts[pts["violation"]]
    if not bad.empty:
        notes.append("Violations at (p0, sigma_phi): " + ", ".join(
            f"({p:g}, {s:.4g})" for p, s in zip(bad["p0"], bad["sigma_phi"])))
    return ClaimResult("1", statement, rule, verdict, details, notes)


def claim4_pairs(estimators) -> list[tuple[str, str]]:
    ests = set(estimators)
    # vimco_K by its cost K (evaluations of f): local_disarm_m and local_disarm_sym_m
    # (2m evaluations) are compared with vimco_{2m}, not with vimco_m.
    vimco_by_cost = {style.multisample_evaluations(e): e for e in ests
                     if (style.estimator_family(e) or ("",))[0] == "vimco"}
    pairs = []
    for e in sorted(ests):
        if e.startswith("local_disarm"):
            cost = style.multisample_evaluations(e)
            twin = e.replace("local_disarm", "vimco", 1)
            if cost is not None and cost in vimco_by_cost:
                other = vimco_by_cost[cost]
            elif cost is None and twin in ests:
                other = twin
            else:
                other = "vimco" if "vimco" in ests else None
            if other is not None:
                pairs.append((e, other))
    return pairs


def check_claim4(summary: pd.DataFrame) -> ClaimResult:
    done = loading.done_runs(summary)
    statement = "For the multi-sample bound, local DisARM beats VIMCO at equal cost."
    rule = (f"final_test_bound_k (the test-set bound with K = 2m samples, the number of "
            f"evaluations both spend; PROTOCOL.md section 2) paired by seed, d = local "
            f"DisARM - VIMCO; per cell holds if t > {T_THRESHOLD:g}, fails if t < "
            f"-{T_THRESHOLD:g}, else not enough to tell; needs >= {MIN_SEEDS} paired seeds.")
    rows = []
    for ds, m in _cells(done):
        cell = done[(done["dataset"] == ds) & (done["model"] == m)]
        for a, b in claim4_pairs(cell["estimator"].unique()):
            r = paired_cell(done, ds, m, a, b, metric="final_test_bound_k")
            r = {"comparison": f"{a} vs {b}", **{k: v for k, v in r.items()
                                                 if not k.startswith("mean_") or k == "mean_diff"}}
            r["verdict"], r["reason"] = _decide_beats(r)
            r["judged"] = r["n_pairs"] >= MIN_SEEDS
            rows.append(r)
    details = pd.DataFrame(rows)
    if not rows:
        return ClaimResult("4", statement, rule, NOT_ENOUGH, details,
                           ["No finished local DisARM and VIMCO runs in the same cell."])
    notes = ["Equal cost (m pairs vs 2m VIMCO samples) is set by the driver; "
             "check the run configs."]
    verdict = _overall(details, notes)
    return ClaimResult("4", statement, rule, verdict, details, notes)


def check_claims(results_dir: str | None = None, *, summary=None, metrics=None,
                 toy_variance="load") -> list[ClaimResult]:
    """All claim checks, in order 1, 2a, 2b, 2c, 3, 4.

    Pass `results_dir` to read everything from a sweep directory, or give the frames
    directly (then toy_variance=None means no toy results).
    """
    if summary is None:
        summary = loading.load_summary(results_dir)
    if metrics is None:
        metrics = (loading.load_metrics(results_dir, summary) if results_dir
                   else pd.DataFrame(columns=list(loading.RUN_KEYS) + ["step", "grad_variance"]))
    if isinstance(toy_variance, str):
        toy_variance = loading.load_toy_variance(results_dir) if results_dir else None
    return [check_claim1(toy_variance), *check_claim2(summary), check_claim3(metrics),
            check_claim4(summary)]


def claims_markdown(claims: list[ClaimResult]) -> str:
    head = pd.DataFrame({"claim": [c.claim for c in claims],
                         "verdict": [c.verdict for c in claims],
                         "statement": [c.statement for c in claims]})
    return df_to_markdown(head) + "\n" + "\n".join(c.to_markdown() for c in claims)


# --------------------------------------------------------------------------- published

class PublishedCSVError(ValueError):
    """The published-numbers CSV is missing or malformed."""


def _norm_name(s) -> str:
    s = str(s).strip().lower().replace("-", "_").replace(" ", "_")
    return {"fashionmnist": "fashion_mnist", "fmnist": "fashion_mnist",
            "omniglot_28": "omniglot", "omniglot28": "omniglot",
            "loorf": "reinforce_loo", "reinforce_loo_2": "reinforce_loo"}.get(s, s)


def load_published(path: str) -> pd.DataFrame:
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise PublishedCSVError(f"published CSV {path!r} does not exist") from None
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as e:
        raise PublishedCSVError(f"published CSV {path!r} cannot be read: {e}") from None
    missing = [c for c in PUBLISHED_COLUMNS if c not in df.columns and c != "stderr"]
    if missing:
        raise PublishedCSVError(f"published CSV {path!r} lacks columns {missing}; expected "
                         f"{list(PUBLISHED_COLUMNS)}")
    if "stderr" not in df.columns:
        df["stderr"] = math.nan
    for c in ("dataset", "model", "estimator"):
        df[c] = df[c].map(_norm_name)
    df["metric"] = df["metric"].astype(str).str.strip()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    df["stderr"] = pd.to_numeric(df["stderr"], errors="coerce")
    df["source"] = df["source"].fillna("").astype(str)
    return df


def compare_published(summary: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """One row per published row: ours beside it and the difference in s.e.

    diff = our mean - published value; se_combined = sqrt(se_ours^2 + stderr^2) with a
    missing stderr taken as 0; diff_in_se = diff / se_combined (n/a when our s.e. is
    undefined, i.e. fewer than 2 finished seeds).
    """
    done = loading.done_runs(summary)
    rows = []
    for r in published.itertuples(index=False):
        col = METRIC_ALIASES.get(r.metric, r.metric)
        notes = []
        if col in done.columns:
            d = done[(done["dataset"] == r.dataset) & (done["model"] == r.model)
                     & (done["estimator"] == r.estimator)]
            mean, se, n = stats.mean_se(pd.to_numeric(d[col], errors="coerce"))
        else:
            mean, se, n = math.nan, math.nan, 0
            notes.append(f"metric {r.metric!r} not in summary.csv")
        pub_se = float(r.stderr) if np.isfinite(r.stderr) else 0.0
        diff = mean - r.value
        comb = math.hypot(se, pub_se) if np.isfinite(se) else math.nan
        z = stats.t_statistic(diff, comb)
        if n == 0 and not notes:
            notes.append("no finished runs here")
        elif 0 < n < 2:
            notes.append("one seed: our s.e. undefined")
        if not np.isfinite(r.stderr):
            notes.append("published s.e. missing, taken as 0")
        if style.is_omniglot(r.dataset):
            notes.append(OMNIGLOT_NOTE)
        rows.append({
            "dataset": r.dataset, "model": r.model, "estimator": r.estimator,
            "metric": col, "published": r.value, "published_se": r.stderr,
            "ours": mean, "ours_se": se, "n": n, "diff": diff, "se_combined": comb,
            "diff_in_se": z, "source": r.source, "note": "; ".join(notes),
        })
    return pd.DataFrame(rows)


def published_markdown(comp: pd.DataFrame) -> str:
    fmt = {c: "{:.2f}" for c in ("published", "published_se", "ours", "ours_se", "diff",
                                  "se_combined", "diff_in_se")}
    return df_to_markdown(comp, fmt)


def run(results_dir: str, published_csv: str | None = None, out=sys.stdout):
    """Check the claims (and the published comparison), print them, return both."""
    published = load_published(published_csv) if published_csv else None
    claims = check_claims(results_dir)
    print(claims_markdown(claims), file=out)
    comp = None
    if published is not None:
        summary = loading.load_summary(results_dir)
        comp = compare_published(summary, published)
        print("## Comparison with published numbers\n", file=out)
        print(published_markdown(comp), file=out)
    return claims, comp


def main(argv):
    from absl import flags

    del argv
    FLAGS = flags.FLAGS
    try:
        run(FLAGS.results_dir, FLAGS.published)
    except (loading.ResultsDirError, PublishedCSVError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string("results_dir", None, "Sweep directory holding summary.csv, e.g. "
                        "results/<sweep>.", required=True)
    flags.DEFINE_string("published", None, "Optional CSV of published numbers (columns "
                        "dataset, model, estimator, metric, value, stderr, source).")
    app.run(main)
