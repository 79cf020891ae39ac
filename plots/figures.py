"""Figures: training curves per dataset x model, the toy-problem figures, and, when
the sweep has the columns, the multi-sample bound / gradient variance grids and the
variance basket.

Every function that takes `results_dir` reads the CSVs there and writes PNG and PDF
files into `<results_dir>/figures/`, returning the paths it wrote. Figures are built
on `matplotlib.figure.Figure` objects (Agg backend, no pyplot global state), sized for
a paper column (training curves) or the text width (toy figures, one panel per p0).

Aggregation: mean over seeds at each step with a shaded band of +- one standard
error (ddof=1); NaN entries are dropped column by column before seeds are aligned on
the step (see plots.stats.aggregate_over_seeds). Where only one seed has a value the
band is absent.
"""

from __future__ import annotations

import logging
import os
import re
import textwrap

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from plots import loading, stats, style

matplotlib.use("Agg")

# Under absl the root logger runs at INFO, and fontTools (font subsetting for the PDFs)
# logs every glyph table at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FIGURES_SUBDIR = "figures"
FORMATS = ("png", "pdf")

# (metrics.csv column, y label, log scale)
CURVE_PANELS = (
    ("train_elbo", "train ELBO (nats)", False),
    ("test_bound_100", "100-sample test bound (nats)", False),
    ("grad_variance", "encoder gradient variance\n(log scale)", True),
)

BAND_ALPHA = 0.22


def figures_dir(results_dir: str) -> str:
    return os.path.join(results_dir, FIGURES_SUBDIR)


def safe_name(s) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(s)).strip("_") or "x"


