"""CIFAR-10 as in-memory uint8 arrays: the official archives, class folders, or TFDS.

Sources, looked for in ``<data_root>/cifar10/`` and then in ``<data_root>`` itself, first
match wins:

1. ``cifar-10-python.tar.gz`` (the official archive; or its extracted
   ``cifar-10-batches-py/``): Python 2 pickles, read with an unpickler that admits only
   numpy's array reconstruction, so a tampered file cannot run code.
2. ``cifar-10-binary.tar.gz`` (or its extracted ``cifar-10-batches-bin/``): records of one
   label byte and 3072 pixel bytes.
3. Class folders ``{train,test}/<class>/<image>``: an archive whose name contains
   ``cifar10`` or ``cifar-10`` (``cifar10-jpeg.tar.gz``), or an extracted folder (directly,
   or in one subfolder whose name contains ``cifar10``). Every image must be a 32x32 RGB
   image; class folders must be exactly the official names.

When none is there, a copy already prepared by TensorFlow Datasets is used; this loader
never downloads (a download attempt can hang on a machine without a network). Every
problem with local files is a :class:`DataError` naming the file and the fix, never a
reason to fall back to another source.

Checked on every load: 50,000 training and 10,000 test images, 5,000 and 1,000 per class,
class names in the official order, 32x32x3 uint8. Decoded arrays are cached (see
:mod:`common.data.cache`) under a key holding the source's SHA-256, before the validation
split, which is cheap and depends on flags: ``validation_size`` images are held out of the
50,000 training images with ``split_seed``; the 10,000 test images are the official test set.
"""

import dataclasses
import io
import os
import re

import numpy as np
from absl import logging

from common.data import Dataset, Split, check_holdout_size, check_split_sizes, holdout_split
from common.data.augment import image_preprocess
from common.data.cache import checked_cached_arrays
from common.data.download import Download
from common.data.images import (
    read_class_folders,
    read_tar_members,
    safe_pickle_load,
    source_digest,
)
from common.data.tfds_source import load_tfds_arrays
from common.errors import DataError
from common.train.steps import Preprocess
from common.train.tasks import Classification

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
           "truck")
NUM_CLASSES = 10
TRAIN_SIZE = 50000
TEST_SIZE = 10000
IMAGE_SHAPE = (32, 32, 3)
# Per-channel mean and std of the 50,000 training images as [0, 1] floats. The authors'
# notebook used std (0.2023, 0.1994, 0.2010), a widely copied miscomputation that is not
# the std of the training pixels; these are.
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

PYTHON_TAR = "cifar-10-python.tar.gz"
PYTHON_DIR = "cifar-10-batches-py"
BINARY_TAR = "cifar-10-binary.tar.gz"
BINARY_DIR = "cifar-10-batches-bin"
_PYTHON_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_PYTHON_TEST = "test_batch"
_PYTHON_META = "batches.meta"
_BINARY_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_BINARY_TEST = "test_batch.bin"
_BINARY_META = "batches.meta.txt"
_RECORD = 1 + 32 * 32 * 3  # binary format: one label byte, then the CHW pixels
# SHA-256 of the official archives (as checked by Keras and TensorFlow Datasets).
_OFFICIAL_SHA256 = {
    PYTHON_TAR: "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    BINARY_TAR: "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
}
# The official archive (scripts/download_data.py).
DOWNLOADS = (Download(f"https://www.cs.toronto.edu/~kriz/{PYTHON_TAR}", f"cifar10/{PYTHON_TAR}",
                      _OFFICIAL_SHA256[PYTHON_TAR]),)
# The JPEG class-folder copy kept beside the project's data (``cifar10-jpeg.tar.gz``).
_JPEG_COPY_SHA256 = "6c9b930289b4e49b2ec38c4eec6d8f11a272ce9d803b1c98018fbcc8682241ce"
_JPEG_COPY_NOTE = "CIFAR-10 re-encoded as JPEG quality 75; not the official pixels"
# "cifar10" or "cifar-10", not "cifar-100".
_CIFAR_NAME = re.compile(r"cifar-?10(?!0)", re.IGNORECASE)
_CLASS_ARCHIVE = re.compile(r"\.(tar\.gz|tgz|tar)$", re.IGNORECASE)
_FIX = (f"Put the official {PYTHON_TAR} (https://www.cs.toronto.edu/~kriz/cifar.html) into "
        f"<data_root>/cifar10/ and pass --data_dir=<data_root> or set GLONETS_DATA_DIR.")
