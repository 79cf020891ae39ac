"""Regenerate every figure, table and report.md of a sweep from its CSV files.

Usage:
  python -m plots.make_report --results_dir=results/<sweep> [--published=path.csv | --published=none]

Reads results/<sweep>/summary.csv, sweep.json, runs/<run_id>/{metrics.csv,config.json}
and, if present, toy/toy_variance.csv and toy/toy_training.csv. Writes
  results/<sweep>/figures/*.png and *.pdf   training curves, gradient variance at equal cost,
                                            and where the metrics have the columns the
                                            K-sample bound and variance-basket figures; toy figures
  results/<sweep>/tables.md, tables.tex     final train ELBO / test bounds / speed, mean +- s.e.
  results/<sweep>/report.md                 protocol distance, grid and settings, throughput,
                                            tables, figures, claim verdicts, published comparison
  results/<sweep>/paper_comparison.csv      the published comparison (unless --published=none)
  results/<sweep>/paper_comparison_window.csv   the judged rows again with end-of-training means
and prints the path of report.md. The published numbers default to
results/published/rodeo_2022.csv (the RODEO paper's tables); --published replaces them,
--published=none leaves the comparison out. Exits with status 1 and a message if the
directory has no summary.csv or the published CSV cannot be read.

From Python (e.g. at the end of a sweep):
  from plots import make_report
  make_report("results/<sweep>")  # -> path of report.md; published_csv="none" for no comparison
"""

from __future__ import annotations

import sys
import types

from plots.loading import ResultsDirError
from plots.published import PublishedCSVError
from plots.report import make_report

__all__ = ["make_report", "main"]


def main(argv):
  from absl import flags

  if len(argv) > 1:
    print(f"error: unexpected arguments {argv[1:]}; see --help", file=sys.stderr)
    sys.exit(2)
  FLAGS = flags.FLAGS
  try:
    path = make_report(FLAGS.results_dir, FLAGS.published)
  except (ResultsDirError, PublishedCSVError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print(path)


class _CallableModule(types.ModuleType):
  """`import plots.make_report` rebinds the package attribute `plots.make_report`
  to this module; making the module callable keeps `plots.make_report(dir)` working
  either way."""

  def __call__(self, results_dir, published_csv=None, draw_figures=True):
    return make_report(results_dir, published_csv, draw_figures)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
  from absl import app, flags

  flags.DEFINE_string(
    "results_dir",
    None,
    "Sweep directory holding summary.csv (one row per run) and runs/<run_id>/, e.g. results/<sweep>. Figures, "
    "tables and report.md are written into it.",
    required=True,
  )
  flags.DEFINE_string(
    "published",
    None,
    "CSV of published numbers to set beside ours, columns dataset, model, estimator, metric, value, stderr, steps, "
    "source, quote. Default: results/published/rodeo_2022.csv (the RODEO paper's Tables 1, 2 and 5); 'none': no "
    "comparison.",
  )
  app.run(main)
