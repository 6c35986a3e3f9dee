r"""Rewrites the records of run directories made by earlier versions to the current format.

  python -m common.migrate RUN_DIR [RUN_DIR...]

Format 3 records the nested config (sections model, data, optim, train, eval, run), the
task's selection metric, and statuses ``diverged`` and ``interrupted`` in their own right.
For each run directory of format 1 or 2 this rewrites ``config.json`` (and ``status.json``
where an old ``failed`` meant a divergence or an interruption) once, keeping each original
as ``<file>.bak``; a current one is left as it is. Checkpoints written before checksums
existed (a folder without the ``CHECKSUMMED`` marker of format 2) get their checksum
records, said in the output: nothing can tell whether those files were damaged before. A
run directory it cannot read is one ``error:`` line, the others are still migrated, and the
exit status is 2. Training, reports and usage recomputation read format 3 only.
"""

import dataclasses
import importlib
import os
import shutil
import sys
from typing import Any

from absl import logging

from common import fileio
from common.config import FIELDS, TrainConfig, get_field
from common.errors import ConfigError, RunDirError
from common.rundir_contract import (
    CHECKPOINTS,
    CONFIG,
    METRICS,
    SCHEMA_VERSION,
    STATUS,
    SUMMARY,
)

# The status messages that format 1 wrote with status "failed".
_OLD_STATUS_PREFIXES = {"non-finite training loss": "diverged", "interrupted": "interrupted"}
# Settings that format 2 recorded for models that never read them.
_UNREAD = {"cifar": {"features"}, "imagenet": {"features"}}
# Format 2 marked a checkpoints folder whose every step has a checksum record.
_CHECKSUMMED_MARKER = "CHECKSUMMED"


def migrate(run_path: str) -> list[str]:
  """Rewrites one run directory to the current format; returns the files it rewrote.

  Raises:
    RunDirError: no readable run record, or one this version cannot convert.
  """
  path = os.path.join(run_path, CONFIG)
  try:
    record = fileio.read_json(path)
  except (OSError, ValueError) as e:
    raise RunDirError(f"{path} is missing or unreadable ({type(e).__name__}); nothing "
                      f"to migrate.") from None
  if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
    raise RunDirError(f"{path} is not a run's config; nothing to migrate.")
  version = record.get("schema_version", 1)
  if version == SCHEMA_VERSION:
    return []
  if not isinstance(version, int) or version > SCHEMA_VERSION:
    raise RunDirError(f"{path} is of format {version!r}, newer than this code's "
                      f"{SCHEMA_VERSION}; use that version.")
  new_record = _config_record(record, run_path)
  rewritten = _record_checksums(run_path) + [CONFIG]
  status_path = os.path.join(run_path, STATUS)
  status = fileio.read_json_or(status_path, None, [], kind=dict)
  new_status = _status(status) if status else None
  if new_status != status and new_status is not None:
    shutil.copy2(status_path, status_path + ".bak")
    fileio.atomic_write_json(status_path, new_status)
    rewritten.append(STATUS)
  shutil.copy2(path, path + ".bak")
  fileio.atomic_write_json(path, new_record)  # last: a rerun after a kill starts again
  return rewritten


def _config_record(record: dict[str, Any], run_path: str) -> dict[str, Any]:
  flat = record["config"]
  model = dict(record.get("model") or {})
  registry = model.get("registry", "dense")
  values = {f.name: f.default for f in dataclasses.fields(TrainConfig)
            if f.default is not dataclasses.MISSING}
  values.update(flat)
  if model.get("family"):  # format 1 kept the name as given (GloNet50)
    values["model"], values["num_layers"] = model["family"], model.get("num_layers",
                                                                        values["num_layers"])
  experiment = values.get("experiment") or record.get("experiment") or "unknown"
  variant = record.get("recipe")
  nested = _experiment_config(experiment, variant)
  defaults = TrainConfig.__dataclass_fields__
  for name, value in values.items():
    if name not in FIELDS:
      raise RunDirError(f"{run_path}: its setting {name}={value!r} has no field in the "
                        f"current config; this version cannot migrate it.")
    if nested is None:
      continue
    value = list(value) if isinstance(value, tuple) else value
    section, _, key = FIELDS[name].rpartition(".")
    holder = nested if not section else get_field(nested, section)
    if holder is not None and key in holder:
      holder[key] = value
    elif not (name in _UNREAD.get(registry, ()) or value == _default(defaults[name])):
      raise RunDirError(f"{run_path}: its setting {name}={value!r} has no field in "
                        f"{experiment}'s config; this version cannot migrate it.")
  if nested is None:  # not an experiment of this repository: every setting at its field
    nested = TrainConfig(**{k: tuple(v) if isinstance(v, list) else v
                            for k, v in values.items()}).to_nested()
  nested["experiment"], nested["variant"] = experiment, variant or "unrecorded"
  if nested.get("model", {}).get("use_batch_norm") is None:
    nested["model"]["use_batch_norm"] = model.get("use_batch_norm")
  if registry in _UNREAD:
    model.pop("features", None)
  model["label"] = _label(model, registry, nested["model"]) or model.get("label")
  out = {k: v for k, v in record.items() if k not in ("recipe", "experiment")}
  out.update(schema_version=SCHEMA_VERSION, config=nested, model=model,
             task=_task(run_path))
  return out


