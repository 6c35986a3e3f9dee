"""In-memory datasets: train / validation / test arrays plus where they came from."""

import dataclasses
from typing import Any

import numpy as np

from common.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Split:
  """One split: inputs ``x`` (N, ...) and targets ``y`` (N, ...)."""

  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if len(self.x) != len(self.y):
      raise ValueError(f"x has {len(self.x)} rows but y has {len(self.y)}")

  def __len__(self) -> int:
    return len(self.x)

  def take(self, idx: np.ndarray) -> "Split":
    """Returns the rows ``idx``."""
    return Split(self.x[idx], self.y[idx])


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Everything a run trains and evaluates on.

  Attributes:
    train: the split the optimizer sees.
    val: held out of the original training set; used for model selection.
    test: the official test set; reported every epoch, never used for selection.
    info: provenance recorded in ``config.json`` (source, files, hashes, split seed...).
  """

  train: Split
  val: Split
  test: Split
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  def sizes(self) -> dict[str, int]:
    """Number of examples per split."""
    return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def holdout_split(split: Split, size: int, seed: int) -> tuple[Split, Split]:
  """Holds ``size`` random examples out of ``split``.

  Args:
    split: the original training split.
    size: number of examples to hold out for validation.
    seed: seed of the permutation (recorded, independent of the training seed so that
      all seeds of a sweep share one validation set).

  Returns:
    ``(train, val)``, both in a fixed order.

  Raises:
    ConfigError: if ``size`` leaves no training data.
  """
  n = len(split)
  if not 0 < size < n:
    raise ConfigError(f"validation size must be between 1 and {n - 1}; got {size}.")
  perm = np.random.default_rng(seed).permutation(n)
  return split.take(np.sort(perm[size:])), split.take(np.sort(perm[:size]))


def standardize(dataset: Dataset, axis: tuple[int, ...] | None = None) -> tuple[Dataset, dict]:
  """Standardises inputs with the training split's mean and std only.

  Args:
    dataset: float inputs.
    axis: axes to reduce over; None reduces everything (one scalar mean/std), ``(0,)``
      gives one mean/std per feature.

  Returns:
    The standardised dataset and ``{"mean": ..., "std": ...}`` (lists, JSON-ready).
  """
  x = dataset.train.x.astype(np.float64)
  mean = x.mean(axis=axis, keepdims=axis is not None)
  std = x.std(axis=axis, keepdims=axis is not None)
  std = np.where(std > 0, std, 1.0)

  def apply(s: Split) -> Split:
    return Split(((s.x - mean) / std).astype(np.float32), s.y)

  stats = {"mean": np.asarray(mean).squeeze().tolist(), "std": np.asarray(std).squeeze().tolist()}
  return dataclasses.replace(
      dataset, train=apply(dataset.train), val=apply(dataset.val), test=apply(dataset.test)), stats
