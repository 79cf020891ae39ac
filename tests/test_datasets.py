"""Tests of the datasets package: real splits, binarisation, failures, data-dir resolution.

The real data are expected in ../shared/data seen from the repository root (as on the
project's machines and in CI); these tests fail, rather than skip, if they are absent.
"""

import gzip
import math
import os
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from datasets import DATASETS, DataError, binarize, load_dataset, loaders, resolve_data_dir

REAL_DIR = str(loaders.DEFAULT_DATA_DIR)
FIX_HINTS = ("--data_dir", "DISARM_DATA_DIR")


def _parse_idx_directly(path):
  """Independent minimal IDX reader, for cross-checking the loader."""
  with gzip.open(path, "rb") as f:
    raw = f.read()
  magic, count, rows, cols = struct.unpack(">4i", raw[:16])
  assert (magic, rows, cols) == (2051, 28, 28)
  return np.frombuffer(raw[16:], np.uint8).reshape(count, 784)


def _assert_fix_hint(message, filename):
  assert filename in message, message
  assert any(h in message for h in FIX_HINTS), message


# --------------------------------------------------------------------------------------
# Real data.


@pytest.mark.parametrize("name,full_mean", [("mnist", 0.1307), ("fashion_mnist", 0.2860)])
def test_idx_dataset_shapes_range_and_mean(name, full_mean):
  s = load_dataset(name, data_dir=REAL_DIR)
  assert s.name == name and s.comparable_to_paper
  for split, n in ((s.train, 50_000), (s.valid, 10_000), (s.test, 10_000)):
    assert split.shape == (n, 784) and split.dtype == np.float32
    assert split.min() == 0.0 and split.max() == 1.0
  # The data README's check: mean pixel of the full 60,000-image training file.
  full = np.concatenate([s.train, s.valid]).mean(dtype=np.float64)
  assert round(full, 4) == full_mean
  assert s.mean_train.shape == (784,) and s.mean_train.dtype == np.float32
  np.testing.assert_allclose(s.mean_train, s.train.mean(axis=0, dtype=np.float64), atol=1e-6)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_splits_match_direct_parse(name):
  s = load_dataset(name, data_dir=REAL_DIR)
  train_file = _parse_idx_directly(os.path.join(REAL_DIR, name, "train-images-idx3-ubyte.gz"))
  test_file = _parse_idx_directly(os.path.join(REAL_DIR, name, "t10k-images-idx3-ubyte.gz"))
  # Exact: byte / 255 in float32 is the same computation either way.
  np.testing.assert_array_equal(s.valid, train_file[-10_000:].astype(np.float32) / 255)
  np.testing.assert_array_equal(s.train, train_file[:50_000].astype(np.float32) / 255)
  np.testing.assert_array_equal(s.test, test_file.astype(np.float32) / 255)


def test_source_record_names_the_raw_files_by_their_published_checksums():
  """A run's data provenance: the files' SHA-256 as the data folder's SHA256SUMS lists them."""
  splits = load_dataset("mnist", REAL_DIR)
  record = loaders.source_record(splits)
  assert record["data_kind"] == "raw_files" and record["data_source"] == os.path.join(REAL_DIR, "mnist")
  sums = {}
  with open(os.path.join(REAL_DIR, "SHA256SUMS")) as f:
    for line in f:
      digest, name = line.split()
      sums[name] = digest
  assert record["data_files_sha256"]
  for name, digest in record["data_files_sha256"].items():
    assert sums[f"mnist/{name}"] == digest
  # The split digest is a function of the split membership: another dataset, another digest.
  assert record["split_digest"] != loaders.source_record(load_dataset("fashion_mnist", REAL_DIR))["split_digest"]
  assert loaders.source_record(splits) == record


def test_in_process_cache_returns_read_only_arrays():
  first = load_dataset("mnist", data_dir=REAL_DIR)
  start = time.perf_counter()
  second = load_dataset("MNIST", data_dir=REAL_DIR)  # name is normalised
  assert time.perf_counter() - start < 0.05
  assert second is first
  for array in (first.train, first.valid, first.test, first.mean_train):
    with pytest.raises(ValueError):
      array[0] = 0.5


