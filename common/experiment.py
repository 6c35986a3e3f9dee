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

import flax.linen as nn
import ml_collections
from absl import logging

from common import run_config
from common.config import TrainConfig
from common.data.arrays import Dataset
from common.data.augment import Preprocess
from common.errors import ConfigError
from common.models.registry import ModelSpec, build_family, parse_model_name
from common.report.hook import ReportHook
from common.train import run_experiment
from common.train.hooks import Hook
from common.train.tasks import Task
from common.usage_hook import UsageHook, supports_usage


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
  """

  registry: Mapping[str, ModelSpec]
  num_outputs: int
  load: Callable[[TrainConfig], tuple[Dataset, Task]]
  preprocess: Callable[[TrainConfig], Preprocess] | None = None
  run_files: Callable[[Dataset], dict[str, Any]] | None = None


def get_experiment(name: str) -> Experiment:
  """The :class:`Experiment` of the package ``name`` (its ``train.EXPERIMENT``)."""
  try:
    module = importlib.import_module(f"{name}.train")
  except ModuleNotFoundError as e:
    if e.name not in (name, f"{name}.train"):
      raise
    raise ConfigError(f"unknown experiment {name!r}: no package {name}.train.") from None
  return module.EXPERIMENT


def default_hooks(config: TrainConfig, model: nn.Module, dataset: Dataset, task: Task,
                  preprocess: Preprocess | None = None) -> list[Hook]:
  """Layer usage (for models that support it, unless turned off), then the report."""
  hooks: list[Hook] = []
  if config.layer_usage and supports_usage(model):
    hooks.append(UsageHook(model, dataset, task, min(config.eval_batch_size, 500),
                           preprocess))
  hooks.append(ReportHook())
  return hooks


def resolve(config: ml_collections.ConfigDict, workdir: str | None = None
            ) -> ml_collections.ConfigDict:
  """The config as a run records it: the model parsed once (``model.name`` the family,
  ``model.depth`` and ``model.use_batch_norm`` set), ``run.data_dir`` from
  ``$GLONETS_DATA_DIR`` when unset, and ``workdir`` when given.

  Raises:
    ConfigError: an unknown experiment or model, or no depth.
  """
  registry = get_experiment(config.experiment).registry
  family, depth = parse_model_name(config.model.name, config.model.depth, registry)
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.model.name, config.model.depth = family, depth
    if config.model.use_batch_norm is None:
      config.model.use_batch_norm = registry[family].default_batch_norm
    config.run.data_dir = config.run.data_dir or os.environ.get(run_config.DATA_DIR_ENV)
    if workdir is not None:
      config.run.workdir = workdir
  return config


def _build(config: ml_collections.ConfigDict, workdir: str | None
           ) -> tuple[Experiment, ml_collections.ConfigDict, TrainConfig, nn.Module, dict]:
  """The experiment, the resolved config, its flat view, the model and its record: all
  that can be checked without reading data or writing anything."""
  experiment = get_experiment(config.experiment)
  config = resolve(config, workdir)
  flat = TrainConfig.from_nested(config)
  m = config.model
  options = {**run_config.model_options(m), "remat": config.run.remat}
  model, record = build_family(experiment.registry, m.name, m.depth, experiment.num_outputs,
                               m.use_batch_norm, options, flat.batch_size)
  return experiment, config, flat, model, record


def check(config: ml_collections.ConfigDict) -> None:
  """Checks a config as :func:`run` would before it reads any data (the sweeps check every
  point before the first starts).

  Raises:
    ConfigError: an unknown experiment or model, an impossible depth or option, or a
      setting out of range.
  """
  _build(config, None)


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
    DivergedError: training diverged (the run is recorded as ``diverged``).
  """
  # Fails before any I/O on a bad option or depth.
  experiment, config, flat, model, record = _build(config, workdir)
  m = config.model
  dataset, task = experiment.load(flat)
  preprocess = experiment.preprocess(flat) if experiment.preprocess else None
  run_path, summary = run_experiment(
      config, model, f"{m.name}{m.depth}", dataset, task, preprocess=preprocess,
      extra_config={"model": record},
      extra_files=experiment.run_files(dataset) if experiment.run_files else None,
      hooks=default_hooks(flat, model, dataset, task, preprocess))
  final = summary["final"] or {}
  metric = next((k for k in ("test_accuracy", "test_mse") if k in final), None)
  if metric:
    logging.info("Done: %s  %s %.5g", run_path, metric, final[metric])
  return run_path, summary
