"""Small synthetic datasets for tests and smoke runs (no files needed).

The classification task is *learnable*: labels come from a fixed random linear teacher,
so a correct training loop drives the loss down.
"""

import numpy as np

from common.data.arrays import Dataset, Split


def fake_classification(
    n_train: int = 512, n_val: int = 128, n_test: int = 200, in_dim: int = 20,
    num_classes: int = 4, seed: int = 0) -> Dataset:
  """Gaussian inputs labelled by the argmax of a random linear map."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(in_dim, num_classes))

  def make(n):
    x = rng.normal(size=(n, in_dim)).astype(np.float32)
    return Split(x, np.argmax(x @ w, axis=1).astype(np.int32))

  return Dataset(make(n_train), make(n_val), make(n_test),
                 info={"source": "fake_classification", "seed": seed})


def fake_regression(
    n_train: int = 512, n_val: int = 128, n_test: int = 200, in_dim: int = 14,
    seed: int = 0) -> Dataset:
  """Gaussian inputs with a smooth nonlinear scalar target, shape (N, 1)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(in_dim,)) / np.sqrt(in_dim)

  def make(n):
    x = rng.normal(size=(n, in_dim)).astype(np.float32)
    return Split(x, np.tanh(x @ w)[:, None].astype(np.float32))

  return Dataset(make(n_train), make(n_val), make(n_test),
                 info={"source": "fake_regression", "seed": seed})


def fake_images(
    n_train: int = 256, n_val: int = 64, n_test: int = 100, size: int = 8,
    num_classes: int = 4, seed: int = 0) -> Dataset:
  """uint8 RGB images ``(N, size, size, 3)`` whose class sets a bright channel and
  quadrant (learnable, and still learnable after a crop or a flip), on uniform noise."""
  rng = np.random.default_rng(seed)
  half = size // 2

  def make(n):
    y = rng.integers(0, num_classes, n).astype(np.int32)
    x = rng.integers(0, 96, (n, size, size, 3)).astype(np.uint8)
    for k in range(num_classes):
      rows = slice(0, half) if k % 2 == 0 else slice(half, size)
      x[y == k, rows, :, k % 3] = 255
    return Split(x, y)

  return Dataset(make(n_train), make(n_val), make(n_test),
                 info={"source": "fake_images", "seed": seed})
