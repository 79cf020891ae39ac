"""Every committed report is what the code makes of its committed files.

For each folder results/<name>/ that holds a report.md, the sweep's inputs (summary.csv,
sweep.json, sweep_log.jsonl, notes.md, runs/*/config.json, metrics.csv, DONE.json, FAILED.json, toy/) are copied to a
temporary folder of the same name, the report is regenerated there (default published CSV,
figures not drawn: report.md and tables.md do not depend on drawing) and report.md and
tables.md must equal the committed text. A failure means the committed report is stale:
regenerate it with `python -m plots.make_report --results_dir=results/<name>`.
"""

import difflib
import os

import pytest

import plots
from tests import sweeps as testing

# Real driver processes or whole sweeps: minutes; the fast tier leaves them out.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "results")
COMPARED = ("report.md", "tables.md")


def committed_reports():
  if not os.path.isdir(RESULTS):
    return []
  # Sweeps only (a sweep.json beside the report): an estimator check's report is made by its own command.
  return sorted(
    name
    for name in os.listdir(RESULTS)
    if os.path.isfile(os.path.join(RESULTS, name, "report.md"))
    and os.path.isfile(os.path.join(RESULTS, name, "sweep.json"))
  )


def regenerated_differences(folder, scratch):
  """[(file, unified diff)] between the folder's report files and those regenerated from its inputs."""
  copy = testing.copy_sweep(folder, os.path.join(scratch, os.path.basename(os.path.normpath(folder))))
  plots.make_report(copy, draw_figures=False)
  out = []
  for name in COMPARED:
    committed_path = os.path.join(folder, name)
    committed = open(committed_path).read() if os.path.exists(committed_path) else ""
    fresh = open(os.path.join(copy, name)).read()
    if committed != fresh:
      diff = difflib.unified_diff(
        committed.splitlines(), fresh.splitlines(), f"committed/{name}", f"regenerated/{name}", lineterm="", n=1
      )
      out.append((name, "\n".join(list(diff)[:60])))
  return out


@pytest.mark.parametrize("name", committed_reports())
def test_committed_report_is_regenerated_exactly(name, tmp_path):
  differences = regenerated_differences(os.path.join(RESULTS, name), str(tmp_path))
  assert not differences, (
    f"results/{name}: the committed {', '.join(f for f, _ in differences)} differ from what the code makes of the "
    f"committed CSVs; regenerate with `python -m plots.make_report --results_dir=results/{name}`.\n\n"
    + "\n\n".join(d for _, d in differences)
  )


def test_the_check_passes_on_a_fresh_report_and_catches_a_stale_one(tmp_path, tmp_path_factory):
  sweep = testing.copy_sweep(
    testing.build_sweep("main", testing.sweeps_root(tmp_path_factory.getbasetemp())),
    str(tmp_path / "committed" / "main"),
  )
  plots.make_report(sweep, draw_figures=False)
  assert regenerated_differences(sweep, str(tmp_path / "scratch1")) == []
  with open(os.path.join(sweep, "report.md"), "a") as f:
    f.write("edited by hand\n")
  differences = regenerated_differences(sweep, str(tmp_path / "scratch2"))
  assert [name for name, _ in differences] == ["report.md"] and "-edited by hand" in differences[0][1]
