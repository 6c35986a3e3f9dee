"""The one entry point: ``run(config, workdir)`` trains what a nested config describes.

Every ``train.py``, the sweeps and the tests call :func:`run` in process; it reads no flags
and no global state (``$GLONETS_DATA_DIR`` stands in for an unset ``run.data_dir``). The
experiment named by ``config.experiment`` supplies the rest through the
:class:`Experiment` in its ``train`` module: the model registry, the data and the task.
"""

import dataclasses
import importlib
import os
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections
from absl import logging

from common import run_config
from common.config import TrainConfig
from common.data.arrays import Dataset
from common.errors import ConfigError
from common.models.registry import ModelSpec, build_family, parse_model_name
from common.train import run_experiment
from common.train.steps import Preprocess
from common.train.tasks import Task


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What an experiment adds to the shared trunk.

  Attributes:
    registry: its model families (``DENSE_MODELS``...).
    num_outputs: the head's width.
    load: the data and the task of a run config.
    preprocess: stored inputs to model inputs inside the step (augmentation), or None.
    run_files: files a new run directory gets (``{name: JSON-ready object}``), from the
      dataset (SGEMM's input scaler), or None.
    recorded_features: what a run of families without a width records as ``features``
      (the first stage's width), until the run record is nested too.
  """

  registry: Mapping[str, ModelSpec]
  num_outputs: int
  load: Callable[[TrainConfig], tuple[Dataset, Task]]
  preprocess: Callable[[TrainConfig], Preprocess] | None = None
  run_files: Callable[[Dataset], dict[str, Any]] | None = None
  recorded_features: int | None = None


def get_experiment(name: str) -> Experiment:
  """The :class:`Experiment` of the package ``name`` (its ``train.EXPERIMENT``)."""
  try:
    module = importlib.import_module(f"{name}.train")
  except ModuleNotFoundError as e:
    if e.name not in (name, f"{name}.train"):
      raise
    raise ConfigError(f"unknown experiment {name!r}: no package {name}.train.") from None
  return module.EXPERIMENT


def train_config(config: ml_collections.ConfigDict, family: str, depth: int,
                 use_batch_norm: bool, recorded_features: int | None) -> TrainConfig:
  """The flat record of a nested config, with the model parsed (family, depth, batch norm).

  Raises:
    ConfigError: a value out of range or an impossible combination.
  """
  m, d, o, t, r = config.model, config.data, config.optim, config.train, config.run
  features = m.get("features", recorded_features)
  if features is None:
    raise ConfigError(f"the config of {config.experiment} sets no model.features.")
  return TrainConfig(
      experiment=config.experiment, model=family, num_layers=depth, features=features,
      use_batch_norm=use_batch_norm, epochs=t.epochs, batch_size=t.batch_size,
      eval_batch_size=config.eval.batch_size, learning_rate=o.learning_rate,
      lr_schedule=o.schedule, optimizer=o.optimizer.upper(), momentum=o.momentum,
      l2_reg_alpha=o.l2_reg_alpha, seed=t.seed, validation_size=d.validation_size,
      split_seed=d.split_seed,
      data_dir=r.data_dir or os.environ.get(run_config.DATA_DIR_ENV) or None,
      workdir=r.workdir, result_dir=r.result_dir, tensorboard=r.tensorboard,
      progress=r.progress, weight_decay=o.weight_decay, nesterov=o.nesterov,
      lr_boundaries=tuple(o.boundaries), lr_decay_factor=o.decay_factor,
      warmup_epochs=o.warmup_epochs, remat=r.remat, label_smoothing=d.get("label_smoothing", 0.0),
      augment=d.get("augment", False), cache_dir=r.cache_dir, train_size=d.train_size,
      image_size=d.get("image_size"), min_crop_area=d.get("min_crop_area", 0.35),
      grad_clip_norm=o.grad_clip_norm,
      allow_unofficial_data=d.get("allow_unofficial_data", False),
      **{k: m[k] for k in ("carry", "glonet_sum", "glonet_head_norm", "glonet_head_rms")
         if k in m})


def run(config: ml_collections.ConfigDict, workdir: str | None = None
        ) -> tuple[str, dict[str, Any]]:
  """Builds the model, loads the data and trains (or resumes) one run.

  Args:
    config: a nested config (an experiment's ``get_config(variant)``, overridden).
    workdir: the run directory (wins over ``config.run.workdir``); None: that, else a new
      one under ``config.run.result_dir``.

  Returns:
    ``(run_path, summary)``.

  Raises:
    UserError: a bad setting (before anything is written), missing data, or a run
      directory that cannot be resumed with these settings.
    NonFiniteLossError: training diverged (the run is recorded as ``diverged``).
  """
  experiment = get_experiment(config.experiment)
  if workdir is not None:
    config = config.copy_and_resolve_references()
    config.run.workdir = workdir
  registry = experiment.registry
  family, depth = parse_model_name(config.model.name, config.model.depth, registry)
  use_batch_norm = config.model.use_batch_norm
  if use_batch_norm is None:
    use_batch_norm = registry[family].default_batch_norm
  flat = train_config(config, family, depth, use_batch_norm, experiment.recorded_features)
  options = {**run_config.model_options(config.model), "remat": config.run.remat}
  # Fails before any I/O on a bad option or depth.
  model, record = build_family(registry, family, depth, experiment.num_outputs,
                               use_batch_norm, options, flat.batch_size)
  dataset, task = experiment.load(flat)
  run_path, summary = run_experiment(
      flat, model, f"{family}{depth}", dataset, task,
      preprocess=experiment.preprocess(flat) if experiment.preprocess else None,
      extra_config={"model": record, "recipe": config.variant},
      extra_files=experiment.run_files(dataset) if experiment.run_files else None)
  final = summary["final"] or {}
  metric = next((k for k in ("test_accuracy", "test_mse") if k in final), None)
  if metric:
    logging.info("Done: %s  %s %.5g", run_path, metric, final[metric])
  return run_path, summary