def save_figure(fig: Figure, out_dir: str, stem: str) -> list[str]:
    """Write fig as <out_dir>/<stem>.png and .pdf; returns both paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = os.path.join(out_dir, f"{stem}.{fmt}")
        fig.savefig(path, format=fmt)
        paths.append(path)
    return paths


def _footnote(fig: Figure, text: str, width_chars: int) -> None:
    fig.supxlabel(
        textwrap.fill(text, width_chars), fontsize=6, fontstyle="italic", x=0.0, ha="left"
    )


def plot_mean_band(ax, agg: pd.DataFrame, colour: str, label: str, log: bool = False):
    """Line for agg['mean'] against agg['step'] with a +- s.e. band; returns the line."""
    x = agg["step"].to_numpy(dtype=float)
    m = agg["mean"].to_numpy(dtype=float)
    se = agg["se"].to_numpy(dtype=float)
    # Sparse series (the 100-sample bounds are often computed only a few times, or
    # once at the end) get markers: a single point has no line to show.
    sparse = len(x) <= 12
    (line,) = ax.plot(x, m, color=colour, label=label, marker="o" if sparse else None,
                      markersize=3.5)
    if np.isfinite(se).any():
        if len(x) == 1:  # a band needs two points: draw the s.e. as an error bar instead
            ax.errorbar(x, m, yerr=se, color=colour, capsize=2, linewidth=1)
            return line
        lo, hi = m - se, m + se
        if log:
            # A band reaching zero or below cannot be drawn on a log axis: clip its
            # lower edge at a tenth of the mean.
            lo = np.where(lo > 0, lo, m / 10.0)
        ax.fill_between(x, lo, hi, color=colour, alpha=BAND_ALPHA, linewidth=0)
    return line


ZOOM_SKIP_FRACTION = 0.1


def _zoom_past_transient(ax, aggs) -> None:
    """Set the y range of an ELBO/bound panel from the values after the first
    ZOOM_SKIP_FRACTION of the steps, so the initial climb does not squash the
    differences between estimators; the early part of the curves runs off the bottom."""
    lo, hi = [], []
    for agg in aggs:
        steps = agg["step"].to_numpy(dtype=float)
        if len(steps) < 3:
            return
        late = steps >= steps.min() + ZOOM_SKIP_FRACTION * (steps.max() - steps.min())
        m = agg["mean"].to_numpy(dtype=float)[late]
        se = np.nan_to_num(agg["se"].to_numpy(dtype=float)[late])
        lo.append(np.nanmin(m - se))
        hi.append(np.nanmax(m + se))
    if not lo:
        return
    low, high = min(lo), max(hi)
    pad = 0.05 * (high - low) if high > low else 1.0
    ax.set_ylim(low - pad, high + pad)


def plot_training_curves(
    metrics: pd.DataFrame, dataset: str, model: str, out_dir: str
) -> list[str]:
    """Three stacked panels (train ELBO, test bound, grad variance) vs steps for one
    dataset x model cell, one colour per estimator. Returns the written paths."""
    cell = metrics[(metrics["dataset"] == dataset) & (metrics["model"] == model)]
    estimators = style.order_estimators(cell["estimator"].unique())
    with matplotlib.rc_context(style.RC_PARAMS):
        n_legend_rows = max(1, (len(estimators) + 1) // 2)
        fig = Figure(figsize=(style.COLUMN_WIDTH, 6.0 + 0.16 * n_legend_rows),
                     layout="constrained")
        # Three panels sharing the step axis, then a row that only holds the legend
        # (an outside figure legend would collide with the Omniglot footnote).
        gs = fig.add_gridspec(len(CURVE_PANELS) + 1, 1,
                              height_ratios=[1.0] * len(CURVE_PANELS) + [0.07 * n_legend_rows])
        axes = [fig.add_subplot(gs[0])]
        axes += [fig.add_subplot(gs[i], sharex=axes[0]) for i in range(1, len(CURVE_PANELS))]
        legend_ax = fig.add_subplot(gs[len(CURVE_PANELS)])
        legend_ax.axis("off")
        handles = []
        plotted = {col: [] for col, _, _ in CURVE_PANELS}
        for est in estimators:
            sub = cell[cell["estimator"] == est]
            n_seeds = sub["seed"].nunique()
            label = f"{style.estimator_label(est)} ({n_seeds} seed{'s' if n_seeds != 1 else ''})"
            colour = style.estimator_colour(est)
            handle = None
            for ax, (col, _ylabel, log) in zip(axes, CURVE_PANELS):
                agg = stats.aggregate_over_seeds(sub, col)
                if log:
                    agg = agg[agg["mean"] > 0]
                if agg.empty:
                    continue
                line = plot_mean_band(ax, agg, colour, label, log=log)
                plotted[col].append(agg)
                handle = handle or line
            if handle is not None:
                handles.append(handle)
        for ax, (col, ylabel, log) in zip(axes, CURVE_PANELS):
            ax.set_ylabel(ylabel)
            if log and ax.has_data():
                ax.set_yscale("log")
            elif ax.has_data():
                _zoom_past_transient(ax, plotted[col])
            if not ax.has_data():
                ax.text(0.5, 0.5, f"no {col} values", transform=ax.transAxes,
                        ha="center", va="center", color="0.5")
            if ax is not axes[-1]:
                ax.tick_params(labelbottom=False)
        axes[-1].set_xlabel("steps")
        axes[-1].xaxis.set_major_formatter(FuncFormatter(style.format_steps))
        fig.suptitle(style.cell_title(dataset, model))
        if handles:
            legend_ax.legend(handles=handles, loc="upper center", ncol=2, handlelength=1.5,
                             columnspacing=1.0, borderaxespad=0.0,
                             title="mean $\\pm$ s.e. over seeds", title_fontsize=7)
        if style.is_omniglot(dataset):
            _footnote(fig, style.OMNIGLOT_FOOTNOTE, 75)
        stem = f"curves_{safe_name(dataset)}_{safe_name(model)}"
        return save_figure(fig, out_dir, stem)


def write_training_curves(
    results_dir: str, summary: pd.DataFrame | None = None, metrics: pd.DataFrame | None = None
) -> dict:
    """One training-curve figure per dataset x model found in the metrics.

    Returns {(dataset, model): [png_path, pdf_path]}.
    """
    if summary is None:
        summary = loading.load_summary(results_dir)
    if metrics is None:
        metrics = loading.load_metrics(results_dir, summary)
    out = {}
    if metrics.empty:
        return out
    for ds in style.order_datasets(metrics["dataset"].unique()):
        d_ds = metrics[metrics["dataset"] == ds]
        for mdl in style.order_models(d_ds["model"].unique()):
            out[(ds, mdl)] = plot_training_curves(metrics, ds, mdl, figures_dir(results_dir))
    return out


def _p0_label(p0) -> str:
    return f"$p_0$ = {float(p0):g}"


def _toy_panels(n: int):
    width = min(style.TEXT_WIDTH, max(style.COLUMN_WIDTH, 2.3 * n))
    fig = Figure(figsize=(width, 2.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
    return fig, axes


def plot_toy_variance(df: pd.DataFrame, out_dir: str) -> list[str]:
    """Variance of each estimator vs sigma(phi), one panel per p0, log y. The exact
    variance (variance_exact, where finite) is drawn dashed in the same colour."""
    p0s = sorted(df["p0"].unique())
    estimators = style.order_estimators(df["estimator"].unique())
    with matplotlib.rc_context(style.RC_PARAMS):
        fig, axes = _toy_panels(len(p0s))
        handles, any_exact = {}, False
        for ax, p0 in zip(axes, p0s):
            d_p0 = df[df["p0"] == p0]
            for est in estimators:
                d = d_p0[d_p0["estimator"] == est]
                if d.empty:
                    continue
                colour = style.estimator_colour(est)
                g = d.groupby("sigma_phi")[["variance", "variance_exact"]].mean().sort_index()
                emp = g["variance"][g["variance"] > 0]
                if not emp.empty:
                    (h,) = ax.plot(emp.index, emp.values, color=colour, marker="o",
                                   markersize=2.5, label=style.estimator_label(est))
                    handles.setdefault(est, h)
                exact = g["variance_exact"][g["variance_exact"] > 0]
                if not exact.empty:
                    any_exact = True
                    (h,) = ax.plot(exact.index, exact.values, color=colour, linestyle="--",
                                   linewidth=1.0)
                    handles.setdefault(est, h)
            ax.set_title(_p0_label(p0))
            ax.set_xlabel(r"$\sigma(\phi)$")
            if ax.has_data():
                ax.set_yscale("log")
        axes[0].set_ylabel("gradient variance (per bit)")
        fig.suptitle("Toy problem: estimator variance")
        legend_handles = [handles[e] for e in estimators if e in handles]
        legend_labels = [style.estimator_label(e) for e in estimators if e in handles]
        if any_exact:
            legend_handles += [
                Line2D([], [], color="0.3", marker="o", markersize=2.5),
                Line2D([], [], color="0.3", linestyle="--", linewidth=1.0),
            ]
            legend_labels += ["estimated", "exact"]
        if legend_handles:
            fig.legend(legend_handles, legend_labels, loc="outside lower center",
                       ncol=min(len(legend_handles), 6))
        return save_figure(fig, out_dir, "toy_variance")


def plot_toy_training(df: pd.DataFrame, out_dir: str) -> list[str]:
    """sigma(phi) vs steps, one panel per p0, mean +- s.e. over seeds."""
    p0s = sorted(df["p0"].unique())
    estimators = style.order_estimators(df["estimator"].unique())
    with matplotlib.rc_context(style.RC_PARAMS):
        fig, axes = _toy_panels(len(p0s))
        handles = {}
        for ax, p0 in zip(axes, p0s):
            d_p0 = df[df["p0"] == p0]
            for est in estimators:
                d = d_p0[d_p0["estimator"] == est]
                agg = stats.aggregate_over_seeds(d, "sigma_phi")
                if agg.empty:
                    continue
                h = plot_mean_band(ax, agg, style.estimator_colour(est),
                                   style.estimator_label(est))
                handles.setdefault(est, h)
            ax.set_title(_p0_label(p0))
            ax.set_xlabel("steps")
            ax.xaxis.set_major_formatter(FuncFormatter(style.format_steps))
        axes[0].set_ylabel(r"$\sigma(\phi)$")
        fig.suptitle(r"Toy problem: $\sigma(\phi)$ during training (mean $\pm$ s.e. over seeds)")
        hs = [handles[e] for e in estimators if e in handles]
        if hs:
            fig.legend(hs, [style.estimator_label(e) for e in estimators if e in handles],
                       loc="outside lower center", ncol=min(len(hs), 6))
        return save_figure(fig, out_dir, "toy_training")


def write_toy_figures(results_dir: str) -> dict:
    """Toy figures for whichever toy CSVs exist. Returns {"variance": paths,
    "training": paths} for the ones written."""
    out = {}
    var = loading.load_toy_variance(results_dir)
    if var is not None and not var.empty:
        out["variance"] = plot_toy_variance(var, figures_dir(results_dir))
    tr = loading.load_toy_training(results_dir)
    if tr is not None and not tr.empty:
        out["training"] = plot_toy_training(tr, figures_dir(results_dir))
    return out


# ---------------------------------------------------------------------------
# Multi-sample estimators and the variance basket: grids with one row per
# dataset x model and one column per cost level (or per training estimator).

MULTISAMPLE_BOUND_COLUMNS = ("test_bound_k", "valid_bound_k")
MULTISAMPLE_BOUND_STEM = "multisample_bound"
MULTISAMPLE_VARIANCE_STEM = "multisample_grad_variance"
BASKET_STEM = "variance_basket"
_SPLIT_NAMES = {"test_bound_k": "test", "valid_bound_k": "validation"}


def _finite(series: pd.Series) -> pd.Series:
    v = pd.to_numeric(series, errors="coerce")
    return v.where(np.isfinite(v))


def multisample_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """Rows of the runs that report the bound with their training K (a finite
    test_bound_k or valid_bound_k somewhere in metrics.csv), with a column `evals`:
    the K of that bound, i.e. evaluations of f per example (vimco_K -> K,
    local_disarm_m and local_disarm_sym_m -> 2m; -1 where the name does not say)."""
    cols = [c for c in MULTISAMPLE_BOUND_COLUMNS if c in metrics.columns]
    if metrics.empty or not cols:
        return metrics.iloc[0:0].assign(evals=pd.Series(dtype=int))
    has_k = np.zeros(len(metrics), dtype=bool)
    for c in cols:
        has_k |= _finite(metrics[c]).notna().to_numpy()
    runs = set(metrics.loc[has_k, "run_id"])
    d = metrics[metrics["run_id"].isin(runs)].copy()
    d["evals"] = [style.multisample_evaluations(e) or -1 for e in d["estimator"]]
    return d


def _cells(df: pd.DataFrame) -> list[tuple[str, str]]:
    out = []
    for ds in style.order_datasets(df["dataset"].unique()):
        for mdl in style.order_models(df.loc[df["dataset"] == ds, "model"].unique()):
            out.append((ds, mdl))
    return out


def _grid(n_rows: int, n_cols: int, legend_height: float = 0.0, legend_per_column=False):
    """Figure with an n_rows x n_cols grid of panels and, given legend_height in inches,
    a bottom row for legends: one axes across all columns, or one per column.
    Returns fig, 2-D axes, legend axes (an axes, a list of them, or None)."""
    width = min(style.TEXT_WIDTH, max(style.COLUMN_WIDTH, 2.3 * n_cols))
    fig = Figure(figsize=(width, 1.95 * n_rows + 0.45 + legend_height), layout="constrained")
    ratios = [1.0] * n_rows + ([legend_height / 1.95] if legend_height else [])
    gs = fig.add_gridspec(len(ratios), n_cols, height_ratios=ratios)
    axes = np.empty((n_rows, n_cols), dtype=object)
    for i in range(n_rows):
        for j in range(n_cols):
            axes[i, j] = fig.add_subplot(gs[i, j])
    legend_ax = None
    if legend_height:
        if legend_per_column:
            legend_ax = [fig.add_subplot(gs[n_rows, j]) for j in range(n_cols)]
        else:
            legend_ax = fig.add_subplot(gs[n_rows, :])
        for ax in np.atleast_1d(legend_ax):
            ax.axis("off")
    return fig, axes, legend_ax


def _seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _finish_panel(ax, log: bool, aggs, zoom: bool, empty_text: str) -> None:
    if log and ax.has_data():
        ax.set_yscale("log")
    elif zoom and ax.has_data():
        _zoom_past_transient(ax, aggs)
    if not ax.has_data():
        ax.text(0.5, 0.5, empty_text, transform=ax.transAxes, ha="center", va="center",
                color="0.5")
    ax.xaxis.set_major_formatter(FuncFormatter(style.format_steps))


def _level_title(evals: int) -> str:
    """Panel title part for a cost level: the K of the bound (= evaluations of f)."""
    if evals < 0:
        return "K not given by the estimator name"
    return f"K = {evals}" + (f" (VIMCO K={evals}, m={evals // 2})" if evals % 2 == 0 else "")


def _seed_range_text(counts) -> str:
    lo, hi = min(counts), max(counts)
    return _seeds_text(lo) if lo == hi else f"{lo}-{hi} seeds"


def build_multisample_figure(ms: pd.DataFrame, column: str, ylabel: str, log: bool,
                             title: str) -> Figure:
    """Grid for the multi-sample runs `ms` (from multisample_metrics): a row per
    dataset x model, a column per cost level K (VIMCO with K samples beside local
    DisARM and its symmetrised variant with m = K/2 pairs), mean +- s.e. over seeds of
    `column` against steps, one colour per estimator; each column's legend below it."""
    cells = _cells(ms)
    levels = sorted(ms["evals"].unique(), key=lambda k: (k < 0, k))
    col_ests = {k: style.order_estimators(ms.loc[ms["evals"] == k, "estimator"].unique())
                for k in levels}
    legend_rows = max(len(v) for v in col_ests.values())
    with matplotlib.rc_context(style.RC_PARAMS):
        fig, axes, legend_axes = _grid(len(cells), len(levels), 0.15 + 0.14 * legend_rows,
                                       legend_per_column=True)
        handles = {k: {} for k in levels}
        seeds = {k: {} for k in levels}
        for i, (ds, mdl) in enumerate(cells):
            cell = ms[(ms["dataset"] == ds) & (ms["model"] == mdl)]
            for j, k in enumerate(levels):
                ax = axes[i, j]
                d_k = cell[cell["evals"] == k]
                aggs = []
                for est in col_ests[k]:
                    sub = d_k[d_k["estimator"] == est]
                    agg = stats.aggregate_over_seeds(sub, column)
                    if log:
                        agg = agg[agg["mean"] > 0]
                    if agg.empty:
                        continue
                    line = plot_mean_band(ax, agg, style.estimator_colour(est),
                                          style.estimator_label(est), log=log)
                    handles[k].setdefault(est, line)
                    seeds[k].setdefault(est, []).append(sub["seed"].nunique())
                    aggs.append(agg)
                _finish_panel(ax, log, aggs, zoom=not log, empty_text="no runs")
                ax.set_title(f"{style.cell_title(ds, mdl)}\n{_level_title(int(k))}",
                             fontsize=7)
                if j == 0:
                    ax.set_ylabel(ylabel)
                if i == len(cells) - 1:
                    ax.set_xlabel("steps")
        for lax, k in zip(legend_axes, levels):
            ests = [e for e in col_ests[k] if e in handles[k]]
            if ests:
                lax.legend([handles[k][e] for e in ests],
                           [f"{style.estimator_label(e)}, {_seed_range_text(seeds[k][e])}"
                            for e in ests],
                           loc="upper center", ncol=1, handlelength=1.5, borderaxespad=0.0,
                           fontsize=6)
        fig.suptitle(title)
        if any(style.is_omniglot(ds) for ds, _ in cells):
            _footnote(fig, style.OMNIGLOT_FOOTNOTE, 110)
        return fig


