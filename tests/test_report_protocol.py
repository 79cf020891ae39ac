"""Reports of the right protocol, curves told apart, costs and provenance (plots/protocol.py,
plots/provenance.py, plots/report.py, plots/figures.py, plots/style.py).

The sweeps here are written by hand in the results format (contracts/results.py): a few
runs with chosen settings, estimator_info and provenance, and made-up curves. They need
no training, so they test what the report makes of the files, not the numbers.
"""

import json
import os

import numpy as np
import pandas as pd
import pytest

import plots
from contracts import protocols, results
from contracts.settings import Settings
from plots import figures, loading, provenance, published, report, style
from plots import protocol as run_protocol

INFOS = {
  "disarm": dict(label="DisARM", family="disarm", size=None, num_f_evals=2, bound_samples=2),
  "double_cv_2": dict(label="Double CV", family="double_cv", size=2, num_f_evals=2, bound_samples=2),
  "rodeo_2": dict(label="RODEO", family="rodeo", size=2, num_f_evals=2, bound_samples=2),
  "double_cv_3": dict(label="Double CV", family="double_cv", size=3, num_f_evals=3, bound_samples=3),
  "rodeo_3": dict(label="RODEO", family="rodeo", size=3, num_f_evals=3, bound_samples=3),
}
STEPS = (0, 500, 1000, 1500, 2000)


def _segment(commit="a" * 40, digest="d" * 64, start=0, kind="raw_files", sha="1" * 64):
  return dict(
    start_step=start,
    commit=commit,
    dirty=False,
    python="3.11.2",
    tensorflow="2.15.0",
    tensorflow_probability="0.23.0",
    numpy="1.26.4",
    cpu="Test CPU (2 cores; AVX2)",
    gpus=[],
    data_source="/data/mnist" if kind == "raw_files" else "tensorflow_datasets",
    data_kind=kind,
    data_files_sha256={"train.npy": sha} if kind == "raw_files" else {},
    split_digest=digest,
  )


def write_sweep(root, name, settings: dict, estimators=tuple(INFOS), seeds=(0, 1, 2), model="nonlinear", prov=None):
  """A finished sweep of mnist x ``model`` with ``settings`` over the Settings defaults (config.json
  and sweep.json); ``prov``: {run_id: provenance list} (runs not named record none)."""
  sweep = os.path.join(str(root), name)
  values = {**{k: v for k, v in vars(Settings()).items()}, **settings, "num_steps": STEPS[-1]}
  values = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
  rows = []
  for i, est in enumerate(estimators):
    for seed in seeds:
      run_id = results.run_id("mnist", model, est, seed)
      run = os.path.join(sweep, results.RUNS_DIR, run_id)
      os.makedirs(run)
      config = dict(values, run_id=run_id, dataset="mnist", model=model, estimator=est, seed=seed)
      config[results.ESTIMATOR_INFO_KEY] = dict(INFOS[est], trainable=False, reference="")
      if prov and run_id in prov:
        config[provenance.PROVENANCE_KEY] = prov[run_id]
      with open(os.path.join(run, results.CONFIG_JSON), "w") as f:
        json.dump(config, f)
      elbo = [-200.0 + 60 * (1 - np.exp(-s / 700)) + i + 0.3 * seed for s in STEPS]
      pd.DataFrame(
        {
          "step": STEPS,
          "wall_time_s": [s / (10.0 + i) for s in STEPS],
          "steps_per_sec": [np.nan] + [10.0 + i] * (len(STEPS) - 1),
          "stack_size": 1,
          "train_elbo": elbo,
          "valid_bound_n": [np.nan] * (len(STEPS) - 1) + [elbo[-1] + 1],
          "test_bound_n": [np.nan] * (len(STEPS) - 1) + [elbo[-1] + 1],
          "grad_variance": [np.nan] + [1e-2 / (1 + i)] * (len(STEPS) - 1),
          "valid_bound_k": elbo,
          "test_bound_k": elbo,
        }
      ).to_csv(os.path.join(run, results.METRICS_CSV), index=False)
      rows.append(
        dict(
          run_id=run_id,
          dataset="mnist",
          model=model,
          estimator=est,
          seed=seed,
          num_steps=STEPS[-1],
          status="done",
          reason="",
          final_step=STEPS[-1],
          final_train_elbo=elbo[-1],
          final_test_bound_n=elbo[-1] + 1,
          final_test_bound_k=elbo[-1],
          wall_time_s=STEPS[-1] / (10.0 + i),
          steps_per_sec=10.0 + i,
          member_steps_per_sec=10.0 + i,
        )
      )
  pd.DataFrame(rows).to_csv(os.path.join(sweep, results.SUMMARY_CSV), index=False)
  grid = dict(datasets=["mnist"], models=[model], estimators=list(estimators), seeds=list(seeds), settings=values)
  with open(os.path.join(sweep, results.SWEEP_JSON), "w") as f:
    json.dump(grid, f)
  return sweep


@pytest.fixture
def rodeo_sweep(tmp_path):
  return write_sweep(tmp_path, "rodeo_tiny", protocols.RODEO)


