"""The nested experiment config: sections, the shared defaults, and variants.

An experiment's ``configs/default.py`` builds on :func:`base_config` and names its recipes
as variants (``get_config("authors")``). The sections:

- ``model``: ``name`` (a family, or a family with its depth: ``GloNet50``), ``depth``,
  ``use_batch_norm`` (None: the family's default) and the family's own options, which
  go to the family builder as they are (``features`` for the dense families; ``carry``,
  ``glonet_sum``, ``glonet_head_norm``, ``glonet_head_rms`` for the convolutional ones).
- ``data``: the split, the training subset, augmentation and experiment-specific data
  settings (``image_size``...).
- ``optim``: optimizer, learning-rate schedule, regularisers and clipping.
- ``train``: ``epochs``, ``batch_size``, ``seed``.
- ``eval``: ``batch_size`` (padded and masked: any size gives the same metrics),
  ``divergence_factor`` (when a finite loss counts as diverged), ``layer_usage`` (the
  usage passes at the start and the end of a run) and early stopping
  (``early_stopping_patience``, ``early_stopping_min_delta``).
- ``run``: where and how the run executes (``workdir``, ``data_dir``, ``remat``,
  logging); none of it changes what is trained.
"""

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import ml_collections
from ml_collections import config_dict

from common.errors import ConfigError

DATA_DIR_ENV = "GLONETS_DATA_DIR"

# Keys of ``model`` that the run reads itself; the rest are the family's options.
MODEL_KEYS = ("name", "depth", "use_batch_norm")


def base_config(experiment: str, variant: str) -> ml_collections.ConfigDict:
  """Every section with the original repository's recipe: Adam, constant rate, no decay.

  Args:
    experiment: the experiment package (``linear_mnist``), whose ``train`` module holds
      its :class:`common.experiment.Experiment`.
    variant: the variant's name, recorded with the run.

  Returns:
    An unlocked config; the experiment's file sets its own values and adds its own keys.
  """
  c = ml_collections.ConfigDict()
  c.experiment = experiment
  c.variant = variant

  c.model = ml_collections.ConfigDict()
  c.model.name = "GloNet"
  c.model.depth = config_dict.placeholder(int)
  c.model.use_batch_norm = config_dict.placeholder(bool)

  c.data = ml_collections.ConfigDict()
  c.data.validation_size = config_dict.placeholder(int)  # None: a fixed split
  c.data.split_seed = 0
  c.data.train_size = config_dict.placeholder(int)  # None: every training example

  c.optim = ml_collections.ConfigDict()
  c.optim.optimizer = "ADAM"  # ADAM or SGD
  c.optim.learning_rate = 1e-3  # the peak, under a schedule
  c.optim.momentum = 0.9  # SGD
  c.optim.nesterov = False  # SGD
  c.optim.schedule = "constant"  # constant, cosine, linear, step or onecycle
  c.optim.warmup_epochs = 0.0  # linear warmup from 0, fractions allowed
  c.optim.boundaries = ()  # step schedule: epochs after which the rate is multiplied...
  c.optim.decay_factor = 0.1  # ...by this
  c.optim.weight_decay = 0.0  # added to the kernels' gradient, as PyTorch's SGD does
  c.optim.l2_reg_alpha = 0.0  # sum(p**2) in the training loss only
  c.optim.grad_clip_norm = 0.0  # global-norm clipping of the loss gradient (0: off)
  # schedule "plateau": x decay_factor after this many epochs without improvement.
  c.optim.plateau_patience = 10

  c.train = ml_collections.ConfigDict()
  c.train.epochs = 10
  c.train.batch_size = 256
  c.train.seed = 0  # initialisation and data order

  c.eval = ml_collections.ConfigDict()
  c.eval.batch_size = 1000
  # Diverged: an epoch's training or validation loss over this multiple of the first
  # step's (0: only a non-finite loss).
  c.eval.divergence_factor = 100.0
  # Layer usage on the test set at init and after training (recompute_usage does it later).
  c.eval.layer_usage = True
  # Early stopping: stop once the validation metric has not improved by more than
  # min_delta for this many epochs (0: train every epoch).
  c.eval.early_stopping_patience = 0
  c.eval.early_stopping_min_delta = 0.0

  c.run = ml_collections.ConfigDict()
  c.run.workdir = config_dict.placeholder(str)  # None: a new one under result_dir
  c.run.result_dir = "training_results"
  c.run.data_dir = config_dict.placeholder(str)  # None: $GLONETS_DATA_DIR
  c.run.cache_dir = config_dict.placeholder(str)  # None: the user cache folder
  c.run.remat = False  # recompute scanned blocks in the backward pass: less memory
  c.run.tensorboard = True
  c.run.progress = config_dict.placeholder(bool)  # None: a progress bar on a terminal
  return c


def check_variant(variant: str, variants: Iterable[str], experiment: str) -> None:
  """Refuses a variant ``get_config`` does not define, naming the ones it does."""
  variants = list(variants)
  if variant not in variants:
    raise ConfigError(f"unknown config variant {variant!r} of {experiment}; valid: "
                      f"{', '.join(variants)} (--config={experiment}/configs/default.py:"
                      f"{variants[0]}).")


def model_options(model: ml_collections.ConfigDict) -> dict:
  """The family options of a ``model`` section: every key but name, depth and batch norm."""
  return {k: v for k, v in model.items() if k not in MODEL_KEYS}


def add_conv_glonet_options(model: ml_collections.ConfigDict) -> None:
  """The convolutional GloNet's options, at the paper's GloNet (ResNet and Plain refuse
  any other value)."""
  model.carry = "avgpool_conv"  # the map across a stage transition, or strided_conv
  model.glonet_sum = "block"  # sum every block's output, or each stage's last (stage)
  model.glonet_head_norm = False  # batch norm on the sum before the head
  model.glonet_head_rms = False  # scale-only norm on the sum before the head


@dataclasses.dataclass(frozen=True)
class Sweep:
  """A grid of runs of one config variant: models x depths x seeds (``common.sweep``).

  Attributes:
    variant: the variant of the experiment's ``configs/default.py``.
    models: model entries, a family optionally with flags of its own
      (``ResNet:use_batch_norm=false``).
    depths: depths.
    seeds: training seeds.
    settings: config fields set for every point (``{"train.epochs": 5}``).
  """

  variant: str
  models: tuple[str, ...]
  depths: tuple[int, ...]
  seeds: tuple[int, ...] = (0,)
  settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def config_flags(self, experiment: str) -> list[str]:
    """The ``--config`` flags of every point of this sweep."""
    return [f"--config={experiment}/configs/default.py:{self.variant}",
            *(f"--config.{k}={_flag_value(v)}" for k, v in self.settings.items())]


def _flag_value(value: Any) -> str:
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, tuple):
    return "(" + ",".join(map(str, value)) + ("," if len(value) == 1 else "") + ")"
  return str(value)