def test_omniglot_shapes_range():
  s = load_dataset("omniglot", data_dir=REAL_DIR)
  assert s.name == "omniglot" and not s.comparable_to_paper
  for split, n in ((s.train, 23_000), (s.valid, 1_345), (s.test, 8_115)):
    assert split.shape == (n, 784) and split.dtype == np.float32
    assert split.min() >= 0.0 and split.max() <= 1.0
  # Ink is sparse: about 8% of the 105x105 pixels, and area averaging keeps the mean.
  assert 0.06 < s.train.mean() < 0.10
  np.testing.assert_allclose(s.mean_train, s.train.mean(axis=0, dtype=np.float64), atol=1e-6)


def test_omniglot_order_and_permutation_against_direct_computation():
  """Recomputes a few images independently: pooled file order, seeded permutation,
  then the split boundaries of PROTOCOL section 4."""
  s = load_dataset("omniglot", data_dir=REAL_DIR)
  with np.load(os.path.join(REAL_DIR, "omniglot", "images_background.npz")) as f:
    background = f["images"]
  with np.load(os.path.join(REAL_DIR, "omniglot", "images_evaluation.npz")) as f:
    evaluation = f["images"]
  n_background = background.shape[0] * 20
  order = np.random.default_rng(0).permutation(32_460)
  splits = np.concatenate([s.train, s.valid, s.test])  # = pool[order]
  for position in (0, 22_999, 23_000, 24_344, 24_345, 32_459):
    index = order[position]
    if index < n_background:
      paper = background.reshape(-1, 105, 105)[index]
    else:
      paper = evaluation.reshape(-1, 105, 105)[index - n_background]
    ink = 1.0 - paper.astype(np.float32)
    expected = tf.clip_by_value(tf.image.resize(ink[None, :, :, None], [28, 28], method="area"), 0.0, 1.0)
    np.testing.assert_allclose(splits[position], expected.numpy().reshape(784), atol=1e-6)


# --------------------------------------------------------------------------------------
# Omniglot disk cache (with the slow downsampling replaced by a fast fake).


def _fake_downsample(paper):
  return np.full((paper.reshape(-1, 105, 105).shape[0], 784), 0.25, np.float32)


def test_omniglot_disk_cache(tmp_path, monkeypatch):
  folder = os.path.join(REAL_DIR, "omniglot")
  monkeypatch.setenv("DISARM_CACHE_DIR", str(tmp_path / "cache"))
  monkeypatch.setattr(loaders, "_paper_to_ink_28", _fake_downsample)
  pool = loaders.omniglot_pool_from_dir(folder)
  assert pool.shape == (32_460, 784) and np.all(pool == 0.25)
  files = os.listdir(tmp_path / "cache")
  assert len(files) == 1 and files[0].endswith(".npz")  # no temp file left behind

  def fail(paper):
    raise AssertionError("recomputed although cached")

  monkeypatch.setattr(loaders, "_paper_to_ink_28", fail)
  np.testing.assert_array_equal(loaders.omniglot_pool_from_dir(folder), pool)

  # A corrupt cache file is ignored, recomputed and overwritten.
  (tmp_path / "cache" / files[0]).write_bytes(b"garbage")
  monkeypatch.setattr(loaders, "_paper_to_ink_28", _fake_downsample)
  np.testing.assert_array_equal(loaders.omniglot_pool_from_dir(folder), pool)
  monkeypatch.setattr(loaders, "_paper_to_ink_28", fail)
  np.testing.assert_array_equal(loaders.omniglot_pool_from_dir(folder), pool)


def test_omniglot_unwritable_cache_is_skipped(tmp_path, monkeypatch):
  not_a_dir = tmp_path / "file"
  not_a_dir.write_text("x")
  monkeypatch.setenv("DISARM_CACHE_DIR", str(not_a_dir / "cache"))
  monkeypatch.setattr(loaders, "_paper_to_ink_28", _fake_downsample)
  pool = loaders.omniglot_pool_from_dir(os.path.join(REAL_DIR, "omniglot"))
  assert pool.shape == (32_460, 784)


