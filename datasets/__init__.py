"""Datasets of the suite: MNIST, Fashion-MNIST, Omniglot-28 (PROTOCOL.md section 4).

from datasets import DATASETS, load_dataset, resolve_data_dir, DataError, binarize
splits = load_dataset("mnist")          # splits.train/.valid/.test: float32 [N, 784]
x = binarize(batch_of_intensities, seed)  # fresh Bernoulli draw, float32 0./1.
"""

from datasets.binarize import binarize
from datasets.loaders import (
  DATASETS,
  SPLIT_SIZES,
  DataError,
  Splits,
  clear_cache,
  load_dataset,
  resolve_data_dir,
  source_record,
)

__all__ = [
  "DATASETS",
  "SPLIT_SIZES",
  "DataError",
  "Splits",
  "binarize",
  "clear_cache",
  "load_dataset",
  "resolve_data_dir",
  "source_record",
]
