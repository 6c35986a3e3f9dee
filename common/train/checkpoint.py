"""Orbax checkpoints: the train state and a JSON blob (epoch + metric history), atomically.

One checkpoint per finished epoch, numbered by the epoch. The state and the metadata go in
one orbax step (``args.Composite``), which orbax writes to a temporary directory and
renames when complete, so a kill during a save leaves the previous epoch as the latest.
Saves are synchronous: on a 2-core machine an async writer slows the next epoch's steps
(and its timing), and the save is excluded from the epoch's training seconds anyway.
"""

import logging as py_logging
import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from common.train.state import TrainState


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's INFO chatter (a dozen lines per save); its warnings still show."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


py_logging.getLogger("absl").addFilter(_QuietOrbax())


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory``.

  Use as a context manager, or call :meth:`close`; errors from orbax propagate.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def latest_epoch(self) -> int | None:
    """The last complete epoch saved, or None."""
    return self._manager.latest_step()

  def save(self, epoch: int, state: TrainState, meta: dict[str, Any]) -> None:
    """Saves the state after ``epoch`` with its metadata and waits until it is durable.

    Raises:
      RuntimeError: if orbax declines the save (e.g. the epoch already exists).
    """
    saved = self._manager.save(
        epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()
    if not saved:
      raise RuntimeError(f"orbax did not save epoch {epoch} (does it already exist?)")

  def restore(self, epoch: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores epoch ``epoch`` onto the structure, shapes and shardings of ``like``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(
        epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def close(self) -> None:
    self._manager.close()
