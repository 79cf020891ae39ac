"""Assemble results/<sweep>/report.md from the sweep's files.

``make_report(results_dir, published_csv=None, draw_figures=True)`` regenerates every
figure, the tables (tables.md, tables.tex), the claim verdicts and the comparison
with published numbers (also written as paper_comparison.csv), then writes report.md
and returns its path. It reads nothing but the sweep folder's CSV/JSON files and the
published CSV, and report.md and tables.md are a deterministic function of them: no
dates, no absolute paths, a fixed order and fixed number formats, so that a test can
regenerate a committed report and compare the text.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd

from contracts import results
from contracts.settings import setting_fields
from plots import compare, figures, loading, published, style, tables
from plots.markdown import df_to_markdown

REFERENCE_NAME = "DisARM reference"


def _rel(path: str, start: str) -> str:
  return os.path.relpath(path, start).replace(os.sep, "/")


def _md(text: str) -> str:
  """Text safe in Markdown prose and headings (the Omniglot-28* marker)."""
  return str(text).replace("*", "\\*")


def _int_list(values) -> str:
  out = []
  for v in values:
    try:
      out.append(str(int(v)))
    except (TypeError, ValueError):
      out.append(str(v))
  return ", ".join(out)


def _counted(values) -> str:
  """'`a`' if every run agrees, else '`a` (4 runs), `b` (2 runs)', most common first (ties by text)."""
  counts = {}
  for v in values:
    counts[v] = counts.get(v, 0) + 1
  if len(counts) == 1:
    return f"`{next(iter(counts))}`"
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return ", ".join(f"`{v}` ({c} run{'s' if c != 1 else ''})" for v, c in ordered)


def _range(values, fmt=style.format_count) -> str:
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return "n/a"
  lo, hi = min(values), max(values)
  return fmt(lo) if lo == hi else f"{fmt(lo)}-{fmt(hi)}"


# --------------------------------------------------------------------------- settings


def setting_rows(data) -> list[dict]:
  """One row per contracts.settings field: the sweep's values (from the runs' config.json, else
  sweep.json), the DisARM reference's (the field default), and whether they differ."""
  runs = data.runs[data.runs["usable"]] if not data.runs.empty else data.runs
  sweep_settings = (data.sweep_json or {}).get("settings", {}) if isinstance(data.sweep_json, dict) else {}
  rows = []
  for field in setting_fields():
    values = []
    if field.name in runs.columns:
      values = [v for v in runs[field.name] if not (isinstance(v, float) and math.isnan(v))]
    source = "config.json"
    if not values and field.name in sweep_settings:
      values, source = [sweep_settings[field.name]], "sweep.json"
    if not values:
      rows.append(
        dict(
          name=field.name,
          text="not recorded",
          reference=published.format_setting(field.default),
          differs=False,
          recorded=False,
          help=field.metadata["help"],
        )
      )
      continue
    normalised = [tuple(v) if isinstance(v, list) else v for v in values]
    differs = any(not published._same(v, field.default) for v in normalised)
    text = _counted([published.format_setting(v) for v in normalised])
    if source == "sweep.json":
      text += " (sweep.json)"
    rows.append(
      dict(
        name=field.name,
        text=text,
        reference=published.format_setting(field.default),
        differs=differs,
        recorded=True,
        help=field.metadata["help"],
      )
    )
  return rows


# --------------------------------------------------------------------------- sections


