"""Writes per-epoch records: ``metrics.jsonl`` (the record) and TensorBoard (a view).

``metrics.jsonl`` is rewritten atomically from the full history kept in each checkpoint,
right after the checkpoint is durable, so it is never ahead of or behind the checkpoints
and a crash cannot leave a torn line.
"""

import json
import math
from typing import Any

from absl import logging

from common import fileio
from common.train import rundir

# Fields that measure the machine, not the math: they differ between an interrupted and
# an uninterrupted run and are excluded when comparing runs.
TIMING_KEYS = frozenset(
    {"train_seconds", "eval_seconds", "steps_per_second", "examples_per_second"})


class MetricsLog:
  """Owns ``metrics.jsonl`` and the optional TensorBoard writer of one run."""

  def __init__(self, run: rundir.RunDir, tensorboard: bool):
    self._run = run
    self._tb = None
    if tensorboard and run.writer:
      try:
        import tensorboardX  # pylint: disable=g-import-not-at-top
        self._tb = tensorboardX.SummaryWriter(logdir=run.file(rundir.TENSORBOARD))
      except ImportError:
        logging.warning("tensorboardX is not installed; no TensorBoard event files.")

  def write(self, history: list[dict[str, Any]]) -> None:
    """Rewrites ``metrics.jsonl`` from ``history`` and logs the newest epoch to TensorBoard."""
    if not self._run.writer:
      return
    lines = [json.dumps(fileio.to_jsonable(r)) for r in history]
    fileio.atomic_write_text(self._run.file(rundir.METRICS), "".join(f"{s}\n" for s in lines))
    if self._tb is not None and history:
      record = history[-1]
      for key, value in record.items():
        if key != "epoch" and isinstance(value, (int, float)) and math.isfinite(value):
          split, _, name = key.partition("_")
          tag = f"{split}/{name}" if split in ("train", "val", "test") else f"other/{key}"
          self._tb.add_scalar(tag, value, record["epoch"])
      self._tb.flush()

  def close(self, flush: bool = True) -> None:
    """Flushes and closes the TensorBoard writer; without ``flush`` (the disk is full),
    its pending events are dropped."""
    tb, self._tb = self._tb, None
    if tb is None:
      return
    try:
      if not flush:
        raise OSError("not flushed")
      tb.close()
    except OSError:
      _abandon(tb)


def _abandon(tb) -> None:
  """Stops a tensorboardX writer without writing what it holds.

  Its worker thread, left running, fails at interpreter exit, and its exit hook flushes
  again unless the writer is marked closed: both print tracebacks after the run's own
  error line. tensorboardX has no public way to drop pending events.
  """
  for writer in (tb.all_writers or {}).values():
    events = writer.event_writer
    try:
      if events._worker is not None:  # noqa: SLF001
        events._worker.stop()  # noqa: SLF001 - returns on its signal, writes nothing
      events._closed = True  # noqa: SLF001
    except AttributeError:  # another tensorboardX: its exit hook may still complain
      pass