_LOOKED_FOR = (f"{PYTHON_TAR} (or {PYTHON_DIR}/), {BINARY_TAR} (or {BINARY_DIR}/), a "
               f"class-folder archive *cifar10*.tar.gz, or class folders {{train,test}}/<class>/")


@dataclasses.dataclass(frozen=True)
class _Source:
  """A local copy: ``path`` (archive or folder) in ``format`` python, binary or folders."""

  path: str
  format: str

  @property
  def is_archive(self) -> bool:
    return os.path.isfile(self.path)


def _candidate_folders(data_dir: str) -> list[str]:
  return [f for f in (os.path.join(data_dir, "cifar10"), data_dir) if os.path.isdir(f)]


def _has_splits(folder: str) -> bool:
  return all(os.path.isdir(os.path.join(folder, s)) for s in ("train", "test"))


def find_source(data_dir: str) -> _Source | None:
  """The first local copy of CIFAR-10 under ``data_dir`` (see the module docstring).

  Args:
    data_dir: the data root, or the folder holding the files.

  Returns:
    The source, or None when there is none.

  Raises:
    DataError: several class-folder archives or folders, so the choice would be a guess.
  """
  for folder in _candidate_folders(data_dir):
    for name, fmt in ((PYTHON_TAR, "python"), (PYTHON_DIR, "python"), (BINARY_TAR, "binary"),
                      (BINARY_DIR, "binary")):
      if os.path.exists(os.path.join(folder, name)):
        return _Source(os.path.join(folder, name), fmt)
    names = sorted(os.listdir(folder))
    archives = [n for n in names if _CIFAR_NAME.search(n) and _CLASS_ARCHIVE.search(n)
                and os.path.isfile(os.path.join(folder, n))]
    trees = ([folder] if _has_splits(folder) else []) + [
        os.path.join(folder, n) for n in names
        if _CIFAR_NAME.search(n) and _has_splits(os.path.join(folder, n))]
    found = [os.path.join(folder, n) for n in archives] + trees
    if len(found) > 1:
      raise DataError(f"{folder} holds several class-folder copies of CIFAR-10 "
                      f"({', '.join(found)}); keep one, or point --data_dir at one folder.")
    if found:
      return _Source(found[0], "folders")
  return None


def _chw_to_hwc(rows: np.ndarray) -> np.ndarray:
  """``(N, 3072)`` rows of R, G, B planes (each 32x32, row-major) -> ``(N, 32, 32, 3)``."""
  return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_files(source: _Source, folder_in_tar: str, names: tuple[str, ...]) -> dict[str, bytes]:
  """The present files among ``names`` of an official archive or its extracted folder."""
  if source.is_archive:
    members = read_tar_members(source.path, [f"{folder_in_tar}/{n}" for n in names], _FIX)
    return {n: members[f"{folder_in_tar}/{n}"] for n in names
            if f"{folder_in_tar}/{n}" in members}
  out = {}
  for n in names:
    path = os.path.join(source.path, n)
    if os.path.isfile(path):
      with open(path, "rb") as f:
        out[n] = f.read()
  return out


def _check_class_names(names: list[str], where: str) -> None:
  if tuple(names) != CLASSES:
    raise DataError(f"{where} names the classes {', '.join(names)}; CIFAR-10's are "
                    f"{', '.join(CLASSES)} in this order. {_FIX}")


def _assemble(source: _Source, files: dict[str, bytes], train_names: tuple[str, ...],
              test_name: str, parse, expected_train: int, expected_test: int
              ) -> dict[str, np.ndarray]:
  """Parses the batch files present; missing ones are an error with the counts found."""
  parsed = {n: parse(files[n], f"{source.path}:{n}" if source.is_archive
                     else os.path.join(source.path, n))
            for n in (*train_names, test_name) if n in files}
  missing = [n for n in (*train_names, test_name) if n not in files]
  if missing:
    n_train = sum(len(parsed[n][1]) for n in train_names if n in parsed)
    n_test = len(parsed[test_name][1]) if test_name in parsed else 0
    raise DataError(
        f"{source.path} lacks {', '.join(missing)}: it holds {n_train:,} of {expected_train:,} "
        f"training images and {n_test:,} of {expected_test:,} test images; the archive may be "
        f"truncated (download it again). {_FIX}")
  return {"train_x": np.concatenate([parsed[n][0] for n in train_names]),
          "train_y": np.concatenate([parsed[n][1] for n in train_names]),
          "test_x": parsed[test_name][0], "test_y": parsed[test_name][1]}


