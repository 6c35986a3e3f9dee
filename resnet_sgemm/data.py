"""The UCI "SGEMM GPU kernel performance" data (dataset 440) as in-memory arrays.

Reads ``<data_root>/sgemm/sgemm_product_dataset.zip`` (the official archive) or the
extracted ``sgemm_product.csv`` (also directly in ``<data_root>``), and validates it: the
14 parameter columns and the 4 run-time columns by name, 241,600 rows, every cell numeric.
Anything else is a :class:`DataError` naming the problem.

Target: ``log(mean(Run1..Run4))`` with run times in milliseconds (natural log). Inputs:
the 14 kernel parameters, standardised with the mean and std of the training split only.
Split: a random 70/10/20 train/val/test split from ``split_seed`` (169,120 / 24,160 /
48,320 rows). The scaler (feature names, means, stds, target definition) is returned in
``Dataset.info["scaler"]`` and saved as ``scaler.json`` in each run directory, so a trained
model can score new kernel configurations.
"""

import csv
import dataclasses
import io
import os
import zipfile

import numpy as np

from common import fileio
from common.data import Dataset, Split, standardize
from common.data.download import Download
from common.errors import DataError
from common.train.tasks import Regression

FEATURES = ("MWG", "NWG", "KWG", "MDIMC", "NDIMC", "MDIMA", "NDIMB", "KWI", "VWM", "VWN",
            "STRM", "STRN", "SA", "SB")
RUNS = ("Run1 (ms)", "Run2 (ms)", "Run3 (ms)", "Run4 (ms)")
NUM_ROWS = 241600
ZIP_NAME = "sgemm_product_dataset.zip"
CSV_NAME = "sgemm_product.csv"
SPLIT_FRACTIONS = (0.7, 0.1, 0.2)
SCALER = "scaler.json"  # the input scaler every run directory keeps
# The official archive, inside the zip the UCI repository serves (scripts/download_data.py).
DOWNLOADS = (Download(
    "https://archive.ics.uci.edu/static/public/440/sgemm+gpu+kernel+performance.zip",
    f"sgemm/{ZIP_NAME}", "8d3ee0d82708df11b54debc6a4fbade77c604a047f019fa7940413032eb7b096",
    member=ZIP_NAME),)
_FIX = (f"Get the official UCI archive {ZIP_NAME} (dataset 440, 'SGEMM GPU kernel "
        f"performance') into <data_root>/sgemm/ and pass --data_dir=<data_root> or set "
        f"GLONETS_DATA_DIR.")


def find_source(data_dir: str | None) -> str:
  """Path of the zip (preferred) or CSV under ``data_dir``.

  Args:
    data_dir: the data root.

  Returns:
    The first of ``<root>/sgemm/{zip,csv}``, ``<root>/{zip,csv}`` that exists.

  Raises:
    DataError: naming every path looked at.
  """
  if not data_dir:
    raise DataError(f"SGEMM needs a data root (--data_dir or GLONETS_DATA_DIR). {_FIX}")
  candidates = [os.path.join(folder, name)
                for folder in (os.path.join(data_dir, "sgemm"), data_dir)
                for name in (ZIP_NAME, CSV_NAME)]
  for path in candidates:
    if os.path.exists(path):
      return path
  raise DataError(f"SGEMM not found: looked for {', '.join(candidates)}. {_FIX}")


def _read_text(path: str) -> str:
  if path.endswith(".zip"):
    try:
      with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist()
                 if os.path.basename(n) == CSV_NAME and not n.startswith("__MACOSX")]
        if not names:
          raise DataError(f"{path} holds no {CSV_NAME}. {_FIX}")
        return archive.read(names[0]).decode("utf-8")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError) as e:
      raise DataError(f"{path} is not a readable zip archive ({e}). {_FIX}") from e
    except UnicodeDecodeError as e:
      raise DataError(f"{path}: {CSV_NAME} is not UTF-8 text ({e}). {_FIX}") from e
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except UnicodeDecodeError as e:
    raise DataError(f"{path} is not UTF-8 text ({e}). {_FIX}") from e