def test_cache_key_changes_with_source_bytes(tmp_path):
  a, b = tmp_path / "images_background.npz", tmp_path / "images_evaluation.npz"
  a.write_bytes(b"one")
  b.write_bytes(b"two")
  key = loaders._source_key([a, b])
  assert key == loaders._source_key([a, b])
  b.write_bytes(b"twO")
  assert loaders._source_key([a, b]) != key


# --------------------------------------------------------------------------------------
# Binarisation.


def _intensity_grid(n):
  levels = np.array([0.0, 0.1, 0.5, 0.9, 1.0], np.float32)
  return levels, np.repeat(levels[:, None], n, axis=1)  # [5, n]


def _check_bernoulli(sample, levels, n):
  sample = np.asarray(sample)
  assert sample.dtype == np.float32
  assert set(np.unique(sample)) <= {0.0, 1.0}
  means = sample.mean(axis=1)
  for p, m in zip(levels, means):
    # The mean of n Bernoulli(p) draws has standard error sqrt(p(1-p)/n); allow 5 of
    # them (two-sided chance of a false failure ~6e-7; with a fixed seed the outcome
    # is deterministic anyway). p = 0 and p = 1 must be exact.
    tolerance = 5 * math.sqrt(p * (1 - p) / n)
    assert abs(m - p) <= tolerance, (p, m, tolerance)


def test_binarize_is_bernoulli_of_intensity():
  n = 20_000
  levels, grid = _intensity_grid(n)
  _check_bernoulli(binarize(tf.constant(grid), tf.constant([3, 4])), levels, n)


def test_binarize_deterministic_per_seed_and_shape_preserving():
  x = tf.fill([64, 28, 28], 0.5)
  a = binarize(x, tf.constant([1, 2]))
  assert a.shape == x.shape and a.dtype == tf.float32
  np.testing.assert_array_equal(a, binarize(x, tf.constant([1, 2])))
  np.testing.assert_array_equal(a, binarize(x, tf.constant([1, 2], tf.int64)))
  assert not np.array_equal(a, binarize(x, tf.constant([1, 3])))
  assert not np.array_equal(a, binarize(x, tf.constant([2, 2])))
  # Plain tf.function gives the same draw as eager.
  np.testing.assert_array_equal(a, tf.function(binarize)(x, tf.constant([1, 2])))


def test_binarize_under_xla():
  n = 20_000
  levels, grid = _intensity_grid(n)
  jitted = tf.function(binarize, jit_compile=True)
  x, seed = tf.constant(grid), tf.constant([5, 6])
  a = jitted(x, seed)
  _check_bernoulli(a, levels, n)
  np.testing.assert_array_equal(a, jitted(x, seed))
  assert not np.array_equal(a, jitted(x, tf.constant([5, 7])))


def test_binarize_real_batch():
  s = load_dataset("mnist", data_dir=REAL_DIR)
  x = binarize(s.test[:1000], tf.constant([0, 0]))
  assert x.shape == (1000, 784)
  # Pixels of intensity 0 stay 0 and of intensity 1 stay 1.
  assert np.all(np.asarray(x)[s.test[:1000] == 0.0] == 0.0)
  assert np.all(np.asarray(x)[s.test[:1000] == 1.0] == 1.0)


# --------------------------------------------------------------------------------------
# Failures, with fake data directories.


def _idx_bytes(magic=2051, count=2, rows=28, cols=28, n_pixels=None):
  if n_pixels is None:
    n_pixels = count * rows * cols
  return struct.pack(">4i", magic, count, rows, cols) + bytes(n_pixels)


def _write_gz(path, payload):
  path.parent.mkdir(parents=True, exist_ok=True)
  with gzip.open(path, "wb") as f:
    f.write(payload)


def _fake_mnist(tmp_path, train_payload, raw_train=None):
  folder = tmp_path / "mnist"
  if raw_train is None:
    _write_gz(folder / "train-images-idx3-ubyte.gz", train_payload)
  else:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(raw_train)
  _write_gz(folder / "t10k-images-idx3-ubyte.gz", _idx_bytes(count=10_000))
  return str(tmp_path)


