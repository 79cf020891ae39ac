"""Figures, tables, claim checks and the report of a disarm-bench sweep.

Modules:
  style       estimator order/labels/colours from estimator_info (Catalogue), dataset titles, Omniglot-28*, fonts
  loading     reading a sweep folder robustly (load_sweep): summary, config.json, metrics.csv, sweep.json, toy CSVs
  stats       mean / s.e. (ddof=1), aggregation over seeds on step; paired and Welch t tests, TOST,
              smallest detectable difference, Holm
  verdicts    the decision rules: beats, matches or beats, consistent (margin, minimum n), claim-level
  markdown    the one home of Markdown text helpers (escaping, ranges, cell lists)
  protocol    which paper's protocol a sweep follows and its distance from it
  provenance  per-run provenance (commit, packages, hardware, data) and the cells it flags
  figures     figure plan and drawing (PNG + PDF into <sweep>/figures/)
  tables      tables.md / tables.tex with the bolding rule; the variance-basket ratio table
  compare     PROTOCOL section 7 claims (one data table, CLAIMS) and their verdicts
  published   the published numbers (default results/published/rodeo_2022.csv), their protocols, the comparison
  report      report.md assembly; make_report()
  make_report CLI: python -m plots.make_report --results_dir=results/<sweep>

See plots/README.md for the file formats and the rules.
"""

__all__ = ["make_report"]


def make_report(results_dir, published_csv=None, draw_figures=True):
  """Regenerate figures, tables and <results_dir>/report.md; returns its path.

  See plots.report.make_report. (Imported lazily so that `python -m plots.compare`
  and `python -m plots.make_report` do not load their own module twice.)
  """
  from plots.report import make_report as _make_report

  return _make_report(results_dir, published_csv, draw_figures)