@pytest.fixture
def disarm_sweep(tmp_path):
  return write_sweep(tmp_path, "disarm_tiny", {})


def _first_lines(text):
  return "\n".join(text.splitlines()[:6])


def test_rodeo_sweep_is_titled_with_the_rodeo_protocol_and_lists_no_rodeo_setting(rodeo_sweep):
  text = open(plots.make_report(rodeo_sweep, draw_figures=False)).read()
  assert text.splitlines()[0] == "# Benchmark report: `rodeo_tiny` (RODEO paper's protocol, Tables 1-2)"
  head = _first_lines(text)
  assert "**How far from the RODEO paper's protocol, Tables 1-2:**" in head
  assert "every recorded setting is the protocol's" in head
  for name in protocols.RODEO:
    assert f"`{name}`" not in head
  assert "(the RODEO paper: 1,000,000, so 0.2% of it)" in head and "(the RODEO paper: 5)" in head
  # The settings table compares with the RODEO values, Fashion-MNIST's learning rate aside.
  settings = text[text.index("### Settings") :]
  differing = [line.split(" | ")[0] for line in settings.splitlines() if line.endswith("| **differs** |")]
  assert differing == ["| `num_steps`"]  # run length, reported as steps above
  row = next(line for line in settings.splitlines() if line.startswith("| `batch_size` |"))
  assert row == "| `batch_size` | `100` | `100` |  |"


def test_disarm_sweep_is_titled_with_the_disarm_protocol(disarm_sweep):
  text = open(plots.make_report(disarm_sweep, draw_figures=False)).read()
  assert text.splitlines()[0] == "# Benchmark report: `disarm_tiny` (DisARM paper's protocol)"
  assert "every recorded setting is the protocol's" in _first_lines(text)


def test_one_differing_setting_is_measured_from_the_nearest_protocol(tmp_path):
  sweep = write_sweep(tmp_path, "nearly_rodeo", dict(protocols.RODEO, batch_size=50), estimators=("disarm",))
  match = run_protocol.nearest(loading.load_sweep(sweep))
  assert match.protocol.key == "rodeo"
  assert match.differing == ["batch_size"]
  assert match.distances["disarm"] == len(protocols.RODEO) - 1


def test_fashion_mnist_learning_rates_are_the_rodeo_protocols(tmp_path):
  sweep = write_sweep(tmp_path, "fm", protocols.RODEO, estimators=("disarm",))
  data = loading.load_sweep(sweep)
  # The same sweep on Fashion-MNIST with the RODEO Fashion-MNIST learning rate.
  data.runs["dataset"] = "fashion_mnist"
  data.runs["encoder_lr"] = data.runs["decoder_lr"] = 3e-4
  assert run_protocol.differing_settings(data, run_protocol.PROTOCOLS[1]) == []
  data.runs["dataset"] = "mnist"
  assert run_protocol.differing_settings(data, run_protocol.PROTOCOLS[1]) == ["encoder_lr", "decoder_lr"]


def test_layered_models_only_match_the_layered_protocol(tmp_path):
  sweep = write_sweep(tmp_path, "layered", {}, estimators=("disarm",), model="linear_2layer")
  match = run_protocol.nearest(loading.load_sweep(sweep))
  assert match.protocol.key == "rodeo_layered"
  assert set(match.distances) == {"rodeo_layered"}


def _reference_lines(fig):
  return [
    ln
    for ax in fig.axes
    for ln in ax.get_lines()
    if ln.get_linestyle() == "--" and ln.get_color() == figures.REFERENCE_COLOUR
  ]


def _published_comparison(sweep):
  data = loading.load_sweep(sweep)
  comp = published.compare_published(data, published.load_published(published.DEFAULT_PUBLISHED_CSV))
  return data, comp, run_protocol.nearest(data)


def test_disarm_sweep_draws_no_rodeo_reference_lines(disarm_sweep):
  data, comp, match = _published_comparison(disarm_sweep)
  assert not comp.empty  # the RODEO tables have rows for these cells...
  spec = next(s for s in report.figure_plan(data, comp, match) if s.kind == "curves")
  assert _reference_lines(spec.build()) == []  # ...but they are not this protocol's


def test_rodeo_sweep_draws_its_reference_lines_under_one_legend_entry(rodeo_sweep):
  data, comp, match = _published_comparison(rodeo_sweep)
  spec = next(s for s in report.figure_plan(data, comp, match) if s.kind == "curves")
  fig = spec.build()
  lines = _reference_lines(fig)
  # Tables 1 and 2 rows of the five estimators: train ELBO and (K-sample) test bound.
  assert len(lines) == len(comp) and len(lines) > 2
  legend = [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]
  published_entries = [t for t in legend if t.startswith("published")]
  assert published_entries == ["published (RODEO paper, Tables 1-2; 1M steps)"]
  # Each line is named at the panel's right edge in its estimator's colour.
  names = [t.get_text() for ax in fig.axes for t in ax.texts]
  assert names.count("DisARM") == 2


