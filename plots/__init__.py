"""Figures, tables, claim checks and the report of a disarm-bench sweep.

Modules:
  style     estimator colours/labels, dataset titles, Omniglot-28* footnote, fonts
  loading   reading summary.csv, runs/<id>/metrics.csv + config.json, toy CSVs
  stats     mean / s.e. (ddof=1), aggregation over seeds on step, paired differences
  figures   training-curve and toy figures (PNG + PDF into <sweep>/figures/)
  tables    tables.md / tables.tex with the bolding rule
  compare   PROTOCOL section 7 claim verdicts, comparison with published numbers
  report    report.md assembly; make_report()
  make_report  CLI: python -m plots.make_report --results_dir=results/<sweep>

See plots/README.md for the file formats and the rules.
"""

__all__ = ["make_report"]


def make_report(results_dir, published_csv=None):
    """Regenerate figures, tables and <results_dir>/report.md; returns its path.

    See plots.report.make_report. (Imported lazily so that `python -m plots.compare`
    and `python -m plots.make_report` do not load their own module twice.)
    """
    from plots.report import make_report as _make_report

    return _make_report(results_dir, published_csv)