def protocol_distance_markdown(data) -> str:
  """The report's first lines: how far the runs are from the paper's protocol."""
  done = data.done
  lines = []
  if done.empty:
    lines.append("**How far from the paper's protocol:** no finished run in this sweep.")
  else:
    steps = [float(x) for x in pd.to_numeric(done["final_step"], errors="coerce").dropna()]
    seeds = done.groupby(["dataset", "model", "estimator"])["seed"].nunique().tolist()
    fraction = max(steps) / compare.PAPER_STEPS if steps else math.nan
    share = f", so {100 * fraction:.2g}% of it" if np.isfinite(fraction) and fraction < 1 else ""
    rows = setting_rows(data)
    differing = [r["name"] for r in rows if r["differs"] and r["name"] != "num_steps"]
    unrecorded = [r["name"] for r in rows if not r["recorded"]]
    settings = (
      (
        f"{len(differing)} setting(s) differ from the {REFERENCE_NAME} (`contracts.settings` defaults): "
        + ", ".join(f"`{n}`" for n in differing)
        + " (section *Settings*)"
      )
      if differing
      else f"every recorded setting is the {REFERENCE_NAME}'s"
    )
    if unrecorded:
      settings += f"; {len(unrecorded)} setting(s) not recorded by the runs' config.json (older runs)"
    lines.append(
      f"**How far from the paper's protocol:** runs of {_range(steps)} steps (the paper: "
      f"{style.format_count(compare.PAPER_STEPS)}{share}); {_range(seeds, lambda x: str(int(x)))} "
      f"finished seed(s) per cell (the paper: {compare.PAPER_SEEDS}); {settings}."
    )
  bad = sorted({run_id for run_id, _, used in data.damaged if not used})
  partly = sorted({run_id for run_id, _, used in data.damaged if used} - set(bad))
  if bad or partly:
    lines.append(
      f"**Damaged run files:** {len(bad)} run(s) left out of every figure, table and claim, "
      f"{len(partly)} used for what they have (section *Damaged run files*)."
    )
  return "\n\n".join(lines) + "\n"


def notes_markdown(results_dir) -> str:
  """The sweep's notes.md (written by a person, not generated), quoted; "" when there is none."""
  path = os.path.join(results_dir, results.SWEEP_NOTES)
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read().strip()
  except (OSError, UnicodeDecodeError):
    return ""
  if not text:
    return ""
  quoted = "\n".join(f"> {line}" if line else ">" for line in text.splitlines())
  return (
    f"**Notes from whoever ran this sweep** (`{results.SWEEP_NOTES}`, written by hand, not generated):\n\n{quoted}\n"
  )


def damaged_markdown(data) -> str:
  if not data.damaged and data.sweep_json_problem is None:
    return ""
  lines = [
    "## Damaged run files",
    "",
    "Problems found while reading the run folders. A run whose config.json or metrics.csv cannot be read "
    "(or that summary.csv marks invalid) is left out of every figure, table and claim; a run whose "
    "metrics.csv merely lacks columns or holds non-numbers is used for the values it has.",
    "",
  ]
  rows = [
    {"run": run_id, "problem": problem, "use": "used for what it has" if used else "left out"}
    for run_id, problem, used in sorted(data.damaged)
  ]
  if rows:
    lines.append(df_to_markdown(pd.DataFrame(rows)))
  if data.sweep_json_problem:
    lines += [f"- {data.sweep_json_problem}: the grid below is read from summary.csv.", ""]
  return "\n".join(lines)


def grid_markdown(data) -> str:
  summary, catalogue = data.all_summary, data.catalogue
  grid = data.sweep_json if isinstance(data.sweep_json, dict) else {}
  lines = ["## Sweep grid", ""]
  source = "sweep.json" if grid else "summary.csv (no sweep.json)"
  datasets = grid.get("datasets") or summary["dataset"].unique()
  models = grid.get("models") or summary["model"].unique()
  estimators = grid.get("estimators") or summary["estimator"].unique()
  seeds = grid.get("seeds") or sorted(summary["seed"].dropna().unique())
  lines.append(f"From {source}:")
  lines.append("")
  lines.append("- datasets: " + ", ".join(f"`{d}`" for d in style.order_datasets(datasets)))
  lines.append("- models: " + ", ".join(f"`{m}`" for m in style.order_models(models)))
  lines.append("- estimators: " + ", ".join(f"`{e}`" for e in catalogue.order(estimators)))
  lines.append(f"- seeds: {_int_list(seeds)}")
  overrides = grid.get("dataset_settings") or {}
  if isinstance(overrides, dict) and any(overrides.values()):
    lines.append(
      "- per-dataset settings: "
      + "; ".join(
        f"`{d}`: " + ", ".join(f"`{k}` = `{published.format_setting(v)}`" for k, v in sorted(pairs.items()))
        for d, pairs in sorted(overrides.items())
        if pairs
      )
    )
  status = summary["status"].value_counts()
  lines.append(
    f"- runs in summary.csv: {len(summary)} (" + ", ".join(f"{k}: {status[k]}" for k in sorted(status.index)) + ")"
  )
  if data.without_info:
    lines.append(
      f"- {len(data.without_info)} run(s) have no `estimator_info` in config.json (written by an older "
      "version): their cost is unknown, so they are left out of equal-cost comparisons"
    )
  unlisted = loading.unlisted_run_dirs(data.results_dir, summary)
  if unlisted:
    lines.append(
      f"- {len(unlisted)} run directories not listed in summary.csv were ignored: "
      + ", ".join(f"`{u}`" for u in unlisted[:10])
      + (" ..." if len(unlisted) > 10 else "")
    )
  lines.append("")
  lines += estimators_markdown(data)
  lines.append("Runs per cell:")
  lines.append("")
  lines.append(df_to_markdown(_runs_per_cell(data)))
  if any(style.is_omniglot(d) for d in summary["dataset"].unique()):
    lines.append(style.OMNIGLOT_FOOTNOTE)
    lines.append("")
  lines += settings_markdown(data)
  return "\n".join(lines)


