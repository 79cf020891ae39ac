"""Result tables: final train ELBO and final test bound per dataset x model x estimator.

Source: summary.csv, finished runs only (status == "done"; a seed run twice counts
once, its last row). Each cell is the mean +- standard error over seeds, with
s.e. = sample std (ddof=1) / sqrt(n); for n = 1 the s.e. is shown as "n/a".

Bolding rule (higher is better for every bolded metric; ELBOs and bounds are
negative nats). In a dataset x model row let B be the entry with the highest mean.
B is bold only if
  * the row has at least two entries,
  * every entry in the row has n >= 2 seeds (so every s.e. is defined), and
  * for every other entry O:  mean_B - se_B  >  mean_O + se_O,
i.e. B's one-s.e. interval lies strictly above every other entry's. Ties for the
highest mean bold nothing. This is a readability aid, not a significance test (one-s.e.
intervals that do not overlap are far from a 5% test at a few seeds): the claim checks
in plots/compare.py carry the tests.

Where runs logged it, a table of the K-sample test bound (K = the estimator's
evaluations of f, from its config.json); then an unbolded table of training speed
(steps/s), which is what "RELAX costs more" in PROTOCOL section 7 is about.

Column labels, order and colours come from each run's ``estimator_info`` through
``plots.style.Catalogue``; a label gets ``(K=<evaluations>)`` where a table holds
several sizes of one family.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from contracts import results
from plots import loading, markdown, stats, style
from plots.markdown import cells, int_range, md_dataset

# (summary.csv column, title, bold the best, shown only where some run has a value)
TABLE_METRICS = (
  ("final_train_elbo", "Final train ELBO (nats, higher is better)", True, False),
  ("final_test_bound_n", "Final test bound, {n} samples (nats, higher is better)", True, False),
  (
    "final_test_bound_k",
    "Final test bound, K samples with K = the estimator's evaluations of f (nats, higher is better)",
    True,
    True,
  ),
  ("steps_per_sec", "Training speed (steps per second of each run)", False, False),
)

MISSING = "—"


def cell_stats(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
  """mean, se, n of `metric` over seeds per (dataset, model, estimator), done runs."""
  done = loading.done_runs(summary)
  if metric not in done.columns:
    return pd.DataFrame(columns=["dataset", "model", "estimator", "mean", "se", "n"])
  d = done.assign(**{metric: pd.to_numeric(done[metric], errors="coerce")})
  return stats.group_mean_se(d, ["dataset", "model", "estimator"], metric)


def best_entry(row: pd.DataFrame) -> str | None:
  """The estimator to bold in one dataset x model row, or None (see module doc).

  `row` has columns estimator, mean, se, n (one line per estimator).
  """
  r = row[np.isfinite(row["mean"].astype(float))]
  if len(r) < 2:
    return None
  if (r["n"] < 2).any() or not np.isfinite(r["se"].astype(float)).all():
    return None
  means = r["mean"].astype(float).to_numpy()
  ses = r["se"].astype(float).to_numpy()
  i = int(np.argmax(means))
  if (means == means[i]).sum() > 1:
    return None
  lower_best = means[i] - ses[i]
  others = np.arange(len(r)) != i
  if np.all(lower_best > means[others] + ses[others]):
    return str(r["estimator"].iloc[i])
  return None


def build_table(summary: pd.DataFrame, metric: str, bold: bool = True) -> pd.DataFrame:
  """Long table: dataset, model, estimator, mean, se, n, bold (bool)."""
  cs = cell_stats(summary, metric)
  cs["bold"] = False
  if bold and not cs.empty:
    for (_ds, _m), idx in cs.groupby(["dataset", "model"]).groups.items():
      winner = best_entry(cs.loc[idx])
      if winner is not None:
        cs.loc[idx, "bold"] = cs.loc[idx, "estimator"] == winner
  return cs


def fmt_number(x: float, decimals: int = 2) -> str:
  if x is None or not np.isfinite(x):
    return "n/a"
  return f"{x:.{decimals}f}"


def _decimals(metric: str) -> int:
  return 1 if metric == "steps_per_sec" else 2


def format_cell(mean, se, n, bold=False, latex=False, decimals=2, show_n=False) -> str:
  """'-98.12 ± 0.05' (Markdown) or '$-98.12 \\pm 0.05$' (LaTeX); n=1 -> '± n/a'."""
  m = fmt_number(mean, decimals)
  s = fmt_number(se, decimals)
  suffix = f" (n={int(n)})" if show_n else ""
  if latex:
    body = f"{m} \\pm {s}" if s != "n/a" else f"{m} \\pm \\text{{n/a}}"
    body = f"\\mathbf{{{body}}}" if bold else body
    return f"${body}${suffix}"
  text = f"{m} ± {s}"
  return (f"**{text}**" if bold else text) + suffix


def _typical_n(table: pd.DataFrame) -> int | None:
  if table.empty:
    return None
  return int(table["n"].max())


def _rows_and_columns(table: pd.DataFrame, catalogue):
  return cells(table), catalogue.order(table["estimator"].unique())


def _lookup(table: pd.DataFrame):
  return {(r.dataset, r.model, r.estimator): r for r in table.itertuples(index=False)}


def latex_escape(s: str) -> str:
  repl = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\^{}",
  }
  return "".join(repl.get(c, c) for c in str(s))


def _tex_dataset(ds: str) -> str:
  label = style.dataset_label(ds)
  if label.endswith(style.OMNIGLOT_MARK):
    return latex_escape(label[: -len(style.OMNIGLOT_MARK)]) + "$^*$"
  return latex_escape(label)


def _notes(table: pd.DataFrame, bold: bool, latex: bool = False) -> list[str]:
  n = _typical_n(table)
  pm, ge, gt, missing = ("$\\pm$", "$\\geq$", "$>$", "---") if latex else ("±", ">=", ">", MISSING)
  notes = [
    f"Mean {pm} standard error (sample std, ddof=1, / sqrt(n)) over seeds, finished runs "
    f"only; n = {n} seeds unless marked (n=k); s.e. n/a for a single seed; "
    f"{missing} = no finished run."
  ]
  if bold:
    notes.append(
      f"Bold: the highest mean in its row, only where every entry has n {ge} 2 and "
      f"best mean - best s.e. {gt} other mean + other s.e. for every other entry."
    )
  if any(style.is_omniglot(d) for d in table["dataset"].unique()):
    if latex:
      notes.append("$^*$" + style.OMNIGLOT_FOOTNOTE[2:])
    else:
      notes.append(style.OMNIGLOT_FOOTNOTE)
  return notes


def table_markdown(table: pd.DataFrame, metric: str, title: str, bold: bool = True, catalogue=None) -> str:
  catalogue = catalogue or style.Catalogue()
  if table.empty:
    return f"**{title}**\n\nNo finished runs with `{metric}`.\n"
  rows, ests = _rows_and_columns(table, catalogue)
  labels = catalogue.labels(ests)
  look = _lookup(table)
  n_typ = _typical_n(table)
  dec = _decimals(metric)
  header = ["Dataset", "Model"] + [labels[e] for e in ests]
  lines = [
    f"**{title}** (`{metric}`)",
    "",
    "| " + " | ".join(header) + " |",
    "|" + "|".join([":--", ":--"] + ["--:"] * len(ests)) + "|",
  ]
  for ds, m in rows:
    cells = [md_dataset(ds), style.model_label(m)]
    for e in ests:
      r = look.get((ds, m, e))
      if r is None:
        cells.append(MISSING)
      else:
        cells.append(format_cell(r.mean, r.se, r.n, bold=bool(r.bold), decimals=dec, show_n=r.n != n_typ))
    lines.append("| " + " | ".join(cells) + " |")
  lines.append("")
  lines.append("<br>\n".join(f"<sub>{note}</sub>" for note in _notes(table, bold)))
  return "\n".join(lines) + "\n"


def table_latex(table: pd.DataFrame, metric: str, title: str, bold: bool = True, catalogue=None) -> str:
  catalogue = catalogue or style.Catalogue()
  label = "tab:" + metric.replace("_", "-")
  if table.empty:
    return f"% {title}: no finished runs with {metric}.\n"
  rows, ests = _rows_and_columns(table, catalogue)
  labels = catalogue.labels(ests)
  look = _lookup(table)
  n_typ = _typical_n(table)
  dec = _decimals(metric)
  caption = latex_escape(title) + ". " + " ".join(_notes(table, bold, latex=True))
  out = [
    "\\begin{table}[t]",
    "\\centering",
    "\\small",
    f"\\caption{{{caption}}}",
    f"\\label{{{label}}}",
    "\\begin{tabular}{ll" + "c" * len(ests) + "}",
    "\\toprule",
    " & ".join(["Dataset", "Model"] + [latex_escape(labels[e]) for e in ests]) + " \\\\",
    "\\midrule",
  ]
  for ds, m in rows:
    cells = [_tex_dataset(ds), latex_escape(style.model_label(m))]
    for e in ests:
      r = look.get((ds, m, e))
      if r is None:
        cells.append("---")
      else:
        cells.append(format_cell(r.mean, r.se, r.n, bold=bool(r.bold), latex=True, decimals=dec, show_n=r.n != n_typ))
    out.append(" & ".join(cells) + " \\\\")
  out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
  return "\n".join(out)


def build_all_tables(summary: pd.DataFrame) -> list[tuple[str, str, bool, pd.DataFrame]]:
  out = []
  bound_samples = markdown.bound_samples_text(summary, loading.BOUND_SAMPLES)
  for metric, title, bold, optional in TABLE_METRICS:
    table = build_table(summary, metric, bold)
    if optional and table.empty:
      continue
    out.append((metric, title.format(n=bound_samples), bold, table))
  return out


def tables_markdown(summary: pd.DataFrame, catalogue=None) -> str:
  return "\n".join(table_markdown(t, m, title, b, catalogue) for m, title, b, t in build_all_tables(summary))


def tables_latex(summary: pd.DataFrame, catalogue=None) -> str:
  header = (
    "% Generated by plots/tables.py from summary.csv; needs \\usepackage{booktabs} and \\usepackage{amsmath}.\n\n"
  )
  return header + "\n".join(table_latex(t, m, title, b, catalogue) for m, title, b, t in build_all_tables(summary))


def write_tables(results_dir: str, summary: pd.DataFrame, catalogue=None) -> tuple[str, str]:
  """Write <results_dir>/tables.md and tables.tex from the (usable) summary rows; returns their paths."""
  md_path = os.path.join(results_dir, "tables.md")
  tex_path = os.path.join(results_dir, "tables.tex")
  with open(md_path, "w") as f:
    f.write(tables_markdown(summary, catalogue))
  with open(tex_path, "w") as f:
    f.write(tables_latex(summary, catalogue))
  return md_path, tex_path


# ---------------------------------------------------------------------------
# Variance basket: the fair variance comparison. Runs may carry columns
# basket_var_<estimator> (any estimator: the columns are read generically), the
# gradient variance of <estimator> measured at the parameters of the run (trained by
# its own estimator). Per run, at every evaluation where both are finite and
# positive, ratio = basket_var_<E> / basket_var_<reference>; the run's value is the
# median of its ratios over evaluations; a cell (dataset, model, training estimator,
# E) shows the mean +- s.e. of those medians over seeds. The reference is ARM, the
# paper's baseline, where it was measured, else the first measured estimator in the
# catalogue's order.

BASKET_REFERENCE = "arm"


def basket_reference(metrics: pd.DataFrame, catalogue=None) -> str | None:
  """ARM where basket_var_arm has values, else the first measured estimator in order; None without a basket."""
  measured = [loading.basket_measured(c) for c in loading.basket_columns(metrics)]
  if not measured:
    return None
  if BASKET_REFERENCE in measured:
    return BASKET_REFERENCE
  return (catalogue or style.Catalogue()).order(measured)[0]


def basket_ratios(metrics: pd.DataFrame, reference: str | None = None, catalogue=None) -> pd.DataFrame:
  """Long table: dataset, model, trained_by, measured, mean, se, n (seeds),
  evaluations (ratios behind the per-seed medians, all seeds). Empty when the
  metrics lack basket_var_<reference> or any other basket column."""
  cols = ["dataset", "model", "trained_by", "measured", "mean", "se", "n", "evaluations"]
  reference = reference or basket_reference(metrics, catalogue)
  basket = loading.basket_columns(metrics)
  ref_col = results.basket_column(str(reference))
  if reference is None or ref_col not in basket:
    return pd.DataFrame(columns=cols)
  ref = pd.to_numeric(metrics[ref_col], errors="coerce")
  per_run = []
  for col in basket:
    if col == ref_col:
      continue
    v = pd.to_numeric(metrics[col], errors="coerce")
    ok = np.isfinite(v) & np.isfinite(ref) & (v > 0) & (ref > 0)
    if not ok.any():
      continue
    d = metrics.loc[ok, ["run_id", "dataset", "model", "estimator", "seed", "step"]].copy()
    d["ratio"] = (v[ok] / ref[ok]).to_numpy()
    # A resumed run may log a step twice: its last row counts, as in the curves.
    d = d.drop_duplicates(["run_id", "step"], keep="last")
    g = d.groupby(["dataset", "model", "estimator", "seed"], sort=False)["ratio"]
    r = g.agg(["median", "count"]).reset_index()
    r["measured"] = loading.basket_measured(col)
    per_run.append(r)
  if not per_run:
    return pd.DataFrame(columns=cols)
  runs = pd.concat(per_run, ignore_index=True)
  # One run per (dataset, model, estimator, seed): a seed run twice counts once.
  runs = runs.drop_duplicates(["dataset", "model", "estimator", "seed", "measured"], keep="last")
  out = stats.group_mean_se(runs, ["dataset", "model", "estimator", "measured"], "median")
  counts = (
    runs.groupby(["dataset", "model", "estimator", "measured"], sort=False)["count"]
    .sum()
    .rename("evaluations")
    .reset_index()
  )
  out = out.merge(counts, on=["dataset", "model", "estimator", "measured"], how="left")
  return out.rename(columns={"estimator": "trained_by"})[cols]


def basket_markdown(metrics: pd.DataFrame, catalogue=None, reference: str | None = None) -> str:
  """The basket ratio table as Markdown (a row per dataset x model x training
  estimator, a column per measured estimator vs the reference); "" when the
  metrics have no two basket columns with values."""
  catalogue = catalogue or style.Catalogue()
  reference = reference or basket_reference(metrics, catalogue)
  t = basket_ratios(metrics, reference, catalogue)
  if t.empty:
    return ""
  measured = catalogue.order(t["measured"].unique())
  trainers = catalogue.order(t["trained_by"].unique())
  labels = catalogue.labels(list(measured) + list(trainers) + [reference])
  ref_label = labels[reference]
  header = ["Dataset", "Model", "Trained by"] + [f"{labels[e]} / {ref_label}" for e in measured] + ["seeds"]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":--"] * 3 + ["--:"] * (len(measured) + 1)) + "|"]
  look = {(r.dataset, r.model, r.trained_by, r.measured): r for r in t.itertuples(index=False)}
  for ds in style.order_datasets(t["dataset"].unique()):
    d_ds = t[t["dataset"] == ds]
    for m in style.order_models(d_ds["model"].unique()):
      d_m = d_ds[d_ds["model"] == m]
      for tr in catalogue.order(d_m["trained_by"].unique()):
        cells = [md_dataset(ds), style.model_label(m), labels[tr]]
        ns = []
        for e in measured:
          r = look.get((ds, m, tr, e))
          if r is None:
            cells.append(MISSING)
            continue
          ns.append(int(r.n))
          cells.append(_ratio_cell(r.mean, r.se))
        cells.append(int_range(ns, MISSING))
        lines.append("| " + " | ".join(cells) + " |")
  notes = [
    f"Ratio of gradient variances measured at the same parameters: at every evaluation where both are logged, "
    f"`basket_var_<E>` / `basket_var_{reference}`; per run the median over evaluations; shown as mean ± s.e. "
    f"(ddof=1) over seeds. Below 1: E has lower variance than {ref_label} along that training run. {MISSING} = "
    "not measured.",
  ]
  if any(style.is_omniglot(d) for d in t["dataset"].unique()):
    notes.append(style.OMNIGLOT_FOOTNOTE)
  lines += ["", "<br>\n".join(f"<sub>{n}</sub>" for n in notes)]
  return "\n".join(lines) + "\n"


def _ratio_cell(mean: float, se: float) -> str:
  """'0.309 ± 0.006'; three significant digits below 0.01 ('0.00123 ± 4.5e-05')."""
  if not np.isfinite(mean):
    return "n/a"
  if abs(mean) >= 0.01:
    return f"{mean:.3f} ± {fmt_number(se, 3)}"
  return f"{mean:.3g} ± " + (f"{se:.2g}" if np.isfinite(se) else "n/a")
