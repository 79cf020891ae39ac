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
highest mean bold nothing. This is a readability aid, not a significance test: the
claim checks in plots/compare.py use paired statistics.

A third, unbolded table gives training speed (steps/s), which is what "RELAX costs
more" in PROTOCOL section 7 is about.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from plots import loading, stats, style

# (summary.csv column, title, bold the best)
TABLE_METRICS = (
    ("final_train_elbo", "Final train ELBO (nats, higher is better)", True),
    ("final_test_bound_100", "Final test bound, 100 samples (nats, higher is better)", True),
    ("steps_per_sec", "Training speed (steps per second)", False),
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


def _rows_and_columns(table: pd.DataFrame):
    rows = []
    for ds in style.order_datasets(table["dataset"].unique()):
        for m in style.order_models(table.loc[table["dataset"] == ds, "model"].unique()):
            rows.append((ds, m))
    return rows, style.order_estimators(table["estimator"].unique())


def _lookup(table: pd.DataFrame):
    return {(r.dataset, r.model, r.estimator): r for r in table.itertuples(index=False)}


def latex_escape(s: str) -> str:
    repl = {
        "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
        "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}",
    }
    return "".join(repl.get(c, c) for c in str(s))


def _md_dataset(ds: str) -> str:
    return style.dataset_label(ds).replace("*", "\\*")


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


def table_markdown(table: pd.DataFrame, metric: str, title: str, bold: bool = True) -> str:
    if table.empty:
        return f"**{title}**\n\nNo finished runs with `{metric}`.\n"
    rows, ests = _rows_and_columns(table)
    look = _lookup(table)
    n_typ = _typical_n(table)
    dec = _decimals(metric)
    header = ["Dataset", "Model"] + [style.estimator_label(e) for e in ests]
    lines = [
        f"**{title}** (`{metric}`)",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":--", ":--"] + ["--:"] * len(ests)) + "|",
    ]
    for ds, m in rows:
        cells = [_md_dataset(ds), style.model_label(m)]
        for e in ests:
            r = look.get((ds, m, e))
            if r is None:
                cells.append(MISSING)
            else:
                cells.append(format_cell(r.mean, r.se, r.n, bold=bool(r.bold),
                                         decimals=dec, show_n=r.n != n_typ))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("<br>\n".join(f"<sub>{note}</sub>" for note in _notes(table, bold)))
    return "\n".join(lines) + "\n"


def table_latex(table: pd.DataFrame, metric: str, title: str, bold: bool = True) -> str:
    label = "tab:" + metric.replace("_", "-")
    if table.empty:
        return f"% {title}: no finished runs with {metric}.\n"
    rows, ests = _rows_and_columns(table)
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
        " & ".join(["Dataset", "Model"] + [latex_escape(style.estimator_label(e)) for e in ests])
        + " \\\\",
        "\\midrule",
    ]
    for ds, m in rows:
        cells = [_tex_dataset(ds), latex_escape(style.model_label(m))]
        for e in ests:
            r = look.get((ds, m, e))
            if r is None:
                cells.append("---")
            else:
                cells.append(format_cell(r.mean, r.se, r.n, bold=bool(r.bold), latex=True,
                                         decimals=dec, show_n=r.n != n_typ))
        out.append(" & ".join(cells) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    return "\n".join(out)


def build_all_tables(summary: pd.DataFrame) -> list[tuple[str, str, bool, pd.DataFrame]]:
    return [(metric, title, bold, build_table(summary, metric, bold))
            for metric, title, bold in TABLE_METRICS]


def tables_markdown(summary: pd.DataFrame) -> str:
    return "\n".join(table_markdown(t, m, title, b) for m, title, b, t in build_all_tables(summary))


def tables_latex(summary: pd.DataFrame) -> str:
    header = (
        "% Generated by plots/tables.py from summary.csv; needs \\usepackage{booktabs} "
        "and \\usepackage{amsmath}.\n\n"
    )
    return header + "\n".join(
        table_latex(t, m, title, b) for m, title, b, t in build_all_tables(summary))


def write_tables(results_dir: str, summary: pd.DataFrame | None = None) -> tuple[str, str]:
    """Write <results_dir>/tables.md and tables.tex; returns their paths."""
    if summary is None:
        summary = loading.load_summary(results_dir)
    md_path = os.path.join(results_dir, "tables.md")
    tex_path = os.path.join(results_dir, "tables.tex")
    with open(md_path, "w") as f:
        f.write(tables_markdown(summary))
    with open(tex_path, "w") as f:
        f.write(tables_latex(summary))
    return md_path, tex_path