def estimators_markdown(data) -> list[str]:
  """What the runs' config.json recorded about each estimator (estimator_info)."""
  catalogue = data.catalogue
  names = catalogue.order(data.all_summary["estimator"].unique())
  rows = []
  for name in names:
    info = catalogue.info(name)
    if info is None:
      rows.append(
        {
          "estimator": name,
          "label": "(not recorded)",
          "family": "",
          "f evaluations": "",
          "bound K": "",
          "trainable": "",
          "reference": "",
        }
      )
      continue
    rows.append(
      {
        "estimator": name,
        "label": info.label,
        "family": info.family,
        "f evaluations": "" if info.num_f_evals is None else str(info.num_f_evals),
        "bound K": "" if info.bound_samples is None else str(info.bound_samples),
        "trainable": "yes" if info.trainable else "no",
        "reference": info.reference,
      }
    )
  return [
    "Estimators (from the runs' config.json, `estimator_info`; f evaluations = cost per example, the K of "
    "equal-cost comparisons):",
    "",
    df_to_markdown(pd.DataFrame(rows)),
  ]


def _runs_per_cell(data) -> pd.DataFrame:
  summary, catalogue = data.all_summary, data.catalogue
  bad = {run_id for run_id, _, used in data.damaged if not used}
  rows = []
  for ds in style.order_datasets(summary["dataset"].unique()):
    d_ds = summary[summary["dataset"] == ds]
    for m in style.order_models(d_ds["model"].unique()):
      d_m = d_ds[d_ds["model"] == m]
      for e in catalogue.order(d_m["estimator"].unique()):
        d = d_m[d_m["estimator"] == e]
        row = {"dataset": ds, "model": m, "estimator": e}
        for st in ("done", "running", "failed"):
          row[st] = int(((d["status"] == st) & ~d["run_id"].isin(bad)).sum())
        if bad:
          row["damaged"] = int(d["run_id"].isin(bad).sum())
        ok = d[(d["status"] == "done") & ~d["run_id"].isin(bad)]
        row["seeds done"] = _int_list(sorted(ok["seed"].dropna().astype(int)))
        steps = pd.to_numeric(ok["final_step"], errors="coerce").dropna()
        row["steps"] = _range([float(x) for x in steps])
        rows.append(row)
  return pd.DataFrame(rows)


def settings_markdown(data) -> list[str]:
  rows = setting_rows(data)
  table = pd.DataFrame(
    [
      {
        "setting": f"`{r['name']}`",
        "this sweep": r["text"],
        REFERENCE_NAME: f"`{r['reference']}`",
        "vs reference": "**differs**" if r["differs"] else "",
      }
      for r in rows
    ]
  )
  return [
    "### Settings",
    "",
    f"Every run setting (`contracts.settings.Settings`), as the runs' config.json record it, beside the "
    f"{REFERENCE_NAME} (the `Settings()` defaults: the DisARM paper's protocol as its reference code runs "
    f"it). **differs** marks a setting whose value differs from the reference in some run.",
    "",
    df_to_markdown(table),
  ]


def _driver_log_lines(results_dir):
  """What each driver run achieved in clock time, across its stacks and workers (sweep_log.jsonl)."""
  path = os.path.join(results_dir, results.SWEEP_LOG)
  entries = []
  try:
    with open(path) as f:
      for line in f:
        try:
          entries.append(json.loads(line))
        except ValueError:
          continue
  except OSError:
    return []
  lines = []
  for i, e in enumerate(entries, 1):
    if not isinstance(e, dict) or not e.get("clock_s"):
      continue
    lines.append(
      f"- Driver run {i} ({e.get('executor', '?')}, stacks of up to {e.get('max_stack', '?')}): "
      f"{style.format_count(float(e.get('member_steps', 0)))} member-steps in {float(e['clock_s']):.0f} s "
      "of clock time: "
      f"**{float(e.get('member_steps_per_sec') or 0):.1f} member-steps per second** across its stacks and workers "
      "(evaluations included)."
    )
  return lines