def multisample_bound_column(ms: pd.DataFrame) -> str | None:
    """test_bound_k if any run has a value there, else valid_bound_k if any has, else None."""
    return next((c for c in MULTISAMPLE_BOUND_COLUMNS
                 if c in ms and _finite(ms[c]).notna().any()), None)


def write_multisample_figures(results_dir: str, metrics: pd.DataFrame) -> dict:
    """The multi-sample bound and gradient-variance grids, when some run reports the
    bound with its training K; {} otherwise. Returns {"bound": paths, "grad_variance":
    paths} (the latter only if those runs have gradient variances)."""
    ms = multisample_metrics(metrics)
    if ms.empty:
        return {}
    out = {}
    col = multisample_bound_column(ms)
    split = _SPLIT_NAMES[col]
    fig = build_multisample_figure(
        ms, col, f"K-sample {split} bound (nats)", False,
        f"Multi-sample bound with the training K, {split} split "
        "(mean $\\pm$ s.e. over seeds)")
    out["bound"] = save_figure(fig, figures_dir(results_dir), MULTISAMPLE_BOUND_STEM)
    if "grad_variance" in ms and (_finite(ms["grad_variance"]) > 0).any():
        fig = build_multisample_figure(
            ms, "grad_variance", "encoder gradient variance\n(log scale)", True,
            "Gradient variance of the multi-sample estimators (mean $\\pm$ s.e. over seeds)")
        out["grad_variance"] = save_figure(fig, figures_dir(results_dir),
                                           MULTISAMPLE_VARIANCE_STEM)
    return out


