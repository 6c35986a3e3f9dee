"""Shared fixtures: CPU only, quiet logs, fake MNIST files at the official sizes."""

import gzip
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_idx_gz(path: str, array: np.ndarray) -> None:
  """Writes ``array`` (uint8) as a gzip-compressed IDX file like the official MNIST ones."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  with gzip.open(path, "wb", compresslevel=1) as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_fake_mnist(folder: str, n_train: int = 60000, n_test: int = 10000) -> None:
  """Writes four IDX files whose images encode their label (a learnable task)."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for k in range(10):  # a bright bar whose row depends on the label
      images[labels == k, 2 + 2 * k, 4:24] = 255
    write_idx_gz(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), images)
    write_idx_gz(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels)


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory) -> str:
  """A data root holding ``mnist/`` with fake files of the official sizes."""
  root = str(tmp_path_factory.mktemp("data"))
  make_fake_mnist(os.path.join(root, "mnist"))
  return root


def hermetic_env() -> dict[str, str]:
  """The environment for child processes of tests.

  ``GLONETS_DATA_DIR`` is removed (tests name their data) and TensorFlow Datasets points at
  an empty folder, so no test can find, or download, a real copy of a dataset.
  """
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TQDM_DISABLE": "1",
         "TFDS_DATA_DIR": os.path.join(tempfile.gettempdir(), "glonets_tests_empty_tfds")}
  env.pop("GLONETS_DATA_DIR", None)
  return env


def run_module(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs ``python -m module args`` from the repository root in :func:`hermetic_env`."""
  full_env = hermetic_env()
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)