def test_family_members_are_told_apart_in_every_curve(rodeo_sweep):
  data = loading.load_sweep(rodeo_sweep)
  cat = data.catalogue
  for family in (("double_cv_2", "double_cv_3"), ("rodeo_2", "rodeo_3")):
    a, b = family
    assert cat.colour(a) != cat.colour(b) and cat.linestyle(a) != cat.linestyle(b)
    assert cat.colour(a) == style.FAMILY_COLOURS[cat.family(a)]  # the cheapest keeps the family colour
    # Not a barely different shade: the channels move by a visible amount.
    ra, rb = (np.array(style.matplotlib.colors.to_rgb(cat.colour(n))) for n in family)
    assert np.abs(ra - rb).max() > 0.15
  fig = figures.build_training_curves(data.metrics, cat, "mnist", "nonlinear")
  ax = next(ax for ax in fig.axes if ax.get_ylabel() == "train ELBO (nats)")
  styles = {(ln.get_color(), str(ln.get_linestyle())) for ln in ax.get_lines()}
  assert len(styles) == len(INFOS)


def test_curves_against_f_evaluations_and_wall_clock(rodeo_sweep):
  data = loading.load_sweep(rodeo_sweep)
  spec = next(s for s in figures.plan_figures(data) if s.kind == "cost_curves")
  fig = spec.build()
  titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
  assert titles == ["equal cost in evaluations of f at each x", "equal wall-clock time at each x"]
  xlabels = [ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()]
  assert len(xlabels) == 2 and "steps x num_f_evals" in xlabels[0] and "wall_time_s" in xlabels[1]
  label = data.catalogue.labels(list(INFOS))["double_cv_3"]
  f_axis = next(ax for ax in fig.axes if ax.get_title().startswith("equal cost"))
  line = next(ln for ln in f_axis.get_lines() if ln.get_label() == label)
  np.testing.assert_allclose(line.get_xdata(), np.array(STEPS) * 3)
  wall_axis = next(ax for ax in fig.axes if ax.get_title().startswith("equal wall-clock"))
  line = next(ln for ln in wall_axis.get_lines() if ln.get_label() == label)
  np.testing.assert_allclose(line.get_xdata(), np.array(STEPS) / 13.0)  # wall_time_s as written


def test_provenance_table_flags_mixed_data_and_commits(tmp_path):
  ids = {e: [results.run_id("mnist", "nonlinear", e, s) for s in (0, 1)] for e in ("disarm", "rodeo_2")}
  prov = {
    ids["disarm"][0]: [_segment()],
    ids["disarm"][1]: [_segment(), _segment(commit="b" * 40, start=1000)],  # resumed after a code change
    ids["rodeo_2"][0]: [_segment(kind="tensorflow_datasets", digest="e" * 64)],
    # the other runs were written before provenance was recorded
  }
  sweep = write_sweep(tmp_path, "prov", {}, estimators=("disarm", "rodeo_2"), prov=prov)
  data = loading.load_sweep(sweep)
  table = provenance.run_provenance(data)
  assert list(table["recorded"]) == [True, True, False, True, False, False]
  assert table.loc[1, "commits"] == ("a" * 40, "b" * 40)
  flags = provenance.cell_flags(table)
  assert len(flags) == 1 and flags.loc[0, "not_recorded"] == 3
  text = flags.loc[0, "flags"]
  assert "runs mix 2 data sources" in text and "runs mix 2 split digests" in text
  assert "runs span 2 commits (1 run(s) resumed at another commit)" in text
  md = open(plots.make_report(sweep, draw_figures=False)).read()
  section = md[md.index("## Provenance") :].split("\n## ")[0]
  assert "| 3 | not recorded |" in section
  assert "a" * 12 + ", " + "b" * 12 in section and "d" * 12 in section and "d" * 13 not in section
  assert f"Resumed at another commit: `{ids['disarm'][1]}`" in section
  assert "**Provenance:** 1 cell(s) whose runs mix" in md[: md.index("\n## ")]


def test_runs_without_provenance_say_not_recorded(disarm_sweep):
  md = open(plots.make_report(disarm_sweep, draw_figures=False)).read()
  section = md[md.index("## Provenance") :].split("\n## ")[0]
  assert "Not recorded: no run's config.json has `provenance` (older runs)." in section


def test_declared_gradient_and_network_evaluations_in_the_estimator_table(tmp_path):
  sweep = write_sweep(tmp_path, "declared", {}, estimators=("disarm", "rodeo_2"), seeds=(0,))
  path = os.path.join(sweep, results.RUNS_DIR, results.run_id("mnist", "nonlinear", "rodeo_2", 0), results.CONFIG_JSON)
  config = json.load(open(path))
  config[results.ESTIMATOR_INFO_KEY].update(num_grad_evals=1, num_network_evals=4)
  json.dump(config, open(path, "w"))
  md = open(plots.make_report(sweep, draw_figures=False)).read()
  assert "| estimator | label | family | f evaluations | gradient evaluations | network evaluations |" in md
  assert "| rodeo_2 | RODEO | rodeo | 2 | 1 | 4 |" in md
  assert "| disarm | DisARM | disarm | 2 | unknown | unknown |" in md