def _parse_python_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
  batch = safe_pickle_load(io.BytesIO(data), name, _FIX)
  if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
    raise DataError(f"{name} is not a CIFAR-10 batch (a dict with data and labels). {_FIX}")
  x, y = batch[b"data"], np.asarray(batch[b"labels"])
  if (not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2
      or x.shape[1] != _RECORD - 1 or y.shape != (len(x),)):
    shape = getattr(x, "shape", type(x).__name__)
    raise DataError(f"{name} holds data {shape} and {y.shape} labels; a CIFAR-10 batch holds "
                    f"uint8 (N, 3072) data and N labels. {_FIX}")
  return _chw_to_hwc(x), y.astype(np.int32)


def _read_python(source: _Source, expected_train: int, expected_test: int
                 ) -> dict[str, np.ndarray]:
  files = _read_files(source, PYTHON_DIR, (*_PYTHON_TRAIN, _PYTHON_TEST, _PYTHON_META))
  where = f"{source.path}:{PYTHON_DIR}/{_PYTHON_META}" if source.is_archive else os.path.join(
      source.path, _PYTHON_META)
  if _PYTHON_META in files:
    meta = safe_pickle_load(io.BytesIO(files[_PYTHON_META]), where, _FIX)
    names = meta.get(b"label_names") if isinstance(meta, dict) else None
    if not isinstance(names, list):
      raise DataError(f"{where} holds no label_names list. {_FIX}")
    _check_class_names([n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)
                        for n in names], where)
  arrays = _assemble(source, files, _PYTHON_TRAIN, _PYTHON_TEST, _parse_python_batch,
                     expected_train, expected_test)
  if _PYTHON_META not in files:  # checked last: the batch counts say more when both lack
    raise DataError(f"{source.path} lacks {_PYTHON_META}; the archive may be truncated. {_FIX}")
  return arrays


