"""Reader for the IDX format of the official MNIST files (``*-idx?-ubyte.gz``).

Validates everything it can (gzip CRC, magic number, dtype code, declared vs actual size)
and turns every failure into one :class:`DataError` naming the file and the fix.
"""

import gzip
import hashlib
import os
import zlib

import numpy as np

from common.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_gz(path: str | os.PathLike, fix_hint: str = "") -> np.ndarray:
  """Reads a gzip-compressed IDX file into a numpy array (:func:`read_idx_gz_hashed`
  without the hash)."""
  return read_idx_gz_hashed(path, fix_hint)[0]


def read_idx_gz_hashed(path: str | os.PathLike, fix_hint: str = "") -> tuple[np.ndarray, str]:
  """Reads a gzip-compressed IDX file into a numpy array, with the SHA-256 of its content.

  Args:
    path: the ``.gz`` file.
    fix_hint: appended to error messages (how to get a good copy).

  Returns:
    The array with the shape declared in the IDX header, and the SHA-256 (hex) of the
    decompressed bytes: what the data is, whatever gzip settings compressed it.

  Raises:
    DataError: unreadable, truncated or malformed file.
  """
  path = os.fspath(path)
  try:
    with gzip.open(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
    raise DataError(f"{path} is corrupt or truncated ({type(e).__name__}: {e}). {fix_hint}") from e
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
    raise DataError(f"{path} is not an IDX file (bad magic number). {fix_hint}")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise DataError(f"{path} has a truncated IDX header. {fix_hint}")
  shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
  dtype = np.dtype(_DTYPES[raw[2]])
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) - header != expected:
    raise DataError(
        f"{path} declares shape {shape} ({expected} bytes) but holds {len(raw) - header} "
        f"bytes of data. {fix_hint}")
  array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
  # Native byte order, a writable copy.
  return array.astype(dtype.newbyteorder("=")), hashlib.sha256(raw).hexdigest()