def _expect_error(data_dir, filename, name="mnist", contains=()):
  with pytest.raises(DataError) as info:
    load_dataset(name, data_dir=data_dir)
  message = str(info.value)
  _assert_fix_hint(message, filename)
  for text in contains:
    assert text in message, message
  return message


def test_missing_file(tmp_path):
  _write_gz(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", _idx_bytes())
  _expect_error(str(tmp_path), "t10k-images-idx3-ubyte.gz", contains=("missing",))


def test_truncated_gzip(tmp_path):
  whole = gzip.compress(_idx_bytes(count=60_000))
  data_dir = _fake_mnist(tmp_path, None, raw_train=whole[: len(whole) // 2])
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("truncated",))


def test_not_gzip(tmp_path):
  data_dir = _fake_mnist(tmp_path, None, raw_train=b"this is not gzip data at all")
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("corrupt",))


def test_wrong_magic(tmp_path):
  data_dir = _fake_mnist(tmp_path, _idx_bytes(magic=1234))
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("1234", "2051"))


def test_label_file_in_place_of_images(tmp_path):
  data_dir = _fake_mnist(tmp_path, struct.pack(">2i", 2049, 60_000) + bytes(60_000))
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("label file",))


def test_wrong_count(tmp_path):
  data_dir = _fake_mnist(tmp_path, _idx_bytes(count=100))
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("100", "60000"))


def test_wrong_image_shape(tmp_path):
  data_dir = _fake_mnist(tmp_path, _idx_bytes(count=60_000, rows=32, cols=32))
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("32x32",))


def test_short_pixel_data(tmp_path):
  data_dir = _fake_mnist(tmp_path, _idx_bytes(count=60_000, n_pixels=1000))
  _expect_error(data_dir, "train-images-idx3-ubyte.gz", contains=("bytes",))


def _fake_omniglot(tmp_path, background=None, evaluation=True, **arrays):
  folder = tmp_path / "omniglot"
  folder.mkdir(parents=True, exist_ok=True)
  if background is not None:
    (folder / "images_background.npz").write_bytes(background)
  else:
    np.savez(folder / "images_background.npz", **arrays)
  if evaluation:
    np.savez(folder / "images_evaluation.npz", images=np.ones((1, 20, 105, 105), bool))
  return str(tmp_path)


def test_omniglot_wrong_shape(tmp_path):
  data_dir = _fake_omniglot(tmp_path, images=np.ones((2, 20, 28, 28), bool))
  _expect_error(data_dir, "images_background.npz", "omniglot", contains=("shape",))


def test_omniglot_wrong_character_count(tmp_path):
  data_dir = _fake_omniglot(tmp_path, images=np.ones((2, 20, 105, 105), bool))
  _expect_error(data_dir, "images_background.npz", "omniglot", contains=("964",))


def test_omniglot_missing_key(tmp_path):
  data_dir = _fake_omniglot(tmp_path, labels=np.zeros((2, 20)))
  _expect_error(data_dir, "images_background.npz", "omniglot", contains=("'images'",))


def test_omniglot_wrong_dtype(tmp_path):
  data_dir = _fake_omniglot(tmp_path, images=np.ones((2, 20, 105, 105), np.uint8))
  _expect_error(data_dir, "images_background.npz", "omniglot", contains=("bool",))


def test_omniglot_not_an_archive(tmp_path):
  data_dir = _fake_omniglot(tmp_path, background=b"not a zip archive")
  _expect_error(data_dir, "images_background.npz", "omniglot")


def test_omniglot_missing_file(tmp_path):
  data_dir = _fake_omniglot(tmp_path, images=np.ones((2, 20, 105, 105), bool), evaluation=False)
  _expect_error(data_dir, "images_evaluation.npz", "omniglot", contains=("missing",))


def test_unknown_name():
  with pytest.raises(DataError) as info:
    load_dataset("cifar10", data_dir=REAL_DIR)
  assert isinstance(info.value, ValueError)
  for name in DATASETS:
    assert name in str(info.value)


