"""Assemble results/<sweep>/report.md from the sweep's CSVs.

`make_report(results_dir, published_csv=None)` regenerates every figure, the tables
(tables.md, tables.tex), the claim verdicts and, given a published CSV, the paper
comparison (also written as paper_comparison.csv), then writes report.md and returns
its path. It reads nothing but the CSV/JSON files of the sweep directory.
"""

from __future__ import annotations

import os

import pandas as pd

from plots import compare, figures, loading, style, tables
from plots.markdown import df_to_markdown

GRID_CONFIG_KEYS = ("num_steps", "batch_size", "eval_every", "bound_every")


def _rel(path: str, start: str) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def _values(series: pd.Series) -> str:
    """'1000' if every run agrees, else '1000 (4 runs), 500 (2 runs)'."""
    s = series.dropna()
    if s.empty:
        return "unknown"
    def fmt(v):
        try:
            f = float(v)
            return str(int(f)) if f.is_integer() else str(v)
        except (TypeError, ValueError):
            return str(v)

    counts = s.map(fmt).value_counts()
    if len(counts) == 1:
        return f"`{counts.index[0]}`"
    return ", ".join(f"`{v}` ({c} run{'s' if c != 1 else ''})" for v, c in counts.items())


def _int_list(values) -> str:
    out = []
    for v in values:
        try:
            out.append(str(int(v)))
        except (TypeError, ValueError):
            out.append(str(v))
    return ", ".join(out)


def _inferred_cadence(metrics: pd.DataFrame | None, column: str | None) -> str | None:
    """Most common step gap between evaluations (with a value in `column`), per run."""
    if metrics is None or metrics.empty:
        return None
    d = metrics if column is None else metrics.dropna(subset=[column])
    gaps = d.sort_values("step").groupby("run_id")["step"].diff().dropna()
    if gaps.empty:
        return None
    return f"`{int(gaps.mode().iloc[0])}` (inferred from metrics.csv step gaps)"


def grid_markdown(results_dir: str, summary: pd.DataFrame, configs: pd.DataFrame,
                  metrics: pd.DataFrame | None = None) -> str:
    lines = ["## Sweep grid", ""]
    status = summary["status"].value_counts()
    lines.append(f"- runs in summary.csv: {len(summary)} ("
                 + ", ".join(f"{k}: {v}" for k, v in status.items()) + ")")
    lines.append("- datasets: " + ", ".join(
        f"`{d}`" for d in style.order_datasets(summary["dataset"].unique())))
    lines.append("- models: " + ", ".join(
        f"`{m}`" for m in style.order_models(summary["model"].unique())))
    lines.append("- estimators: " + ", ".join(
        f"`{e}`" for e in style.order_estimators(summary["estimator"].unique())))
    seeds = sorted(summary["seed"].dropna().unique())
    lines.append(f"- seeds: {_int_list(seeds)}")
    merged = summary[["run_id", "num_steps"]].merge(configs, on="run_id", how="left",
                                                    suffixes=("", "_cfg"))
    for key in GRID_CONFIG_KEYS:
        if key == "num_steps":
            col = merged["num_steps"]
            if col.isna().all() and "num_steps_cfg" in merged:
                col = merged["num_steps_cfg"]
        else:
            col = merged[key] if key in merged else pd.Series(dtype=object)
        text = _values(col)
        if text == "unknown" and key in ("eval_every", "bound_every"):
            text = _inferred_cadence(
                metrics, None if key == "eval_every" else "test_bound_100") or text
        lines.append(f"- {key}: {text}")
    n_cfg = int(configs["_has_config"].sum()) if "_has_config" in configs else 0
    lines.append(f"- config.json found for {n_cfg} of {len(summary)} runs")
    unlisted = loading.unlisted_run_dirs(results_dir, summary)
    if unlisted:
        lines.append(f"- {len(unlisted)} run directories not listed in summary.csv were "
                     "ignored: " + ", ".join(f"`{u}`" for u in unlisted[:10])
                     + (" ..." if len(unlisted) > 10 else ""))
    lines.append("")
    rows = []
    for ds in style.order_datasets(summary["dataset"].unique()):
        d_ds = summary[summary["dataset"] == ds]
        for m in style.order_models(d_ds["model"].unique()):
            d_m = d_ds[d_ds["model"] == m]
            for e in style.order_estimators(d_m["estimator"].unique()):
                d = d_m[d_m["estimator"] == e]
                row = {"dataset": ds, "model": m, "estimator": e}
                for st in ("done", "running", "failed"):
                    row[st] = int((d["status"] == st).sum())
                row["seeds done"] = _int_list(sorted(d.loc[d["status"] == "done", "seed"]))
                rows.append(row)
    lines.append("Runs per cell:")
    lines.append("")
    lines.append(df_to_markdown(pd.DataFrame(rows)))
    if any(style.is_omniglot(d) for d in summary["dataset"].unique()):
        lines.append(style.OMNIGLOT_FOOTNOTE)
        lines.append("")
    return "\n".join(lines)


def _figure_block(title: str, paths, results_dir: str) -> list[str]:
    png, pdf = (_rel(p, results_dir) for p in paths)
    return [f"### {title}", "", f"![{title}]({png})", "", f"[PNG]({png}) · [PDF]({pdf})", ""]


