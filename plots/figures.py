"""Figures of a sweep, planned from its data, then drawn (PNG + PDF into ``<sweep>/figures/``).

``plan_figures`` decides from the sweep's data which figures exist, with their titles
and file names, without drawing; the report links exactly that list, so report.md is
the same whether or not the figures are drawn (``make_report(..., draw_figures=False)``).
``write_figures`` draws them.

* ``curves_<dataset>_<model>``: train ELBO, N-sample test bound (N = num_bound_samples), K-sample test bound
  (where logged) and encoder gradient variance against steps, an estimator per colour and
  line style (``style.Catalogue``); published values of the runs' protocol
  (``plots.published``) as grey dashed reference lines on the panel of the quantity they
  are compared with, one legend entry for all, each named at its right end.
* ``cost_curves_<dataset>_<model>``: the train ELBO and bounds against two costs, evaluations
  of f per example (steps x ``num_f_evals``) and wall-clock time (``wall_time_s``).
* ``grad_variance_<dataset>_<model>``: the encoder-gradient variance of every
  estimator, a panel per cost (``num_f_evals`` from config.json), log y: estimators at
  equal K side by side, as the newer papers compare them.
* ``multisample_bound``: the K-sample bound, a row per dataset x model, a column per
  K (``num_f_evals``): VIMCO with K samples beside local DisARM with K/2 pairs.
* ``variance_basket_<dataset>_<model>``: every ``basket_var_<name>`` column, a panel
  per training estimator, log y.
* ``toy_variance``, ``toy_training``: the toy problem.

Figures are built on ``matplotlib.figure.Figure`` objects (Agg backend, no pyplot
global state). Aggregation: mean over seeds at each step with a band of +- one
standard error (ddof=1); NaN entries are dropped column by column before seeds are
aligned on the step (``plots.stats.aggregate_over_seeds``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import textwrap
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

with warnings.catch_warnings():
  # matplotlib's parsers, built on first import, call pyparsing's deprecated camelCase API (see plots/style.py).
  warnings.simplefilter("ignore", DeprecationWarning)
  import matplotlib
  from matplotlib.figure import Figure
  from matplotlib.lines import Line2D
  from matplotlib.ticker import FuncFormatter

from contracts import results
from plots import loading, markdown, stats, style  # noqa: E402

matplotlib.use("Agg")

# Under absl the root logger runs at INFO, and fontTools (font subsetting for the PDFs)
# logs every glyph table at INFO.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FIGURES_SUBDIR = "figures"
FORMATS = ("png", "pdf")
# No creation date in the PDFs: the same CSVs give the same files.
SAVE_METADATA = {"pdf": {"CreationDate": None}, "png": {}}

# (metrics.csv column, y label, log scale, always shown)
CURVE_PANELS = (
  ("train_elbo", "train ELBO (nats)", False, True),
  ("test_bound_n", "{n}-sample test bound (nats)", False, True),  # n: markdown.bound_samples_text
  ("test_bound_k", "K-sample test bound (nats)", False, False),
  ("grad_variance", "encoder gradient variance\n(log scale)", True, True),
)

BAND_ALPHA = 0.22
ZOOM_SKIP_FRACTION = 0.1

MULTISAMPLE_BOUND_COLUMNS = ("test_bound_k", "valid_bound_k")
_SPLIT_NAMES = {"test_bound_k": "test", "valid_bound_k": "validation"}


@dataclasses.dataclass
class FigureSpec:
  """One figure: what it is (kind, cell), its title and file stem, and how to build it."""

  kind: str  # curves | cost_curves | grad_variance | multisample_bound | basket | toy_variance | toy_training
  cell: tuple | None
  title: str
  stem: str
  build: Callable[[], Figure] = dataclasses.field(repr=False)

  def paths(self, results_dir: str) -> list[str]:
    return [os.path.join(figures_dir(results_dir), f"{self.stem}.{fmt}") for fmt in FORMATS]


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
    fig.savefig(path, format=fmt, metadata=SAVE_METADATA[fmt])
    paths.append(path)
  return paths


def _footnote(fig: Figure, text: str, width_chars: int) -> None:
  fig.supxlabel(textwrap.fill(text, width_chars), fontsize=6, fontstyle="italic", x=0.0, ha="left")


def _finite(series: pd.Series) -> pd.Series:
  v = pd.to_numeric(series, errors="coerce")
  return v.where(np.isfinite(v))


def _has_values(frame: pd.DataFrame, column: str, positive=False) -> bool:
  if column not in frame.columns or frame.empty:
    return False
  v = _finite(frame[column])
  return bool((v > 0).any() if positive else v.notna().any())


def plot_mean_band(ax, agg: pd.DataFrame, colour: str, label: str, log: bool = False, linestyle="-", x=None):
  """Line for agg['mean'] against agg['step'] (or ``x``, one value per row of agg) with a +- s.e. band;
  returns the line."""
  x = agg["step"].to_numpy(dtype=float) if x is None else np.asarray(x, dtype=float)
  m = agg["mean"].to_numpy(dtype=float)
  se = agg["se"].to_numpy(dtype=float)
  # Sparse series (the N-sample bounds are often computed only a few times, or
  # once at the end) get markers: a single point has no line to show.
  sparse = len(x) <= 12
  (line,) = ax.plot(
    x, m, color=colour, linestyle=linestyle, label=label, marker="o" if sparse else None, markersize=3.5
  )
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


def _include_in_ylim(ax, values) -> None:
  """Widen the y range so that every reference value shows (with a margin)."""
  if not values:
    return
  low, high = ax.get_ylim()
  low, high = min([low] + values), max([high] + values)
  pad = 0.05 * (high - low) if high > low else 1.0
  ax.set_ylim(low - pad, high + pad)


def _seeds_text(n: int) -> str:
  return f"{n} seed{'s' if n != 1 else ''}"


def _finish_panel(ax, log: bool, aggs, zoom: bool, empty_text: str) -> None:
  if log and ax.has_data():
    ax.set_yscale("log")
  elif zoom and ax.has_data():
    _zoom_past_transient(ax, aggs)
  if not ax.has_data():
    ax.text(0.5, 0.5, empty_text, transform=ax.transAxes, ha="center", va="center", color="0.5")
  ax.xaxis.set_major_formatter(FuncFormatter(style.format_steps))


# --------------------------------------------------------------------------- training curves

# The x axes a training curve can be drawn against: (axis label, tick formatter).
X_AXES = {
  "steps": ("steps", FuncFormatter(style.format_steps)),
  "f_evals": ("evaluations of f per example\n(steps x num_f_evals)", FuncFormatter(style.format_steps)),
  "wall_time": ("wall-clock time (s)\n(wall_time_s: training + evaluation)", None),
}
# What each x axis holds equal between estimators at one x, said on the panels.
X_EQUALISES = {
  "f_evals": "equal cost in evaluations of f",
  "wall_time": "equal wall-clock time",
}

# Published reference lines: one grey dashed style, one legend entry; each line is named
# at its right end in its estimator's colour.
REFERENCE_COLOUR = "0.45"
REFERENCE_STYLE = (0, (4, 2))
REFERENCE_LABEL_SIZE = 5.5
# Smallest vertical distance between two right-end labels, as a fraction of the panel height.
REFERENCE_LABEL_GAP = 0.075


def curve_panels(cell: pd.DataFrame, references=()) -> list:
  """The CURVE_PANELS shown for one cell: the fixed ones, and an optional one where the cell
  has values or a published reference to draw on it."""
  wanted = {column for column, _, _, _ in references}
  return _labelled(cell, [p for p in CURVE_PANELS if p[3] or _has_values(cell, p[0]) or p[0] in wanted])


def _labelled(cell: pd.DataFrame, panels) -> list:
  """``panels`` with the N of the N-sample bound (the runs' num_bound_samples) in their labels."""
  n = markdown.bound_samples_text(cell, loading.BOUND_SAMPLES)
  return [(col, ylabel.format(n=n), log, always) for col, ylabel, log, always in panels]


def curve_x(sub: pd.DataFrame, agg: pd.DataFrame, x: str, num_f_evals):
  """The x values of an aggregated curve (``agg``, by step) of one estimator's runs ``sub``:
  steps; steps x num_f_evals (None where the cost is unknown); or the mean over seeds of
  ``wall_time_s`` at each step (NaN where no seed logged it)."""
  steps = agg["step"].to_numpy(dtype=float)
  if x == "steps":
    return steps
  if x == "f_evals":
    return None if num_f_evals is None else steps * float(num_f_evals)
  if x == "wall_time":
    wall = stats.aggregate_over_seeds(sub, "wall_time_s")
    return agg["step"].map(dict(zip(wall["step"], wall["mean"]))).to_numpy(dtype=float)
  raise ValueError(f"unknown x axis {x!r}")


def _draw_curve(ax, sub, column, log, x, catalogue, est, label):
  """One estimator's mean +- s.e. of ``column`` on ``ax`` against ``x``; (line, agg) or (None, None)."""
  agg = stats.aggregate_over_seeds(sub, column)
  if log:
    agg = agg[agg["mean"] > 0]
  if agg.empty:
    return None, None
  xs = curve_x(sub, agg, x, catalogue.num_f_evals(est))
  if xs is None:
    return None, None
  keep = np.isfinite(xs)
  if not keep.any():
    return None, None
  agg = agg[keep].reset_index(drop=True)
  line = plot_mean_band(ax, agg, catalogue.colour(est), label, log=log, linestyle=catalogue.linestyle(est), x=xs[keep])
  return line, agg


def _label_reference_lines(ax, refs, labels, catalogue) -> None:
  """Names each reference line small at the panel's right edge, in its estimator's colour,
  pushed apart where values lie close together."""
  if not refs:
    return
  low, high = ax.get_ylim()
  span = (high - low) or 1.0
  placed = sorted(((value - low) / span, est) for _, est, value, _ in refs)
  ys = [p for p, _ in placed]
  for i in range(1, len(ys)):
    ys[i] = max(ys[i], ys[i - 1] + REFERENCE_LABEL_GAP)
  overflow = ys[-1] - 1.0 if ys else 0.0
  if overflow > 0:  # shift the stack down, keeping the gaps
    ys = [y - overflow for y in ys]
  for y, (_, est) in zip(ys, placed):
    ax.text(
      1.01,
      y,
      labels[est],
      transform=ax.transAxes,
      fontsize=REFERENCE_LABEL_SIZE,
      color=catalogue.colour(est),
      va="center",
      ha="left",
      clip_on=False,
    )


def _seed_labels(cell, estimators, labels):
  """({estimator: legend label}, legend title): the seed count in the title where every estimator has
  the same, else after each label."""
  counts = {est: cell.loc[cell["estimator"] == est, "seed"].nunique() for est in estimators}
  if len(set(counts.values())) <= 1:
    n = next(iter(counts.values()), 0)
    return {est: labels[est] for est in estimators}, f"mean $\\pm$ s.e. over {_seeds_text(n)}"
  return {est: f"{labels[est]} ({_seeds_text(n)})" for est, n in counts.items()}, "mean $\\pm$ s.e. over seeds"


def build_training_curves(
  metrics: pd.DataFrame, catalogue, dataset: str, model: str, references=(), reference_text="published", x="steps"
) -> Figure:
  """Stacked panels (train ELBO, test bounds, grad variance) against ``x`` (a key of X_AXES) for one
  dataset x model cell, one colour and line style per estimator; ``references``: (column, estimator,
  value, where) published values, drawn as grey dashed lines under one legend entry (``reference_text``)."""
  cell = metrics[(metrics["dataset"] == dataset) & (metrics["model"] == model)]
  estimators = catalogue.order(cell["estimator"].unique())
  ref_estimators = [e for _, e, _, _ in references]
  labels = catalogue.labels(estimators + [e for e in ref_estimators if e not in estimators])
  panels = curve_panels(cell, references)
  xlabel, formatter = X_AXES[x]
  with matplotlib.rc_context(style.RC_PARAMS):
    n_legend_rows = max(1, (len(estimators) + 1) // 2) + (1 if references else 0)
    # Room on the right for the names of the reference lines.
    width = style.COLUMN_WIDTH + (0.7 if references else 0.0)
    fig = Figure(figsize=(width, 2.0 * len(panels) + 0.16 * n_legend_rows), layout="constrained")
    # Panels sharing the x axis, then a row that only holds the legend (an outside
    # figure legend would collide with the Omniglot footnote).
    gs = fig.add_gridspec(len(panels) + 1, 1, height_ratios=[1.0] * len(panels) + [0.07 * n_legend_rows])
    axes = [fig.add_subplot(gs[0])]
    axes += [fig.add_subplot(gs[i], sharex=axes[0]) for i in range(1, len(panels))]
    legend_ax = fig.add_subplot(gs[len(panels)])
    legend_ax.axis("off")
    handles, missing = [], []
    plotted = {col: [] for col, _, _, _ in panels}
    legend_labels, legend_title = _seed_labels(cell, estimators, labels)
    for est in estimators:
      sub = cell[cell["estimator"] == est]
      label = legend_labels[est]
      handle = None
      for ax, (col, _ylabel, log, _) in zip(axes, panels):
        line, agg = _draw_curve(ax, sub, col, log, x, catalogue, est, label)
        if line is not None:
          plotted[col].append(agg)
          handle = handle or line
      if handle is not None:
        handles.append(handle)
      elif x == "f_evals" and catalogue.num_f_evals(est) is None:
        missing.append(labels[est])
    reference_handle = None
    for ax, (col, ylabel, log, _) in zip(axes, panels):
      ax.set_ylabel(ylabel)
      if log and ax.has_data():
        ax.set_yscale("log")
      elif ax.has_data():
        _zoom_past_transient(ax, plotted[col])
      refs = [r for r in references if r[0] == col]
      for _, _est, value, _where in refs:
        reference_handle = ax.axhline(
          value, color=REFERENCE_COLOUR, linestyle=REFERENCE_STYLE, linewidth=0.9, label=reference_text
        )
      if not log:
        _include_in_ylim(ax, [v for _, _, v, _ in refs])
      _label_reference_lines(ax, refs, labels, catalogue)
      if not ax.has_data() and not refs:
        ax.text(0.5, 0.5, f"no {col} values", transform=ax.transAxes, ha="center", va="center", color="0.5")
      if ax is not axes[-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel(xlabel)
    if formatter is not None:
      axes[-1].xaxis.set_major_formatter(formatter)
    title = style.cell_title(dataset, model)
    if x in X_EQUALISES:
      title += f"\nagainst {xlabel.splitlines()[0]} ({X_EQUALISES[x]} at each x)"
    fig.suptitle(title)
    if reference_handle is not None:
      handles.append(reference_handle)
    if handles:
      legend_ax.legend(
        handles=handles,
        loc="upper center",
        ncol=2,
        handlelength=2.2,
        columnspacing=1.0,
        borderaxespad=0.0,
        title=legend_title + (f"; not shown (cost unknown): {', '.join(missing)}" if missing else ""),
        title_fontsize=7,
        fontsize=6.5,
      )
    if style.is_omniglot(dataset):
      _footnote(fig, style.OMNIGLOT_FOOTNOTE, 75)
    return fig


def cost_panels(cell: pd.DataFrame) -> list:
  """The ELBO and bound panels of CURVE_PANELS that the cell has values for (not the gradient variance)."""
  return _labelled(cell, [p for p in CURVE_PANELS if not p[2] and _has_values(cell, p[0])])


def build_cost_curves(metrics: pd.DataFrame, catalogue, dataset: str, model: str) -> Figure:
  """The ELBO and bounds of one dataset x model cell against two costs: a column against evaluations
  of f per example (steps x num_f_evals) and one against wall-clock time (wall_time_s)."""
  cell = metrics[(metrics["dataset"] == dataset) & (metrics["model"] == model)]
  estimators = catalogue.order(cell["estimator"].unique())
  labels = catalogue.labels(estimators)
  panels = cost_panels(cell)
  xs = ("f_evals", "wall_time")
  with matplotlib.rc_context(style.RC_PARAMS):
    legend_rows = -(-len(estimators) // 3)
    fig, axes, legend_ax = _grid(max(1, len(panels)), len(xs), 0.3 + 0.14 * legend_rows)
    handles, missing = {}, set()
    legend_labels, legend_title = _seed_labels(cell, estimators, labels)
    for i, (col, ylabel, log, _) in enumerate(panels):
      for j, x in enumerate(xs):
        ax = axes[i, j]
        aggs = []
        for est in estimators:
          sub = cell[cell["estimator"] == est]
          label = legend_labels[est]
          line, agg = _draw_curve(ax, sub, col, log, x, catalogue, est, label)
          if line is not None:
            handles.setdefault(est, line)
            aggs.append(agg)
          elif x == "f_evals" and catalogue.num_f_evals(est) is None:
            missing.add(labels[est])
        if ax.has_data():
          _zoom_past_transient(ax, aggs)
        else:
          ax.text(0.5, 0.5, f"no {col} values", transform=ax.transAxes, ha="center", va="center", color="0.5")
        xlabel, formatter = X_AXES[x]
        if formatter is not None:
          ax.xaxis.set_major_formatter(formatter)
        if i == 0:
          ax.set_title(X_EQUALISES[x] + " at each x", fontsize=7)
        if i == len(panels) - 1:
          ax.set_xlabel(xlabel)
        if j == 0:
          ax.set_ylabel(ylabel)
    if not panels:
      for ax in axes.flat:
        ax.text(0.5, 0.5, "no ELBO or bound values", transform=ax.transAxes, ha="center", va="center", color="0.5")
    hs = [handles[e] for e in estimators if e in handles]
    if hs:
      title = legend_title + ", aligned on steps"
      if missing:
        title += f"; not on the f-evaluation axis (cost unknown): {', '.join(sorted(missing))}"
      legend_ax.legend(
        handles=hs,
        loc="upper center",
        ncol=min(3, len(hs)),
        handlelength=2.2,
        borderaxespad=0.0,
        title=title,
        title_fontsize=7,
      )
    fig.suptitle(f"{style.cell_title(dataset, model)}: ELBO at equal cost")
    if style.is_omniglot(dataset):
      _footnote(fig, style.OMNIGLOT_FOOTNOTE, 110)
    return fig


# --------------------------------------------------------------------------- panels by cost


def _cost_levels(catalogue, estimators) -> list:
  """Distinct num_f_evals of the estimators, ascending; None (unknown) last."""
  levels = {catalogue.num_f_evals(e) for e in estimators}
  return sorted(levels, key=lambda k: (k is None, k or 0))


def _level_title(k) -> str:
  """A cost panel's title: the cost its estimators share (evaluations of f per example and step)."""
  return "K unknown (no estimator_info)" if k is None else f"equal cost: K = {k} evaluations of f"


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


def _seed_range_text(counts) -> str:
  lo, hi = min(counts), max(counts)
  return _seeds_text(lo) if lo == hi else f"{lo}-{hi} seeds"


def build_cost_grid(frame: pd.DataFrame, catalogue, column: str, ylabel: str, log: bool, title: str) -> Figure:
  """A row per dataset x model, a column per cost K (num_f_evals): every estimator of that
  cost, mean +- s.e. over seeds of ``column`` against steps; each column's legend below it."""
  cells = markdown.cells(frame)
  estimators = catalogue.order(frame["estimator"].unique())
  labels = catalogue.labels(estimators)
  levels = _cost_levels(catalogue, estimators)
  col_ests = {k: [e for e in estimators if catalogue.num_f_evals(e) == k] for k in levels}
  legend_rows = max(len(v) for v in col_ests.values())
  with matplotlib.rc_context(style.RC_PARAMS):
    fig, axes, legend_axes = _grid(len(cells), len(levels), 0.15 + 0.14 * legend_rows, legend_per_column=True)
    handles = {k: {} for k in levels}
    seeds = {k: {} for k in levels}
    for i, (ds, mdl) in enumerate(cells):
      cell = frame[(frame["dataset"] == ds) & (frame["model"] == mdl)]
      for j, k in enumerate(levels):
        ax = axes[i, j]
        aggs = []
        for est in col_ests[k]:
          sub = cell[cell["estimator"] == est]
          agg = stats.aggregate_over_seeds(sub, column)
          if log:
            agg = agg[agg["mean"] > 0]
          if agg.empty:
            continue
          line = plot_mean_band(
            ax, agg, catalogue.colour(est), labels[est], log=log, linestyle=catalogue.linestyle(est)
          )
          handles[k].setdefault(est, line)
          seeds[k].setdefault(est, []).append(sub["seed"].nunique())
          aggs.append(agg)
        _finish_panel(ax, log, aggs, zoom=not log, empty_text="no runs")
        ax.set_title(f"{style.cell_title(ds, mdl)}\n{_level_title(k)}", fontsize=7)
        if j == 0:
          ax.set_ylabel(ylabel)
        if i == len(cells) - 1:
          ax.set_xlabel("steps")
    for lax, k in zip(legend_axes, levels):
      ests = [e for e in col_ests[k] if e in handles[k]]
      if ests:
        lax.legend(
          [handles[k][e] for e in ests],
          [f"{labels[e]}, {_seed_range_text(seeds[k][e])}" for e in ests],
          loc="upper center",
          ncol=1,
          handlelength=1.5,
          borderaxespad=0.0,
          fontsize=6,
        )
    fig.suptitle(title)
    if any(style.is_omniglot(ds) for ds, _ in cells):
      _footnote(fig, style.OMNIGLOT_FOOTNOTE, 110)
    return fig


def multisample_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
  """Rows of the runs that report the bound with their K (a finite test_bound_k or
  valid_bound_k somewhere in metrics.csv)."""
  cols = [c for c in MULTISAMPLE_BOUND_COLUMNS if c in metrics.columns]
  if metrics.empty or not cols:
    return metrics.iloc[0:0]
  has_k = np.zeros(len(metrics), dtype=bool)
  for c in cols:
    has_k |= _finite(metrics[c]).notna().to_numpy()
  runs = set(metrics.loc[has_k, "run_id"])
  return metrics[metrics["run_id"].isin(runs)]


def multisample_bound_column(ms: pd.DataFrame) -> str | None:
  """test_bound_k if any run has a value there, else valid_bound_k if any has, else None."""
  return next((c for c in MULTISAMPLE_BOUND_COLUMNS if _has_values(ms, c)), None)


# --------------------------------------------------------------------------- variance basket


def _basket_rows(metrics: pd.DataFrame, columns) -> pd.DataFrame:
  has = np.zeros(len(metrics), dtype=bool)
  for c in columns:
    has |= (_finite(metrics[c]) > 0).to_numpy()
  return metrics[has]


def build_basket_figure(metrics: pd.DataFrame, catalogue, columns, dataset: str, model: str) -> Figure:
  """Variance basket of one dataset x model cell: a panel per training estimator
  (at most 3 per row); in each, every basket_var_<measured> column against steps,
  mean +- s.e. over seeds, log y, one colour per measured estimator."""
  columns = list(columns)
  d = _basket_rows(metrics, columns)
  d = d[(d["dataset"] == dataset) & (d["model"] == model)]
  trainers = catalogue.order(d["estimator"].unique())
  measured = catalogue.order(loading.basket_measured(c) for c in columns)
  labels = catalogue.labels(list(dict.fromkeys(trainers + measured)))
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
        agg = stats.aggregate_over_seeds(runs, results.basket_column(est))
        agg = agg[agg["mean"] > 0]
        if agg.empty:
          continue
        h = plot_mean_band(
          ax, agg, catalogue.colour(est), f"measured: {labels[est]}", log=True, linestyle=catalogue.linestyle(est)
        )
        handles.setdefault(est, h)
      _finish_panel(ax, True, [], zoom=False, empty_text="no basket values")
      ax.set_title(f"trained by {labels[trainer]} ({_seeds_text(runs['seed'].nunique())})")
      if idx % n_cols == 0:
        ax.set_ylabel("gradient variance\n(log scale)")
      if idx + n_cols >= len(trainers):
        ax.set_xlabel("steps")
    hs = [handles[e] for e in measured if e in handles]
    if hs:
      legend_ax.legend(
        handles=hs,
        loc="upper center",
        ncol=min(4, len(hs)),
        handlelength=1.5,
        borderaxespad=0.0,
        title="mean $\\pm$ s.e. over seeds",
        title_fontsize=7,
      )
    fig.suptitle(f"{style.cell_title(dataset, model)}: variance basket (estimators measured at the same parameters)")
    if style.is_omniglot(dataset):
      _footnote(fig, style.OMNIGLOT_FOOTNOTE, 110)
    return fig


# --------------------------------------------------------------------------- toy problem


def _p0_label(p0) -> str:
  return f"$p_0$ = {float(p0):g}"


def _toy_panels(n: int):
  width = min(style.TEXT_WIDTH, max(style.COLUMN_WIDTH, 2.3 * n))
  fig = Figure(figsize=(width, 2.6), layout="constrained")
  axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)[0])
  return fig, axes


def build_toy_variance(df: pd.DataFrame, catalogue) -> Figure:
  """Variance of each estimator vs sigma(phi), one panel per p0, log y. The exact
  variance (variance_exact, where finite) is drawn dashed in the same colour."""
  p0s = sorted(df["p0"].unique())
  estimators = catalogue.order(df["estimator"].unique())
  labels = catalogue.labels(estimators)
  with matplotlib.rc_context(style.RC_PARAMS):
    fig, axes = _toy_panels(len(p0s))
    handles, any_exact = {}, False
    for ax, p0 in zip(axes, p0s):
      d_p0 = df[df["p0"] == p0]
      for est in estimators:
        d = d_p0[d_p0["estimator"] == est]
        if d.empty:
          continue
        colour = catalogue.colour(est)
        g = d.groupby("sigma_phi")[["variance", "variance_exact"]].mean().sort_index()
        emp = g["variance"][g["variance"] > 0]
        if not emp.empty:
          (h,) = ax.plot(emp.index, emp.values, color=colour, marker="o", markersize=2.5, label=labels[est])
          handles.setdefault(est, h)
        exact = g["variance_exact"][g["variance_exact"] > 0]
        if not exact.empty:
          any_exact = True
          (h,) = ax.plot(exact.index, exact.values, color=colour, linestyle="--", linewidth=1.0)
          handles.setdefault(est, h)
      ax.set_title(_p0_label(p0))
      ax.set_xlabel(r"$\sigma(\phi)$")
      if ax.has_data():
        ax.set_yscale("log")
    axes[0].set_ylabel("gradient variance (per bit)")
    fig.suptitle("Toy problem: estimator variance")
    legend_handles = [handles[e] for e in estimators if e in handles]
    legend_labels = [labels[e] for e in estimators if e in handles]
    if any_exact:
      legend_handles += [
        Line2D([], [], color="0.3", marker="o", markersize=2.5),
        Line2D([], [], color="0.3", linestyle="--", linewidth=1.0),
      ]
      legend_labels += ["estimated", "exact"]
    if legend_handles:
      fig.legend(legend_handles, legend_labels, loc="outside lower center", ncol=min(len(legend_handles), 6))
    return fig


def build_toy_training(df: pd.DataFrame, catalogue) -> Figure:
  """sigma(phi) vs steps, one panel per p0, mean +- s.e. over seeds."""
  p0s = sorted(df["p0"].unique())
  estimators = catalogue.order(df["estimator"].unique())
  labels = catalogue.labels(estimators)
  with matplotlib.rc_context(style.RC_PARAMS):
    fig, axes = _toy_panels(len(p0s))
    handles = {}
    for ax, p0 in zip(axes, p0s):
      d_p0 = df[df["p0"] == p0]
      for est in estimators:
        agg = stats.aggregate_over_seeds(d_p0[d_p0["estimator"] == est], "sigma_phi")
        if agg.empty:
          continue
        handles.setdefault(est, plot_mean_band(ax, agg, catalogue.colour(est), labels[est]))
      ax.set_title(_p0_label(p0))
      ax.set_xlabel("steps")
      ax.xaxis.set_major_formatter(FuncFormatter(style.format_steps))
    axes[0].set_ylabel(r"$\sigma(\phi)$")
    fig.suptitle(r"Toy problem: $\sigma(\phi)$ during training (mean $\pm$ s.e. over seeds)")
    hs = [handles[e] for e in estimators if e in handles]
    if hs:
      fig.legend(hs, [labels[e] for e in estimators if e in handles], loc="outside lower center", ncol=min(len(hs), 6))
    return fig


def plot_toy_variance(df: pd.DataFrame, out_dir: str, catalogue=None) -> list[str]:
  """Draws toy_variance.{png,pdf} into ``out_dir`` (for experiments/toy.py); returns the paths."""
  return save_figure(build_toy_variance(df, catalogue or style.Catalogue()), out_dir, "toy_variance")


def plot_toy_training(df: pd.DataFrame, out_dir: str, catalogue=None) -> list[str]:
  """Draws toy_training.{png,pdf} into ``out_dir`` (for experiments/toy.py); returns the paths."""
  return save_figure(build_toy_training(df, catalogue or style.Catalogue()), out_dir, "toy_training")


def write_toy_figures(results_dir: str) -> dict:
  """The toy figures of a sweep folder's toy CSVs: {"variance": paths, "training": paths} for those present."""
  out = {}
  variance, training = loading.load_toy_variance(results_dir), loading.load_toy_training(results_dir)
  if variance is not None and not variance.empty:
    out["variance"] = plot_toy_variance(variance, figures_dir(results_dir))
  if training is not None and not training.empty:
    out["training"] = plot_toy_training(training, figures_dir(results_dir))
  return out


# --------------------------------------------------------------------------- the plan


def plan_figures(data, references=None, reference_text="published") -> list[FigureSpec]:
  """Every figure the sweep's data supports, in report order (nothing is drawn here).

  ``data``: ``plots.loading.load_sweep``'s result; ``references``: {(dataset, model):
  [(column, estimator, value, where)]} published values to draw (``plots.published``;
  the caller keeps only those of the runs' protocol), under the legend entry ``reference_text``.
  """
  references = references or {}
  metrics, catalogue = data.metrics, data.catalogue
  specs = []
  if not metrics.empty:
    for ds, mdl in markdown.cells(metrics):
      refs = tuple(references.get((ds, mdl), ()))
      specs.append(
        FigureSpec(
          "curves",
          (ds, mdl),
          style.cell_title(ds, mdl),
          f"curves_{safe_name(ds)}_{safe_name(mdl)}",
          lambda ds=ds, mdl=mdl, refs=refs: build_training_curves(metrics, catalogue, ds, mdl, refs, reference_text),
        )
      )
    for ds, mdl in markdown.cells(metrics):
      cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == mdl)]
      if not cost_panels(cell):
        continue
      specs.append(
        FigureSpec(
          "cost_curves",
          (ds, mdl),
          f"ELBO at equal cost: {style.cell_title(ds, mdl)}",
          f"cost_curves_{safe_name(ds)}_{safe_name(mdl)}",
          lambda ds=ds, mdl=mdl: build_cost_curves(metrics, catalogue, ds, mdl),
        )
      )
    for ds, mdl in markdown.cells(metrics):
      cell = metrics[(metrics["dataset"] == ds) & (metrics["model"] == mdl)]
      if not _has_values(cell, "grad_variance", positive=True):
        continue
      specs.append(
        FigureSpec(
          "grad_variance",
          (ds, mdl),
          f"Encoder gradient variance at equal cost: {style.cell_title(ds, mdl)}",
          f"grad_variance_{safe_name(ds)}_{safe_name(mdl)}",
          lambda cell=cell, ds=ds, mdl=mdl: build_cost_grid(
            cell,
            catalogue,
            "grad_variance",
            "encoder gradient variance\n(log scale)",
            True,
            f"{style.cell_title(ds, mdl)}\nencoder gradient variance at equal cost (mean $\\pm$ s.e. over seeds)",
          ),
        )
      )
    ms = multisample_metrics(metrics)
    column = multisample_bound_column(ms)
    if column is not None:
      split = _SPLIT_NAMES[column]
      specs.append(
        FigureSpec(
          "multisample_bound",
          None,
          f"K-sample {split} bound at equal cost",
          "multisample_bound",
          lambda: build_cost_grid(
            ms,
            catalogue,
            column,
            f"K-sample {split} bound (nats)",
            False,
            f"Bound with K = the estimator's evaluations of f, {split} split\n(mean $\\pm$ s.e. over seeds)",
          ),
        )
      )
    columns = loading.basket_columns(metrics)
    if columns:
      basket = _basket_rows(metrics, columns)
      for ds, mdl in markdown.cells(basket):
        specs.append(
          FigureSpec(
            "basket",
            (ds, mdl),
            f"Variance basket: {style.cell_title(ds, mdl)}",
            f"variance_basket_{safe_name(ds)}_{safe_name(mdl)}",
            lambda ds=ds, mdl=mdl: build_basket_figure(basket, catalogue, columns, ds, mdl),
          )
        )
  if data.toy_variance is not None and not data.toy_variance.empty:
    specs.append(
      FigureSpec(
        "toy_variance",
        None,
        "Toy problem: variance against sigma(phi)",
        "toy_variance",
        lambda: build_toy_variance(data.toy_variance, catalogue),
      )
    )
  if data.toy_training is not None and not data.toy_training.empty:
    specs.append(
      FigureSpec(
        "toy_training",
        None,
        "Toy problem: sigma(phi) during training",
        "toy_training",
        lambda: build_toy_training(data.toy_training, catalogue),
      )
    )
  return specs


def write_figures(results_dir: str, specs) -> dict:
  """Draws every planned figure into <results_dir>/figures/; returns {stem: [png, pdf]}."""
  out = {}
  for spec in specs:
    out[spec.stem] = save_figure(spec.build(), figures_dir(results_dir), spec.stem)
  return out


def write_all_figures(results_dir: str, data=None, references=None) -> dict:
  """Plans and draws every figure of a sweep folder; returns {stem: [png, pdf]}."""
  data = data if data is not None else loading.load_sweep(results_dir)
  return write_figures(results_dir, plan_figures(data, references))
