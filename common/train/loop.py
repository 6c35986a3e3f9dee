"""The epoch loop: train, evaluate, checkpoint, with hooks for everything else.

:func:`run_experiment` is what every experiment's ``train.py`` calls after building its
config, model, dataset and task. It opens (or resumes) the run directory, builds a
:class:`~common.train.trainer.Trainer`, trains with :func:`fit`, and leaves the directory
consistent whatever happens: ``status.json`` says ``done``, ``diverged`` (a non-finite
loss, or one past the divergence bound: :func:`check_bounded`), ``interrupted`` (SIGTERM,
Ctrl-C, SIGHUP: see :mod:`common.train.signals`) or ``failed`` (anything else) with a
message, ``metrics.jsonl`` holds every finished epoch, and rerunning the same command on
the same ``--workdir`` continues from the last checkpoint and ends with the same metrics as
an uninterrupted run. Layer usage and the report are hooks (:mod:`common.train.hooks`).
"""

import json
import math
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging

from common import fileio
from common.config import TrainConfig
from common.data.arrays import Dataset
from common.errors import (
  ConfigError,
  DeviceMemoryError,
  DivergedError,
  Interrupted,
  LossExplodedError,
  NonFiniteLossError,
  RunDirError,
  StorageError,
  UserError,
)
from common.rundir_contract import SCHEMA_VERSION
from common.train import distributed, rundir, signals, steps
from common.train import hooks as hooks_lib
from common.train.checkpoint import Checkpointer, storage_failure, storage_fix
from common.train.environment import describe_environment
from common.train.metrics_log import TIMING_KEYS, MetricsLog
from common.train.signals import interrupt_on_signals
from common.train.tasks import Task
from common.train.trainer import Trainer, check_inputs


def _best_epoch(history: list[dict[str, Any]], task: Task) -> dict[str, Any] | None:
  key = f"val_{task.selection_metric}"
  finite = [r for r in history if r.get(key) is not None and math.isfinite(r[key])]
  if not finite:
    return None
  sign = 1 if task.selection_mode == "min" else -1
  return min(finite, key=lambda r: (sign * r[key], r["epoch"]))


def early_stop(history: list[dict[str, Any]], task: Task, patience: int,
               min_delta: float) -> dict[str, Any] | None:
  """Why training stops after the last epoch of ``history``, or None to go on.

  It stops once the validation metric (``task.selection_metric``) has not improved by more
  than ``min_delta`` on its best value for ``patience`` epochs. A function of the recorded
  history alone, so a resumed run takes the same decision, and a stopped run rerun with
  the same command trains nothing more.

  Returns:
    ``{"epoch", "best_epoch", "patience", "min_delta"}``, or None (``patience`` 0: never).
  """
  if not patience or not history:
    return None
  key = f"val_{task.selection_metric}"
  sign = 1 if task.selection_mode == "max" else -1
  best_value, best_epoch = None, None
  for record in history:
    value = record.get(key)
    if value is None or not math.isfinite(value):
      continue
    if best_value is None or sign * (value - best_value) > min_delta:
      best_value, best_epoch = value, record["epoch"]
  last = history[-1]["epoch"]
  if best_epoch is None or last - best_epoch < patience:
    return None
  return {"epoch": last, "best_epoch": best_epoch, "patience": patience,
          "min_delta": min_delta}


def stop_message(stop: dict[str, Any], task: Task) -> str:
  """The status message of a run that stopped early."""
  return (f"stopped early after epoch {stop['epoch']}: validation {task.selection_metric} "
          f"did not improve by more than {stop['min_delta']:g} in {stop['patience']} epochs "
          f"after epoch {stop['best_epoch']}")


