"""Reading a whole TensorFlow Datasets split into numpy arrays, without TensorFlow.

Uses ``builder.as_data_source()`` (ArrayRecord random access, no tf.data): it works
without TensorFlow once the dataset is prepared. Preparing it (downloading, encoding
images) needs TensorFlow and a network; when that is impossible the caller gets a
:class:`DataError` with the reason instead of a traceback. TFDS itself retries a failing
download for minutes, so the attempt is bounded twice: before any download the download
host is asked for a page (an HTTP answer of any status within 3 seconds to connect and 3
to answer), and the preparation runs in a child process that is stopped once its folder
has not grown for ``STALL_SECONDS``. A failed preparation leaves nothing behind (the
folders it created are removed).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.errors import DataError

# Where TFDS downloads from (its Google Cloud Storage mirror); ``host:port`` in
# $GLONETS_TFDS_PROBE replaces it (tests point it at a closed local port).
PROBE_ENV = "GLONETS_TFDS_PROBE"
_PROBE = ("storage.googleapis.com", 443)
# How long a preparation may go without writing a byte before it is stopped: downloads
# and encoding both write steadily, and a failing download retries in silence.
STALL_SECONDS = 60.0
# What the child process runs: argv[1] the dataset, argv[2] the TFDS folder ("": default).
PREPARE_CODE = ("import sys, tensorflow_datasets as tfds\n"
                "tfds.builder(sys.argv[1], data_dir=sys.argv[2] or None)"
                ".download_and_prepare(file_format='array_record')\n")


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


class PreparationFailed(DataError):
  """The child process preparing a dataset failed or stalled."""


def _folder_bytes(paths: Sequence[str]) -> int:
  total = 0
  for path in paths:
    for folder, _, files in os.walk(path):
      for f in files:
        try:
          total += os.path.getsize(os.path.join(folder, f))
        except OSError:  # renamed or removed meanwhile
          pass
  return total


def run_watched(cmd: list[str], watched: Sequence[str], stall_seconds: float,
                poll_seconds: float = 0.5) -> None:
  """Runs ``cmd``, stopping it once the files under the folders ``watched`` stop growing.

  Raises:
    PreparationFailed: the command failed (its last line of output is the reason), or
      wrote nothing for ``stall_seconds``.
  """
  with tempfile.TemporaryFile("w+") as output:
    child = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT)
    try:
      size, since = _folder_bytes(watched), time.monotonic()
      while child.poll() is None:
        time.sleep(poll_seconds)
        now = _folder_bytes(watched)
        if now != size:
          size, since = now, time.monotonic()
        elif time.monotonic() - since > stall_seconds:
          raise PreparationFailed(f"it wrote nothing for {stall_seconds:.0f} s: a download "
                                  f"that fails or hangs")
    finally:
      if child.poll() is None:  # stalled, or a signal stopped this process
        child.kill()
        child.wait()
    if child.returncode:
      output.seek(0)
      lines = [line for line in output.read().splitlines() if line.strip()]
      raise PreparationFailed(lines[-1] if lines else f"exit status {child.returncode}")


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
  # TFDS's own default folder, named explicitly so that the child prepares, and the
  # watchdog watches, the same one.
  where = (data_dir or os.environ.get("TFDS_DATA_DIR")
           or os.path.expanduser("~/tensorflow_datasets"))
  written = (os.path.join(where, name), os.path.join(where, "downloads"))
  created = [p for p in (where, *written) if not os.path.exists(p)]
  try:
    builder = tfds.builder(name, data_dir=where)
    if not builder.is_prepared():
      unreachable = _reachable()
      if unreachable:
        raise DataError(f"TensorFlow Datasets has no prepared {name!r} in {where}, and "
                        f"preparing it needs a network: {unreachable}")
      run_watched([sys.executable, "-c", PREPARE_CODE, name, where], written, STALL_SECONDS)
      builder = tfds.builder(name, data_dir=where)  # what the child prepared
    sources = builder.as_data_source()
  except BaseException as e:  # TFDS raises many types here; all mean "not available".
    for path in reversed(created):  # what this attempt created, never a user's files
      shutil.rmtree(path, ignore_errors=True)
    if not isinstance(e, Exception):  # a signal: stop, with nothing left behind
      raise
    if isinstance(e, DataError) and not isinstance(e, PreparationFailed):
      raise
    detail = (str(e) if isinstance(e, PreparationFailed) else
              f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise DataError(f"TensorFlow Datasets could not provide {name!r} in {where} ({detail}); "
                    f"preparing it needs TensorFlow and a network") from e
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