def throughput_markdown(data) -> str:
  """What the sweep achieved as a whole; per-run speeds are in the speed table."""
  done = data.done
  if done.empty:
    return ""
  stack = {}
  if not data.metrics.empty and "stack_size" in data.metrics:
    stack = data.metrics.groupby("run_id")["stack_size"].median().to_dict()
  sizes = np.array([stack.get(r, 1.0) if np.isfinite(stack.get(r, 1.0)) else 1.0 for r in done["run_id"]])
  steps = pd.to_numeric(done["final_step"], errors="coerce").to_numpy(dtype=float)
  wall = pd.to_numeric(done["wall_time_s"], errors="coerce").to_numpy(dtype=float)
  ok = np.isfinite(steps) & np.isfinite(wall)
  lines = ["## Throughput", ""]
  if ok.any():
    total_steps = float(steps[ok].sum())
    # The runs of a stack share its wall time: count it once per stack.
    stack_wall = float((wall[ok] / sizes[ok]).sum())
    rate = total_steps / stack_wall if stack_wall > 0 else math.nan
    lines.append(
      f"- {int(ok.sum())} finished runs trained {style.format_count(total_steps)} steps in all; their "
      f"wall time, each stack counted once, sums to {stack_wall:.1f} s: **{rate:.1f} training steps per "
      "second** over the sweep (evaluations included; runs trained at the same time by parallel "
      "workers overlap, so the clock time can be shorter)."
    )
  member = pd.to_numeric(done["member_steps_per_sec"], errors="coerce").to_numpy(dtype=float)
  stacked = (sizes > 1) & np.isfinite(member)
  if stacked.any():
    n_stacks = float((1.0 / sizes[stacked]).sum())
    lines.append(
      f"- Stacked runs (seeds trained together in one graph): {int(stacked.sum())} runs in "
      f"{n_stacks:.0f} stack(s) of {_range(list(sizes[stacked]), lambda x: str(int(x)))}; member-steps "
      f"per second of a stack (`member_steps_per_sec` = steps per second x stack size): median "
      f"{np.median(member[stacked]):.1f}, summed over the stacks "
      f"{np.sum(member[stacked] / sizes[stacked]):.1f}."
    )
  else:
    lines.append("- No run was trained in a stack (stack size 1 throughout).")
  lines += _driver_log_lines(data.results_dir)
  lines.append("- Per-run `steps_per_sec` (each run's own steps) is in the speed table.")
  lines.append("")
  return "\n".join(lines)


def figures_markdown(results_dir: str, specs) -> str:
  lines = ["## Figures", ""]
  if not specs:
    return "\n".join(lines + ["No figures: no metrics.csv or toy CSVs found.", ""])
  intro = {
    "curves": "Training curves: train ELBO, test bounds and encoder gradient variance against steps; mean over "
    "seeds with a ± 1 s.e. band; published values (where compared below) dashed.",
    "grad_variance": "Encoder gradient variance at equal cost: a panel per number of f evaluations K "
    "(`num_f_evals` in config.json), every estimator of that cost, log scale.",
    "multisample_bound": "The bound with K = the estimator's evaluations of f (`test_bound_k`, or `valid_bound_k` "
    "where the test one is absent): a row per dataset x model, a column per K, so VIMCO with K "
    "samples sits beside local DisARM with K/2 pairs.",
    "basket": "Variance basket: the gradient variance of several estimators (`basket_var_<estimator>` columns) "
    "measured at the same parameters along runs trained by the estimator named in each panel; ratios "
    "in the section *Variance basket*.",
  }
  shown = set()
  for spec in specs:
    if spec.kind in intro and spec.kind not in shown:
      lines += [intro[spec.kind], ""]
      shown.add(spec.kind)
    png, pdf = (_rel(p, results_dir) for p in spec.paths(results_dir))
    title = _md(spec.title)
    lines += [f"### {title}", "", f"![{title}]({png})", "", f"[PNG]({png}) · [PDF]({pdf})", ""]
  return "\n".join(lines)


