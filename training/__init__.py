"""The training loop, run bookkeeping and sweeps (datasets -> models -> estimators -> here -> CSV)."""
