"""Loading MNIST, Fashion-MNIST and Omniglot-28 as pixel intensities (PROTOCOL.md section 4).

Data come from a data directory of raw files (see ../shared/data/README.md), found by
`resolve_data_dir`; if no data directory resolves, or the dataset's files are entirely
absent from it, `tensorflow_datasets` is tried as a fallback. Every failure is raised as
`DataError` with a message that names the file concerned and how to fix the problem.

Differences of the tensorflow_datasets fallback (it is only a fallback; the raw files are
the reference):
- MNIST / Fashion-MNIST: tfds stores its examples in a shuffled order, not in the order of
  the official IDX files, so "first 50,000 / last 10,000 of the training file" selects a
  different train/valid partition (the test set holds the same 10,000 images, reordered).
- Omniglot: tfds gives 105x105 RGB uint8 images (paper = 255); ink is taken as
  1 - R/255 and then processed exactly like the raw files, but tfds's example order is not
  the file order of the raw archives, so the seeded permutation yields different
  train/valid/test membership. Fallback results are therefore not bit-identical to runs on
  the raw files; `Splits.source` says which one was used.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import logging
import os
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion_mnist", "omniglot")

DATA_DIR_ENV = "DISARM_DATA_DIR"
CACHE_DIR_ENV = "DISARM_CACHE_DIR"
DEFAULT_CACHE_DIR = "~/.cache/disarm_bench"

# The repository root is the parent of this package's folder; the shared data lives next
# to the repository, in ../shared/data.
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data"

IMAGE_PIXELS = 28 * 28

# MNIST-style IDX files.
IDX_IMAGES_MAGIC = 2051
IDX_LABELS_MAGIC = 2049
IDX_TRAIN_FILE = "train-images-idx3-ubyte.gz"
IDX_TEST_FILE = "t10k-images-idx3-ubyte.gz"
IDX_TRAIN_COUNT = 60_000
IDX_TEST_COUNT = 10_000
IDX_N_TRAIN = 50_000  # first 50,000 of the training file; the last 10,000 are validation

# Omniglot.
OMNIGLOT_FILES = ("images_background.npz", "images_evaluation.npz")
OMNIGLOT_CHARACTERS = {"images_background.npz": 964, "images_evaluation.npz": 659}
OMNIGLOT_DRAWERS = 20
OMNIGLOT_SIDE = 105
OMNIGLOT_TOTAL = 32_460
OMNIGLOT_TRAIN_POOL = 24_345  # the remaining 8,115 are test
OMNIGLOT_N_TRAIN = 23_000  # of the training pool; its last 1,345 are validation
OMNIGLOT_PERMUTATION_SEED = 0
# Bump when the Omniglot processing changes, so that stale caches are not reused.
_OMNIGLOT_PROCESSING_VERSION = "omniglot28-area-v1"
_RESIZE_CHUNK = 2048

# Images in the train / valid / test splits of each dataset (PROTOCOL.md section 4), known
# without reading the files, so that impossible settings are refused up front.
SPLIT_SIZES = {
  "mnist": (IDX_N_TRAIN, IDX_TRAIN_COUNT - IDX_N_TRAIN, IDX_TEST_COUNT),
  "fashion_mnist": (IDX_N_TRAIN, IDX_TRAIN_COUNT - IDX_N_TRAIN, IDX_TEST_COUNT),
  "omniglot": (OMNIGLOT_N_TRAIN, OMNIGLOT_TRAIN_POOL - OMNIGLOT_N_TRAIN, OMNIGLOT_TOTAL - OMNIGLOT_TRAIN_POOL),
}

REQUIRED_FILES = {
  "mnist": (IDX_TRAIN_FILE, IDX_TEST_FILE),
  "fashion_mnist": (IDX_TRAIN_FILE, IDX_TEST_FILE),
  "omniglot": OMNIGLOT_FILES,
}


def _fix_hint(name: str | None = None) -> str:
  """How to point the loader at the raw files (dataset-specific when name is known)."""
  where = f"{', '.join(REQUIRED_FILES[name])} in DIR/{name}/" if name else "the files in DIR/<dataset>/"
  return (
    "Fix: pass --data_dir DIR (load_dataset(name, data_dir=DIR)), set the environment "
    f"variable {DATA_DIR_ENV}=DIR, or place {where} "
    f"(see {DEFAULT_DATA_DIR / 'README.md'})."
  )


class DataError(ValueError):
  """A dataset could not be found or its files are malformed."""


@dataclasses.dataclass(frozen=True)
class Splits:
  """Pixel intensities in [0, 1], float32, one row of 784 pixels per image.

  The arrays are read-only (they are shared through an in-process cache); copy them
  before modifying.
  """

  name: str
  train: np.ndarray
  valid: np.ndarray
  test: np.ndarray
  mean_train: np.ndarray  # [784], per-pixel mean of `train`
  comparable_to_paper: bool  # False for our own Omniglot-28 (PROTOCOL section 4)
  source: str = ""  # where the data came from: a directory or "tensorflow_datasets"


# ---------------------------------------------------------------------------------------
# Data directory resolution.


def resolve_data_dir(data_dir=None) -> str | None:
  """Returns the data directory to read raw files from, or None for the tfds fallback.

  Precedence: the explicit argument > $DISARM_DATA_DIR > the repository's sibling
  ../shared/data (if it exists) > None. Empty strings count as unset. An explicit or
  environment directory is returned even if it does not exist (load_dataset reports it).
  """
  if data_dir is not None and str(data_dir) != "":
    return os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
  env = os.environ.get(DATA_DIR_ENV, "")
  if env:
    return os.path.abspath(os.path.expanduser(env))
  if DEFAULT_DATA_DIR.is_dir():
    return str(DEFAULT_DATA_DIR)
  return None


def _normalize_name(name) -> str:
  key = str(name).strip().lower().replace("-", "_")
  if key not in DATASETS:
    raise DataError(f"Unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}.")
  return key


# ---------------------------------------------------------------------------------------
# Public entry point.


def load_dataset(name, data_dir=None, allow_download=False) -> Splits:
  """Loads one of DATASETS as train/valid/test pixel intensities (PROTOCOL section 4).

  The raw files are read from the data directory (``resolve_data_dir``). The
  ``tensorflow_datasets`` download is tried only when no data directory exists at all,
  or when ``allow_download`` is set; a data directory without the dataset's files is
  otherwise an immediate ``DataError`` naming the folder (no minutes of network retries).
  """
  key = _normalize_name(name)
  resolved = resolve_data_dir(data_dir)
  return _load_cached(key, resolved, bool(allow_download))


def clear_cache() -> None:
  """Forgets the datasets held in memory by this process."""
  _load_cached.cache_clear()


@functools.cache
def _load_cached(name: str, data_dir: str | None, allow_download: bool = False) -> Splits:
  splits = _load_uncached(name, data_dir, allow_download)
  for array in (splits.train, splits.valid, splits.test, splits.mean_train):
    array.setflags(write=False)
  return splits


def _load_uncached(name: str, data_dir: str | None, allow_download: bool = False) -> Splits:
  required = REQUIRED_FILES[name]
  if data_dir is not None:
    if not os.path.isdir(data_dir):
      raise DataError(
        f"Data directory {data_dir} does not exist (it was given explicitly or "
        f"through ${DATA_DIR_ENV}); cannot read {name} files "
        f"{', '.join(required)}. {_fix_hint(name)}"
      )
    folder = os.path.join(data_dir, name)
    present = [f for f in required if os.path.exists(os.path.join(folder, f))]
    if len(present) == len(required):
      if name == "omniglot":
        return _omniglot_from_dir(folder)
      return _idx_dataset_from_dir(name, folder)
    if present:
      missing = [os.path.join(folder, f) for f in required if f not in present]
      raise DataError(
        f"Incomplete {name} data in {folder}: missing {', '.join(missing)} "
        f"(found {', '.join(present)}; all of {', '.join(required)} are needed). "
        f"{_fix_hint(name)}"
      )
    where = f"the data directory {data_dir} (looked in {folder}/)"
    if not allow_download:
      raise DataError(
        f"No {name} files in {folder}: {', '.join(required)} are missing from the data "
        f"directory {data_dir}. {_fix_hint(name)} Or pass --allow_download "
        "(load_dataset(..., allow_download=True)) to fetch it with tensorflow_datasets, "
        "which needs a network."
      )
  else:
    where = (
      f"any data directory (no data_dir argument, ${DATA_DIR_ENV} unset, and the "
      f"default {DEFAULT_DATA_DIR} does not exist)"
    )

  # Fallback: tensorflow_datasets.
  log.warning(
    "%s files %s not found in %s; trying tensorflow_datasets (its example order "
    "differs from the raw files, so splits differ).",
    name,
    ", ".join(required),
    where,
  )
  try:
    return _load_from_tfds(name)
  except Exception as err:  # tfds can fail in many ways (no internet, missing deps).
    raise DataError(
      f"Cannot find {name}: the files {', '.join(required)} are missing from "
      f"{where}, and the tensorflow_datasets fallback failed "
      f"({type(err).__name__}: {str(err)[:300]}). {_fix_hint(name)}"
    ) from err


# ---------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (gzip IDX).


def _read_gzip(path: str) -> bytes:
  try:
    with gzip.open(path, "rb") as f:
      return f.read()
  except FileNotFoundError as err:
    raise DataError(f"Missing file {path}. {_fix_hint()}") from err
  except (PermissionError, IsADirectoryError) as err:
    raise DataError(f"Cannot open {path} ({err}). Make it a readable file. {_fix_hint()}") from err
  except (OSError, EOFError, zlib.error) as err:
    raise DataError(
      f"Cannot decompress {path}: the gzip file is truncated or corrupt "
      f"({type(err).__name__}: {err}). Replace it with an intact copy "
      f"(check it against SHA256SUMS in the data directory). {_fix_hint()}"
    ) from err


def read_idx_images(path: str, expected_count: int | None = None) -> np.ndarray:
  """Parses a gzip IDX image file; returns uint8 [count, 28, 28]."""
  data = _read_gzip(path)
  fix = f"Replace {path} with the original file (see SHA256SUMS). {_fix_hint()}"
  if len(data) < 16:
    raise DataError(f"{path} is too short ({len(data)} bytes) to hold an IDX image header. {fix}")
  magic, count, rows, cols = struct.unpack(">iiii", data[:16])
  if magic != IDX_IMAGES_MAGIC:
    what = " (that is a label file)" if magic == IDX_LABELS_MAGIC else ""
    raise DataError(f"{path} has IDX magic number {magic}{what}, expected {IDX_IMAGES_MAGIC} for an image file. {fix}")
  if (rows, cols) != (28, 28):
    raise DataError(f"{path} holds images of shape {rows}x{cols}, expected 28x28. {fix}")
  if expected_count is not None and count != expected_count:
    raise DataError(f"{path} holds {count} images, expected {expected_count}. {fix}")
  expected_bytes = 16 + count * rows * cols
  if len(data) != expected_bytes:
    raise DataError(
      f"{path} has {len(data)} bytes after decompression, expected "
      f"{expected_bytes} for {count} images of {rows}x{cols}. {fix}"
    )
  return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, rows, cols)


def _to_intensity(pixels: np.ndarray) -> np.ndarray:
  return pixels.reshape(len(pixels), IMAGE_PIXELS).astype(np.float32) / np.float32(255.0)


def _idx_splits(name: str, train_file: np.ndarray, test: np.ndarray, source: str) -> Splits:
  train_file = _to_intensity(train_file)
  test = _to_intensity(test)
  return _make_splits(
    name,
    train=train_file[:IDX_N_TRAIN],
    valid=train_file[IDX_N_TRAIN:],
    test=test,
    comparable_to_paper=True,
    source=source,
  )


def _idx_dataset_from_dir(name: str, folder: str) -> Splits:
  train_file = read_idx_images(os.path.join(folder, IDX_TRAIN_FILE), IDX_TRAIN_COUNT)
  test = read_idx_images(os.path.join(folder, IDX_TEST_FILE), IDX_TEST_COUNT)
  return _idx_splits(name, train_file, test, source=folder)


def _make_splits(name, train, valid, test, comparable_to_paper, source) -> Splits:
  # Copies make each split its own contiguous array (not a view pinning the whole file).
  train, valid, test = (np.ascontiguousarray(a, dtype=np.float32).copy() for a in (train, valid, test))
  mean_train = train.mean(axis=0, dtype=np.float64).astype(np.float32)
  return Splits(
    name=name,
    train=train,
    valid=valid,
    test=test,
    mean_train=mean_train,
    comparable_to_paper=comparable_to_paper,
    source=source,
  )


# ---------------------------------------------------------------------------------------
# Omniglot-28.


def _read_omniglot_npz(path: str) -> np.ndarray:
  """Returns the bool array (characters, 20, 105, 105) of one Omniglot archive."""
  filename = os.path.basename(path)
  fix = f"Replace {path} with the original archive (see SHA256SUMS). {_fix_hint('omniglot')}"
  try:
    with np.load(path, allow_pickle=False) as archive:
      if "images" not in archive.files:
        raise DataError(f"{path} has no array 'images' (it has: {', '.join(archive.files) or 'nothing'}). {fix}")
      images = archive["images"]
  except DataError:
    raise
  except FileNotFoundError as err:
    raise DataError(f"Missing file {path}. {_fix_hint('omniglot')}") from err
  except (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error) as err:
    raise DataError(f"Cannot read {path} as a NumPy .npz archive ({type(err).__name__}: {err}). {fix}") from err
  if images.dtype != np.bool_:
    raise DataError(f"{path}: 'images' has dtype {images.dtype}, expected bool (True = paper). {fix}")
  characters = OMNIGLOT_CHARACTERS.get(filename)
  expected = (characters, OMNIGLOT_DRAWERS, OMNIGLOT_SIDE, OMNIGLOT_SIDE)
  if images.ndim != 4 or images.shape[1:] != expected[1:] or (characters is not None and images.shape[0] != characters):
    raise DataError(
      f"{path}: 'images' has shape {images.shape}, expected {expected} (characters, drawers, 105, 105). {fix}"
    )
  return images


def _downsample_ink(ink: np.ndarray) -> np.ndarray:
  """ink float32 [N, 105, 105] in [0, 1] -> float32 [N, 784], area-averaged to 28x28."""
  import tensorflow as tf

  out = np.empty((len(ink), IMAGE_PIXELS), dtype=np.float32)
  for start in range(0, len(ink), _RESIZE_CHUNK):
    chunk = ink[start : start + _RESIZE_CHUNK, :, :, None]
    small = tf.image.resize(chunk, [28, 28], method="area")
    small = tf.clip_by_value(small, 0.0, 1.0)
    out[start : start + len(chunk)] = small.numpy().reshape(len(chunk), IMAGE_PIXELS)
  return out


def _paper_to_ink_28(paper: np.ndarray) -> np.ndarray:
  """bool/0-1 array [..., 105, 105] with 1 = paper -> float32 [N, 784] ink intensities."""
  paper = paper.reshape(-1, OMNIGLOT_SIDE, OMNIGLOT_SIDE)  # C order: file order
  out = np.empty((len(paper), IMAGE_PIXELS), dtype=np.float32)
  # Convert in chunks to avoid materialising 1.4 GB of float32 at 105x105.
  for start in range(0, len(paper), _RESIZE_CHUNK):
    ink = 1.0 - paper[start : start + _RESIZE_CHUNK].astype(np.float32)
    out[start : start + len(ink)] = _downsample_ink(ink)
  return out


def _source_key(paths) -> str:
  """sha256 over the processing version and the bytes of the source files."""
  digest = hashlib.sha256(_OMNIGLOT_PROCESSING_VERSION.encode())
  for path in paths:
    digest.update(os.path.basename(path).encode() + b"\0")
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  return digest.hexdigest()


def cache_dir() -> str:
  return os.path.abspath(os.path.expanduser(os.environ.get(CACHE_DIR_ENV, "") or DEFAULT_CACHE_DIR))


def _cache_read(path: str, expected_rows: int) -> np.ndarray | None:
  try:
    with np.load(path, allow_pickle=False) as archive:
      images = archive["images"]
  except FileNotFoundError:
    return None
  except Exception as err:  # unreadable cache: recompute and overwrite it.
    log.warning("Ignoring unreadable cache file %s (%s)", path, err)
    return None
  if images.shape != (expected_rows, IMAGE_PIXELS) or images.dtype != np.float32:
    log.warning("Ignoring cache file %s of unexpected shape/dtype", path)
    return None
  return images


def _cache_write(path: str, images: np.ndarray) -> None:
  """Writes atomically (temp file + os.replace); skips silently if not writable."""
  tmp = None
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, images=images)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o644 & ~umask)  # mkstemp makes 0600; a cache may be shared.
    os.replace(tmp, path)
    tmp = None
  except OSError as err:
    log.info("Not caching Omniglot-28 at %s (%s)", path, err)
  finally:
    if tmp is not None:
      try:
        os.remove(tmp)
      except OSError:
        pass


def omniglot_pool_from_dir(folder: str, use_cache: bool = True) -> np.ndarray:
  """All 32,460 Omniglot drawings as float32 [32460, 784] ink, background then evaluation
  in file order, cached on disk keyed by the sha256 of the source files."""
  paths = [os.path.join(folder, f) for f in OMNIGLOT_FILES]
  cache_path = None
  if use_cache:
    try:
      key = _source_key(paths)
    except OSError as err:
      raise DataError(f"Cannot read Omniglot files in {folder} ({err}). {_fix_hint('omniglot')}") from err
    cache_path = os.path.join(cache_dir(), f"omniglot28_{key[:32]}.npz")
    cached = _cache_read(cache_path, OMNIGLOT_TOTAL)
    if cached is not None:
      return cached
  pool = np.concatenate([_paper_to_ink_28(_read_omniglot_npz(p)) for p in paths])
  if cache_path is not None:
    _cache_write(cache_path, pool)
  return pool


def _omniglot_splits(pool: np.ndarray, source: str) -> Splits:
  if pool.shape != (OMNIGLOT_TOTAL, IMAGE_PIXELS):
    raise DataError(
      f"Omniglot from {source} has {pool.shape[0]} images, expected {OMNIGLOT_TOTAL}. {_fix_hint('omniglot')}"
    )
  order = np.random.default_rng(OMNIGLOT_PERMUTATION_SEED).permutation(OMNIGLOT_TOTAL)
  pool = pool[order]
  train_pool, test = pool[:OMNIGLOT_TRAIN_POOL], pool[OMNIGLOT_TRAIN_POOL:]
  return _make_splits(
    "omniglot",
    train=train_pool[:OMNIGLOT_N_TRAIN],
    valid=train_pool[OMNIGLOT_N_TRAIN:],
    test=test,
    comparable_to_paper=False,
    source=source,
  )


def _omniglot_from_dir(folder: str) -> Splits:
  return _omniglot_splits(omniglot_pool_from_dir(folder), source=folder)


# ---------------------------------------------------------------------------------------
# tensorflow_datasets fallback.


def _tfds_images(name: str, split: str) -> np.ndarray:
  import tensorflow_datasets as tfds

  data = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1))
  return np.asarray(data["image"])


def _load_from_tfds(name: str) -> Splits:
  """Same splits built from tensorflow_datasets (order differs: see module docstring)."""
  if name == "omniglot":
    # tfds "train" = images_background, "test" = images_evaluation; RGB, paper = 255.
    rgb = np.concatenate([_tfds_images("omniglot", "train"), _tfds_images("omniglot", "test")])
    paper = rgb[..., 0].astype(np.float32) / np.float32(255.0)
    return _omniglot_splits(_paper_to_ink_28(paper), source="tensorflow_datasets")
  train_file = _tfds_images(name, "train")[..., 0]
  test = _tfds_images(name, "test")[..., 0]
  if len(train_file) != IDX_TRAIN_COUNT or len(test) != IDX_TEST_COUNT:
    raise DataError(
      f"tensorflow_datasets {name} has {len(train_file)}/{len(test)} "
      f"images, expected {IDX_TRAIN_COUNT}/{IDX_TEST_COUNT}."
    )
  return _idx_splits(name, train_file, test, source="tensorflow_datasets")


# ---------------------------------------------------------------------------------------
# Provenance: what a run's data were, so that a reader can tell protocol runs apart.

_SOURCE_RECORDS: dict = {}


def source_record(splits: Splits) -> dict:
  """Where ``splits`` came from and what they hold, as JSON-ready values.

  ``data_kind`` is ``raw_files`` (the files' SHA-256 in ``data_files_sha256``),
  ``tensorflow_datasets`` (its version; its example order differs from the raw files',
  so the split membership differs) or ``in_memory`` (splits a caller built).
  ``split_digest`` is the SHA-256 of the train, valid and test arrays in order: two runs
  with the same digest trained and were evaluated on the same images. Computed once per
  loaded dataset in a process (~0.2 s for MNIST).
  """
  name, source = getattr(splits, "name", ""), getattr(splits, "source", "")
  key = (name, source, id(splits.train))
  if key in _SOURCE_RECORDS:
    return dict(_SOURCE_RECORDS[key])
  digest = hashlib.sha256()
  for array in (splits.train, splits.valid, splits.test):
    digest.update(np.ascontiguousarray(array, dtype=np.float32))  # the buffer itself, no bytes copy
  record = dict(data_source=source, split_digest=digest.hexdigest(), data_files_sha256={})
  if source == "tensorflow_datasets":
    try:
      import tensorflow_datasets as tfds

      version = tfds.__version__
    except Exception:  # noqa: BLE001 - the record says what it could not tell
      version = "unknown"
    record.update(data_kind="tensorflow_datasets", tensorflow_datasets_version=version)
  elif source and os.path.isdir(source) and name in REQUIRED_FILES:
    for file_name in REQUIRED_FILES[name]:
      with open(os.path.join(source, file_name), "rb") as f:
        record["data_files_sha256"][file_name] = hashlib.file_digest(f, "sha256").hexdigest()
    record.update(data_kind="raw_files")
  else:  # arrays a caller built (tests, a user's own data)
    record.update(data_kind="in_memory")
    return record  # not cached: such arrays may be freed and their id reused
  _SOURCE_RECORDS[key] = record
  return dict(record)