def basket_measured(column: str) -> str:
    """'disarm' for 'basket_var_disarm'."""
    return str(column)[len(loading.BASKET_PREFIX):]


def _basket_rows(metrics: pd.DataFrame, columns) -> pd.DataFrame:
    has = np.zeros(len(metrics), dtype=bool)
    for c in columns:
        has |= (_finite(metrics[c]) > 0).to_numpy()
    return metrics[has]


def build_basket_figure(metrics: pd.DataFrame, columns, dataset: str, model: str) -> Figure:
    """Variance basket of one dataset x model cell: a panel per training estimator
    (at most 3 per row); in each, every basket_var_<measured> column against steps,
    mean +- s.e. over seeds, log y, one colour per measured estimator."""
    columns = list(columns)
    d = _basket_rows(metrics, columns)
    d = d[(d["dataset"] == dataset) & (d["model"] == model)]
    trainers = style.order_estimators(d["estimator"].unique())
    measured = style.order_estimators(basket_measured(c) for c in columns)
    n_cols = 2 if len(trainers) == 4 else min(3, max(1, len(trainers)))
    n_rows = max(1, -(-len(trainers) // n_cols))
    with matplotlib.rc_context(style.RC_PARAMS):
        legend_rows = -(-len(measured) // 4)
        fig, axes, legend_ax = _grid(n_rows, n_cols, 0.2 + 0.14 * legend_rows)
        handles = {}
        for idx, ax in enumerate(axes.flat):
            if idx >= len(trainers):
                ax.axis("off")
                continue
            trainer = trainers[idx]
            runs = d[d["estimator"] == trainer]
            for est in measured:
                agg = stats.aggregate_over_seeds(runs, loading.BASKET_PREFIX + est)
                agg = agg[agg["mean"] > 0]
                if agg.empty:
                    continue
                h = plot_mean_band(ax, agg, style.estimator_colour(est),
                                   f"measured: {style.estimator_label(est)}", log=True)
                handles.setdefault(est, h)
            _finish_panel(ax, True, [], zoom=False, empty_text="no basket values")
            ax.set_title(f"trained by {style.estimator_label(trainer)} "
                         f"({_seeds_text(runs['seed'].nunique())})")
            if idx % n_cols == 0:
                ax.set_ylabel("gradient variance\n(log scale)")
            if idx + n_cols >= len(trainers):
                ax.set_xlabel("steps")
        hs = [handles[e] for e in measured if e in handles]
        if hs:
            legend_ax.legend(handles=hs, loc="upper center", ncol=min(4, len(hs)),
                             handlelength=1.5, borderaxespad=0.0,
                             title="mean $\\pm$ s.e. over seeds", title_fontsize=7)
        fig.suptitle(f"{style.cell_title(dataset, model)}: variance basket "
                     "(estimators measured at the same parameters)")
        if style.is_omniglot(dataset):
            _footnote(fig, style.OMNIGLOT_FOOTNOTE, 110)
        return fig


def write_basket_figures(results_dir: str, metrics: pd.DataFrame) -> dict:
    """A variance-basket figure per dataset x model whose runs have basket_var_*
    values: {(dataset, model): paths}; {} when no run has them."""
    columns = loading.basket_columns(metrics)
    if not columns:
        return {}
    d = _basket_rows(metrics, columns)
    out = {}
    for ds, mdl in _cells(d):
        fig = build_basket_figure(d, columns, ds, mdl)
        out[(ds, mdl)] = save_figure(fig, figures_dir(results_dir),
                                     f"{BASKET_STEM}_{safe_name(ds)}_{safe_name(mdl)}")
    return out


def write_all_figures(results_dir: str, summary=None, metrics=None) -> dict:
    """Every figure: {"curves": {(dataset, model): paths}, "toy": {...},
    "multisample": {"bound": paths, "grad_variance": paths} (when some run reports
    test/valid_bound_k, else {}), "basket": {(dataset, model): paths} (cells whose runs
    have basket_var_* values, else {})}."""
    if summary is None:
        summary = loading.load_summary(results_dir)
    if metrics is None:
        metrics = loading.load_metrics(results_dir, summary)
    return {
        "curves": write_training_curves(results_dir, summary, metrics),
        "toy": write_toy_figures(results_dir),
        "multisample": write_multisample_figures(results_dir, metrics),
        "basket": write_basket_figures(results_dir, metrics),
    }
