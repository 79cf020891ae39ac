"""Assemble results/<sweep>/report.md from the sweep's files.

``make_report(results_dir, published_csv=None, draw_figures=True)`` regenerates every
figure, the tables (tables.md, tables.tex), the claim verdicts and the comparison
with published numbers (also written as paper_comparison.csv, and its end-of-training
window as paper_comparison_window.csv where there is one), then writes report.md
and returns its path. It reads nothing but the sweep folder's CSV/JSON files and the
published CSV, and report.md and tables.md are a deterministic function of them: no
dates, no absolute paths, a fixed order and fixed number formats, so that a test can
regenerate a committed report and compare the text.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import pandas as pd

from contracts import results
from plots import compare, figures, loading, provenance, published, style, tables
from plots import protocol as run_protocol
from plots.markdown import df_to_markdown, md_cell, md_dataset, md_text, range_text


def _rel(path: str, start: str) -> str:
  return os.path.relpath(path, start).replace(os.sep, "/")


def _int_list(values) -> str:
  out = []
  for v in values:
    try:
      out.append(str(int(v)))
    except (TypeError, ValueError):
      out.append(str(v))
  return ", ".join(out)


# --------------------------------------------------------------------------- settings


def setting_rows(data, protocol=None) -> list[dict]:
  """One row per contracts.settings field: the sweep's values (from the runs' config.json, else
  sweep.json), the protocol's (default: the nearest to the runs), and whether they differ."""
  protocol = protocol or run_protocol.nearest(data).protocol
  return [dataclasses.asdict(r) for r in run_protocol.setting_rows(data, protocol)]


# --------------------------------------------------------------------------- sections


