"""Table arithmetic and the bolding rule (plots/tables.py), on hand-computed numbers."""

import math
import os
import sys

import pandas as pd
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# matplotlib 3.9's mathtext still calls pyparsing's camelCase API, which pyparsing 3.3
# deprecates; that noise is not ours.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*deprecated - use .*:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:'parseAll' argument is deprecated:DeprecationWarning"),
]

from plots import stats, tables  # noqa: E402
from plots.testing import write_summary  # noqa: E402


def _summary(rows):
    """rows: (dataset, model, estimator, seed, final_train_elbo[, status[, test]])."""
    out = []
    for i, r in enumerate(rows):
        ds, m, est, seed, elbo = r[:5]
        status = r[5] if len(r) > 5 else "done"
        test = r[6] if len(r) > 6 else elbo + 5.0
        out.append({"run_id": f"r{i}", "dataset": ds, "model": m, "estimator": est,
                    "seed": seed, "status": status, "final_train_elbo": elbo,
                    "final_test_bound_100": test, "steps_per_sec": 10.0})
    return pd.DataFrame(out)


def test_mean_se_uses_ddof_1():
    mean, se, n = stats.mean_se([1.0, 2.0, 3.0, 4.0])
    assert n == 4
    assert mean == pytest.approx(2.5)
    # sample variance = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3; se = sqrt(5/3) / 2
    assert se == pytest.approx(math.sqrt(5.0 / 3.0) / 2.0)
    assert se == pytest.approx(0.6454972243679028)


def test_mean_se_single_value_and_nan():
    mean, se, n = stats.mean_se([float("nan"), -7.0])
    assert (mean, n) == (-7.0, 1)
    assert math.isnan(se)
    assert stats.mean_se([])[2] == 0


def test_cell_stats_done_only_and_numbers():
    s = _summary([
        ("mnist", "linear", "arm", 0, -100.0),
        ("mnist", "linear", "arm", 1, -102.0),
        ("mnist", "linear", "arm", 2, -101.0),
        ("mnist", "linear", "arm", 3, -50.0, "failed"),   # ignored: failed
        ("mnist", "linear", "arm", 4, -40.0, "running"),  # ignored: running
        ("mnist", "linear", "disarm", 0, float("nan")),   # ignored: NaN value
        ("mnist", "linear", "disarm", 1, -95.0),
    ])
    cs = tables.cell_stats(s, "final_train_elbo").set_index("estimator")
    assert cs.loc["arm", "n"] == 3
    assert cs.loc["arm", "mean"] == pytest.approx(-101.0)
    assert cs.loc["arm", "se"] == pytest.approx(1.0 / math.sqrt(3.0))
    assert cs.loc["disarm", "n"] == 1
    assert math.isnan(cs.loc["disarm", "se"])


def test_rerun_seed_counts_once_last_row_wins():
    s = _summary([
        ("mnist", "linear", "arm", 0, -100.0),
        ("mnist", "linear", "arm", 0, -104.0),
        ("mnist", "linear", "arm", 1, -102.0),
    ])
    cs = tables.cell_stats(s, "final_train_elbo")
    assert int(cs["n"].iloc[0]) == 2
    assert cs["mean"].iloc[0] == pytest.approx(-103.0)


def test_bold_when_intervals_separate():
    s = _summary([
        ("mnist", "linear", "arm", 0, -100.0), ("mnist", "linear", "arm", 1, -102.0),
        ("mnist", "linear", "arm", 2, -101.0),
        ("mnist", "linear", "disarm", 0, -95.0), ("mnist", "linear", "disarm", 1, -96.0),
        ("mnist", "linear", "disarm", 2, -94.0),
    ])
    t = tables.build_table(s, "final_train_elbo")
    assert t.set_index("estimator")["bold"].to_dict() == {"arm": False, "disarm": True}
    md = tables.table_markdown(t, "final_train_elbo", "Final train ELBO")
    assert "**-95.00 ± 0.58**" in md
    assert "-101.00 ± 0.58" in md and "**-101.00" not in md
    tex = tables.table_latex(t, "final_train_elbo", "Final train ELBO")
    assert r"$\mathbf{-95.00 \pm 0.58}$" in tex
    assert r"$-101.00 \pm 0.58$" in tex


def test_no_bold_when_intervals_overlap():
    # arm: mean -101, se 1; disarm: mean -100.5, se 0.5; -101.0 > -100.0 is false.
    s = _summary([
        ("mnist", "linear", "arm", 0, -100.0), ("mnist", "linear", "arm", 1, -102.0),
        ("mnist", "linear", "disarm", 0, -100.0), ("mnist", "linear", "disarm", 1, -101.0),
    ])
    t = tables.build_table(s, "final_train_elbo")
    assert not t["bold"].any()


def test_bold_rule_is_strict_at_equality():
    row = pd.DataFrame({"estimator": ["a", "b"], "mean": [-10.0, -12.0],
                        "se": [1.0, 1.0], "n": [5, 5]})
    assert tables.best_entry(row) is None          # -11 > -11 is false
    row.loc[0, "mean"] = -9.999
    assert tables.best_entry(row) == "a"


def test_no_bold_with_single_seed_entry_or_single_entry():
    row = pd.DataFrame({"estimator": ["a", "b"], "mean": [-10.0, -50.0],
                        "se": [0.1, float("nan")], "n": [3, 1]})
    assert tables.best_entry(row) is None
    assert tables.best_entry(row.iloc[:1]) is None
    tie = pd.DataFrame({"estimator": ["a", "b", "c"], "mean": [-10.0, -10.0, -50.0],
                        "se": [0.1, 0.1, 0.1], "n": [3, 3, 3]})
    assert tables.best_entry(tie) is None


def test_single_seed_cell_shows_na_and_n():
    s = _summary([
        ("mnist", "linear", "arm", 0, -100.0), ("mnist", "linear", "arm", 1, -102.0),
        ("mnist", "linear", "disarm", 0, -90.0),
    ])
    md = tables.table_markdown(tables.build_table(s, "final_train_elbo"),
                               "final_train_elbo", "T")
    assert "-90.00 ± n/a (n=1)" in md
    assert "| -101.00 ± 1.00 |" in md


def test_write_tables_files_and_omniglot_marker(tmp_path):
    s = _summary([
        ("omniglot", "nonlinear", "arm", 0, -120.0), ("omniglot", "nonlinear", "arm", 1, -121.0),
        ("mnist", "linear", "disarm", 0, -99.0), ("mnist", "linear", "disarm", 1, -98.0),
        ("mnist", "linear", "my_estimator", 0, -99.0),
    ])
    write_summary(str(tmp_path), s.to_dict("records"))
    md_path, tex_path = tables.write_tables(str(tmp_path))
    md, tex = open(md_path).read(), open(tex_path).read()
    # Row order: MNIST before Omniglot; missing cells are marked.
    assert md.index("| MNIST |") < md.index("| Omniglot-28\\* |")
    assert tables.MISSING in md
    assert "not directly comparable" in md
    assert "Omniglot-28$^*$" in tex and "\\toprule" in tex and "my\\_estimator" in tex
    assert "Final test bound" in md and "final_test_bound_100" in md