def parse_csv(text: str, source: str, expected_rows: int | None = NUM_ROWS) -> np.ndarray:
  """Parses and validates the CSV into a float64 array of FEATURES + RUNS columns.

  Args:
    text: the CSV content.
    source: the file name, for messages.
    expected_rows: required number of data rows (None: any).

  Returns:
    Array of shape ``(rows, 18)``: the 14 features then the 4 run times, in that order.

  Raises:
    DataError: a missing column, a non-numeric or empty cell, or the wrong row count.
  """
  reader = csv.reader(io.StringIO(text))
  try:
    header = [h.strip() for h in next(reader)]
  except StopIteration:
    raise DataError(f"{source} is empty. {_FIX}") from None
  missing = [c for c in (*FEATURES, *RUNS) if c not in header]
  if missing:
    raise DataError(f"{source} lacks the column(s) {', '.join(missing)} "
                    f"(found: {', '.join(header)}). {_FIX}")
  columns = [header.index(c) for c in (*FEATURES, *RUNS)]
  rows = []
  for line_no, row in enumerate(reader, start=2):
    if not row:
      continue
    try:
      rows.append([float(row[i]) for i in columns])
    except (ValueError, IndexError):
      bad = next((header[i] for i in columns if i >= len(row) or not _is_number(row[i])), "?")
      value = row[header.index(bad)] if bad in header and header.index(bad) < len(row) else ""
      raise DataError(f"{source} line {line_no}, column {bad!r}: {value!r} is not a number. "
                      f"{_FIX}") from None
  data = np.asarray(rows, dtype=np.float64).reshape(-1, len(columns))
  if expected_rows is not None and len(data) != expected_rows:
    raise DataError(f"{source} has {len(data)} data rows, expected {expected_rows}. {_FIX}")
  if not np.all(np.isfinite(data)):
    raise DataError(f"{source} holds non-finite values. {_FIX}")
  if np.any(data[:, len(FEATURES):] <= 0):
    raise DataError(f"{source} holds run times <= 0 ms, so log-runtime is undefined. {_FIX}")
  return data


def _is_number(cell: str) -> bool:
  try:
    float(cell)
    return True
  except ValueError:
    return False


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """A random 70/10/20 partition of ``range(n)``.

  Args:
    n: number of rows.
    seed: seed of the permutation.

  Returns:
    ``(train, val, test)`` row indices, each sorted.
  """
  perm = np.random.default_rng(seed).permutation(n)
  n_test = round(n * SPLIT_FRACTIONS[2])
  n_val = round(n * SPLIT_FRACTIONS[1])
  test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
  return np.sort(train), np.sort(val), np.sort(test)


def make_dataset(table: np.ndarray, split_seed: int, info: dict) -> Dataset:
  """Builds the target, the split and the training-only standardisation.

  Args:
    table: parsed rows, ``FEATURES`` then ``RUNS`` columns (see :func:`parse_csv`).
    split_seed: seed of the 70/10/20 split.
    info: provenance to record (source, hash).

  Returns:
    The standardised dataset; ``info["scaler"]`` holds what is needed to score new rows.
  """
  x = table[:, :len(FEATURES)]
  y = np.log(table[:, len(FEATURES):].mean(axis=1, keepdims=True)).astype(np.float32)
  train, val, test = split_indices(len(table), split_seed)
  raw = Dataset(*(Split(x[i], y[i]) for i in (train, val, test)))
  dataset, stats = standardize(raw, axis=(0,))
  scaler = {"features": list(FEATURES), "mean": stats["mean"], "std": stats["std"],
            "target": "log(mean(Run1..Run4)) with run times in ms (natural log)",
            "fitted_on": "training split only", "split_seed": split_seed}
  return dataclasses.replace(dataset, info={**info, "split_seed": split_seed,
                                            "split": "70/10/20 random", "scaler": scaler})


def load_sgemm(data_dir: str | None, split_seed: int = 0) -> Dataset:
  """Loads, validates, splits and standardises SGEMM.

  Args:
    data_dir: the data root (holding ``sgemm/``).
    split_seed: seed of the 70/10/20 split (recorded in ``config.json``).

  Returns:
    The dataset: inputs float32 (N, 14), targets float32 (N, 1).

  Raises:
    DataError: missing, unreadable or malformed data.
  """
  path = find_source(data_dir)
  table = parse_csv(_read_text(path), os.path.basename(path))
  return make_dataset(table, split_seed, {"source": os.path.abspath(path),
                                          "sha256": fileio.sha256(path)})


def load_for_config(config) -> tuple[Dataset, Regression]:
  """The dataset and task of a ``resnet_sgemm`` run config (training and later analysis)."""
  return load_sgemm(config.data_dir, config.split_seed), Regression()
