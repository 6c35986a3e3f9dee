"""The epoch loop: compile once, train from device-resident data, evaluate, checkpoint.

:func:`run_experiment` is what every experiment's ``train.py`` calls after building its
config, model, dataset and task. It opens (or resumes) the run directory, trains with
:func:`fit`, and leaves the directory consistent whatever happens: ``status.json`` says
``done`` or ``failed`` with a message, ``metrics.jsonl`` holds every finished epoch, and
rerunning the same command on the same ``--workdir`` continues from the last checkpoint
and ends with the same metrics as an uninterrupted run.
"""

import dataclasses
import math
import os
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from tqdm import tqdm

from common import fileio, usage
from common.config import TrainConfig
from common.data.arrays import Dataset, Split, pad_to_batches
from common.errors import ConfigError, RunDirError
from common.train import parallel, rundir, steps
from common.train.checkpoint import Checkpointer
from common.train.environment import describe_environment
from common.train.metrics_log import TIMING_KEYS, MetricsLog
from common.train.optimizers import make_optimizer, make_schedule
from common.train.state import count_params, create_train_state
from common.train.tasks import Task

# Aim for about this many device calls per epoch: enough for a live progress bar, few
# enough that dispatch overhead (~0.1 ms a call) is negligible.
_CALLS_PER_EPOCH = 20


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/inf loss; the run stops as ``failed``."""


@dataclasses.dataclass
class _EvalSplit:
  """A split padded to whole batches and resident on device."""

  x: jax.Array
  y: jax.Array
  mask: jax.Array
  size: int


def _pad_batches(split: Split, batch_size: int, sharding) -> _EvalSplit:
  """Pads ``split`` to whole batches (see ``pad_to_batches``) and puts it on device."""
  x, y, mask = pad_to_batches(split, batch_size)
  put = lambda a: jax.device_put(a, sharding)  # noqa: E731
  return _EvalSplit(put(x), put(y), put(mask), len(split))


def _means(sums: dict[str, Any], prefix: str, names: tuple[str, ...]) -> dict[str, float]:
  count = float(sums["count"])
  return {f"{prefix}_{k}": float(sums[k]) / count for k in names}


def _chunks(steps_per_epoch: int) -> list[int]:
  """Splits an epoch into at most ``_CALLS_PER_EPOCH`` near-equal chunk lengths."""
  size = max(1, math.ceil(steps_per_epoch / _CALLS_PER_EPOCH))
  full, rest = divmod(steps_per_epoch, size)
  return [size] * full + ([rest] if rest else [])


def _best_epoch(history: list[dict[str, Any]], task: Task) -> dict[str, Any] | None:
  key = f"val_{task.selection_metric}"
  finite = [r for r in history if r.get(key) is not None and math.isfinite(r[key])]
  if not finite:
    return None
  sign = 1 if task.selection_mode == "min" else -1
  return min(finite, key=lambda r: (sign * r[key], r["epoch"]))


def summarize(history: list[dict[str, Any]], task: Task, extra: dict[str, Any]) -> dict[str, Any]:
  """Builds ``summary.json`` from the epoch history.

  Args:
    history: the per-epoch records.
    task: gives the model-selection metric.
    extra: fields to include as they are (parameter count, compile seconds, status...).

  Returns:
    The summary dict.
  """
  seconds = [r["train_seconds"] for r in history if "train_seconds" in r]
  best = _best_epoch(history, task)
  return {
      **extra,
      "epochs_completed": len(history),
      "mean_train_seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
      "selection": f"best val_{task.selection_metric} ({task.selection_mode})",
      "best_val_epoch": best["epoch"] if best else None,
      "best": best,
      "final": history[-1] if history else None,
  }


def supports_usage(model: nn.Module) -> bool:
  """True for models that expose per-block terms (``capture=True``) and a layer order."""
  return hasattr(model, "num_blocks") and hasattr(model, "param_order")


def _record_usage(run: rundir.RunDir, key: str, model, state, dataset, task, config) -> float:
  """Computes layer usage on the test set into ``usage.json[key]``; returns seconds."""
  t0 = time.perf_counter()
  path = run.file(usage.USAGE_FILE)
  record = fileio.read_json(path) if os.path.exists(path) else {}
  record[key] = usage.compute_usage(
      state, dataset.test, task, glonet=bool(getattr(model, "glonet", False)),
      param_order=model.param_order, batch_size=min(config.eval_batch_size, 500))
  record[key]["epoch"] = int(state.step) // max(1, len(dataset.train) // config.batch_size)
  fileio.atomic_write_json(path, record)
  return time.perf_counter() - t0


def fit(
    config: TrainConfig,
    model: nn.Module,
    dataset: Dataset,
    task: Task,
    run: rundir.RunDir,
) -> dict[str, Any]:
  """Trains ``model`` on ``dataset`` into ``run``, resuming from its last checkpoint.

  Args:
    config: the run configuration.
    model: an unbound Flax module, ``model(x, train=...)``.
    dataset: train/val/test arrays (host memory; moved to device here).
    task: loss and metrics.
    run: an opened, locked run directory whose config.json is written.

  Returns:
    The summary (also written to ``summary.json``).

  Raises:
    NonFiniteLossError: a NaN/inf training loss (the epoch and step are in the message).
  """
  check_inputs(config, dataset)
  n_train = len(dataset.train)
  steps_per_epoch = n_train // config.batch_size
  mesh = parallel.data_mesh(config.batch_size)
  replicated, batch_sharding = parallel.shardings(mesh)

  # Data on device, once. Evaluation splits are padded to whole batches and masked.
  x_train = jax.device_put(dataset.train.x, replicated)
  y_train = jax.device_put(dataset.train.y, replicated)
  eval_splits = {name: _pad_batches(getattr(dataset, name), config.eval_batch_size, replicated)
                 for name in ("val", "test")}

  key = jax.random.key(config.seed)
  init_key, data_key = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
  schedule = make_schedule(config.learning_rate, config.lr_schedule,
                           config.epochs * steps_per_epoch)
  tx = make_optimizer(config.optimizer, schedule, config.momentum)

  t0 = time.perf_counter()
  state = jax.jit(lambda k: create_train_state(model, tx, x_train[:1], k),
                  out_shardings=replicated)(init_key)
  jax.block_until_ready(state)
  init_seconds = time.perf_counter() - t0
  num_params = count_params(state.params)

  # Compile ahead of time, so compile cost is measured exactly and never lands in an epoch.
  run_steps = jax.jit(
      steps.make_step_runner(steps.make_train_step(task, config.l2_reg_alpha),
                             config.batch_size, steps_per_epoch, batch_sharding),
      donate_argnums=(0, 1))
  chunk_sizes = _chunks(steps_per_epoch)
  chunk_args = {n: jnp.int32(n) for n in set(chunk_sizes)}
  permute = jax.jit(lambda k: jax.random.permutation(k, n_train).astype(jnp.int32))
  evaluate = jax.jit(steps.make_evaluator(task))
  t0 = time.perf_counter()
  perm0 = permute(data_key)
  train_exe = run_steps.lower(state, steps.init_accumulator(task), x_train, y_train, perm0,
                              chunk_args[chunk_sizes[0]]).compile()
  train_compile = time.perf_counter() - t0
  t0 = time.perf_counter()
  eval_exes = {}
  for split in eval_splits.values():
    shape = split.x.shape
    if shape not in eval_exes:
      eval_exes[shape] = evaluate.lower(state, split.x, split.y, split.mask).compile()
  eval_compile = time.perf_counter() - t0
  logging.info("%s: %d parameters; compile %.2fs (train) + %.2fs (eval)",
               run.path, num_params, train_compile, eval_compile)

  def run_eval(state, name):
    split = eval_splits[name]
    sums = eval_exes[split.x.shape](state, split.x, split.y, split.mask)
    return _means(jax.device_get(sums), name, task.metric_names)

  extra = {
      "num_params": num_params,
      "steps_per_epoch": steps_per_epoch,
      "init_seconds": init_seconds,
      "compile_seconds": train_compile + eval_compile,
      "compile_seconds_train": train_compile,
      "compile_seconds_eval": eval_compile,
  }
  log = MetricsLog(run, config.tensorboard)
  history: list[dict[str, Any]] = []
  track_usage = supports_usage(model)
  usage_path = run.file(usage.USAGE_FILE)
  if track_usage and "init" not in (
      fileio.read_json(usage_path) if os.path.exists(usage_path) else {}):
    # The initial state is a pure function of the seed, so this is also right on resume.
    extra["usage_seconds_init"] = _record_usage(run, "init", model, state, dataset, task, config)
  with Checkpointer(run.file(rundir.CHECKPOINTS)) as ckpt:
    start = ckpt.latest_epoch() or 0
    if start:
      state, meta = ckpt.restore(start, state)
      history = list(meta["history"])
      logging.info("Resuming %s after epoch %d.", run.path, start)
    log.write(history)  # metrics.jsonl always matches the latest checkpoint

    try:
      for epoch in range(start + 1, config.epochs + 1):
        perm = permute(jax.random.fold_in(data_key, epoch))
        acc = steps.init_accumulator(task)
        lr = float(schedule((epoch - 1) * steps_per_epoch))
        jax.block_until_ready((perm, acc, state))
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{config.epochs}",
                   disable=None if config.progress is None else not config.progress,
                   leave=False)
        t0 = time.perf_counter()
        pending = None
        for n in chunk_sizes:
          state, acc = train_exe(state, acc, x_train, y_train, perm, chunk_args[n])
          if not bar.disable:
            # Wait for the *previous* chunk only, so the device always has work queued.
            done = acc["steps"] + 0
            if pending is not None:
              jax.block_until_ready(pending[0])
              bar.update(pending[1])
            pending = (done, n)
        jax.block_until_ready((state, acc))
        train_seconds = time.perf_counter() - t0
        if pending is not None:
          bar.update(pending[1])
        bar.close()

        sums = jax.device_get(acc)
        if sums["first_nonfinite_step"] >= 0:
          step = int(sums["first_nonfinite_step"])
          in_epoch = step - (epoch - 1) * steps_per_epoch + 1
          where = (f"non-finite training loss at epoch {epoch}, step {in_epoch} of "
                   f"{steps_per_epoch} (global step {step + 1})")
          if step == 0:
            hint = ("the initial model's loss is already non-finite (its activations "
                    "overflow at this depth), so a lower --learning_rate will not help")
          else:
            hint = (f"the last good checkpoint is epoch {epoch - 1}" if epoch > 1 else
                    "no epoch finished") + "; try a lower --learning_rate"
          raise NonFiniteLossError(f"{where}: {hint}.")
        t0 = time.perf_counter()
        record = {"epoch": epoch, **_means(sums, "train", task.metric_names)}
        record["train_objective"] = float(sums["objective"]) / float(sums["steps"])
        record.update(run_eval(state, "val"))
        record.update(run_eval(state, "test"))
        eval_seconds = time.perf_counter() - t0
        record.update({
            "learning_rate": lr,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "steps_per_second": steps_per_epoch / train_seconds,
            "examples_per_second": steps_per_epoch * config.batch_size / train_seconds,
        })
        history.append(record)
        ckpt.save(epoch, state, {"epoch": epoch, "history": fileio.to_jsonable(history)})
        log.write(history)
        logging.info(
            "epoch %d/%d  %s  train %.2fs  eval %.2fs", epoch, config.epochs,
            "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                      if k != "epoch" and k not in TIMING_KEYS and k != "learning_rate"),
            train_seconds, eval_seconds)
    finally:
      log.close()
      summary = summarize(history, task, extra)
      fileio.atomic_write_json(run.file(rundir.SUMMARY), summary)
    if track_usage:
      try:
        extra["usage_seconds_final"] = _record_usage(
            run, "final", model, state, dataset, task, config)
      except Exception as e:  # noqa: BLE001 - a finished training stays finished
        logging.warning("Final layer usage failed (%s: %s); the run is still done.",
                        type(e).__name__, e)
      summary = summarize(history, task, extra)
      fileio.atomic_write_json(run.file(rundir.SUMMARY), summary)
  return summary


def check_inputs(config: TrainConfig, dataset: Dataset) -> None:
  """Rejects settings that cannot work with this data on these devices.

  Raises:
    ConfigError: an empty split, a batch larger than the training split, or a batch that
      does not split over the devices.
  """
  for name, size in dataset.sizes().items():
    if size == 0:
      raise ConfigError(f"the {name} split is empty; check the data and the split settings.")
  if len(dataset.train) < config.batch_size:
    raise ConfigError(f"batch_size {config.batch_size} is larger than the training split "
                      f"({len(dataset.train)} examples); lower --batch_size.")
  parallel.data_mesh(config.batch_size)  # raises if the batch does not split over devices


def run_experiment(
    config: TrainConfig,
    model: nn.Module,
    model_name: str,
    dataset: Dataset,
    task: Task,
    extra_config: dict[str, Any] | None = None,
    extra_files: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
  """Opens or resumes the run directory, trains, and records the outcome.

  Args:
    config: the run configuration.
    model: the model to train.
    model_name: canonical model name with depth (``GloNet10``): the directory name under
      ``result_dir`` and the label in reports.
    dataset: the data (already validated by the experiment's loader).
    task: loss and metrics.
    extra_config: more facts for ``config.json`` (model details, data scaler...).
    extra_files: ``{file name: JSON-ready object}`` written into a new run directory
      (e.g. the SGEMM input scaler).

  Returns:
    ``(run_path, summary)``.

  Raises:
    RunDirError: the directory is locked or was made with other settings.
    NonFiniteLossError: training diverged (status ``failed`` is written first).
  """
  check_inputs(config, dataset)  # before anything is written
  run = rundir.open_run_dir(config.workdir, config.result_dir, model_name)
  try:
    settings = config.to_dict()
    data_record = {**dataset.info, "sizes": dataset.sizes()}
    if run.is_initialized:
      run.check_compatible(settings, data_record)
      with Checkpointer(run.file(rundir.CHECKPOINTS)) as ckpt:
        trained = ckpt.latest_epoch() or 0
      if trained > config.epochs:
        raise RunDirError(f"{run.path} has already trained {trained} epochs, more than "
                          f"--epochs={config.epochs}; pass --epochs={trained} or more.")
      run.record_resume(config.epochs)
    else:
      run.write_config({
          "config": settings,
          "model_name": model_name,
          "model": extra_config.get("model", {}) if extra_config else {},
          "data": data_record,
          **{k: v for k, v in (extra_config or {}).items() if k not in ("model",)},
          "environment": describe_environment(),
      })
      for name, content in (extra_files or {}).items():
        fileio.atomic_write_json(run.file(name), content)
    logging.info("Run directory: %s", run.path)
    run.write_status("running", f"training {model_name} for {config.epochs} epochs")
    try:
      summary = fit(config, model, dataset, task, run)
    except BaseException as e:  # record every way out, including Ctrl-C, then re-raise
      if isinstance(e, NonFiniteLossError):
        message = str(e)
      elif isinstance(e, KeyboardInterrupt):
        message = "interrupted; rerun the same command with this --workdir to resume"
      else:
        message = f"{type(e).__name__}: {e}"
      run.write_status("failed", message)
      _render_report(run.path)
      raise
    run.write_status("done", f"trained {summary['epochs_completed']} epochs")
    _render_report(run.path)
    return run.path, summary
  finally:
    run.release()


def _render_report(path: str) -> None:
  """Renders the run's figures and PDF; a plotting problem never fails the run."""
  try:
    from common import report  # pylint: disable=g-import-not-at-top (matplotlib is heavy)
    report.render_run(path)
  except Exception as e:  # noqa: BLE001 - the training result must survive a report bug
    logging.warning("Could not render the report of %s: %s: %s (rerun `python -m "
                    "common.report %s`)", path, type(e).__name__, e, path)
