"""Which paper's protocol a sweep's runs follow, and how far they are from it.

The candidates are the protocols ``contracts.protocols`` names: the DisARM paper's (the
``Settings`` defaults), the RODEO paper's single-layer protocol (its Tables 1-2, with
per-dataset learning rates) and the RODEO paper's layered protocol (its Table 5). A
sweep is measured against the candidate nearest to its runs' settings: the one from
which the fewest settings differ (a setting differs where some run's value is not the
protocol's for that run's data set). Layered models ("<base>_<n>layer") only match a
layered protocol and single-layer models only a single-layer one, so that a sweep of
layered models is never called a DisARM-protocol sweep for having default learning rates.

The report names the chosen protocol in its title, lists the settings that differ from
it, sets run length and seeds beside the protocol's, and draws published reference lines
only from published tables of that protocol (``published_names``).
"""

from __future__ import annotations

import dataclasses
import math

from contracts import protocols
from contracts.settings import setting_fields
from plots import published, style

# Steps and seeds: both papers train 10^6 steps and report 5 seeds (PROTOCOL.md sections 3 and 9).
PAPER_STEPS, PAPER_SEEDS = protocols.PAPER_STEPS, protocols.PAPER_SEEDS


@dataclasses.dataclass(frozen=True)
class RunProtocol:
  """A protocol a sweep can follow: its settings (over the ``Settings`` defaults) and its scale."""

  key: str
  name: str  # "DisARM paper's protocol"
  tables: str  # the published tables it produced ("Tables 1-2"), "" for none
  paper: str  # how the paper is named in prose ("the DisARM paper")
  settings: dict
  dataset_settings: dict
  layered: bool
  steps: int = PAPER_STEPS
  seeds: int = PAPER_SEEDS

  @property
  def title(self) -> str:
    """'RODEO paper's protocol, Tables 1-2'."""
    return self.name + (f", {self.tables}" if self.tables else "")

  def expected(self, dataset) -> dict:
    """Every setting's value under this protocol for runs on ``dataset``."""
    values = {field.name: field.default for field in setting_fields()}
    values.update(self.settings)
    values.update(self.dataset_settings.get(dataset, {}))
    return values

  @property
  def published_names(self) -> tuple:
    """Names of the ``published.PROTOCOLS`` whose tables were run under this protocol."""
    return tuple(p.name for p in published.PROTOCOLS if p.settings is self.settings)


PROTOCOLS = (
  RunProtocol("disarm", "DisARM paper's protocol", "", "the DisARM paper", protocols.DISARM, {}, layered=False),
  RunProtocol(
    "rodeo",
    "RODEO paper's protocol",
    "Tables 1-2",
    "the RODEO paper",
    protocols.RODEO,
    protocols.RODEO_DATASETS,
    layered=False,
  ),
  RunProtocol(
    "rodeo_layered",
    "RODEO paper's layered protocol",
    "Table 5",
    "the RODEO paper",
    protocols.RODEO_LAYERED,
    {},
    layered=True,
  ),
)

# Settings of run length, reported as steps beside the protocol's, not as a differing setting.
LENGTH_SETTINGS = ("num_steps",)


@dataclasses.dataclass(frozen=True)
class SettingRow:
  """One setting of the sweep beside the protocol's value."""

  name: str
  text: str  # the runs' values ("`a`" or "`a` (4 runs), `b` (2 runs)"), or "not recorded"
  reference: str  # the protocol's value, with per-dataset values where they differ
  differs: bool
  recorded: bool
  help: str


def _missing(value) -> bool:
  return isinstance(value, float) and math.isnan(value)


def _normalised(value):
  return tuple(value) if isinstance(value, list) else value


def _same(a, b) -> bool:
  return published._same(_normalised(a), _normalised(b))


def _usable_runs(data):
  runs = data.runs
  if runs.empty or "usable" not in runs.columns:
    return runs
  return runs[runs["usable"]]


def _sweep_settings(data) -> dict:
  grid = data.sweep_json if isinstance(data.sweep_json, dict) else {}
  settings = grid.get("settings", {})
  return settings if isinstance(settings, dict) else {}


def run_values(data, name) -> list:
  """[(dataset, value)] of setting ``name`` over the usable runs that record it in config.json."""
  runs = _usable_runs(data)
  values = []
  if name in runs.columns:
    values = [(ds, _normalised(v)) for ds, v in zip(runs["dataset"], runs[name]) if not _missing(v)]
  return values