def test_nonexistent_explicit_data_dir(tmp_path):
  missing = tmp_path / "nowhere"
  _expect_error(str(missing), "train-images-idx3-ubyte.gz", contains=(str(missing),))


def test_fallback_failure_names_files_dir_and_fix(tmp_path, monkeypatch):
  calls = []

  def no_tfds(name):
    calls.append(name)
    raise RuntimeError("no internet")

  monkeypatch.setattr(loaders, "_load_from_tfds", no_tfds)
  # A data directory without the dataset's files: an immediate error naming the files,
  # the folder and the fixes (download included); no tensorflow_datasets attempt.
  message = _expect_error(
    str(tmp_path),
    "train-images-idx3-ubyte.gz",
    contains=("t10k-images-idx3-ubyte.gz", str(tmp_path), "--data_dir", "DISARM_DATA_DIR", "--allow_download"),
  )
  assert "tensorflow_datasets" in message and calls == []
  # Asked to download: the fallback's own failure is named, with the same fixes.
  with pytest.raises(DataError) as info:
    load_dataset("mnist", data_dir=str(tmp_path), allow_download=True)
  message = str(info.value)
  _assert_fix_hint(message, "train-images-idx3-ubyte.gz")
  for text in (
    "t10k-images-idx3-ubyte.gz",
    str(tmp_path),
    "--data_dir",
    "DISARM_DATA_DIR",
    "no internet",
    "tensorflow_datasets",
  ):
    assert text in message, message
  assert calls == ["mnist"]


def test_fallback_used_when_files_entirely_absent(tmp_path, monkeypatch):
  calls = []

  def fake_tfds(name):
    calls.append(name)
    return loaders._idx_splits(
      name, np.zeros((60_000, 28, 28), np.uint8), np.zeros((10_000, 28, 28), np.uint8), "fake tfds"
    )

  monkeypatch.setattr(loaders, "_load_from_tfds", fake_tfds)
  # A data directory without the files falls back only when a download is allowed.
  with pytest.raises(DataError, match="--allow_download"):
    load_dataset("fashion_mnist", data_dir=tmp_path)
  assert calls == []
  assert load_dataset("fashion_mnist", data_dir=tmp_path, allow_download=True).source == "fake tfds"
  # No data dir at all (nothing passed, env unset, no sibling) also falls back.
  monkeypatch.delenv("DISARM_DATA_DIR", raising=False)
  monkeypatch.setattr(loaders, "DEFAULT_DATA_DIR", tmp_path / "absent")
  assert load_dataset("mnist").source == "fake tfds"
  assert calls == ["fashion_mnist", "mnist"]
  loaders.clear_cache()  # do not leave the fake splits in the in-process cache


# --------------------------------------------------------------------------------------
# Data directory resolution.


def test_resolve_data_dir_precedence(tmp_path, monkeypatch):
  arg, env, default = tmp_path / "arg", tmp_path / "env", tmp_path / "default"
  default.mkdir()
  monkeypatch.setattr(loaders, "DEFAULT_DATA_DIR", default)
  monkeypatch.setenv("DISARM_DATA_DIR", str(env))
  assert resolve_data_dir(str(arg)) == str(arg)
  assert resolve_data_dir(arg) == str(arg)  # path-like accepted
  assert resolve_data_dir() == str(env)
  monkeypatch.setenv("DISARM_DATA_DIR", "")  # empty counts as unset
  assert resolve_data_dir() == str(default)
  monkeypatch.delenv("DISARM_DATA_DIR")
  assert resolve_data_dir() == str(default)
  default.rmdir()
  assert resolve_data_dir() is None


def test_default_data_dir_is_repo_sibling_independent_of_cwd(tmp_path, monkeypatch):
  monkeypatch.delenv("DISARM_DATA_DIR", raising=False)
  monkeypatch.chdir(tmp_path)
  repo_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  expected = os.path.join(os.path.dirname(repo_root), "shared", "data")
  assert os.path.samefile(resolve_data_dir(), expected)
  assert load_dataset("mnist").train.shape == (50_000, 784)
