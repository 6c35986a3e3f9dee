"""MNIST as in-memory arrays: the four official IDX files, or TensorFlow Datasets.

Looks for ``<data_root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` (also
directly in ``<data_root>``). When none of the four files is there, it tries TFDS. Any
problem with local files (one missing, truncated, corrupt, wrong counts) is an error, never
a reason to fall back to the network, and so is a file whose decompressed content is not
the official file's (unless ``allow_unofficial``: ``--allow_unofficial_data``). Images
are flattened to 784 floats and standardised with the mean and std of the training split
only; a validation split of
``validation_size`` examples is held out of the 60,000 training images with
``split_seed``; the 10,000 test images are the official test set.
"""

import os

import numpy as np
from absl import logging

from common import fileio
from common.data import Dataset, Split, holdout_split, read_idx_gz_hashed, standardize
from common.data.download import Download
from common.data.tfds_source import load_tfds_arrays
from common.errors import DataError
from common.train.tasks import Classification

# name -> (file, SHA-256 of the official .gz file, expected leading dimension). The .gz
# hash is recorded, but what is checked is CONTENT_SHA256: the same data gzipped again
# (another tool, another level) is still the official data.
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
# name -> SHA-256 of the official file's decompressed bytes (IDX header included).
CONTENT_SHA256 = {
    "train_images": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train_labels": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "test_images": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "test_labels": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NUM_CLASSES = 10
# The official files, as TensorFlow Datasets' mnist fetches them (scripts/download_data.py).
DOWNLOADS = tuple(
    Download(f"https://storage.googleapis.com/cvdf-datasets/mnist/{name}", f"mnist/{name}",
             sha256) for name, sha256, _ in FILES.values())
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


def _read_local(folder: str, allow_unofficial: bool) -> tuple[dict[str, np.ndarray], dict]:
  missing = [f for f, _, _ in FILES.values() if not os.path.exists(os.path.join(folder, f))]
  if missing:
    raise DataError(f"MNIST in {folder} is incomplete: missing {', '.join(missing)}. {_FIX}")
  arrays, hashes, content_hashes = {}, {}, {}
  for key, (fname, _, count) in FILES.items():
    path = os.path.join(folder, fname)
    arrays[key], content_hashes[fname] = read_idx_gz_hashed(path, fix_hint=_FIX)
    hashes[fname] = fileio.sha256(path)
    if arrays[key].shape[0] != count:
      raise DataError(f"{path} holds {arrays[key].shape[0]} items, expected {count}. {_FIX}")
  for split in ("train", "test"):
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if images.shape[1:] != (28, 28) or labels.ndim != 1 or labels.max() >= NUM_CLASSES:
      raise DataError(f"MNIST {split} files in {folder} have unexpected shapes or labels "
                      f"({images.shape}, labels up to {labels.max()}). {_FIX}")
  # Damage is named first (above); only files that read as valid MNIST get here.
  differ = [(k, f) for k, (f, _, _) in FILES.items() if content_hashes[f] != CONTENT_SHA256[k]]
  if differ and not allow_unofficial:
    key, fname = differ[0]
    others = f" ({len(differ) - 1} more of the four differ too)" if len(differ) > 1 else ""
    raise DataError(
        f"{os.path.join(folder, fname)} is not the official MNIST file: its decompressed "
        f"content has SHA-256 {content_hashes[fname]}, the official {CONTENT_SHA256[key]}"
        f"{others}. {_FIX} To train on these files anyway, pass --allow_unofficial_data.")
  for _, fname in differ:
    logging.warning("%s is not the official MNIST file (decompressed SHA-256 %s); used "
                    "because unofficial data is allowed.", os.path.join(folder, fname),
                    content_hashes[fname])
  official = all(hashes[f] == h for f, h, _ in FILES.values())
  return arrays, {"source": "local IDX files", "folder": os.path.abspath(folder),
                  "sha256": hashes, "official_files": official,
                  "content_sha256": content_hashes, "official_content": not differ}


def _read_tfds(tfds_dir: str | None) -> tuple[dict[str, np.ndarray], dict]:
  out = load_tfds_arrays("mnist", ("train", "test"), ("image", "label"), data_dir=tfds_dir,
                         expected_sizes={"train": 60000, "test": 10000})
  arrays = {}
  for split, (x, y) in out.items():
    arrays[f"{split}_images"] = x.reshape(len(x), 28, 28).astype(np.uint8)
    arrays[f"{split}_labels"] = y.astype(np.uint8)
  return arrays, {"source": "tensorflow_datasets mnist", "tfds_data_dir": tfds_dir}


def load_mnist(data_dir: str | None, validation_size: int = 5000, split_seed: int = 0,
               tfds_dir: str | None = None, allow_unofficial: bool = False) -> Dataset:
  """Loads MNIST, holds out a validation split and standardises the images.

  Args:
    data_dir: the data root (holding ``mnist/``), or None to go straight to TFDS.
    validation_size: images held out of the 60,000 training images.
    split_seed: seed of the held-out selection.
    tfds_dir: TFDS data directory for the fallback (None: TFDS's default).
    allow_unofficial: accept local files whose decompressed content differs from the
      official files' (recorded as ``official_content: false``); refused otherwise.

  Returns:
    The dataset: inputs float32 (N, 784), labels int32 (N,).

  Raises:
    DataError: local files incomplete, corrupt or (without ``allow_unofficial``) not the
      official data, or no local files and no TFDS copy.
  """
  folder = _find_folder(data_dir) if data_dir else None
  if folder is not None:
    arrays, info = _read_local(folder, allow_unofficial)
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
  return (load_mnist(config.data_dir, config.validation_size, config.split_seed,
                     allow_unofficial=config.allow_unofficial_data),
          Classification(NUM_CLASSES))
