"""In-memory datasets: train / validation / test arrays plus where they came from."""

import dataclasses
import math
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

  def with_train_size(self, size: int | None) -> "Dataset":
    """The same dataset training on ``size`` of its training examples (None: all).

    For smoke runs and learning curves; validation and test stay whole. The examples are
    a fixed random subset (seed 0; each smaller subset inside every larger one), kept in
    their order: the first ``size`` would be a few classes only in a source stored class
    by class (image folders).

    Raises:
      ConfigError: ``size`` is below 1 or above the training split's size.
    """
    if size is None:
      return self
    if not 1 <= size <= len(self.train):
      raise ConfigError(f"train_size {size} must be between 1 and the training split's "
                        f"{len(self.train)} examples.")
    # Nested subsets: the first `size` of one fixed permutation, in the split's order.
    keep = np.sort(np.random.default_rng(0).permutation(len(self.train))[:size])
    train = self.train.take(keep)
    return dataclasses.replace(self, train=train, info={**self.info, "train_size": size})


def check_holdout_size(size: int, n: int) -> None:
  """Raises ConfigError unless holding ``size`` of ``n`` examples out leaves some of each.

  Loaders that decode their files first call it before decoding, so an impossible
  ``--validation_size`` costs no decode and writes no cache.
  """
  if not 0 < size < n:
    raise ConfigError(f"--validation_size must be between 1 and {n - 1} (of {n:,} training "
                      f"examples); got {size}.")


def check_split_sizes(n: int, validation_size: int, train_size: int | None = None,
                      batch_size: int | None = None) -> None:
  """The size settings of a run over ``n`` training examples, checked before any loading.

  The same limits :func:`holdout_split`, :meth:`Dataset.with_train_size` and the trainer
  enforce on the loaded data, for loaders whose data costs a decode: an impossible setting
  is refused before it, and before a cache is written.

  Raises:
    ConfigError: a validation split that leaves no training data, a ``train_size`` beyond
      what it leaves, or a batch larger than the training split.
  """
  check_holdout_size(validation_size, n)
  available = n - validation_size
  if train_size is not None and not 1 <= train_size <= available:
    raise ConfigError(f"--train_size={train_size} must be between 1 and the training split's "
                      f"{available:,} examples ({n:,} less --validation_size="
                      f"{validation_size}).")
  train = train_size or available
  if batch_size is not None and batch_size > train:
    raise ConfigError(f"--batch_size={batch_size} is larger than the training split ({train:,} "
                      f"examples); lower --batch_size.")


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
  check_holdout_size(size, n)
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

  if axis is None:
    stats = {"mean": float(mean), "std": float(std)}
  else:
    stats = {"mean": np.asarray(mean).reshape(-1).tolist(),
             "std": np.asarray(std).reshape(-1).tolist()}
  return dataclasses.replace(
      dataset, train=apply(dataset.train), val=apply(dataset.val), test=apply(dataset.test)), stats


def pad_to_batches(split: Split, batch_size: int, multiple: int = 1
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Pads ``split`` with zeros to whole batches, for exact masked evaluation.

  Args:
    split: the examples.
    batch_size: the wanted batch size (a smaller split gives one batch of its size).
    multiple: the batch is rounded up to a multiple of this (the number of devices it is
      split over); the extra rows are padding.

  Returns:
    ``(x, y, mask)`` shaped ``(num_batches, batch, ...)``; ``mask`` is 1 for real examples
    and 0 for padding, so sums weighted by it count every example exactly once.
  """
  n = len(split)
  b = math.ceil(min(batch_size, n) / multiple) * multiple
  nb = math.ceil(n / b)
  pad = nb * b - n

  def padded(a):
    a = np.concatenate([a, np.zeros((pad, *a.shape[1:]), a.dtype)]) if pad else a
    return a.reshape(nb, b, *a.shape[1:])

  mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]).reshape(nb, b)
  return padded(split.x), padded(split.y), mask
