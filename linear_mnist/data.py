"""MNIST as in-memory arrays: the four official IDX files, or TensorFlow Datasets.

Looks for ``<data_root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (also
directly in ``<data_root>``). When none of the four files is there, it tries TFDS. Any
problem with local files (one missing, truncated, corrupt, wrong counts) is an error, never
a reason to fall back to the network. Images are flattened to 784 floats and standardised
with the mean and std of the training split only; a validation split of
``validation_size`` examples is held out of the 60,000 training images with
``split_seed``; the 10,000 test images are the official test set.
"""

import os

import numpy as np
from absl import logging

from common import fileio
from common.data import Dataset, Split, holdout_split, read_idx_gz, standardize
from common.data.tfds_source import load_tfds_arrays
from common.errors import DataError
from common.train.tasks import Classification

# name -> (file, SHA-256 of the official file, expected leading dimension)
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz",
                     "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 60000),
    "train_labels": ("train-labels-idx1-ubyte.gz",
                     "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 60000),
    "test_images": ("t10k-images-idx3-ubyte.gz",
                    "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 10000),
    "test_labels": ("t10k-labels-idx1-ubyte.gz",
                    "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 10000),
}
NUM_CLASSES = 10
_FIX = ("Get the four official files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, as served by TensorFlow "
        "Datasets' mnist) into <data_root>/mnist/ and pass --data_dir=<data_root> or set "
        "GLONETS_DATA_DIR.")


def _find_folder(data_dir: str) -> str | None:
  """The first candidate folder holding any of the four files, or None."""
  for folder in (os.path.join(data_dir, "mnist"), data_dir):
    if any(os.path.exists(os.path.join(folder, f)) for f, _, _ in FILES.values()):
      return folder
  return None


def _read_local(folder: str) -> tuple[dict[str, np.ndarray], dict]:
  missing = [f for f, _, _ in FILES.values() if not os.path.exists(os.path.join(folder, f))]
  if missing:
    raise DataError(f"MNIST in {folder} is incomplete: missing {', '.join(missing)}. {_FIX}")
  arrays, hashes = {}, {}
  for key, (fname, official, count) in FILES.items():
    path = os.path.join(folder, fname)
    arrays[key] = read_idx_gz(path, fix_hint=_FIX)
    hashes[fname] = fileio.sha256(path)
    if hashes[fname] != official:
      logging.warning("%s is readable but is not the official file (SHA-256 %s).", path,
                      hashes[fname])
    if arrays[key].shape[0] != count:
      raise DataError(f"{path} holds {arrays[key].shape[0]} items, expected {count}. {_FIX}")
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.shape[1:] != (28, 28) or labels.ndim != 1 or labels.max() >= NUM_CLASSES:
      raise DataError(f"MNIST {split} files in {folder} have unexpected shapes or labels "
                      f"({images.shape}, labels up to {labels.max()}). {_FIX}")
  official = all(hashes[f] == h for f, h, _ in FILES.values())
  return arrays, {"source": "local IDX files", "folder": os.path.abspath(folder),
                  "sha256": hashes, "official_files": official}


def _read_tfds(tfds_dir: str | None) -> tuple[dict[str, np.ndarray], dict]:
  out = load_tfds_arrays("mnist", ("train", "test"), ("image", "label"), data_dir=tfds_dir,
                         expected_sizes={"train": 60000, "test": 10000})
  arrays = {}
  for split, (x, y) in out.items():
    arrays[f"{split}_images"] = x.reshape(len(x), 28, 28).astype(np.uint8)
    arrays[f"{split}_labels"] = y.astype(np.uint8)
  return arrays, {"source": "tensorflow_datasets mnist", "tfds_data_dir": tfds_dir}


def load_mnist(data_dir: str | None, validation_size: int = 5000, split_seed: int = 0,
               tfds_dir: str | None = None) -> Dataset:
  """Loads MNIST, holds out a validation split and standardises the images.

  Args:
    data_dir: the data root (holding ``mnist/``), or None to go straight to TFDS.
    validation_size: images held out of the 60,000 training images.
    split_seed: seed of the held-out selection.
    tfds_dir: TFDS data directory for the fallback (None: TFDS's default).

  Returns:
    The dataset: inputs float32 (N, 784), labels int32 (N,).

  Raises:
    DataError: local files incomplete or corrupt, or no local files and no TFDS copy.
  """
  folder = _find_folder(data_dir) if data_dir else None
  if folder is not None:
    arrays, info = _read_local(folder)
  else:
    looked = (f"looked for {', '.join(f for f, _, _ in FILES.values())} in "
              f"{os.path.join(data_dir, 'mnist')} and {data_dir}" if data_dir
              else "no data root given (--data_dir or GLONETS_DATA_DIR)")
    logging.info("MNIST: %s; trying TensorFlow Datasets.", looked)
    try:
      arrays, info = _read_tfds(tfds_dir)
    except DataError as e:
      raise DataError(f"MNIST not found: {looked}; and {e}. {_FIX}") from None
  train = Split(arrays["train_images"].reshape(-1, 784).astype(np.float32) / 255.0,
                arrays["train_labels"].astype(np.int32))
  test = Split(arrays["test_images"].reshape(-1, 784).astype(np.float32) / 255.0,
               arrays["test_labels"].astype(np.int32))
  train, val = holdout_split(train, validation_size, split_seed)
  dataset, stats = standardize(Dataset(train, val, test))
  return Dataset(dataset.train, dataset.val, dataset.test, info={
      **info, "validation_size": validation_size, "split_seed": split_seed,
      "preprocessing": "x/255, then standardised with the training split's mean and std",
      "standardization": stats})


def load_for_config(config) -> tuple[Dataset, Classification]:
  """The dataset and task of a ``linear_mnist`` run config (training and later analysis)."""
  return (load_mnist(config.data_dir, config.validation_size, config.split_seed),
          Classification(NUM_CLASSES))
