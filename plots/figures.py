"""Figures: training curves per dataset x model, and the toy-problem figures.

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


def write_all_figures(results_dir: str, summary=None, metrics=None) -> dict:
    """Every figure: {"curves": {(dataset, model): paths}, "toy": {...}}."""
    return {
        "curves": write_training_curves(results_dir, summary, metrics),
        "toy": write_toy_figures(results_dir),
    }
