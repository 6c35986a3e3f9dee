"""Fetching the official data files, each checked against its SHA-256.

Each experiment's ``data`` module lists what it reads as :class:`Download` entries
(``DOWNLOADS``); ``scripts/download_data.py`` fetches them into a data root. A file already
there with the right hash is kept as it is; a download goes to a ``.part`` file that
becomes the file only once its hash is checked, so nothing half-written is ever read.
Without internet a download fails within seconds, with one line saying what to put where.
"""

import dataclasses
import hashlib
import io
import os
import urllib.error
import urllib.request
import zipfile

from absl import logging

from common import fileio
from common.errors import DataError, StorageError

TIMEOUT_SECONDS = 15  # per connection attempt and per read


@dataclasses.dataclass(frozen=True)
class Download:
  """One file a loader reads, and where to fetch it.

  Attributes:
    url: where the official file (or the archive holding it) is served.
    path: where the loader reads it, relative to the data root (``mnist/...``).
    sha256: the SHA-256 of the file kept at ``path``.
    member: when ``url`` serves a zip archive around the file: the file's name in it.
  """

  url: str
  path: str
  sha256: str
  member: str | None = None


def is_present(download: Download, root: str) -> bool:
  """True when ``root/path`` holds the file with the expected hash."""
  path = os.path.join(root, download.path)
  return os.path.isfile(path) and fileio.sha256(path) == download.sha256


def fetch(download: Download, root: str) -> str:
  """Downloads ``download`` into ``root`` unless it is already there; returns its path.

  Raises:
    DataError: the server cannot be reached (no internet), refuses the request, or sends
      a file whose hash is not the official one; nothing is left behind.
    StorageError: the file cannot be written under ``root``.
  """
  target = os.path.join(root, download.path)
  if is_present(download, root):
    logging.info("%s: already there, hash checked.", target)
    return target
  source = (f"{download.member} inside {download.url}" if download.member
            else download.url)
  by_hand = f"put the official file at {target} by hand ({source}, SHA-256 {download.sha256})"
  logging.info("Downloading %s to %s ...", download.url, target)
  try:
    with urllib.request.urlopen(download.url, timeout=TIMEOUT_SECONDS) as response:
      data = response.read()
  except (urllib.error.URLError, TimeoutError, OSError) as e:
    reason = getattr(e, "reason", None) or e
    raise DataError(f"cannot download {download.url} ({reason}); without internet, "
                    f"{by_hand}.") from None
  if download.member is not None:
    data = _member(data, download, by_hand)
  digest = hashlib.sha256(data).hexdigest()
  if digest != download.sha256:
    raise DataError(f"{download.url} sent a file whose SHA-256 is {digest}, not the "
                    f"official {download.sha256}: nothing was written; {by_hand}.")
  part = f"{target}.part"
  try:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(part, "wb") as f:
      f.write(data)
    os.replace(part, target)
  except OSError as e:
    if os.path.exists(part):
      os.remove(part)
    raise StorageError(f"cannot write {target}: {e.strerror or e}; choose another data "
                       f"root (--data_dir or GLONETS_DATA_DIR).") from None
  return target


def _member(data: bytes, download: Download, by_hand: str) -> bytes:
  """The file ``download.member`` of the zip archive ``data``."""
  try:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
      return archive.read(download.member)
  except (zipfile.BadZipFile, KeyError) as e:
    raise DataError(f"{download.url} is not a zip archive holding {download.member} "
                    f"({e}); {by_hand}.") from None

