"""Reading a whole TensorFlow Datasets split into numpy arrays, without TensorFlow.

Uses ``builder.as_data_source()`` (ArrayRecord random access, no tf.data): it works
without TensorFlow once the dataset is prepared. Preparing it (downloading, encoding
images) needs TensorFlow and a network; when that is impossible the caller gets a
:class:`DataError` with the reason instead of a traceback, within seconds: before any
download the download host is asked for a page (an HTTP answer of any status within 3
seconds to connect and 3 to answer), since TFDS itself retries for minutes on a machine
without a network, or behind a firewall that accepts connections and answers nothing. A
failed preparation leaves nothing behind (the folders it created are removed).
"""

import os
import shutil
import urllib.error
import urllib.request
from typing import Any

import numpy as np

from common.errors import DataError

# Where TFDS downloads from (its Google Cloud Storage mirror); ``host:port`` in
# $GLONETS_TFDS_PROBE replaces it (tests point it at a closed local port).
PROBE_ENV = "GLONETS_TFDS_PROBE"
_PROBE = ("storage.googleapis.com", 443)


def _reachable(timeout: float = 3.0) -> str | None:
  """None when the download host answers an HTTP request, else why not."""
  host, port = _PROBE
  if os.environ.get(PROBE_ENV):
    host, _, port_text = os.environ[PROBE_ENV].rpartition(":")
    port = int(port_text)
  url = f"{'https' if port == 443 else 'http'}://{host}:{port}/"
  try:
    urllib.request.urlopen(url, timeout=timeout).close()
  except urllib.error.HTTPError:
    return None  # an answer, whatever its status: downloads can go through
  except (urllib.error.URLError, OSError) as e:
    reason = getattr(e, "reason", e)
    text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
    return f"{host}:{port} cannot be reached ({text})"
  return None


def load_tfds_arrays(
    name: str, splits: tuple[str, ...], keys: tuple[str, str], data_dir: str | None = None,
    expected_sizes: dict[str, int] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Loads ``splits`` of TFDS dataset ``name`` as ``{split: (x, y)}`` arrays.

  Args:
    name: TFDS dataset name (``mnist``).
    splits: split names.
    keys: feature names of inputs and targets (``("image", "label")``).
    data_dir: TFDS data directory (None: TFDS's default, usually ~/tensorflow_datasets).
    expected_sizes: example counts to verify per split (a truncated ArrayRecord file reads
      silently as empty records, so counts and values are checked).

  Returns:
    The arrays per split.

  Raises:
    DataError: TFDS missing, the dataset not prepared and not preparable, or wrong counts.
  """
  try:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise DataError("tensorflow-datasets is not installed") from e
  where = data_dir or os.path.expanduser("~/tensorflow_datasets")
  created = [p for p in (where, os.path.join(where, name), os.path.join(where, "downloads"))
             if not os.path.exists(p)]
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
      unreachable = _reachable()
      if unreachable:
        raise DataError(f"TensorFlow Datasets has no prepared {name!r} in {where}, and "
                        f"preparing it needs a network: {unreachable}")
      builder.download_and_prepare(file_format="array_record")
    sources = builder.as_data_source()
  except Exception as e:  # TFDS raises many types here; all mean "not available".
    for path in reversed(created):  # what this attempt created, never a user's files
      shutil.rmtree(path, ignore_errors=True)
    if isinstance(e, DataError):
      raise
    raise DataError(
        f"TensorFlow Datasets could not provide {name!r} in {where} "
        f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); preparing it "
        f"needs TensorFlow and a network") from e
  out = {}
  for split in splits:
    source = sources[split]
    records: list[dict[str, Any]] = source.__getitems__(range(len(source)))
    if any(r is None or r.get(keys[0]) is None for r in records):
      raise DataError(f"TFDS {name}/{split} holds empty records: its files are corrupt; "
                      f"delete {builder.data_dir} and prepare it again.")
    x = np.stack([np.asarray(r[keys[0]]) for r in records])
    y = np.asarray([r[keys[1]] for r in records])
    if expected_sizes and len(x) != expected_sizes[split]:
      raise DataError(f"TFDS {name}/{split} has {len(x)} examples, expected "
                      f"{expected_sizes[split]}; delete {builder.data_dir} and prepare it again.")
    out[split] = (x, y)
  return out
