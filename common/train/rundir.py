"""The run directory: unique creation, single-writer lock, status, config, resume checks.

What it holds is :mod:`common.rundir_contract`.
"""

import datetime
import errno
import fcntl
import json
import os
import re
import uuid
from typing import Any

from absl import logging

from common import config, fileio
from common.errors import RunDirError
from common.rundir_contract import (
    CHECKPOINTS,
    CONFIG,
    LOCK,
    METRICS,
    STATUS,
    SUMMARY,
    TENSORBOARD,
    flat_settings,
    incompatible_settings,
    read_config,
)

__all__ = ["CHECKPOINTS", "CONFIG", "METRICS", "STATUS", "SUMMARY", "TENSORBOARD", "RunDir",
           "new_session_dir", "open_run_dir", "read_config"]

# status.json is padded to this size: the room for the next status (RunDir.write_status).
STATUS_BYTES = 4096


def _utc_now() -> str:
  return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def new_session_dir(result_dir: str, model_name: str) -> str:
  """Creates ``<result_dir>/<model_name>/session_<UTC time>_<8 hex>`` atomically.

  ``os.mkdir`` fails if the name exists, so parallel runs can never share a directory
  (the original code's ``len(os.listdir()) + 1`` counter raced); a taken name is retried
  with a new random suffix.

  Args:
    result_dir: root of automatically named run directories.
    model_name: model name with depth (``GloNet10``).

  Returns:
    The new, empty directory.
  """
  parent = os.path.join(result_dir, model_name)
  _makedirs(parent, "--result_dir")
  stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
  while True:
    path = os.path.join(parent, f"session_{stamp}_{uuid.uuid4().hex[:8]}")
    try:
      os.mkdir(path)
      return path
    except FileExistsError:
      continue
    except OSError as e:
      raise RunDirError(f"cannot create a run directory in {parent} ({e.strerror}); pass a "
                        f"writable --result_dir or --workdir.") from e


