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
