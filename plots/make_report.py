"""Regenerate every figure, table and report.md of a sweep from its CSV files.

Usage:
  python -m plots.make_report --results_dir=results/<sweep> [--published=path.csv]

Reads results/<sweep>/summary.csv, runs/<run_id>/{metrics.csv,config.json} and, if
present, toy/toy_variance.csv and toy/toy_training.csv. Writes
  results/<sweep>/figures/*.png and *.pdf   training curves per dataset x model, toy figures,
                                            and where the metrics have the columns the
                                            multi-sample (test_bound_k) and variance-basket
                                            (basket_var_*) figures
  results/<sweep>/tables.md, tables.tex     final train ELBO / test bound, mean +- s.e.
  results/<sweep>/report.md                 grid, tables, figure links, claim verdicts
  results/<sweep>/paper_comparison.csv      only with --published
and prints the path of report.md. Exits with status 1 and a message if the directory
has no summary.csv.

From Python (e.g. at the end of a sweep):
  from plots import make_report
  make_report("results/<sweep>", published_csv=None)  # -> path of report.md
"""

from __future__ import annotations

import sys
import types

from plots.compare import PublishedCSVError
from plots.loading import ResultsDirError
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

    def __call__(self, results_dir, published_csv=None):
        return make_report(results_dir, published_csv)


sys.modules[__name__].__class__ = _CallableModule


if __name__ == "__main__":
    from absl import app, flags

    flags.DEFINE_string(
        "results_dir", None,
        "Sweep directory holding summary.csv (one row per run) and runs/<run_id>/, "
        "e.g. results/<sweep>. Figures, tables and report.md are written into it.",
        required=True)
    flags.DEFINE_string(
        "published", None,
        "Optional CSV of published numbers to set beside ours, columns dataset, model, "
        "estimator, metric, value, stderr, source (format: results/published_example.csv).")
    app.run(main)