def _makedirs(path: str, flag: str) -> None:
  """``os.makedirs`` whose failures (a file in the way, no permission, a full disk) are one
  clear :class:`RunDirError` naming the path and the flag to change."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise RunDirError(f"cannot create {path} ({e.strerror}); pass a writable {flag}.") from e


class RunDir:
  """An opened, locked run directory. Only one process may hold it at a time.

  In a run of several processes the others open it with ``writer=False``: they read it
  (checkpoints) but never lock or write it.
  """

  def __init__(self, path: str, writer: bool = True):
    self.path = os.path.abspath(path)
    self.writer = writer
    self._lock_file = None

  def file(self, name: str) -> str:
    """Absolute path of a file in the run directory."""
    return os.path.join(self.path, name)

  @property
  def is_initialized(self) -> bool:
    """True when the directory already holds a run (its config.json exists)."""
    return os.path.exists(self.file(CONFIG))

  def acquire(self) -> None:
    """Takes the exclusive lock; the OS drops it if the process dies.

    Raises:
      RunDirError: another live process holds the directory.
    """
    if not self.writer:
      return
    _makedirs(self.path, "--workdir")
    try:
      f = open(self.file(LOCK), "a+")
    except OSError as e:
      raise RunDirError(f"cannot write the lock file {self.file(LOCK)} ({e.strerror}); "
                        f"pass a writable --workdir.") from e
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      f.seek(0)
      owner = f.read().strip() or "unknown"
      f.close()
      if e.errno in (errno.EAGAIN, errno.EACCES):
        raise RunDirError(
            f"run directory {self.path} is in use by another process ({owner}); wait for it "
            f"to finish or choose another --workdir.") from e
      raise
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} since {_utc_now()}")
    f.flush()
    self._lock_file = f
    # Temporary files of atomic writes that a killed writer left (the lock says none is
    # writing now).
    for name in os.listdir(self.path):
      if re.search(r"\.tmp\.\d+$", name):
        try:
          os.remove(os.path.join(self.path, name))
        except OSError:
          pass

  def release(self) -> None:
    """Releases the lock."""
    if self._lock_file is not None:
      self._lock_file.close()
      self._lock_file = None

  def check_compatible(self, settings: dict[str, Any], data: dict[str, Any]) -> None:
    """Refuses to resume a run made with different settings or different data.

    Args:
      settings: the new run's nested config (as recorded in ``config.json``).
      data: the new run's data record (hashes, split seed, split sizes).

    Raises:
      RunDirError: naming every differing setting or data fact, or a run directory
        written by a newer version of this code.
    """
    saved = read_config(self.path)
    diffs = incompatible_settings(saved.get("config", {}), settings, config.field_defaults())
    saved_data = saved.get("data", {})
    diffs += [f"data {k}: {saved_data.get(k)!r} -> {data.get(k)!r}"
              for k in ("sha256", "sizes", "split_seed", "validation_size")
              if (k in saved_data or k in data) and saved_data.get(k) != data.get(k)]
    if diffs:
      raise RunDirError(
          f"run directory {self.path} was made with other settings, so it cannot be "
          f"resumed with these ({'; '.join(diffs)}). Rerun with the original settings, or "
          f"choose a new --workdir.")

  def record_resume(self, epochs: int, environment: dict[str, Any] | None = None,
                    settings: dict[str, Any] | None = None) -> None:
    """Notes a resume in ``config.json``: time, requested epochs and, when given, where it
    ran (devices, code version, machine), since a run may resume elsewhere, and the
    resumable settings that differ from the run's first start (``--remat`` after running
    out of device memory, say: its epochs from here on take longer).

    A resume on other devices than the run was created on is also logged as a warning:
    the math is the same up to float summation order, but timings are not comparable.
    """
    if not self.writer:
      return
    record = read_config(self.path)
    entry: dict[str, Any] = {"at": _utc_now(), "epochs": epochs}
    # Only the sections that may change on resume (the others were checked equal).
    first = flat_settings(record.get("config", {}), ("eval", "run"))
    changed = {k: v for k, v in sorted(flat_settings(settings or {}, ("eval", "run")).items())
               if k in first and first[k] != v and k != "run.workdir"}
    if changed:
      entry["changed"] = changed
    if environment:
      entry.update({k: environment[k] for k in
                    ("devices", "device_kind", "process_count", "code", "cpu", "hostname")
                    if k in environment})
      created = record.get("environment", {})
      previous = (record.get("resumes") or [created])[-1]
      if previous.get("devices") and previous.get("devices") != entry.get("devices"):
        logging.warning("%s resumes on %s; it last ran on %s.", self.path,
                        entry.get("devices"), previous.get("devices"))
    record.setdefault("resumes", []).append(entry)
    fileio.atomic_write_json(self.file(CONFIG), record)

  def write_config(self, record: dict[str, Any]) -> None:
    """Writes ``config.json`` (once, when the run is created)."""
    if not self.writer:
      return
    fileio.atomic_write_json(self.file(CONFIG), {"created": _utc_now(), **record})

  def write_status(self, status: str, message: str = "", **extra: Any) -> None:
    """Writes ``status.json``: ``running``, ``done``, ``diverged``, ``interrupted`` or
    ``failed``, with a message.

    The file is padded to :data:`STATUS_BYTES` with trailing spaces (still JSON), so the
    space of the next status is already the file's own: when the disk is full, the
    atomic write fails and the new status is written over the old one in place.
    """
    if not self.writer:
      return
    text = json.dumps({"status": status, "message": message, "updated": _utc_now(),
                       **fileio.to_jsonable(extra)}, indent=2) + "\n"
    data = text.encode("utf-8").ljust(STATUS_BYTES)
    try:
      fileio.atomic_write_bytes(self.file(STATUS), data)
    except OSError:
      if not fileio.overwrite_in_place(self.file(STATUS), data):
        raise


def open_run_dir(workdir: str | None, result_dir: str, model_name: str,
                 own_files: tuple[str, ...] = ()) -> RunDir:
  """Opens (and locks) an explicit ``workdir`` or a new unique session directory.

  Args:
    workdir: an explicit run directory (created if missing, resumed if it holds a run),
      or None.
    result_dir: root of automatically named run directories.
    model_name: model name with depth, the folder under ``result_dir``.
    own_files: files the run writes before ``config.json`` (an experiment's extra
      files): a directory holding only those is a start that was cut short, not foreign.

  Returns:
    The locked run directory.

  Raises:
    RunDirError: ``workdir`` is a file, a non-empty directory that is not a run directory,
      or locked by another process.
  """
  if not workdir:
    run = RunDir(new_session_dir(result_dir, model_name))
    run.acquire()
    return run
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise RunDirError(f"--workdir={workdir} exists and is not a directory.")
  # Checked before the lock too, so that a refused directory is left untouched.
  if os.path.isdir(workdir) and not os.path.exists(os.path.join(workdir, CONFIG)):
    _refuse_foreign(workdir, own_files)
  run = RunDir(workdir)
  run.acquire()  # lock first: a concurrent starter then sees "in use", not a half-made dir
  if not run.is_initialized:
    try:
      _refuse_foreign(workdir, own_files)
    except RunDirError:
      run.release()
      raise
  return run


def _refuse_foreign(workdir: str, own_files: tuple[str, ...] = ()) -> None:
  """Refuses a non-empty directory that is not a run directory."""
  foreign = [n for n in os.listdir(workdir)
             if n != LOCK and ".tmp." not in n and n not in own_files]
  if foreign:
    raise RunDirError(
        f"--workdir={workdir} is a non-empty directory without {CONFIG}, so it is not a "
        f"run directory; choose a new or empty directory.")