def _parse_binary_batch(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
  if len(data) % _RECORD:
    raise DataError(f"{name} has {len(data):,} bytes, not a whole number of {_RECORD}-byte "
                    f"records: it is truncated or not a CIFAR-10 binary batch. {_FIX}")
  records = np.frombuffer(data, np.uint8).reshape(-1, _RECORD)
  return _chw_to_hwc(records[:, 1:]), records[:, 0].astype(np.int32)


def _read_binary(source: _Source, expected_train: int, expected_test: int
                 ) -> dict[str, np.ndarray]:
  files = _read_files(source, BINARY_DIR, (*_BINARY_TRAIN, _BINARY_TEST, _BINARY_META))
  arrays = _assemble(source, files, _BINARY_TRAIN, _BINARY_TEST, _parse_binary_batch,
                     expected_train, expected_test)
  if _BINARY_META not in files:
    raise DataError(f"{source.path} lacks {_BINARY_META}; the archive may be truncated. {_FIX}")
  names = [line.strip() for line in files[_BINARY_META].decode("utf-8", "replace").splitlines()]
  _check_class_names([n for n in names if n], f"{source.path}:{_BINARY_META}")
  return arrays


def _read_folders(source: _Source) -> dict[str, np.ndarray]:
  out = read_class_folders(source.path, ("train", "test"), CLASSES, IMAGE_SHAPE[:2],
                           fix_hint=_FIX)
  return {"train_x": out["train"][0], "train_y": out["train"][1],
          "test_x": out["test"][0], "test_y": out["test"][1],
          # Kept with the arrays so that a cache hit still knows what was decoded.
          "image_formats": np.asarray(out["formats"], dtype=str)}


def _check(arrays: dict[str, np.ndarray], expected_train: int, expected_test: int,
           where: str, fix: str) -> None:
  """Verifies shapes, dtypes, labels and the counts per split and per class."""
  for split, expected in (("train", expected_train), ("test", expected_test)):
    x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
    if x.dtype != np.uint8 or x.shape[1:] != IMAGE_SHAPE or y.shape != (len(x),):
      raise DataError(f"{where}: {split} images are {x.dtype} {x.shape} with labels "
                      f"{y.shape}, expected uint8 (N, 32, 32, 3) and N labels. {fix}")
    if len(y) and (y.min() < 0 or y.max() >= NUM_CLASSES):
      raise DataError(f"{where}: {split} labels range over {y.min()}..{y.max()}, expected "
                      f"0..{NUM_CLASSES - 1}. {fix}")
    counts = np.bincount(y, minlength=NUM_CLASSES)
    per_class = expected // NUM_CLASSES
    if len(x) != expected or np.any(counts != per_class):
      off = ", ".join(f"{c} {n:,}" for c, n in zip(CLASSES, counts, strict=True)
                      if n != per_class)
      raise DataError(
          f"{where} holds {len(x):,} {split} images ({off}), expected {expected:,} "
          f"({per_class:,} per class); the archive may be truncated, or this is not "
          f"CIFAR-10. {fix}")


def _tfds_dir() -> str:
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def _read_tfds(expected_train: int, expected_test: int) -> tuple[dict[str, np.ndarray], dict]:
  """A copy prepared by TensorFlow Datasets; never prepares one (that would download)."""
  where = _tfds_dir()
  # Checked before importing TFDS (seconds) and before asking it anything: only a copy
  # that is already prepared is used, so a machine without a network fails at once.
  if not os.path.isdir(os.path.join(where, "cifar10")):
    raise DataError(f"TensorFlow Datasets has no cifar10 in {where}")
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    prepared = tfds.builder("cifar10", data_dir=where).is_prepared()
  except Exception as e:  # ImportError, or TFDS's many types: all mean "not available"
    raise DataError(f"TensorFlow Datasets cannot read cifar10 in {where} "
                    f"({type(e).__name__}: {e})") from e
  if not prepared:
    raise DataError(f"TensorFlow Datasets has no prepared cifar10 in {where} (this loader "
                    f"never downloads)")
  out = load_tfds_arrays("cifar10", ("train", "test"), ("image", "label"), data_dir=where,
                         expected_sizes={"train": expected_train, "test": expected_test})
  arrays = {}
  for split, (x, y) in out.items():
    arrays[f"{split}_x"] = np.asarray(x, np.uint8)
    arrays[f"{split}_y"] = np.asarray(y, np.int32)
  return arrays, {"source": "tensorflow_datasets cifar10", "format": "tfds",
                  "tfds_data_dir": where}


def _source_format(source: _Source) -> str:
  if source.format == "python":
    return f"official Python pickles ({'archive' if source.is_archive else 'extracted'})"
  if source.format == "binary":
    return f"official binary batches ({'archive' if source.is_archive else 'extracted'})"
  return f"class folders ({'archive' if source.is_archive else 'folder'})"


def _load_arrays(data_dir: str | None, expected_train: int, expected_test: int,
                 cache_dir: str | None = None) -> tuple[dict[str, np.ndarray], dict]:
  """Train and test arrays of the first source found, verified, and their provenance.

  Args:
    data_dir: the data root (or the folder holding the files); None goes to TFDS.
    expected_train: required training images (a tenth per class); 50,000 for CIFAR-10.
    expected_test: required test images; 10,000 for CIFAR-10.
    cache_dir: folder of the decoded-array cache (None: the default, see
      :mod:`common.data.cache`).

  Returns:
    ``({"train_x", "train_y", "test_x", "test_y"}, info)``: uint8 ``(N, 32, 32, 3)``
    images and int32 labels, and the provenance for ``config.json``.

  Raises:
    DataError: naming the file and the fix.
  """
  source = find_source(data_dir) if data_dir else None
  if source is None:
    looked = (f"looked for {_LOOKED_FOR} in "
              f"{' and '.join([os.path.join(data_dir, 'cifar10'), data_dir])}" if data_dir
              else "no data root given (--data_dir or GLONETS_DATA_DIR)")
    logging.info("CIFAR-10: %s; trying TensorFlow Datasets.", looked)
    try:
      arrays, info = _read_tfds(expected_train, expected_test)
    except DataError as e:
      raise DataError(f"CIFAR-10 not found: {looked}; and {e}. {_FIX}") from None
    _check(arrays, expected_train, expected_test, info["source"], _FIX)
    return arrays, info

  digest = source_digest(source.path, source.is_archive, _FIX)
  readers = {"python": _read_python, "binary": _read_binary,
             "folders": lambda s, *_: _read_folders(s)}

  def build() -> dict[str, np.ndarray]:
    logging.info("CIFAR-10: decoding %s (done once, then cached).", source.path)
    return readers[source.format](source, expected_train, expected_test)

  arrays, cache_file, hit = checked_cached_arrays(
      f"cifar10-{source.format}-{digest}", build,
      lambda a, where, fix: _check(a, expected_train, expected_test, where, fix),
      source.path, _FIX, cache_dir)
  formats = tuple(str(f) for f in arrays.pop("image_formats", ()))
  info = {"source": os.path.abspath(source.path), "format": _source_format(source),
          "sha256": digest, "cache": cache_file, "cache_hit": hit}
  if source.is_archive and os.path.basename(source.path) in _OFFICIAL_SHA256:
    official = _OFFICIAL_SHA256[os.path.basename(source.path)] == digest
    info["official_file"] = official
    if not official:
      logging.warning("%s is readable but is not the official file (SHA-256 %s).",
                      source.path, digest)
  if source.format == "folders":
    info["image_formats"] = list(formats)
    if digest == _JPEG_COPY_SHA256:
      info["substitute"] = _JPEG_COPY_NOTE
    elif "JPEG" in formats:
      info["substitute"] = "CIFAR-10 re-encoded as JPEG (lossy); not the official pixels"
    else:
      info["substitute"] = (f"CIFAR-10 from class folders ({', '.join(formats)}); pixels not "
                            f"verified against the official files")
    logging.warning("CIFAR-10 source %s: %s.", source.path, info["substitute"])
  return arrays, info


def load_cifar10(data_dir: str | None, validation_size: int = 5000, split_seed: int = 0,
                 cache_dir: str | None = None) -> Dataset:
  """Loads CIFAR-10 and holds out a validation split of the training images.

  Args:
    data_dir: the data root (holding ``cifar10/``) or the folder holding the files; None
      goes straight to a copy prepared by TensorFlow Datasets.
    validation_size: images held out of the 50,000 training images.
    split_seed: seed of the held-out selection (recorded).
    cache_dir: folder of the decoded-array cache (None: ``$GLONETS_CACHE_DIR``, else
      ``$XDG_CACHE_HOME/glonets``, else ``~/.cache/glonets``); never the data root.

  Returns:
    The dataset: images uint8 ``(N, 32, 32, 3)``, labels int32 ``(N,)``; 45,000 / 5,000 /
    10,000 with the defaults. ``info`` records the source, its SHA-256, the format, the
    split, the cache file and, for a non-official copy, a ``substitute`` note.

  Raises:
    DataError: missing, truncated or corrupt files, or no copy at all.
    ConfigError: a validation size that leaves no training data.
  """
  check_holdout_size(validation_size, TRAIN_SIZE)  # before any decode
  arrays, info = _load_arrays(data_dir, TRAIN_SIZE, TEST_SIZE, cache_dir)
  train = Split(arrays["train_x"], arrays["train_y"].astype(np.int32))
  test = Split(arrays["test_x"], arrays["test_y"].astype(np.int32))
  train, val = holdout_split(train, validation_size, split_seed)
  return Dataset(train, val, test, info={
      **info, "classes": list(CLASSES), "validation_size": validation_size,
      "split_seed": split_seed, "mean": list(MEAN), "std": list(STD)})


def load_for_config(config) -> tuple[Dataset, Classification]:
  """The dataset and task of a ``resnet_cifar10`` run config (training and later analysis)."""
  check_split_sizes(TRAIN_SIZE, config.validation_size, config.train_size, config.batch_size)
  dataset = load_cifar10(config.data_dir, config.validation_size, config.split_seed,
                         config.cache_dir)
  return dataset, Classification(NUM_CLASSES, label_smoothing=config.label_smoothing)


def preprocess_for(config) -> Preprocess:
  """Pad-4 random crop and horizontal flip of training batches (when ``config.augment``),
  then normalisation with :data:`MEAN` / :data:`STD`; evaluation is never augmented."""
  return image_preprocess(MEAN, STD, augment=config.augment, pad=4)
