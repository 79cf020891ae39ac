"""Synthetic sweep directories in the driver's layout, for tests and demos.

    python -m plots.testing /tmp/demo_sweep && python -m plots.make_report --results_dir=/tmp/demo_sweep

Numbers are made up (smooth curves plus noise); they only exercise the code paths.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd

from plots import style
from plots.loading import BASKET_PREFIX, SUMMARY_COLUMNS

# Offsets of the synthetic final train ELBO and gradient-variance factors.
_ELBO_OFFSET = {"reinforce_loo": -1.0, "arm": -2.0, "disarm": 0.0, "relax": -0.5}
_VAR_FACTOR = {"reinforce_loo": 1.5, "arm": 1.0, "disarm": 0.3, "relax": 0.5}
_SPEED = {"relax": 40.0}
# Variance factors of the multi-sample families (times 1/sqrt(cost) in the curves).
_FAMILY_VAR_FACTOR = {"vimco": 2.0, "local_disarm": 0.8, "local_disarm_sym": 0.6}

MULTISAMPLE_ESTIMATORS = ("vimco_2", "local_disarm_1", "vimco_10", "local_disarm_5",
                          "local_disarm_sym_5", "vimco_20", "local_disarm_10")
BASKET_ESTIMATORS = ("reinforce_loo", "arm", "disarm", "relax")


def _var_factor(est: str) -> float:
    fam = style.estimator_family(est)
    if est not in _VAR_FACTOR and fam is not None and fam[0] in _FAMILY_VAR_FACTOR:
        return _FAMILY_VAR_FACTOR[fam[0]] / np.sqrt(fam[1])
    return _VAR_FACTOR.get(est, 2.0)


def write_run(root: str, run: dict, metrics: pd.DataFrame, config: dict | None = None) -> None:
    d = os.path.join(root, "runs", run["run_id"])
    os.makedirs(d, exist_ok=True)
    metrics.to_csv(os.path.join(d, "metrics.csv"), index=False)
    cfg = {k: run[k] for k in ("run_id", "dataset", "model", "estimator", "seed", "num_steps")}
    cfg.update(config or {})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, default=int)


def write_summary(root: str, rows) -> str:
    os.makedirs(root, exist_ok=True)
    df = pd.DataFrame(rows)
    for c in SUMMARY_COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    path = os.path.join(root, "summary.csv")
    df[list(SUMMARY_COLUMNS)].to_csv(path, index=False)
    return path


def write_synthetic_sweep(
    root: str,
    datasets=("mnist", "omniglot"),
    models=("linear", "nonlinear"),
    estimators=("reinforce_loo", "arm", "disarm", "relax", "new_estimator"),
    seeds=(0, 1, 2),
    num_steps=20000,
    eval_every=1000,
    bound_every=5000,
    with_toy=True,
    seed=0,
    basket=(),
    basket_trainers=None,
) -> str:
    """Write summary.csv, runs/*/metrics.csv + config.json and toy CSVs; returns root.

    Multi-sample estimators (vimco_K, local_disarm_m, local_disarm_sym_m) also get
    valid_bound_k / test_bound_k (on the bound_every steps); the others get NaN there.
    Given `basket` (estimator names), every run gets basket_var_<name> columns: made-up
    variances of those estimators "measured" at the run's parameters (only the runs
    trained by an estimator in `basket_trainers`, if given).
    """
    rng = np.random.default_rng(seed)
    rows = []
    steps = np.arange(0, num_steps + 1, eval_every)
    for ds in datasets:
        for mdl in models:
            base = -160.0 if ds == "omniglot" else -130.0
            base += 10.0 if mdl == "nonlinear" else 0.0
            for est in estimators:
                for s in seeds:
                    run_id = f"{ds}-{mdl}-{est}-s{s}"
                    prog = 1 - np.exp(-steps / (num_steps / 4))
                    off = _ELBO_OFFSET.get(est, -1.5)
                    elbo = base - 80 + (80 + off) * prog + rng.normal(0, 0.3, len(steps))
                    bound = elbo + 5 + rng.normal(0, 0.3, len(steps))
                    bound[steps % bound_every != 0] = np.nan
                    decay = 10 * np.exp(-steps / num_steps)
                    var = (_var_factor(est) * decay
                           * np.exp(rng.normal(0, 0.1, len(steps))))
                    is_relax = est == "relax"
                    m = pd.DataFrame({
                        "step": steps,
                        "wall_time_s": steps / _SPEED.get(est, 100.0),
                        "steps_per_sec": _SPEED.get(est, 100.0),
                        "train_elbo": elbo,
                        "valid_bound_100": bound,
                        "test_bound_100": bound - 0.2,
                        "grad_variance": var,
                        "relax_temperature": 0.1 if is_relax else np.nan,
                        "relax_scale": 1.0 if is_relax else np.nan,
                    })
                    k = style.multisample_evaluations(est)
                    bound_k = bound - 3.0 / np.log(1 + k) if k else np.full(len(steps), np.nan)
                    m["valid_bound_k"] = bound_k
                    m["test_bound_k"] = bound_k - 0.2
                    for b in (basket if basket_trainers is None or est in basket_trainers
                              else ()):
                        m[BASKET_PREFIX + b] = (_var_factor(b) * decay
                                                * np.exp(rng.normal(0, 0.1, len(steps))))
                    run = {
                        "run_id": run_id, "dataset": ds, "model": mdl, "estimator": est,
                        "seed": s, "num_steps": num_steps, "status": "done",
                        "final_step": num_steps, "final_train_elbo": elbo[-1],
                        "best_train_elbo": elbo.max(),
                        "final_valid_bound_100": bound[-1], "best_valid_bound_100": np.nanmax(bound),
                        "final_test_bound_100": bound[-1] - 0.2,
                        "test_bound_100_at_best_valid": bound[-1] - 0.2,
                        "final_grad_variance": var[-1], "mean_grad_variance": var.mean(),
                        "wall_time_s": num_steps / _SPEED.get(est, 100.0),
                        "steps_per_sec": _SPEED.get(est, 100.0),
                    }
                    write_run(root, run, m, {"batch_size": 50, "eval_every": eval_every,
                                             "bound_every": bound_every})
                    rows.append(run)
    write_summary(root, rows)
    if with_toy:
        write_synthetic_toy(root, seeds=seeds, rng=rng)
    return root


def write_synthetic_toy(root: str, p0s=(0.49, 0.499, 0.4999), seeds=(0, 1, 2), rng=None):
    rng = rng or np.random.default_rng(0)
    d = os.path.join(root, "toy")
    os.makedirs(d, exist_ok=True)
    sig = np.linspace(0.05, 0.95, 19)
    var_rows, tr_rows = [], []
    for p0 in p0s:
        delta2 = (1 - 2 * p0) ** 2
        exact = {
            "arm": delta2 * sig * (1 - sig) / 4,
            "disarm": delta2 * (sig * (1 - sig)) ** 2,
            "reinforce_loo": delta2 * sig * (1 - sig) / 2,
        }
        for est, ex in exact.items():
            for s_, e_ in zip(sig, ex):
                var_rows.append({"p0": p0, "estimator": est, "sigma_phi": s_,
                                 "variance": e_ * np.exp(rng.normal(0, 0.05)),
                                 "variance_exact": e_ if est != "reinforce_loo" else np.nan})
        for est, speed in (("arm", 1.0), ("disarm", 3.0), ("reinforce_loo", 1.5)):
            for seed in seeds:
                for step in range(0, 2001, 100):
                    s = 0.5 + 0.45 * (1 - np.exp(-speed * step / 2000 * (0.5 - p0) * 100))
                    tr_rows.append({"p0": p0, "estimator": est, "seed": seed, "step": step,
                                    "sigma_phi": min(0.999, s + rng.normal(0, 0.01))})
    pd.DataFrame(var_rows).to_csv(os.path.join(d, "toy_variance.csv"), index=False)
    pd.DataFrame(tr_rows).to_csv(os.path.join(d, "toy_training.csv"), index=False)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m plots.testing OUT_DIR")
    print(write_synthetic_sweep(sys.argv[1]))
