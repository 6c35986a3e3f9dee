"""Orbax checkpoints: the train state and a JSON blob (epoch + metric history), atomically,
with a checksum of every file.

One checkpoint per finished epoch, numbered by the epoch. The state and the metadata go in
one orbax step (``args.Composite``), which orbax writes to a temporary directory and
renames when complete, so a kill during a save leaves the previous epoch as the latest.
Saves are synchronous: on a 2-core machine an async writer slows the next epoch's steps
(and its timing), and the save is excluded from the epoch's training seconds anyway.

Orbax does not notice a flipped bit in a checkpoint's array data (it restores it, and the
run goes on with other weights). So every save records the SHA-256 of each file of the
step in ``<step>/glonets_sha256.json``, and :meth:`Checkpointer.restore_latest` verifies
them: a damaged, truncated or incomplete latest checkpoint is named in one warning,
moved aside to ``<checkpoints>_damaged/``, and the newest intact one is restored instead
(training then redoes the epochs after it, exactly). A save is finished when its record
is written, so a step without one (a kill between orbax's commit and the record) is treated
as damaged too: files that were never checked are never restored. Checkpoints written before
checksums existed get their records from ``python -m common.migrate``.
"""

import contextlib
import datetime
import logging as py_logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from common import fileio
from common.errors import RunDirError, StorageError
from common.train import distributed
from common.train.state import TrainState

MANIFEST = "glonets_sha256.json"
INCOMPLETE = "its checksum record is missing (the save was cut short)"


