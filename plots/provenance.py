"""Where each run's numbers come from: code commit, library versions, machine and data, from config.json.

A run's ``config.json`` may hold ``provenance``: a list of segments, one per stretch of
training in one process (a resumed run has several), each a dict with ``start_step``,
``commit``, ``dirty``, ``python``, ``tensorflow``, ``tensorflow_probability``, ``numpy``,
``cpu``, ``gpus`` (list), ``data_source`` (a folder or "tensorflow_datasets"),
``data_kind`` ("raw_files" or "tensorflow_datasets"), ``data_files_sha256`` (file name ->
hex) and ``split_digest`` (hex). Runs written before it was recorded have no such key:
their provenance is "not recorded", which is not a problem with the run.

``run_provenance`` gives one row per usable run; ``cell_flags`` one row per dataset x
model cell, flagging cells whose runs mix data sources or split digests, or span more
than one commit (runs at different commits, or a run resumed after a code change).
Nothing here renders Markdown (``plots.report`` does).
"""

from __future__ import annotations

import pandas as pd

from contracts import results
from plots import markdown

PROVENANCE_KEY = results.PROVENANCE_KEY
NOT_RECORDED = "not recorded"
# Characters of a commit or digest shown (enough to tell them apart, short enough for a table).
SHORT_HEX = 12
VERSION_KEYS = ("python", "tensorflow", "tensorflow_probability", "numpy")

RUN_COLUMNS = (
  "run_id",
  "dataset",
  "model",
  "estimator",
  "seed",
  "recorded",
  "problem",
  "segments",
  "commits",
  "dirty",
  *VERSION_KEYS,
  "cpu",
  "gpus",
  "data_kind",
  "data_source",
  "data_identity",
  "split_digest",
)
CELL_COLUMNS = (
  "dataset",
  "model",
  "runs",
  "not_recorded",
  "commits",
  "resumed_across_commits",
  "data_sources",
  "split_digests",
  "flags",
)


def short(hex_text, n=SHORT_HEX) -> str:
  return str(hex_text)[:n] if hex_text else ""


def _distinct(values) -> tuple:
  """Distinct non-empty values, in order of first appearance."""
  return tuple(dict.fromkeys(v for v in values if v not in (None, "", ())))


def _joined(values) -> str:
  return ", ".join(str(v) for v in _distinct(values))


def _segments(config):
  """(segments, problem): the provenance segments of a config.json, or None where not recorded."""
  raw = config.get(PROVENANCE_KEY) if isinstance(config, dict) else None
  if raw is None:
    return None, ""
  if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
    return None, f"{PROVENANCE_KEY} is not a list of segments"
  return sorted(raw, key=lambda s: _start(s)), ""


def _start(segment):
  try:
    return float(segment.get("start_step") or 0)
  except (TypeError, ValueError):
    return 0.0


def _data_identity(segment) -> str:
  """What tells two data sources apart: the kind and the files' hashes (their folder differs between machines)."""
  kind = str(segment.get("data_kind") or "")
  hashes = segment.get("data_files_sha256")
  if isinstance(hashes, dict) and hashes:
    return kind + ":" + ",".join(f"{k}={v}" for k, v in sorted(hashes.items()))
  return kind + ":" + str(segment.get("data_source") or "")


def run_provenance(data) -> pd.DataFrame:
  """One row per usable run (RUN_COLUMNS): its provenance, segments merged (values that vary are joined)."""
  runs = data.runs
  if not runs.empty and "usable" in runs.columns:
    runs = runs[runs["usable"]]
  rows = []
  for r in runs.itertuples(index=False):
    config = data.configs.get(r.run_id, {})
    segments, problem = _segments(config)
    row = dict(run_id=r.run_id, dataset=r.dataset, model=r.model, estimator=r.estimator, seed=r.seed, problem=problem)
    if segments is None:
      row.update(recorded=False, segments=0, commits=(), dirty=None, gpus="", split_digest="", data_identity="")
      row.update({k: "" for k in (*VERSION_KEYS, "cpu", "data_kind", "data_source")})
    else:
      gpus = [", ".join(map(str, s["gpus"])) if isinstance(s.get("gpus"), list) else s.get("gpus") for s in segments]
      row.update(
        recorded=True,
        segments=len(segments),
        commits=_distinct(s.get("commit") for s in segments),
        dirty=any(bool(s.get("dirty")) for s in segments),
        cpu=_joined(s.get("cpu") for s in segments),
        gpus=_joined(gpus) or "none",
        data_kind=_joined(s.get("data_kind") for s in segments),
        data_source=_joined(s.get("data_source") for s in segments),
        data_identity=" | ".join(_distinct(_data_identity(s) for s in segments)),
        split_digest=_joined(s.get("split_digest") for s in segments),
      )
      row.update({k: _joined(s.get(k) for s in segments) for k in VERSION_KEYS})
    rows.append(row)
  return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def cell_flags(table: pd.DataFrame) -> pd.DataFrame:
  """One row per dataset x model cell of ``run_provenance``'s table (CELL_COLUMNS); ``flags`` lists
  what makes the cell's runs not comparable by provenance ("" where nothing does)."""
  rows = []
  if table.empty:
    return pd.DataFrame(rows, columns=list(CELL_COLUMNS))
  for ds, mdl in markdown.cells(table):
    cell = table[(table["dataset"] == ds) & (table["model"] == mdl)]
    recorded = cell[cell["recorded"]]
    commits = _distinct(c for cs in recorded["commits"] for c in cs)
    resumed = sorted(recorded.loc[recorded["commits"].map(len) > 1, "run_id"])
    # A run whose own segments disagree counts as a mix on its own.
    sources = _distinct(p for v in recorded["data_identity"] for p in v.split(" | "))
    digests = _distinct(d for v in recorded["split_digest"] for d in v.split(", "))
    flags = []
    if len(sources) > 1:
      flags.append(f"runs mix {len(sources)} data sources")
    if len(digests) > 1:
      flags.append(f"runs mix {len(digests)} split digests")
    if len(commits) > 1:
      text = f"runs span {len(commits)} commits"
      if resumed:
        text += f" ({len(resumed)} run(s) resumed at another commit)"
      flags.append(text)
    rows.append(
      dict(
        dataset=ds,
        model=mdl,
        runs=len(cell),
        not_recorded=int((~cell["recorded"]).sum()),
        commits=commits,
        resumed_across_commits=tuple(resumed),
        data_sources=sources,
        split_digests=digests,
        flags="; ".join(flags),
      )
    )
  return pd.DataFrame(rows, columns=list(CELL_COLUMNS))


__all__ = ["NOT_RECORDED", "PROVENANCE_KEY", "cell_flags", "run_provenance", "short"]
