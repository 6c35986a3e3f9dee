"""A disk cache of decoded arrays, so that slow decodes (JPEG folders, pickles) run once.

``cached_arrays(key, build)`` returns the arrays stored in ``<cache_dir>/<key>.npz`` or, when
that file is absent or unreadable, calls ``build()`` and stores its result. The key must
identify the content (callers put a digest of their source files in it), so a changed source
is a new key, never a stale hit.

The file is written whole or not at all: to a temporary sibling, fsynced, then renamed over
the target. Only ``<key>.npz`` is ever read, so a temporary file left by a killed build is
never mistaken for a cache; such leftovers are deleted when older than an hour, or by the
next successful write of the same key.

The default folder is ``$GLONETS_CACHE_DIR``, else ``$XDG_CACHE_HOME/glonets``, else
``~/.cache/glonets``: never the data root, which may be read-only or shared.
"""

import os
import re
import secrets
import time
import zipfile
from collections.abc import Callable

import numpy as np
from absl import logging

from common.fileio import CACHE_DIR_ENV, default_cache_dir

_TMP_INFIX = ".npz.tmp."
# A build of a dataset takes minutes at most; a temporary file older than this belongs to a
# process that died, not to one still writing.
_STALE_TMP_SECONDS = 3600.0
_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def cache_path(key: str, cache_dir: str | None = None) -> str:
  """The file that holds (or will hold) the arrays of ``key``.

  Args:
    key: a file-name-safe identifier (letters, digits, ``.``, ``_``, ``-``).
    cache_dir: the cache folder (None: :func:`default_cache_dir`).

  Returns:
    ``<cache_dir>/<key>.npz``.

  Raises:
    ValueError: a key that is not a plain file name (it could escape the folder).
  """
  if not _KEY_RE.match(key):
    raise ValueError(f"cache key {key!r} must be letters, digits, '.', '_' or '-'")
  return os.path.join(cache_dir or default_cache_dir(), f"{key}.npz")


def _tmp_files(folder: str, key: str | None = None) -> list[str]:
  """Temporary files of ``key`` (of every key when None) in ``folder``."""
  try:
    names = os.listdir(folder)
  except OSError:
    return []
  prefix = f"{key}{_TMP_INFIX}" if key else None
  return [os.path.join(folder, n) for n in names
          if (n.startswith(prefix) if prefix else _TMP_INFIX in n)]


def _remove(paths: list[str], older_than: float | None = None) -> None:
  """Deletes ``paths`` (only those last modified more than ``older_than`` seconds ago)."""
  now = time.time()
  for path in paths:
    try:
      if older_than is None or now - os.path.getmtime(path) > older_than:
        os.remove(path)
        logging.info("Removed %s.", path)  # a stale temporary file or a damaged cache
    except OSError:
      pass  # already gone (another process cleaned it) or not ours to delete


def _load(path: str) -> dict[str, np.ndarray]:
  # allow_pickle=False: a cache file is data, never code. Reading every member to its end
  # makes zipfile check each CRC, so a damaged file fails here rather than giving bad pixels.
  with np.load(path, allow_pickle=False) as archive:
    return {name: archive[name] for name in archive.files}


def _identity(path: str) -> tuple[int, int, int] | None:
  """What tells one file at ``path`` from another written there later, or None."""
  try:
    st = os.stat(path)
  except OSError:
    return None
  return st.st_ino, st.st_mtime_ns, st.st_size


def _write(path: str, arrays: dict[str, np.ndarray], key: str) -> bool:
  """Writes ``arrays`` to ``path`` atomically; returns False (with a warning) on failure."""
  folder = os.path.dirname(path)
  tmp = os.path.join(folder, f"{key}{_TMP_INFIX}{os.getpid()}.{secrets.token_hex(4)}")
  before = _identity(path)  # a damaged file being replaced, or None
  try:
    os.makedirs(folder, exist_ok=True)
    # A file object, not a name: np.savez would append ".npz" to the temporary name.
    with open(tmp, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except OSError as e:
    _remove([tmp])
    if _identity(path) not in (None, before):
      # A concurrent writer of the same key finished first (and may have removed our
      # temporary file): its file holds the same content, so nothing is lost.
      return True
    logging.warning("Could not write the cache file %s (%s); the data will be decoded "
                    "again next time. Set %s to a writable folder to cache it.", path, e,
                    CACHE_DIR_ENV)
    return False
  except BaseException:  # Ctrl-C or SIGTERM mid-write: leave no gigabyte-sized leftover
    _remove([tmp])
    raise
  try:  # make the rename itself durable; not possible on every file system
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(dir_fd)
    finally:
      os.close(dir_fd)
  except OSError:
    pass
  # Leftovers of killed builds of this key are now useless whatever their age.
  _remove(_tmp_files(folder, key))
  return True


def cached_arrays(key: str, build: Callable[[], dict[str, np.ndarray]],
                  cache_dir: str | None = None) -> tuple[dict[str, np.ndarray], str]:
  """The arrays of ``key`` from the cache, or from ``build()`` (then stored).

  Args:
    key: identifies the content; include a digest of the source so that a changed source
      is a miss (letters, digits, ``.``, ``_``, ``-``).
    build: computes the arrays on a miss; its errors propagate and nothing is written.
    cache_dir: the cache folder (None: :func:`default_cache_dir`); created when needed.

  Returns:
    ``(arrays, path)``: the arrays by name and the cache file's path. When the file cannot
    be written (read-only folder, full disk), a warning is logged, the built arrays are
    still returned and the file does not exist.
  """
  path = cache_path(key, cache_dir)
  folder = os.path.dirname(path)
  _remove(_tmp_files(folder), older_than=_STALE_TMP_SECONDS)
  if os.path.exists(path):
    try:
      arrays = _load(path)
      logging.info("Loaded %s from the cache %s.", key, path)
      return arrays, path
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
      logging.warning("The cache file %s is unreadable (%s: %s); rebuilding it.", path,
                      type(e).__name__, e)
      _remove([path])  # so that a failed rewrite leaves no damaged file to warn about again
  arrays = build()
  if _write(path, arrays, key):
    logging.info("Cached %s in %s.", key, path)
  return arrays, path


def checked_cached_arrays(
    key: str, build: Callable[[], dict[str, np.ndarray]],
    check: Callable[[dict[str, np.ndarray], str, str], None], source: str, fix: str,
    cache_dir: str | None = None) -> tuple[dict[str, np.ndarray], str, bool]:
  """:func:`cached_arrays` with the arrays verified, built or loaded.

  Args:
    key: as for :func:`cached_arrays`.
    build: decodes the source.
    check: ``check(arrays, where, fix)`` raises a ``DataError`` naming ``where`` and
      ``fix`` when the arrays are wrong (counts, shapes, labels).
    source: the source's path, blamed when freshly built arrays fail the check.
    fix: what the user should do about a bad source.
    cache_dir: as for :func:`cached_arrays`.

  Returns:
    ``(arrays, path, hit)``: a mutable copy of the arrays, the cache file's path, and
    whether they came from the cache. A cache hit is checked again (cheaply) and, when
    wrong, blamed on the cache file, whose deletion is the fix.
  """
  built = []

  def build_and_check() -> dict[str, np.ndarray]:
    arrays = build()
    check(arrays, source, fix)
    built.append(True)
    return arrays

  arrays, path = cached_arrays(key, build_and_check, cache_dir)
  if not built:
    check(arrays, f"the cache file {path}", "Delete it; the next run rebuilds it from the source.")
  return dict(arrays), path, not built
