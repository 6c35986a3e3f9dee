"""Small-file writes that never leave a half-written file behind.

Every file of the run-directory contract (``config.json``, ``status.json``,
``metrics.jsonl``, ...) is written to a temporary sibling, flushed, fsynced and renamed
over the target, so a reader (or a process killed mid-write) sees the old or the new
content, never a torn one.
"""

import hashlib
import json
import math
import os
from typing import Any


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes ``data`` to ``path`` atomically (tmp file + fsync + rename).

  Args:
    path: destination file.
    data: the complete new content.
  """
  path = os.fspath(path)
  tmp = f"{path}.tmp.{os.getpid()}"
  try:
    with open(tmp, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    # A full disk, a kill signal...: the target keeps its old content, and no temporary
    # file is left behind (a SIGKILL can still leave one: RunDir.acquire removes those).
    try:
      os.remove(tmp)
    except OSError:
      pass
    if isinstance(e, OSError) and e.filename is None:  # a failed write names no file
      raise OSError(e.errno, e.strerror, path) from e
    raise


def overwrite_in_place(path: str | os.PathLike, data: bytes) -> bool:
  """Writes ``data`` over the start of the existing file ``path``, in its own space.

  The fallback of a small file that must be written when the disk is full: the bytes
  replace ones the file already holds, so no block is allocated (on file systems that
  overwrite in place). Not atomic: a process killed during the write can leave it torn.

  Returns:
    False when ``path`` is missing or shorter than ``data`` (nothing is written).
  """
  try:
    with open(path, "r+b") as f:
      if os.fstat(f.fileno()).st_size < len(data):
        return False
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
  except FileNotFoundError:
    return False
  return True


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
  """Writes UTF-8 ``text`` to ``path`` atomically."""
  atomic_write_bytes(path, text.encode("utf-8"))


def to_jsonable(obj: Any) -> Any:
  """Converts numpy/jax scalars and arrays (and tuples) into plain JSON types."""
  if isinstance(obj, dict):
    return {str(k): to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [to_jsonable(v) for v in obj]
  if hasattr(obj, "tolist"):  # numpy / jax arrays and scalars
    return to_jsonable(obj.tolist())
  if isinstance(obj, float) and not math.isfinite(obj):
    return None  # NaN/inf are not valid JSON; null says "no finite value".
  return obj


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
  """Writes ``obj`` as indented JSON to ``path`` atomically."""
  atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
  """Reads a JSON file."""
  with open(path, encoding="utf-8") as f:
    return json.load(f)


_JSON_KINDS = {dict: "a JSON object", list: "a JSON array"}


def read_json_or(path: str | os.PathLike, default: Any,
                 problems: list[str] | None = None, *, kind: type | None = None) -> Any:
  """Reads a JSON file, or returns ``default`` when it is missing or unreadable.

  An unreadable file (damaged by hand, a full disk, a copy cut short) is named in
  ``problems`` when given, so that a report can say so instead of stopping. With ``kind``
  (``dict`` for a record), valid JSON of another type (``null``, a list) is damage too,
  so no caller has to check the type of what it got.
  """
  try:
    value = read_json(path)
  except FileNotFoundError:
    return default
  except (OSError, ValueError) as e:
    if problems is not None:
      problems.append(f"{os.path.basename(path)} is unreadable ({type(e).__name__})")
    return default
  if kind is not None and not isinstance(value, kind):
    if problems is not None:
      problems.append(f"{os.path.basename(path)} is unreadable (not "
                      f"{_JSON_KINDS.get(kind, kind.__name__)})")
    return default
  return value


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
  """Reads a JSON-lines file, skipping a torn last line if a crash left one."""
  records = []
  with open(path, encoding="utf-8") as f:
    lines = f.read().splitlines()
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i == len(lines) - 1:
        break  # a torn final line from an interrupted writer
      raise
  return records


def sha256(path: str | os.PathLike) -> str:
  """SHA-256 of a file, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


CACHE_DIR_ENV = "GLONETS_CACHE_DIR"


def default_cache_dir() -> str:
  """``$GLONETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/glonets``, else ``~/.cache/glonets``."""
  if os.environ.get(CACHE_DIR_ENV):
    return os.path.expanduser(os.environ[CACHE_DIR_ENV])
  if os.environ.get("XDG_CACHE_HOME"):
    return os.path.join(os.path.expanduser(os.environ["XDG_CACHE_HOME"]), "glonets")
  return os.path.join(os.path.expanduser("~"), ".cache", "glonets")
