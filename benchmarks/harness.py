"""What every benchmark shares: a config, synthetic data, the production Trainer, medians.

Benchmarks build the same :class:`common.train.trainer.Trainer` that training builds, so
they time exactly the compiled epoch a run executes (batch gather on device, forward,
backward, optimizer update), never a copy of it.
"""

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from common.config import TrainConfig
from common.data import Dataset, Split
from common.ops import native


def bench_config(**overrides: Any) -> TrainConfig:
  """A run config for benchmarks (no run directory is ever written)."""
  base = dict(
      experiment="benchmark", model="GloNet", num_layers=10, features=256,
      use_batch_norm=False, epochs=1, batch_size=256, eval_batch_size=256,
      learning_rate=1e-4, lr_schedule="constant", optimizer="ADAM", momentum=0.9,
      l2_reg_alpha=0.0, seed=0, validation_size=None, split_seed=0, data_dir=None,
      workdir=None, result_dir="/nonexistent", tensorboard=False, progress=False)
  base.update(overrides)
  return TrainConfig(**base)


def synthetic_dataset(x: np.ndarray, y: np.ndarray) -> Dataset:
  """``(x, y)`` as the training split, with one-batch validation and test splits."""
  small = Split(x[:8], y[:8])
  return Dataset(Split(x, y), small, small, info={"source": "synthetic"})


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
  """Median wall time of ``fn()`` (its result blocked on) over ``repeats`` calls."""
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


@dataclasses.dataclass
class EpochTimer:
  """Runs successive epochs of a built Trainer, keeping its state between them."""

  trainer: Any
  state: Any = None
  epoch: int = 0

  def __post_init__(self):
    self.state = self.trainer.state

  def run(self) -> float:
    """Trains one more epoch; returns its training seconds (no compile, no eval)."""
    self.epoch += 1
    self.state, _, seconds = self.trainer.train_epoch(self.state, self.epoch, progress=False)
    return seconds


@contextlib.contextmanager
def conv_path(path: str):
  """Sets ``$GLONETS_CPU_OPS`` while models are traced (it is read at trace time)."""
  old = os.environ.get(native.CPU_OPS_ENV)
  os.environ[native.CPU_OPS_ENV] = path
  try:
    yield
  finally:
    if old is None:
      os.environ.pop(native.CPU_OPS_ENV)
    else:
      os.environ[native.CPU_OPS_ENV] = old
