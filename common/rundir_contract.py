"""What a run directory holds, shared by training (which writes it) and reports (which read it).

::

  config.json     the run's nested config, its model and data records, where it ran
  metrics.jsonl   one JSON object per finished epoch
  summary.json    parameter count, compile seconds, mean epoch seconds, final/best metrics
  status.json     {"status": one of STATUSES, "message": ...}
  usage.json      layer usage at initialisation and after training
  checkpoints/    orbax checkpoints, one per epoch (the latest two kept)
  tensorboard/    TensorBoard event files (optional)

Imports neither JAX nor the training code, so that reports can read runs without them.
"""

import fcntl
import os
from collections.abc import Iterable, Mapping
from typing import Any

from common import fileio
from common.errors import RunDirError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
STATUS = "status.json"
USAGE = "usage.json"
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
LOCK = ".lock"

# 3: the nested config (sections model, data, optim, train, eval, run). Earlier versions
# recorded a flat one; `python -m common.migrate` rewrites them once.
SCHEMA_VERSION = 3
STATUSES = ("running", "done", "diverged", "interrupted", "failed")
# The sections that define what a run computes: resuming needs them unchanged (``eval`` and
# ``run`` only change the summation order, the speed or where files go).
RESULT_SECTIONS = ("model", "data", "optim", "train")


def read_config(run_path: str) -> dict[str, Any]:
  """The record in a run directory's ``config.json``, checked for shape and version.

  The one reader of that file, so a damaged or outdated one is the same single error
  wherever it is read (resume, reports, usage recomputation, restore).

  Raises:
    RunDirError: no ``config.json`` (not a run directory); one that is unreadable or not a
      run's record; one written by an earlier version (migrate it) or a later one.
  """
  path = os.path.join(run_path, CONFIG)
  if not os.path.exists(path):
    raise RunDirError(f"{run_path} is not a run directory (no {CONFIG}).")
  try:
    record = fileio.read_json(path)
  except (OSError, ValueError) as e:
    reason = type(e).__name__
  else:
    reason = _shape_problem(record)
    if not reason:
      version = record.get("schema_version", 1)
      if version == SCHEMA_VERSION:
        return record
      if isinstance(version, int) and version < SCHEMA_VERSION:
        raise RunDirError(f"{run_path} was made by an earlier version of this code (format "
                          f"{version}); rewrite its records once with `python -m "
                          f"common.migrate {run_path}`.")
      raise RunDirError(f"{run_path} was written by a newer version of this code (format "
                        f"{version!r}; this one reads {SCHEMA_VERSION}). Use that version, "
                        f"or choose a new --workdir.")
  raise RunDirError(f"{path} is unreadable or not a run's config ({reason}); restore it "
                    f"from a copy of the run.")


def _shape_problem(record: Any) -> str:
  if not isinstance(record, dict):
    return "not a JSON object"
  for key in ("config", "model", "data", "environment"):
    if not isinstance(record.get(key, {}), dict):
      return f"its {key} is not a JSON object"
  resumes = record.get("resumes", [])
  if not (isinstance(resumes, list) and all(isinstance(r, dict) for r in resumes)):
    return "its resumes are not a list of JSON objects"
  return ""


def flat_settings(config: Mapping[str, Any], sections: Iterable[str]) -> dict[str, Any]:
  """``{"section.key": value}`` for every field of ``sections`` (lists for tuples)."""
  out = {}
  for section in sections:
    for key, value in (config.get(section) or {}).items():
      out[f"{section}.{key}"] = list(value) if isinstance(value, tuple) else value
  return out


def incompatible_settings(saved: Mapping[str, Any], new: Mapping[str, Any],
                          added_defaults: Mapping[str, Any] | None = None) -> list[str]:
  """``section.key: saved -> new`` for each difference that forbids resuming.

  The result sections must match; ``train.epochs`` may change (to train a finished run
  further) only under a constant or plateau learning rate, as a decaying schedule is
  stretched over the whole run. A setting added after the run was made (absent from its
  config) reads as its default, which reproduces the old behaviour.

  Args:
    saved: the nested config in the run's ``config.json``.
    new: the nested config of the run asked for.
    added_defaults: ``{"section.key": default}`` of the settings that may be absent.
  """
  a, b = flat_settings(saved, RESULT_SECTIONS), flat_settings(new, RESULT_SECTIONS)
  for key, default in (added_defaults or {}).items():
    if key not in a and key in b:  # the run behaved as the default
      a[key] = list(default) if isinstance(default, tuple) else default
  keys = set(a) | set(b)
  if (saved.get("optim") or {}).get("schedule", "constant") in ("constant", "plateau"):
    keys.discard("train.epochs")  # neither stretches over the run's length
  if saved.get("experiment") != new.get("experiment"):
    keys.add("experiment")
    a["experiment"], b["experiment"] = saved.get("experiment"), new.get("experiment")
  return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(keys) if a.get(k) != b.get(k)]


def is_live(path: str) -> bool:
  """True while a process holds the run directory's lock (the OS drops it when the process
  dies, however it dies)."""
  try:
    f = open(os.path.join(path, LOCK))  # noqa: SIM115 - closed below
  except OSError:
    return False
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False