class _QuietOrbax(py_logging.Filter):
  """Drops orbax's INFO chatter (a dozen lines per save); its warnings still show."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return record.levelno >= py_logging.WARNING or "orbax" not in record.pathname


def quiet_orbax_info_logs() -> None:
  """Filters orbax's INFO lines out of the absl logger (idempotent).

  Called by the command-line entry points (:func:`common.cli.run_main`), not at import:
  a program that imports this module keeps its logging as it set it.
  """
  logger = py_logging.getLogger("absl")
  if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
    logger.addFilter(_QuietOrbax())


class Checkpointer:
  """Saves and restores ``(state, meta)`` pairs under ``directory``.

  Use as a context manager, or call :meth:`close`; errors from orbax propagate.
  """

  def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
    self._root = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True)
    self._manager = ocp.CheckpointManager(self._root, options=options)
    self._after_failure = contextlib.ExitStack()  # what a refused save leaves behind
    # In a run of several processes every one saves and restores (orbax coordinates
    # them); process 0 alone writes our own files (checksum records, moves).
    self._writer = distributed.is_primary()

  def _step_dir(self, epoch: int) -> str:
    return os.path.join(self._root, str(epoch))

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
    try:
      with _held_stderr() as held:
        saved = self._manager.save(
            epoch, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
        self._manager.wait_until_finished()
        if saved and self._writer:
          step = self._step_dir(epoch)
          write_record(step)
    except Exception as e:
      cause = storage_failure(e)
      if cause is None:
        sys.stderr.write(held.get("text", ""))
        raise
      # The refused save's other writes fail later, on orbax's and tensorstore's threads,
      # each with a traceback (into its closed event loop, or as a future asyncio reports
      # when it is collected): held back until the manager is closed, and dropped. The
      # run ends with its own error line.
      self._after_failure.enter_context(_held_stderr())
      py_logging.getLogger("asyncio").disabled = True
      self.remove_partial_saves()
      previous = [s for s in self._manager.all_steps() if s < epoch]
      kept = (f"the checkpoint of epoch {max(previous)} is intact" if previous
              else "no earlier checkpoint exists")
      raise StorageError(
          f"cannot save the checkpoint of epoch {epoch} in {self._root}: {cause}; {kept}. "
          f"{storage_fix(cause)}, then rerun the same command to resume.") from e
    sys.stderr.write(held.get("text", ""))  # orbax's own warnings, if any
    if not saved:
      raise RuntimeError(f"orbax did not save epoch {epoch} (does it already exist?)")

  def remove_partial_saves(self) -> None:
    """Removes orbax's temporary folders of saves that did not finish (a kill or a full
    disk during a save). Only for the process that holds the run directory's lock."""
    if self._writer:
      for name in os.listdir(self._root):
        if ".orbax-checkpoint-tmp" in name:
          shutil.rmtree(os.path.join(self._root, name), ignore_errors=True)
    distributed.barrier("glonets_partial_saves_removed")
    # A step folder without orbax's commit marker or our record is incomplete too; orbax
    # skips it when listing, so it is only in the way of the next save of that epoch.
    self._manager.reload()

  def verify(self, epoch: int) -> str | None:
    """What is wrong with the files of epoch ``epoch``'s checkpoint, or None when they
    match their checksums."""
    step = self._step_dir(epoch)
    record = os.path.join(step, MANIFEST)
    if not os.path.exists(record):
      return INCOMPLETE
    try:
      expected = fileio.read_json(record)
    except (OSError, ValueError) as e:
      return f"its checksum record {record} is unreadable ({type(e).__name__})"
    found = _digests(step)
    for name, digest in sorted(expected.items()):
      if name not in found:
        return f"{os.path.join(step, name)} is missing"
      if found[name] != digest:
        return f"{os.path.join(step, name)} does not match its checksum"
    return None

  def restore_latest(self, like: TrainState, move_aside: bool = True
                     ) -> tuple[TrainState, dict[str, Any] | None, int]:
    """Restores the newest intact checkpoint; damaged newer ones are named (and moved aside).

    Args:
      like: a state with the structure, shapes and shardings to restore onto.
      move_aside: move damaged newer steps out of the folder (training must, to save
        their epochs again); analysis tools leave the run directory as it is.

    Returns:
      ``(state, meta, epoch)``; ``(like, None, 0)`` when there is no checkpoint, or only
      saves cut short before their checksum record.

    Raises:
      RunDirError: checkpoints exist but none is intact.
    """
    damaged = []
    for epoch in sorted(self._manager.all_steps(), reverse=True):
      problem = self.verify(epoch)
      if problem is not None:
        damaged.append((epoch, problem))
        continue
      # Files as written: a failure to restore them is a bug or a wrong `like`, not
      # damage, and must not be hidden behind a fallback.
      state, meta = self.restore(epoch, like)
      if damaged and move_aside:
        self._move_aside(damaged, epoch)
      for bad, problem in ([] if move_aside else damaged):
        logging.warning("The checkpoint of epoch %d is damaged (%s); using epoch %d.", bad,
                        problem, epoch)
      return state, meta, epoch
    if damaged and all(problem == INCOMPLETE for _, problem in damaged):
      # Only saves cut short before their record (a kill during the first save): nothing
      # was lost that training the run from its start does not redo exactly.
      if move_aside:
        self._move_aside(damaged, 0)
      return like, None, 0
    if damaged:
      raise RunDirError(
          f"no intact checkpoint in {self._root}: "
          + "; ".join(f"epoch {e}: {why}" for e, why in damaged)
          + f". Move {self._root} aside to train this run from the start.")
    return like, None, 0

  def _move_aside(self, damaged: list[tuple[int, str]], intact: int) -> None:
    """Moves damaged steps out of orbax's folder (so their epochs can be saved again)."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    aside = f"{self._root}_damaged"
    distributed.barrier("glonets_before_move_aside")  # every process has decided
    for epoch, problem in damaged:
      target = os.path.join(aside, f"{epoch}-{stamp}")
      if self._writer:
        os.makedirs(aside, exist_ok=True)
        shutil.move(self._step_dir(epoch), target)
      logging.warning("The checkpoint of epoch %d is damaged (%s); moved to %s. Resuming "
                      "from epoch %d.", epoch, problem, target, intact)
    distributed.barrier("glonets_after_move_aside")
    self._manager.reload()

  def restore(self, epoch: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores epoch ``epoch`` onto the structure, shapes and shardings of ``like``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self._manager.restore(
        epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def close(self) -> None:
    try:
      self._manager.close()
    finally:
      self._after_failure.close()


def write_record(step: str) -> None:
  """Writes the checksum record of the checkpoint step folder ``step``."""
  fileio.atomic_write_json(os.path.join(step, MANIFEST), _digests(step))


def _digests(step: str) -> dict[str, str]:
  """SHA-256 of every file under ``step`` (relative paths), the checksum record excluded."""
  out = {}
  for folder, _, files in os.walk(step):
    for name in files:
      path = os.path.join(folder, name)
      rel = os.path.relpath(path, step)
      if rel != MANIFEST:
        out[rel] = fileio.sha256(path)
  return out


# errno values that mean "the storage refused the write", and how they read in messages of
# libraries that do not raise OSError (orbax's tensorstore writes raise ValueError with the
# OS error in the text).
_STORAGE_ERRNOS = {28: "no space left on device", 122: "disk quota exceeded",
                   30: "read-only file system",
                   27: "file too large (the file-size limit, ulimit -f)"}


def storage_fix(cause: str) -> str:
  """What to do about a refused write whose cause :func:`storage_failure` named."""
  if "ulimit" in cause:
    return "Raise the file-size limit"
  if "read-only" in cause:
    return "Make the folder writable"
  return "Free space"


def storage_failure(error: BaseException) -> str | None:
  """The cause when ``error`` (or one it was raised from) is a refused write, else None."""
  seen = set()
  while error is not None and id(error) not in seen:
    seen.add(id(error))
    number = getattr(error, "errno", None)
    if number in _STORAGE_ERRNOS:
      return _STORAGE_ERRNOS[number]
    text = str(error)
    for number, cause in _STORAGE_ERRNOS.items():
      if f"os_error_code='{number}'" in text or cause in text.lower():
        return cause
    error = error.__cause__ or error.__context__
  return None


@contextlib.contextmanager
def _held_stderr() -> Iterator[dict[str, str]]:
  """Holds back what is written to file descriptor 2 during a save.

  When a write fails (a full disk), orbax's worker threads each log the same exception
  with its traceback and asyncio adds a dozen more: about 200 lines before the one clear
  error this module raises. Holding them lets the caller drop them on a storage failure
  and pass them on otherwise (``held["text"]``).
  """
  held = {"text": ""}
  sys.stderr.flush()
  try:
    saved_fd = os.dup(2)
    buffer = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
  except OSError:  # no descriptor or no temporary file: do not hold anything
    yield held
    return
  os.dup2(buffer.fileno(), 2)
  try:
    yield held
  finally:
    sys.stderr.flush()
    os.dup2(saved_fd, 2)
    os.close(saved_fd)
    buffer.seek(0)
    held["text"] = buffer.read().decode("utf-8", "replace")
    buffer.close()
