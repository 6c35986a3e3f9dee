"""The layer-usage hook: usage on the test set at initialisation and after training."""

import os
import time

import flax.linen as nn
from absl import logging

from common import fileio, usage
from common.data.arrays import Dataset
from common.data.augment import Preprocess
from common.train import distributed
from common.train.hooks import Hook
from common.train.tasks import Task


def supports_usage(model: nn.Module) -> bool:
  """True for models that keep the usage contract of :mod:`common.usage`."""
  return all(hasattr(model, a) for a in ("with_taps", "usage_mode", "param_paths"))


def _read_usage(path: str) -> dict:
  """``usage.json``, or {} when missing or damaged (named: its records are computed again)."""
  problems: list[str] = []
  recorded = fileio.read_json_or(path, {}, problems, kind=dict)
  if problems:
    logging.warning("%s: %s; its usage records are computed again.", path, problems[0])
  return recorded


class UsageHook(Hook):
  """Layer usage on the test set at initialisation and after training (``usage.json``).

  For a batch-norm model the usage at initialisation is measured with running statistics
  estimated from training batches (``usage.warm_batch_stats``), never with the initial
  mean 0 / variance 1, which describe a network that never existed; ``usage.json`` says
  so in ``batch_stats``. The training split (evaluation mode) is the reference whose mean
  block contributions fill in the blocks an early exit leaves out (``early_exit_mean``),
  read from the trainer's device copy.
  """

  def __init__(self, model: nn.Module, dataset: Dataset, task: Task, batch_size: int,
               preprocess: Preprocess | None = None):
    self.model, self.dataset, self.task = model, dataset, task
    self.batch_size = batch_size
    self.preprocess = preprocess

  def record(self, run_path: str, key: str, state, epoch: int, *,
             train_inputs=None, train_batch: int = 256, test=None) -> float:
    """Computes usage into ``usage.json[key]``; returns the seconds it took.

    ``train_inputs``: the trainer's training inputs on device; they warm the batch-norm
    statistics at ``init`` and are the mean-fill reference, read in place (without them
    the reference is the dataset's training split, put on the device for the pass).
    ``test``: the trainer's padded device copy of the test split, read in place (without
    it the dataset's test split is padded and put on the device for the pass).
    """
    t0 = time.perf_counter()
    when = "at initialisation" if key == "init" else "after training"
    # A pass can take minutes on a CPU: say what it is, and how to skip it.
    logging.info("Layer usage %s on the %d test examples (--config.eval.layer_usage=false "
                 "skips it; python -m common.recompute_usage computes it later)...",
                 when, len(self.dataset.test))
    note = "none (no batch norm)"
    if state.batch_stats:
      if key == "init":
        state = usage.warm_batch_stats(state, train_inputs, batch_size=train_batch,
                                       preprocess=self.preprocess)
        note = (f"running statistics estimated from {usage.BN_WARMUP_BATCHES} training "
                f"batches of {train_batch} in train mode (no parameter update)")
      else:
        note = "the trained running statistics"
    path = os.path.join(run_path, usage.USAGE_FILE)
    recorded = _read_usage(path)
    recorded[key] = usage.compute_usage(state, self.dataset.test if test is None else test,
                                        self.task, self.model,
                                        batch_size=self.batch_size,
                                        preprocess=self.preprocess,
                                        reference=(self.dataset.train if train_inputs is None
                                                   else train_inputs))
    recorded[key].update({"epoch": epoch, "batch_stats": note})
    if distributed.is_primary():  # every process computes (a collective), one writes
      fileio.atomic_write_json(path, recorded)
    seconds = time.perf_counter() - t0
    logging.info("Layer usage %s: %.1f s.", when, seconds)
    return seconds

  def _trainer_test(self, trainer):
    """The trainer's device copy of the test split when it is batched as this pass would
    batch it, else None (a larger evaluation batch would hold more block outputs at once
    than the pass's own batch cap allows)."""
    if trainer.config.eval_batch_size != self.batch_size:
      return None
    return trainer.eval_split("test")

  def on_start(self, trainer, state, run):
    if "init" in _read_usage(run.file(usage.USAGE_FILE)):
      return None
    # The initial state is a pure function of the seed, so this is also right on resume.
    return {"usage_seconds_init": self.record(
        run.path, "init", state, 0, train_inputs=trainer.train_inputs,
        train_batch=trainer.config.batch_size, test=self._trainer_test(trainer))}

  def on_end(self, trainer, state, run):
    try:
      return {"usage_seconds_final": self.record(
          run.path, "final", state, int(state.step) // max(1, trainer.steps_per_epoch),
          train_inputs=trainer.train_inputs, test=self._trainer_test(trainer))}
    except Exception as e:  # noqa: BLE001 - a finished training stays finished
      logging.warning("Final layer usage failed (%s: %s); the run is still done.",
                      type(e).__name__, e)
      return None