def figures_markdown(results_dir: str, figs: dict) -> str:
    lines = ["## Figures", ""]
    if not any(figs.get(k) for k in ("curves", "toy", "multisample", "basket")):
        return "\n".join(lines + ["No figures: no metrics.csv or toy CSVs found.", ""])
    if figs["curves"]:
        lines += ["Training curves: train ELBO, test 100-sample bound and encoder gradient "
                  "variance against steps; mean over seeds with a +- 1 s.e. band.", ""]
    for (ds, m), paths in figs["curves"].items():
        title = style.cell_title(ds, m).replace("*", "\\*")
        lines += _figure_block(title, paths, results_dir)
    names = {"variance": "Toy problem: variance against sigma(phi)",
             "training": "Toy problem: sigma(phi) during training"}
    for key, paths in figs["toy"].items():
        lines += _figure_block(names[key], paths, results_dir)
    ms = figs.get("multisample") or {}
    if ms:
        lines += ["Multi-sample estimators at equal cost: one row per dataset x model, one "
                  "column per K = evaluations of f per example (VIMCO with K samples, local "
                  "DisARM and its symmetrised variant with m = K/2 pairs); mean over seeds "
                  "with a +- 1 s.e. band. The bound is the K-sample bound (`test_bound_k`, "
                  "or `valid_bound_k` where the test one is absent).", ""]
    ms_names = {"bound": "Multi-sample bound with the training K",
                "grad_variance": "Gradient variance of the multi-sample estimators"}
    for key, paths in ms.items():
        lines += _figure_block(ms_names[key], paths, results_dir)
    basket = figs.get("basket") or {}
    if basket:
        lines += ["Variance basket: the gradient variance of several estimators "
                  "(`basket_var_<estimator>` columns) measured at the same parameters "
                  "along runs trained by the estimator named in each panel; mean over "
                  "seeds with a +- 1 s.e. band. Ratios in the section *Variance basket: the "
                  "fair variance comparison*.", ""]
    for (ds, m), paths in basket.items():
        title = ("Variance basket: " + style.cell_title(ds, m)).replace("*", "\\*")
        lines += _figure_block(title, paths, results_dir)
    return "\n".join(lines)


def basket_section(metrics: pd.DataFrame) -> str:
    """The basket ratio table with its heading, or "" when the metrics lack it."""
    table = tables.basket_markdown(metrics)
    if not table:
        return ""
    return "\n".join([
        "## Variance basket: the fair variance comparison",
        "",
        "Gradient variances of different estimators measured at the same parameters "
        f"along one training run, relative to {style.estimator_label(tables.BASKET_REFERENCE)}"
        " (unlike the training curves, where each estimator's variance is taken along its "
        "own trajectory).",
        "",
        table,
    ])


def make_report(results_dir: str, published_csv: str | None = None) -> str:
    """Regenerate figures, tables, claim verdicts (and paper comparison); write
    <results_dir>/report.md and return its path.

    Raises loading.ResultsDirError if results_dir has no summary.csv, and
    compare.PublishedCSVError if published_csv is given but unreadable.
    """
    summary = loading.load_summary(results_dir)
    # Read the published numbers first so that a bad path fails before any plotting.
    published = compare.load_published(published_csv) if published_csv else None
    configs = loading.load_configs(results_dir, summary)
    metrics = loading.load_metrics(results_dir, summary)
    toy_var = loading.load_toy_variance(results_dir)

    figs = figures.write_all_figures(results_dir, summary, metrics)
    md_path, tex_path = tables.write_tables(results_dir, summary)
    claims = compare.check_claims(results_dir, summary=summary, metrics=metrics,
                                  toy_variance=toy_var)

    sweep = os.path.basename(os.path.normpath(results_dir))
    parts = [
        f"# DisARM benchmark report: `{sweep}`",
        "",
        "Generated from the sweep's CSV files by `python -m plots.make_report "
        f"--results_dir={results_dir}"
        + (f" --published={published_csv}" if published_csv else "") + "`; "
        "edit the code, not this file.",
        "",
        grid_markdown(results_dir, summary, configs, metrics),
        "## Tables",
        "",
        f"Also as [Markdown]({_rel(md_path, results_dir)}) and "
        f"[LaTeX]({_rel(tex_path, results_dir)}).",
        "",
        tables.tables_markdown(summary),
        figures_markdown(results_dir, figs),
    ]
    basket = basket_section(metrics)
    if basket:
        parts.append(basket)
    parts += [
        "## Claims of the paper (PROTOCOL section 7)",
        "",
        "Verdicts: holds / fails / not enough runs to tell. Rules in `plots/compare.py`.",
        "",
        compare.claims_markdown(claims),
    ]
    if published is not None:
        comp = compare.compare_published(summary, published)
        comp_path = os.path.join(results_dir, "paper_comparison.csv")
        comp.to_csv(comp_path, index=False)
        parts += [
            "## Comparison with published numbers",
            "",
            f"From `{published_csv}`. diff = ours - published; diff_in_se = diff / "
            "sqrt(ours_se^2 + published_se^2), a missing published s.e. counting as 0. "
            f"Also as [CSV]({_rel(comp_path, results_dir)}).",
            "",
            compare.published_markdown(comp),
        ]
        if (comp["source"].str.contains("not published", case=False)).any():
            parts += ["**Some rows are marked as format examples, not published values.**", ""]
    path = os.path.join(results_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(parts).rstrip() + "\n")
    return path
