r"""Recomputes layer usage of finished runs from their checkpoints, without retraining.

  python -m common.recompute_usage RUN_DIR [RUN_DIR ...] [--data_dir=ROOT]

For each run directory it rebuilds the model from ``config.json``, reloads the data the
run used (its experiment's ``data.load_for_config``, and ``data.preprocess_for`` where
the step preprocesses inputs; the data's SHA-256 must match the one recorded), restores
the latest checkpoint and rewrites ``usage.json``: ``final`` from the checkpoint and
``init`` from the seed (the initial state is a pure function of it), with today's fields
(``blocks_needed``, ``stage_boundaries``...). Then it re-renders the report. Older run
directories are read as they were written: a setting their config lacks takes its
default.
"""

import dataclasses
import importlib
import os
import sys

if __package__ in (None, ""):  # `python common/recompute_usage.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import flags, logging  # noqa: E402

from common import fileio  # noqa: E402
from common.cli import run_main  # noqa: E402
from common.data.augment import identity_preprocess  # noqa: E402
from common.errors import ConfigError, DataError, RunDirError  # noqa: E402
from common.models import build_from_config, get_registry  # noqa: E402
from common.report.hook import ReportHook  # noqa: E402
from common.report.runs import Run  # noqa: E402
from common.run_config import DATA_DIR_ENV  # noqa: E402
from common.train import rundir  # noqa: E402
from common.train.optimizers import optimizer_from_config  # noqa: E402
from common.train.restore import load_config, load_trained_state  # noqa: E402
from common.train.state import create_train_state  # noqa: E402
from common.train.trainer import seed_keys  # noqa: E402
from common.usage_hook import UsageHook  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                f"Data root (default: ${DATA_DIR_ENV}, then the run's own).")


def recompute(run_path: str, data_dir: str | None = None) -> dict:
  """Rewrites ``usage.json`` of ``run_path``; returns the new record.

  Args:
    run_path: a run directory with at least one checkpoint.
    data_dir: the data root; None for the one the run recorded.

  Returns:
    The new ``usage.json`` content.

  Raises:
    RunDirError: not a run directory, locked by a running process, not finished (its
      latest checkpoint is not the state after training), or no checkpoint.
    DataError: the data differs from what the run was trained on.
  """
  config = load_config(run_path)
  loaded = Run.load(run_path)  # a damaged status.json is named, not a traceback
  if loaded.state != "done":
    damaged = "".join(f"; {p}" for p in loaded.problems)
    # A damaged record says nothing of how the run ended (effective_status would say died).
    state = "unknown" if any(p.startswith(rundir.STATUS) for p in loaded.problems) else (
        loaded.state)
    raise RunDirError(f"{run_path} is not finished (status: {state}{damaged}): its usage "
                      f"after training does not exist yet. Finish it first (rerun its command "
                      f"to resume), then recompute.")
  if data_dir:
    config = dataclasses.replace(config, data_dir=data_dir)
  record = loaded.config
  if record.get("data", {}).get("sha256") is not None:
    # The run's own recorded hashes decide below whether this is the data it trained on;
    # whether that data was the official release was settled when the run began.
    config = dataclasses.replace(config, allow_unofficial_data=True)
  data = importlib.import_module(f"{config.experiment}.data")
  dataset, task = data.load_for_config(config)
  dataset = dataset.with_train_size(config.train_size)  # as run_experiment
  saved_sha = record.get("data", {}).get("sha256")
  if saved_sha is not None and dataset.info.get("sha256") != saved_sha:
    raise DataError(f"the data under {config.data_dir} is not what {run_path} was trained "
                    f"on (sha256 differs); point --data_dir at the original copy.")
  registry = get_registry(record.get("model", {}).get("registry", "dense"))
  model, _, _ = build_from_config(config, task.out_dim, registry)
  # Image experiments keep uint8 inputs and turn them into model inputs in the step.
  preprocess = (data.preprocess_for(config) if hasattr(data, "preprocess_for")
                else identity_preprocess)
  sample = preprocess(None, jax.numpy.asarray(dataset.train.x[:1]), False)
  run = rundir.RunDir(run_path)
  run.acquire()  # never rewrite the usage of a run that is still training
  try:
    hook = UsageHook(model, dataset, task, min(config.eval_batch_size, 500), preprocess)
    state, epoch = load_trained_state(run_path, model, sample.shape[1:])
    trained = max((r.get("epoch", 0) for r in loaded.metrics), default=0)
    if epoch < trained:  # restored an older intact one (the damage is logged above)
      raise RunDirError(
          f"the checkpoint of {run_path}'s last epoch ({trained}) is damaged or missing; "
          f"the newest intact one, of epoch {epoch}, is not the state after training. Put "
          f"the checkpoint back to recompute its usage (its usage.json is left as it is).")
    tx, _ = optimizer_from_config(config, 1)
    init = create_train_state(model, tx, sample, seed_keys(config.seed)[0])
    hook.record(run.path, "init", init, 0, train_inputs=jax.numpy.asarray(dataset.train.x),
                train_batch=config.batch_size)
    hook.record(run.path, "final", state, epoch)
  finally:
    run.release()
  ReportHook().on_exit(run.path)
  return fileio.read_json(run.file("usage.json"))


def main(argv):
  paths = argv[1:]
  if not paths:
    raise ConfigError("give one or more run directories: python -m common.recompute_usage "
                      "RUN_DIR [RUN_DIR ...].")
  for path in paths:
    if not os.path.isdir(path):
      raise RunDirError(f"{path} is not a directory.")
    usage = recompute(path, _DATA_DIR.value or os.environ.get(DATA_DIR_ENV) or None)
    final = usage["final"]
    logging.info("%s: blocks_used %s, blocks_needed %s of %d", path, final.get("blocks_used"),
                 final.get("blocks_needed"), final["num_blocks"])


if __name__ == "__main__":
  run_main(main, positional=True)