def basket_section(data) -> str:
  """The basket ratio table with its heading, or "" when the metrics lack it."""
  table = tables.basket_markdown(data.metrics, data.catalogue)
  if not table:
    return ""
  reference = tables.basket_reference(data.metrics, data.catalogue)
  return "\n".join(
    [
      "## Variance basket: the fair variance comparison",
      "",
      "Gradient variances of different estimators measured at the same parameters along one training run, relative "
      f"to {data.catalogue.label(reference)} (unlike the training curves, where each estimator's variance is taken "
      "along its own trajectory).",
      "",
      table,
    ]
  )


# --------------------------------------------------------------------------- the report


def make_report(results_dir: str, published_csv=None, draw_figures: bool = True) -> str:
  """Regenerate figures, tables, claim verdicts and the published comparison; write
  <results_dir>/report.md and return its path.

  ``published_csv``: None for the default (results/published/rodeo_2022.csv), a path,
  or "none" for no comparison. ``draw_figures=False`` writes the same report.md
  without drawing (the figures it links are then not refreshed).

  Raises loading.ResultsDirError if results_dir has no usable summary.csv, and
  published.PublishedCSVError if the published CSV is unreadable.
  """
  data = loading.load_sweep(results_dir)
  # Read the published numbers before any drawing, so that a bad path fails first.
  published_path, published_name = published.resolve(published_csv)
  published_table = published.load_published(published_path) if published_path else None
  comparison = published.compare_published(data, published_table) if published_table is not None else None

  specs = figures.plan_figures(data, published.reference_lines(comparison))
  if draw_figures:
    figures.write_figures(results_dir, specs)
  md_path, tex_path = tables.write_tables(results_dir, data.summary, data.catalogue)
  claims = compare.check_claims(data)

  sweep = os.path.basename(os.path.normpath(results_dir))
  command = "python -m plots.make_report --results_dir=<this folder>"
  if published_csv is not None:
    command += f" --published={published_name or 'none'}"
  parts = [
    f"# DisARM benchmark report: `{sweep}`",
    "",
    f"Generated from the sweep's CSV and JSON files by `{command}`; edit the code, not this file.",
    "",
    protocol_distance_markdown(data),
  ]
  notes = notes_markdown(results_dir)
  if notes:
    parts.append(notes)
  if comparison is not None:
    parts += [_published_summary_line(comparison, published_name), ""]
  damaged = damaged_markdown(data)
  if damaged:
    parts.append(damaged)
  parts += [
    grid_markdown(data),
    throughput_markdown(data),
    "## Tables",
    "",
    f"Also as [Markdown]({_rel(md_path, results_dir)}) and [LaTeX]({_rel(tex_path, results_dir)}).",
    "",
    tables.tables_markdown(data.summary, data.catalogue),
    figures_markdown(results_dir, specs),
  ]
  basket = basket_section(data)
  if basket:
    parts.append(basket)
  parts += [
    "## Claims of the paper (PROTOCOL section 7)",
    "",
    "Verdicts: holds / fails / not enough runs to tell, each with the run length and seeds it rests on. "
    "Rules in `plots/compare.py` and `plots/README.md`.",
    "",
    compare.claims_markdown(claims),
  ]
  if comparison is not None:
    comp_path = published.write_comparison_csv(comparison, os.path.join(results_dir, "paper_comparison.csv"))
    parts += [
      "## Comparison with published numbers",
      "",
      published.published_markdown(data, comparison, published_table, published_name),
      f"Also as [CSV]({_rel(comp_path, results_dir)}).",
      "",
    ]
  path = os.path.join(results_dir, "report.md")
  with open(path, "w") as f:
    f.write("\n".join(parts).rstrip() + "\n")
  return path


def _published_summary_line(comparison: pd.DataFrame, name: str) -> str:
  if comparison.empty:
    return f"**Published numbers** (`{name}`): no cell of this sweep has a published row."
  judged = comparison[comparison["verdict"] != "not judged"]
  shorter = comparison["notes"].str.contains("shorter than the published", regex=False)
  text = f"**Published numbers** (`{name}`): {len(comparison)} row(s) for cells of this sweep, {len(judged)} judged"
  reasons = []
  if shorter.any():
    reasons.append(f"{int(shorter.sum())} not judged because our runs are shorter than the published ones")
  if comparison["settings_differ"].any():
    reasons.append(f"{int(comparison['settings_differ'].sum())} with settings that differ from the published protocol")
  return text + (" (" + "; ".join(reasons) + ")" if reasons else "") + " (section *Comparison with published numbers*)."