def candidates(data) -> tuple:
  """The protocols a sweep's runs can follow: layered ones if every usable run has a layered model,
  else the single-layer ones."""
  runs = _usable_runs(data)
  models = list(runs["model"].unique()) if "model" in runs.columns else []
  layered = bool(models) and all(style.is_layered_model(m) for m in models)
  return tuple(p for p in PROTOCOLS if p.layered == layered)


def differing_settings(data, protocol: RunProtocol) -> list:
  """Names of the settings (run length aside) where some usable run differs from ``protocol``."""
  sweep_settings = _sweep_settings(data)
  datasets = sorted(set(_usable_runs(data).get("dataset", []))) or [None]
  out = []
  for field in setting_fields():
    if field.name in LENGTH_SETTINGS:
      continue
    values = run_values(data, field.name)
    if not values and field.name in sweep_settings:
      values = [(ds, _normalised(sweep_settings[field.name])) for ds in datasets]
    if any(not _same(v, protocol.expected(ds)[field.name]) for ds, v in values):
      out.append(field.name)
  return out


@dataclasses.dataclass(frozen=True)
class Match:
  protocol: RunProtocol
  differing: list  # setting names that differ from it
  distances: dict  # protocol key -> number of differing settings, for every candidate


def nearest(data) -> Match:
  """The candidate protocol from which the fewest settings differ (ties: the earlier in PROTOCOLS)."""
  scored = [(len(differing_settings(data, p)), i, p) for i, p in enumerate(candidates(data))]
  distances = {p.key: n for n, _, p in scored}
  _, _, best = min(scored, key=lambda t: (t[0], t[1]))
  return Match(best, differing_settings(data, best), distances)


def _reference_text(protocol: RunProtocol, name, datasets) -> str:
  """The protocol's value of setting ``name``, with the values it uses on particular data sets."""
  base = protocol.expected(None)[name]
  text = f"`{published.format_setting(base)}`"
  special = [
    (ds, protocol.dataset_settings[ds][name])
    for ds in sorted(protocol.dataset_settings)
    if name in protocol.dataset_settings[ds] and (not datasets or ds in datasets)
  ]
  if special:
    text += " (" + ", ".join(f"{ds}: `{published.format_setting(v)}`" for ds, v in special) + ")"
  return text


def _counted(values) -> str:
  """'`a`' if every run agrees, else '`a` (4 runs), `b` (2 runs)', most common first (ties by text)."""
  counts = {}
  for v in values:
    counts[v] = counts.get(v, 0) + 1
  if len(counts) == 1:
    return f"`{next(iter(counts))}`"
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return ", ".join(f"`{v}` ({c} run{'s' if c != 1 else ''})" for v, c in ordered)


def setting_rows(data, protocol: RunProtocol) -> list:
  """A SettingRow per ``contracts.settings`` field: the runs' values (config.json, else sweep.json)
  beside ``protocol``'s, and whether some run differs from it."""
  sweep_settings = _sweep_settings(data)
  runs = _usable_runs(data)
  datasets = sorted(set(runs["dataset"])) if "dataset" in runs.columns else []
  rows = []
  for field in setting_fields():
    values = run_values(data, field.name)
    reference = _reference_text(protocol, field.name, datasets)
    help_text = field.metadata["help"]
    source = "config.json"
    if not values and field.name in sweep_settings:
      values = [(ds, _normalised(sweep_settings[field.name])) for ds in (datasets or [None])]
      source = "sweep.json"
    if not values:
      rows.append(SettingRow(field.name, "not recorded", reference, False, False, help_text))
      continue
    differs = any(not _same(v, protocol.expected(ds)[field.name]) for ds, v in values)
    if source == "sweep.json":
      text = f"`{published.format_setting(values[0][1])}` (sweep.json)"
    else:
      text = _counted([published.format_setting(v) for _, v in values])
    rows.append(SettingRow(field.name, text, reference, differs, True, help_text))
  return rows


__all__ = [
  "PROTOCOLS",
  "Match",
  "RunProtocol",
  "SettingRow",
  "candidates",
  "differing_settings",
  "nearest",
  "setting_rows",
]