def _record_checksums(run_path: str) -> list[str]:
  """Writes the checksum records missing from a checkpoints folder of before checksums;
  returns the records written."""
  from common.train.checkpoint import MANIFEST, write_record  # noqa: PLC0415 (JAX)
  folder = os.path.join(run_path, CHECKPOINTS)
  if not os.path.isdir(folder) or os.path.exists(os.path.join(folder, _CHECKSUMMED_MARKER)):
    return []
  written = []
  for name in sorted(os.listdir(folder), key=lambda n: (len(n), n)):
    step = os.path.join(folder, name)
    if name.isdigit() and os.path.isdir(step) and not os.path.exists(
        os.path.join(step, MANIFEST)):
      write_record(step)
      written.append(os.path.join(CHECKPOINTS, name, MANIFEST))
  if written:
    logging.warning("%s: recorded the checksums of %d checkpoints written before checksums "
                    "existed; whether their files were damaged before cannot be known.",
                    run_path, len(written))
  return written


def _default(field: dataclasses.Field) -> Any:
  return field.default if field.default is not dataclasses.MISSING else object()


def _experiment_config(experiment: str, variant: str | None) -> dict[str, Any] | None:
  """The experiment's current config for ``variant`` (its first one when unrecorded), as a
  plain nested dict; None for a package without configs (tests, other code)."""
  try:
    module = importlib.import_module(f"{experiment}.configs.default")
  except ImportError:
    return None
  variants = module.VARIANTS
  try:
    return module.get_config(variant if variant in variants else variants[0]).to_dict()
  except ConfigError:
    return None


def _label(model: dict[str, Any], registry: str, options: dict[str, Any]) -> str | None:
  from common.models.registry import REGISTRIES, model_label  # noqa: PLC0415 (JAX)
  families = REGISTRIES.get(registry) or {}
  family = model.get("family")
  if family not in families or "use_batch_norm" not in model:
    return None
  return model_label(family, model["use_batch_norm"], families, options)


def _task(run_path: str) -> dict[str, str]:
  """The selection metric the run used: recorded in ``summary.json`` since format 2; else
  the metric its records hold (accuracy is maximised, an error minimised)."""
  summary = fileio.read_json_or(os.path.join(run_path, SUMMARY), {}, [], kind=dict)
  if summary.get("selection_metric") and summary.get("selection_mode"):
    return {"selection_metric": summary["selection_metric"],
            "selection_mode": summary["selection_mode"]}
  metrics_path = os.path.join(run_path, METRICS)
  records = fileio.read_jsonl(metrics_path) if os.path.exists(metrics_path) else []
  keys = set(records[0]) if records else set()
  for metric, mode in (("accuracy", "max"), ("mse", "min")):
    if f"val_{metric}" in keys or f"test_{metric}" in keys:
      return {"selection_metric": metric, "selection_mode": mode}
  return {"selection_metric": "loss", "selection_mode": "min"}


def _status(status: dict[str, Any]) -> dict[str, Any]:
  if status.get("status") == "failed":
    message = str(status.get("message") or "")
    for prefix, new in _OLD_STATUS_PREFIXES.items():
      if message.startswith(prefix):
        return {**status, "status": new}
  return status


def main(argv: list[str]) -> None:
  paths = argv[1:]
  if not paths:
    sys.stderr.write("error: name the run directories to migrate: python -m "
                     "common.migrate RUN_DIR...\n")
    sys.exit(2)
  failed = False
  for path in paths:
    try:
      rewritten = migrate(path)
    except RunDirError as e:
      sys.stderr.write(f"error: {e}\n")
      failed = True
      continue
    if rewritten:
      logging.info("%s: rewrote %s (originals kept as .bak)", path, ", ".join(rewritten))
    else:
      logging.info("%s: already current", path)
  if failed:
    sys.exit(2)


if __name__ == "__main__":
  from common.cli import run_main  # noqa: PLC0415

  run_main(main, positional=True)