def protocol_distance_markdown(data, match) -> str:
  """The report's first lines: which protocol the runs follow and how far they are from it."""
  chosen = match.protocol
  done = data.done
  lines = []
  heading = f"**How far from the {chosen.title}:**"
  if done.empty:
    lines.append(f"{heading} no finished run in this sweep.")
  else:
    steps = [float(x) for x in pd.to_numeric(done["final_step"], errors="coerce").dropna()]
    seeds = done.groupby(["dataset", "model", "estimator"])["seed"].nunique().tolist()
    fraction = max(steps) / chosen.steps if steps else math.nan
    share = f", so {100 * fraction:.2g}% of it" if np.isfinite(fraction) and fraction < 1 else ""
    rows = run_protocol.setting_rows(data, chosen)
    unrecorded = [r.name for r in rows if not r.recorded]
    settings = (
      (
        f"{len(match.differing)} setting(s) differ from it: "
        + ", ".join(f"`{n}`" for n in match.differing)
        + " (section *Settings*)"
      )
      if match.differing
      else "every recorded setting is the protocol's"
    )
    if unrecorded:
      settings += f"; {len(unrecorded)} setting(s) not recorded by the runs' config.json (older runs)"
    others = [f"{p.title}: {match.distances[p.key]}" for p in run_protocol.candidates(data) if p.key != chosen.key]
    nearest = (
      f" It is the nearest protocol (settings differing from the others: {'; '.join(others)})." if others else ""
    )
    lines.append(
      f"{heading} runs of {range_text(steps)} steps ({chosen.paper}: "
      f"{style.format_count(chosen.steps)}{share}); {range_text(seeds, lambda x: str(int(x)))} "
      f"finished seed(s) per cell ({chosen.paper}: {chosen.seeds}); {settings}.{nearest}"
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


def grid_markdown(data, match) -> str:
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
  lines += settings_markdown(data, match)
  return "\n".join(lines)


def estimators_markdown(data) -> list[str]:
  """What the runs' config.json recorded about each estimator (estimator_info)."""
  catalogue = data.catalogue
  names = catalogue.order(data.all_summary["estimator"].unique())
  infos = [catalogue.info(n) for n in names]
  # Declared only by newer runs: shown where some estimator declares them, "unknown" where one does not.
  extra = [
    (attr, column)
    for attr, column in (("num_grad_evals", "gradient evaluations"), ("num_network_evals", "network evaluations"))
    if any(info is not None and getattr(info, attr) is not None for info in infos)
  ]
  rows = []
  for name, info in zip(names, infos):
    if info is None:
      row = {"estimator": name, "label": "(not recorded)", "family": "", "f evaluations": ""}
      row.update({column: "" for _, column in extra})
      row.update({"bound K": "", "trainable": "", "reference": ""})
      rows.append(row)
      continue
    row = {
      "estimator": name,
      "label": info.label,
      "family": info.family,
      "f evaluations": "" if info.num_f_evals is None else str(info.num_f_evals),
    }
    for attr, column in extra:
      value = getattr(info, attr)
      row[column] = "unknown" if value is None else str(value)
    row.update(
      {
        "bound K": "" if info.bound_samples is None else str(info.bound_samples),
        "trainable": "yes" if info.trainable else "no",
        "reference": info.reference,
      }
    )
    rows.append(row)
  declared = (
    "; gradient and network evaluations per step as the estimators declare them (unknown where one does not)"
    if extra
    else ""
  )
  return [
    "Estimators (from the runs' config.json, `estimator_info`; f evaluations = cost per example, the K of "
    f"equal-cost comparisons{declared}):",
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
        row["steps"] = range_text([float(x) for x in steps])
        rows.append(row)
  return pd.DataFrame(rows)


def settings_markdown(data, match) -> list[str]:
  chosen = match.protocol
  rows = run_protocol.setting_rows(data, chosen)
  table = pd.DataFrame(
    [
      {
        "setting": f"`{r.name}`",
        "this sweep": r.text,
        chosen.name: r.reference,
        "vs protocol": "**differs**" if r.differs else "",
      }
      for r in rows
    ]
  )
  return [
    "### Settings",
    "",
    f"Every run setting (`contracts.settings.Settings`), as the runs' config.json record it, beside the "
    f"{chosen.title} (`contracts.protocols`; settings it does not name are the `Settings()` defaults, the DisARM "
    "paper's protocol as its reference code runs it). **differs** marks a setting whose value differs from the "
    "protocol's in some run.",
    "",
    df_to_markdown(table),
  ]


def _reuse_line(results_dir):
  """Where the latest driver invocation reused finished runs instead of training them: one line, else ''."""
  entries = _sweep_log(results_dir)
  last = entries[-1] if entries and isinstance(entries[-1], dict) else {}
  if not last.get("reused_runs"):
    return ""
  return (
    f"**Reused runs:** the latest driver invocation on this sweep found {last['reused_runs']} run(s) already "
    f"finished and did not train them again; it trained or resumed {last.get('trained_runs', 0)}. "
    "Section *Throughput* lists every invocation."
  )


def _sweep_log(results_dir):
  """The entries of sweep_log.jsonl that parse (one per driver invocation), oldest first."""
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
  return entries


def _driver_log_lines(results_dir):
  """What each driver run achieved in clock time, across its stacks and workers (sweep_log.jsonl)."""
  entries = _sweep_log(results_dir)
  lines = []
  for i, e in enumerate(entries, 1):
    if not isinstance(e, dict):
      continue
    if e.get("reused_runs"):
      lines.append(
        f"- Driver run {i} reused {e['reused_runs']} run(s) finished by an earlier one "
        f"and trained or resumed {e.get('trained_runs', 0)}."
      )
    if not e.get("clock_s") or not e.get("member_steps"):
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
      f"{n_stacks:.0f} stack(s) of {range_text(list(sizes[stacked]), lambda x: str(int(x)))}; member-steps "
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


def figures_markdown(results_dir: str, specs, note: str = "") -> str:
  lines = ["## Figures", ""]
  if not specs:
    return "\n".join(lines + ["No figures: no metrics.csv or toy CSVs found.", ""])
  if note:
    lines += [note, ""]
  intro = {
    "curves": "Training curves: train ELBO, test bounds and encoder gradient variance against steps; mean over "
    "seeds with a ± 1 s.e. band; members of one family (different K) in shades and line styles of one colour; "
    "published values of this sweep's protocol grey dashed, each named at its right end.",
    "cost_curves": "The same ELBO and bounds at equal cost: against evaluations of f per example (steps x "
    "`num_f_evals`: equal f evaluations at each x) and against wall-clock time (`wall_time_s`, seconds of "
    "training and evaluation so far, as each run logged it; seeds trained as one stack share it).",
    "grad_variance": "Encoder gradient variance at equal cost in evaluations of f: a panel per number of f "
    "evaluations K per example and step (`num_f_evals` in config.json), every estimator of that cost, log scale.",
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
    title = md_text(spec.title)
    lines += [f"### {title}", "", f"![{title}]({png})", "", f"[PNG]({png}) · [PDF]({pdf})", ""]
  return "\n".join(lines)


def protocol_rows(comparison, protocol) -> pd.DataFrame | None:
  """The rows of the published comparison that come from tables of ``protocol``: the only ones drawn
  as reference lines (a value of another protocol's table is no target for these runs)."""
  if comparison is None:
    return None
  return comparison[comparison["protocol"].isin(protocol.published_names)]


def figure_plan(data, comparison, match) -> list:
  """The report's figures: ``figures.plan_figures`` with the published values of the runs' protocol."""
  drawn = protocol_rows(comparison, match.protocol)
  return figures.plan_figures(data, published.reference_lines(drawn), reference_legend(drawn, match.protocol))


def reference_legend(rows, protocol) -> str:
  """The single legend entry of the reference lines: 'published (RODEO paper, Tables 1-2; 1M steps)'."""
  text = f"published ({protocol.paper.removeprefix('the ')}"
  text += f", {protocol.tables}" if protocol.tables else ""
  steps = [] if rows is None else sorted({float(v) for v in rows["published_steps"] if np.isfinite(v)})
  if steps:
    text += "; " + "/".join(style.format_steps(v) for v in steps) + " steps"
  return text + ")"


def _undrawn_note(comparison, drawn, protocol) -> str:
  if comparison is None or comparison.empty:
    return ""
  left = len(comparison) - len(drawn)
  if not left:
    return ""
  return (
    f"Published values are drawn only from tables of the {protocol.title}; {left} published row(s) of other "
    "protocols or sources are in the comparison table only."
  )


def _cell_text(ds, mdl) -> str:
  return f"{md_dataset(ds)}, {style.model_label(mdl)}"


def provenance_markdown(prov: pd.DataFrame, flags: pd.DataFrame) -> str:
  """## Provenance: runs grouped by what they recorded (commit, versions, machine, data), and flagged cells."""
  lines = ["## Provenance", ""]
  if prov.empty:
    return "\n".join(lines + ["No usable run.", ""])
  recorded = prov[prov["recorded"]]
  if recorded.empty:
    return "\n".join(
      lines + [f"{provenance.NOT_RECORDED.capitalize()}: no run's config.json has `provenance` (older runs).", ""]
    )
  lines += [
    "What each run's config.json records about the code, libraries, machine and data it ran with (every "
    "segment of a resumed run), runs with the same record counted together. Commits and digests: first "
    f"{provenance.SHORT_HEX} hex digits.",
    "",
  ]
  columns = {
    "commit(s)": lambda r: ", ".join(provenance.short(c) for c in r.commits) or "?",
    "dirty": lambda r: "**yes**" if r.dirty else "no",
    "python": lambda r: r.python,
    "TF": lambda r: r.tensorflow,
    "TFP": lambda r: r.tensorflow_probability,
    "numpy": lambda r: r.numpy,
    "CPU": lambda r: r.cpu,
    "GPUs": lambda r: r.gpus,
    "data": lambda r: r.data_kind,
    "split digest": lambda r: ", ".join(provenance.short(d) for d in r.split_digest.split(", ")),
  }
  groups = {}
  for r in prov.itertuples(index=False):
    key = tuple(fn(r) for fn in columns.values()) if r.recorded else None
    groups.setdefault(key, []).append(r)
  rows = []
  for key, members in sorted(groups.items(), key=lambda kv: (kv[0] is None, -len(kv[1]), kv[0] or ())):
    row = {"runs": len(members)}
    if key is None:
      row.update({c: "" for c in columns})
      row["commit(s)"] = provenance.NOT_RECORDED
    else:
      row.update({c: md_cell(str(v)) for c, v in zip(columns, key)})
    rows.append(row)
  lines.append(df_to_markdown(pd.DataFrame(rows)))
  bad = prov[prov["problem"] != ""]
  for r in bad.itertuples(index=False):
    lines.append(f"- `{r.run_id}`: {r.problem} (read as not recorded).")
  flagged = flags[flags["flags"] != ""]
  if flagged.empty:
    lines.append("No cell mixes data sources or split digests or spans several commits.")
  for r in flagged.itertuples(index=False):
    resumed = (
      " Resumed at another commit: " + ", ".join(f"`{x}`" for x in r.resumed_across_commits) + "."
      if r.resumed_across_commits
      else ""
    )
    lines.append(f"- **{_cell_text(r.dataset, r.model)}**: {r.flags}.{resumed}")
  lines.append("")
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

  match = run_protocol.nearest(data)
  drawn = protocol_rows(comparison, match.protocol)
  specs = figure_plan(data, comparison, match)
  if draw_figures:
    figures.write_figures(results_dir, specs)
  md_path, tex_path = tables.write_tables(results_dir, data.summary, data.catalogue)
  claims = compare.check_claims(data)

  sweep = os.path.basename(os.path.normpath(results_dir))
  command = "python -m plots.make_report --results_dir=<this folder>"
  if published_csv is not None:
    command += f" --published={published_name or 'none'}"
  prov = provenance.run_provenance(data)
  flags = provenance.cell_flags(prov)
  parts = [
    f"# Benchmark report: `{sweep}` ({match.protocol.title})",
    "",
    f"Generated from the sweep's CSV and JSON files by `{command}`; edit the code, not this file.",
    "",
    protocol_distance_markdown(data, match),
  ]
  flagged = flags[flags["flags"] != ""] if not flags.empty else flags
  if not flagged.empty:
    parts += [
      f"**Provenance:** {len(flagged)} cell(s) whose runs mix data sources or split digests or span several "
      "commits (section *Provenance*).",
      "",
    ]
  reused = _reuse_line(results_dir)
  if reused:
    parts += [reused, ""]
  notes = notes_markdown(results_dir)
  if notes:
    parts.append(notes)
  if comparison is not None:
    parts += [_published_summary_line(comparison, published_name), ""]
  damaged = damaged_markdown(data)
  if damaged:
    parts.append(damaged)
  parts += [
    grid_markdown(data, match),
    provenance_markdown(prov, flags),
    throughput_markdown(data),
    "## Tables",
    "",
    f"Also as [Markdown]({_rel(md_path, results_dir)}) and [LaTeX]({_rel(tex_path, results_dir)}).",
    "",
    tables.tables_markdown(data.summary, data.catalogue),
    figures_markdown(results_dir, specs, _undrawn_note(comparison, drawn, match.protocol)),
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
    window, left_out = published.window_comparison(data, comparison)
    window_lines = published.window_markdown(data, window, left_out)
    window_path = os.path.join(results_dir, "paper_comparison_window.csv")
    if not window.empty:
      published.write_comparison_csv(window, window_path)
      window_lines += [f"Also as [CSV]({_rel(window_path, results_dir)}).", ""]
    elif os.path.exists(window_path):
      os.unlink(window_path)  # a stale table from runs since removed
    parts += window_lines
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