def summarize(history: list[dict[str, Any]], task: Task, extra: dict[str, Any]) -> dict[str, Any]:
  """Builds ``summary.json`` from the epoch history.

  Args:
    history: the per-epoch records.
    task: gives the model-selection metric (recorded, so reports need not guess it).
    extra: fields to include as they are (parameter count, compile seconds...).

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
      "selection_metric": task.selection_metric,
      "selection_mode": task.selection_mode,
      "best_val_epoch": best["epoch"] if best else None,
      "best": best,
      "final": history[-1] if history else None,
  }


def nonfinite_message(step: int, epoch: int, steps_per_epoch: int,
                      grad_clip_norm: float = 0.0) -> str:
  """What to say when global step ``step`` (0-based) of ``epoch`` had a NaN/inf loss."""
  in_epoch = step - (epoch - 1) * steps_per_epoch + 1
  where = (f"non-finite training loss at epoch {epoch}, step {in_epoch} of "
           f"{steps_per_epoch} (global step {step + 1})")
  if step == 0:
    hint = ("the initial model's loss is already non-finite (its activations overflow at "
            "this depth), so a lower --learning_rate will not help")
  else:
    hint = (f"the last good checkpoint is epoch {epoch - 1}" if epoch > 1 else
            "no epoch finished") + "; try a lower --learning_rate"
    if not grad_clip_norm:
      # A GloNet's head receives every block's update at once (the sum), so SGD at a
      # ResNet's learning rate can blow up where clipping the update's norm trains
      # (measured on CIFAR-10: resnet_cifar10/README.md).
      hint += " or clip the gradient norm (--grad_clip_norm=1)"
  return f"{where}: {hint}."


def check_bounded(record: dict[str, Any], initial_loss: float | None, factor: float,
                  steps_per_epoch: int, grad_clip_norm: float = 0.0) -> None:
  """Raises when an epoch's losses exploded while staying finite.

  The rule: the run has diverged when the epoch's mean training loss, or its validation
  loss, exceeds ``factor`` times the loss of the run's first step (the initial model's).
  A model whose weights or activations blow up shows it there first, often long before
  anything overflows to inf: its metrics are then meaningless, whatever the status says.

  Args:
    record: the epoch's metrics (``epoch``, ``train_loss``, ``val_loss`` when there is a
      validation split).
    initial_loss: the first step's loss (None: not known, as in a run checkpointed before
      it was recorded; nothing is checked).
    factor: the bound as a multiple of ``initial_loss`` (``eval.divergence_factor``; 0: no
      bound).
    steps_per_epoch: for the message.
    grad_clip_norm: for the message (clipping is suggested when off).

  Raises:
    LossExplodedError: naming the epoch, the losses, the bound and what to try.
  """
  if not factor or initial_loss is None or not initial_loss > 0:
    return
  bound = factor * initial_loss
  losses = {split: record[f"{split}_loss"] for split in ("train", "val")
            if record.get(f"{split}_loss") is not None}
  over = {k: v for k, v in losses.items() if not v <= bound}
  if not over:
    return
  epoch = record["epoch"]
  what = " and ".join(f"{'mean training' if k == 'train' else 'validation'} loss {v:.4g}"
                      for k, v in over.items())
  hint = (f"the last good checkpoint is epoch {epoch - 1}" if epoch > 1
          else "no epoch finished") + "; try a lower --learning_rate"
  if not grad_clip_norm:
    hint += " or clip the gradient norm (--grad_clip_norm=1)"
  raise LossExplodedError(
      f"loss exploded at epoch {epoch} ({steps_per_epoch} steps): {what} "
      f"{'are' if len(over) > 1 else 'is'} over {factor:g} "
      f"x the initial loss {initial_loss:.4g} (--config.eval.divergence_factor; 0 turns the "
      f"check off): {hint}.")


def fit(config: TrainConfig, trainer: Trainer, run: rundir.RunDir,
        hooks: Sequence[hooks_lib.Hook] = ()) -> dict[str, Any]:
  """Trains ``trainer``'s model into ``run``, resuming from its last checkpoint.

  Args:
    config: the run configuration.
    trainer: the built trainer (state, compiled steps, device data).
    run: an opened, locked run directory whose config.json is written.
    hooks: called at the start (``on_start``) and the end (``on_end``) of training;
      what they return is added to the summary.

  Returns:
    The summary (also written to ``summary.json``).

  Raises:
    DivergedError: a NaN/inf training loss (the epoch and step are in the message), or
      one past the divergence bound (:func:`check_bounded`).
  """
  task = trainer.task
  extra = {"num_params": trainer.num_params, "steps_per_epoch": trainer.steps_per_epoch,
           **trainer.timings,
           "compile_seconds": (trainer.timings["compile_seconds_train"]
                               + trainer.timings["compile_seconds_eval"])}
  logging.info("%s: %d parameters; compile %.2fs (train) + %.2fs (eval)", run.path,
               trainer.num_params, trainer.timings["compile_seconds_train"],
               trainer.timings["compile_seconds_eval"])
  for hook in hooks:
    extra.update(hook.on_start(trainer, trainer.state, run) or {})
  log = MetricsLog(run, config.tensorboard)
  with Checkpointer(run.file(rundir.CHECKPOINTS)) as ckpt:
    ckpt.remove_partial_saves()  # left by a kill or a full disk during a save
    # The newest checkpoint whose files match their checksums; damaged ones are named.
    state, meta, start = ckpt.restore_latest(trainer.state)
    history = list(meta["history"]) if start else []
    # The initial model's loss, which bounds every later epoch's (check_bounded).
    initial_loss = meta.get("initial_loss") if start else None
    if start:
      logging.info("Resuming %s after epoch %d.", run.path, start)
    failure: BaseException | None = None
    stop = early_stop(history, task, config.patience, config.min_delta)
    try:
      log.write(history)  # metrics.jsonl always matches the latest checkpoint
      for epoch in range(start + 1, config.epochs + 1):
        if stop:
          break
        learning_rate = trainer.learning_rate(epoch, state)  # before `state` is donated
        state, sums, train_seconds = trainer.train_epoch(state, epoch, config.progress)
        if sums["first_nonfinite_step"] >= 0:
          raise NonFiniteLossError(nonfinite_message(
              int(sums["first_nonfinite_step"]), epoch, trainer.steps_per_epoch,
              config.grad_clip_norm))
        if epoch == 1:
          initial_loss = float(sums["first_loss"])
        record = _epoch_record(trainer, state, epoch, sums, train_seconds, learning_rate)
        check_bounded(record, initial_loss, config.divergence_factor,
                      trainer.steps_per_epoch, config.grad_clip_norm)
        history.append(record)
        with signals.deferred():  # a checkpoint, its checksums and the log: whole or not
          ckpt.save(epoch, state, {"epoch": epoch, "history": fileio.to_jsonable(history),
                                   "initial_loss": initial_loss})
          log.write(history)
        logging.info(
            "epoch %d/%d  %s  train %.2fs  eval %.2fs", epoch, config.epochs,
            "  ".join(f"{k} {v:.4g}" for k, v in record.items()
                      if k not in ("epoch", "learning_rate", *TIMING_KEYS)),
            train_seconds, record["eval_seconds"])
        stop = early_stop(history, task, config.patience, config.min_delta)
      if stop and stop["epoch"] < config.epochs:  # at the last epoch it stops anyway
        logging.info("%s.", stop_message(stop, task).capitalize())
        extra["early_stop"] = stop
    except BaseException as e:
      failure = e
      raise
    finally:
      extra["initial_loss"] = initial_loss
      _close_records(log, run, summarize(history, task, extra), failure)
  for hook in hooks:
    extra.update(hook.on_end(trainer, state, run) or {})
  summary = summarize(history, task, extra)
  if run.writer:
    fileio.atomic_write_json(run.file(rundir.SUMMARY), summary)
  return summary


def _close_records(log: MetricsLog, run: rundir.RunDir, summary: dict[str, Any],
                   failure: BaseException | None) -> None:
  """Closes the metric log and writes ``summary.json`` as training stops.

  After a storage failure nothing more is written (the disk is full, or read-only); a
  write that fails while another error is on its way out is logged, so the error that
  stopped the run is the one reported.
  """
  if failure is not None and storage_failure(failure):
    log.close(flush=False)
    return
  try:
    log.close()
    if run.writer:
      fileio.atomic_write_json(run.file(rundir.SUMMARY), summary)
  except OSError as e:
    if failure is None:
      raise
    logging.warning("Could not write the summary of %s: %s", run.path, e)


def _epoch_record(trainer: Trainer, state, epoch: int, sums: dict[str, Any],
                  train_seconds: float, learning_rate: float) -> dict[str, Any]:
  """One line of ``metrics.jsonl``: train means, val/test metrics, timings."""
  count = float(sums["count"])
  record = {"epoch": epoch,
            **{f"train_{k}": float(sums[k]) / count for k in trainer.task.metric_names}}
  record["train_objective"] = float(sums["objective"]) / float(sums["steps"])
  t0 = time.perf_counter()
  record.update(trainer.evaluate(state, "val"))
  record.update(trainer.evaluate(state, "test"))
  steps_per_epoch, batch = trainer.steps_per_epoch, trainer.config.batch_size
  record.update({
      "learning_rate": learning_rate,  # at the epoch's first step
      "train_seconds": train_seconds,
      "eval_seconds": time.perf_counter() - t0,
      "steps_per_second": steps_per_epoch / train_seconds,
      "examples_per_second": steps_per_epoch * batch / train_seconds,
  })
  return record


def run_experiment(
    config: Mapping[str, Any] | TrainConfig,
    model: nn.Module,
    model_name: str,
    dataset: Dataset,
    task: Task,
    *,
    preprocess: steps.Preprocess | None = None,
    extra_config: dict[str, Any] | None = None,
    extra_files: dict[str, Any] | None = None,
    hooks: Sequence[hooks_lib.Hook] = (),
) -> tuple[str, dict[str, Any]]:
  """Opens or resumes the run directory, trains, and records the outcome.

  Args:
    config: the run's nested config (recorded in ``config.json``), its model parsed
      (``model.name`` a family, ``model.depth`` and ``model.use_batch_norm`` set); a flat
      :class:`TrainConfig` is recorded as :meth:`TrainConfig.to_nested`.
    model: the model to train.
    model_name: canonical model name with depth (``GloNet10``): the directory name under
      ``result_dir`` and the label in reports.
    dataset: the data (already validated by the experiment's loader).
    task: loss and metrics.
    preprocess: stored inputs to model inputs inside the jitted steps (augmentation).
    extra_config: more facts for ``config.json`` (``model``: the registry's model
      record; anything else is stored at the top level).
    extra_files: ``{file name: JSON-ready object}`` written into a new run directory
      (e.g. the SGEMM input scaler).
    hooks: training hooks (layer usage, the report: :func:`common.experiment.default_hooks`).

  Returns:
    ``(run_path, summary)``.

  Raises:
    RunDirError: the directory is locked or was made with other settings.
    DivergedError: training diverged (status ``diverged`` is written first).
  """
  settings = _json_ready(config.to_nested() if isinstance(config, TrainConfig) else config)
  config = TrainConfig.from_nested(settings)
  dataset = dataset.with_train_size(config.train_size)
  check_inputs(config, dataset)  # before anything is written
  if jax.process_count() > 1 and not config.workdir:
    raise ConfigError("a run of several processes needs --workdir: the same run directory "
                      "for every process, on storage they all see.")
  # Process 0 (the only one, usually) locks and writes the run directory; in a run of
  # several processes the others only read its checkpoints.
  if distributed.is_primary():
    run = rundir.open_run_dir(config.workdir, config.result_dir, model_name,
                              own_files=tuple(extra_files or ()))
  else:
    run = rundir.RunDir(config.workdir, writer=False)
  distributed.barrier("glonets_run_dir_open")
  try:
    with interrupt_on_signals():
      return _train_into(run, config, settings, model, model_name, dataset, task,
                         preprocess, extra_config, extra_files, hooks)
  finally:
    run.release()


def _check_resume(run: rundir.RunDir, config: TrainConfig) -> dict[str, Any] | None:
  """What a compatible ``run`` has left to do under ``config``.

  Returns:
    Its summary when it has nothing left to do: finished (status ``done``, a readable
    summary) with its ``config.epochs`` trained and the last checkpoint intact; else None.
    A damaged last checkpoint goes on to training, which names it and trains its epoch
    again; so does a damaged status or summary, which training rewrites.

  Raises:
    RunDirError: more epochs trained than asked for, or epochs recorded in
      ``metrics.jsonl`` with no checkpoint to resume them from (training would start
      again from scratch over the records).
  """
  trained, intact = 0, False
  if os.path.isdir(run.file(rundir.CHECKPOINTS)):  # else opening it would create the folder
    with Checkpointer(run.file(rundir.CHECKPOINTS)) as ckpt:
      trained = ckpt.latest_epoch() or 0
      intact = bool(trained) and ckpt.verify(trained) is None
  recorded = _recorded_epochs(run.file(rundir.METRICS))
  if not trained and recorded:
    raise RunDirError(
        f"{run.path} records {recorded} trained epochs in {rundir.METRICS} but holds no "
        f"checkpoint in {rundir.CHECKPOINTS}/ (removed, or not copied with the run), so "
        f"it cannot resume; put the checkpoints back, or train into a new --workdir.")
  if trained > config.epochs:
    raise RunDirError(f"{run.path} has already trained {trained} epochs, more than "
                      f"--epochs={config.epochs}; pass --epochs={trained} or more.")
  if not (trained == config.epochs and intact):
    return None
  problems: list[str] = []
  status = fileio.read_json_or(run.file(rundir.STATUS), {}, problems, kind=dict)
  summary = fileio.read_json_or(run.file(rundir.SUMMARY), None, problems, kind=dict)
  if problems:
    logging.warning("%s: %s; the run is finished again to rewrite them (no epoch is "
                    "retrained).", run.path, "; ".join(problems))
  return summary if status.get("status") == "done" and summary else None


def _recorded_epochs(path: str) -> int:
  """How many epochs ``metrics.jsonl`` records, damaged lines included: training rewrites
  the file from the checkpoint's history, so its content is never read here."""
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      return sum(1 for line in f if line.strip())
  except FileNotFoundError:
    return 0


def _json_ready(config: Mapping[str, Any]) -> dict[str, Any]:
  """A nested config (ConfigDict or dict) as plain JSON types, tuples as lists."""
  config = config.to_dict() if hasattr(config, "to_dict") else config
  return json.loads(json.dumps(dict(config)))


def _train_into(run: rundir.RunDir, config: TrainConfig, settings: dict[str, Any],
                model: nn.Module, model_name: str,
                dataset: Dataset, task: Task, preprocess: steps.Preprocess | None,
                extra_config: dict[str, Any] | None, extra_files: dict[str, Any] | None,
                hooks: Sequence[hooks_lib.Hook]) -> tuple[str, dict[str, Any]]:
  """The body of :func:`run_experiment` once the run directory is locked."""
  data_record = {**dataset.info, "sizes": dataset.sizes()}
  if run.is_initialized:
    run.check_compatible(settings, data_record)
    finished = _check_resume(run, config)
    # A kill may have cut the first start, or the file may be damaged since; the data
    # were just checked equal, so the file's content is known.
    for name, content in (extra_files or {}).items():
      expected = json.loads(json.dumps(fileio.to_jsonable(content)))
      if run.writer and fileio.read_json_or(run.file(name), None) != expected:
        if os.path.exists(run.file(name)):
          logging.warning("%s differs from what the run's data give; written again.",
                          run.file(name))
        fileio.atomic_write_json(run.file(name), content)
    if finished is not None:
      # Leave it as it is: a rebuild would rewrite its summary's timings, and a kill during
      # it would mark a finished run interrupted.
      logging.info("%s has already trained its %d epochs; nothing to do.", run.path,
                   config.epochs)
      return run.path, finished
    run.record_resume(config.epochs, describe_environment(), settings)
  else:
    # The experiment's files first: config.json is what makes the directory a run, so a
    # kill before it leaves an empty-looking directory that the next start reuses.
    for name, content in (extra_files or {}).items():
      if run.writer:
        fileio.atomic_write_json(run.file(name), content)
    extra = dict(extra_config or {})
    run.write_config({
        "schema_version": SCHEMA_VERSION,
        "config": settings,
        "model_name": model_name,
        "model": extra.pop("model", {}),
        "task": {"selection_metric": task.selection_metric,
                 "selection_mode": task.selection_mode,
                 # Chance level, for reports (common.report.runs.Run.at_chance).
                 **({"num_classes": task.num_classes} if hasattr(task, "num_classes")
                    else {})},
        "data": data_record,
        **extra,
        "environment": describe_environment(),
    })
  logging.info("Run directory: %s", run.path)
  run.write_status("running", f"training {model_name} for {config.epochs} epochs")
  building = True
  try:
    trainer = Trainer.build(config, model, dataset, task, preprocess=preprocess)
    building = False
    summary = fit(config, trainer, run, hooks)
    stop = summary.get("early_stop")
    run.write_status("done", stop_message(stop, task) if stop else
                     f"trained {summary['epochs_completed']} epochs")
  except BaseException as e:  # record every way out, including Ctrl-C, then re-raise
    error = (_device_memory_error(e, config, model, model_name, building)
             or _storage_error(e, run) or e)
    status, message = _outcome(error)
    try:
      run.write_status(status, message)  # in place, when the disk is full
    except OSError as write_error:  # readers take a `running` run without a lock as died
      logging.warning("Could not write the status %r to %s: %s", status, run.path,
                      write_error)
    if not isinstance(error, StorageError):  # else nothing more is written
      _finish(hooks, run.path)
    if error is not e:
      raise error from e
    raise
  _finish(hooks, run.path)
  return run.path, summary


def _device_memory_error(error: BaseException, config: TrainConfig, model: nn.Module,
                         model_name: str, building: bool) -> DeviceMemoryError | None:
  """A :class:`DeviceMemoryError` naming the fixes when ``error`` is XLA's out-of-memory.

  XLA reports it as a ``JaxRuntimeError`` whose message starts with ``RESOURCE_EXHAUSTED``,
  raised where the allocation failed or at the next read of a result: building the state,
  a step, an evaluation or the usage pass. A setting too large for the device is bad
  input, so it gets one ``error:`` line and the run directory stays resumable. Only the
  fixes that can help are named: none that resumes when the data, parameters and
  optimizer state alone do not fit (``building``); ``--remat`` only where it is off and the
  model's blocks run through the scan it rematerialises.
  """
  text = str(error).strip()
  # Other RESOURCE_EXHAUSTED errors (a collective's message too large, say) are not this.
  if not (isinstance(error, jax.errors.JaxRuntimeError)
          and text.startswith("RESOURCE_EXHAUSTED") and "memory" in text.lower()):
    return None
  logging.warning("XLA's out-of-memory error in full: %s", text)
  device = jax.devices()[0]
  kind = "" if device.device_kind.lower() == device.platform else f" ({device.device_kind})"
  what = text.splitlines()[0].rstrip(".")
  where = f"the memory of the {device.platform.upper()}{kind}"
  if building:
    return DeviceMemoryError(
        f"{model_name}'s data, parameters and optimizer state do not fit in {where}: "
        f"{what}. Run on a device with more memory (resuming this --workdir), or with a "
        f"smaller model or input in a new --workdir.")
  execution = getattr(model, "execution", None)
  custom = bool(execution and execution(config.batch_size).get("custom_backward"))
  fixes = []
  if not config.remat and not custom:
    fixes.append("--remat (recomputes the scanned blocks' activations in the backward pass)")
  if config.eval_batch_size > 1:
    fixes.append(f"a smaller --eval_batch_size (now {config.eval_batch_size})")
  resume = (f"Rerun with {' or '.join(fixes)}, resuming this --workdir; a" if fixes else "A")
  return DeviceMemoryError(
      f"{model_name} at batch {config.batch_size} does not fit in {where}: {what}. "
      f"{resume} smaller --batch_size, model or input needs a new --workdir.")


def _storage_error(error: BaseException, run: rundir.RunDir) -> StorageError | None:
  """A :class:`StorageError` for a write that the file system refused (a full disk, a
  quota, a read-only mount) anywhere in the run, else None: one ``error:`` line."""
  if isinstance(error, StorageError):
    return None
  cause = storage_failure(error)
  if cause is None or not isinstance(error, OSError):
    return None
  name = getattr(error, "filename", None)
  # The file the user knows, not its temporary sibling (fileio's atomic writes).
  where = re.sub(r"\.tmp\.\d+$", "", str(name)) if name else f"a file in {run.path}"
  return StorageError(
      f"cannot write {where}: {cause}; every finished epoch's checkpoint is kept. "
      f"{storage_fix(cause)}, then rerun the same command to resume.")


def _outcome(error: BaseException) -> tuple[str, str]:
  """``(status, message)`` for a run that ended with ``error``."""
  if isinstance(error, DivergedError):
    return "diverged", str(error)
  if isinstance(error, Interrupted):
    return "interrupted", (f"interrupted by {error.signal_name}; rerun the same command with "
                           f"this --workdir to resume")
  if isinstance(error, KeyboardInterrupt):
    return "interrupted", "interrupted; rerun the same command with this --workdir to resume"
  if isinstance(error, UserError):  # its message already names the problem and the fix
    return "failed", str(error)
  return "failed", f"{type(error).__name__}: {error}"


def _finish(hooks: Sequence[hooks_lib.Hook], path: str) -> None:
  """Runs every hook's ``on_exit`` (the report); a hook problem never fails the run."""
  for hook in hooks:
    try:
      hook.on_exit(path)
    except Exception as e:  # noqa: BLE001 - the training result must survive a report bug
      logging.warning("%s failed at the end of %s: %s: %s", type(hook).__name__, path,
                      type(e).__name__, e)
