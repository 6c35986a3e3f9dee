"""The flat, validated view of a run's nested config that library code reads.

A run is described by a nested config (:mod:`common.run_config`), which is what
``config.json`` records. Training code reads it through :class:`TrainConfig`, built by
:meth:`TrainConfig.from_nested` with every value checked once. :data:`FIELDS` maps each flat
name (the original repository's flag names) to its field in the nested config.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from common.errors import ConfigError

OPTIMIZERS = ("ADAM", "SGD")
SCHEDULES = ("constant", "cosine", "step", "linear", "onecycle", "plateau")
CARRIES = ("avgpool_conv", "strided_conv")  # common.models.glonet.CARRIES

# Each flat setting's field in the nested config (``section.key``). Settings an
# experiment's config lacks take the dataclass defaults below.
FIELDS: dict[str, str] = {
    "experiment": "experiment",
    "model": "model.name", "num_layers": "model.depth", "features": "model.features",
    "use_batch_norm": "model.use_batch_norm", "carry": "model.carry",
    "glonet_sum": "model.glonet_sum", "glonet_head_norm": "model.glonet_head_norm",
    "glonet_head_rms": "model.glonet_head_rms",
    "validation_size": "data.validation_size", "split_seed": "data.split_seed",
    "train_size": "data.train_size", "augment": "data.augment",
    "label_smoothing": "data.label_smoothing", "image_size": "data.image_size",
    "min_crop_area": "data.min_crop_area",
    "optimizer": "optim.optimizer", "learning_rate": "optim.learning_rate",
    "momentum": "optim.momentum", "nesterov": "optim.nesterov",
    "lr_schedule": "optim.schedule", "warmup_epochs": "optim.warmup_epochs",
    "lr_boundaries": "optim.boundaries", "lr_decay_factor": "optim.decay_factor",
    "plateau_patience": "optim.plateau_patience",
    "weight_decay": "optim.weight_decay", "l2_reg_alpha": "optim.l2_reg_alpha",
    "grad_clip_norm": "optim.grad_clip_norm",
    "epochs": "train.epochs", "batch_size": "train.batch_size", "seed": "train.seed",
    "eval_batch_size": "eval.batch_size", "divergence_factor": "eval.divergence_factor",
    "layer_usage": "eval.layer_usage", "patience": "eval.early_stopping_patience",
    "min_delta": "eval.early_stopping_min_delta",
    "workdir": "run.workdir", "result_dir": "run.result_dir", "data_dir": "run.data_dir",
    "cache_dir": "run.cache_dir", "remat": "run.remat", "tensorboard": "run.tensorboard",
    "progress": "run.progress", "allow_unofficial_data": "run.allow_unofficial_data",
}


def field_defaults() -> dict[str, Any]:
  """``{"section.key": default}`` of every setting with a default: what a config written
  before the setting existed behaved as."""
  defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.default is not dataclasses.MISSING}
  return {path: defaults[name] for name, path in FIELDS.items() if name in defaults}


def get_field(config: Mapping[str, Any], path: str, default: Any = None) -> Any:
  """``config`` at ``section.key`` (a nested mapping or ConfigDict), or ``default``."""
  node = config
  for part in path.split("."):
    if not isinstance(node, Mapping) and not hasattr(node, "keys"):
      return default
    if part not in node:
      return default
    node = node[part]
  return node


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
  """Every setting of a training run.

  Attributes:
    experiment: the experiment package (``linear_mnist``...), recorded for reports.
    model: model name as given (``GloNet``, ``ResNet24``...).
    num_layers: depth (see :mod:`common.models.mlp` for the convention); None when the
      model name carries it.
    features: hidden width of the MLP families (None for families that fix every width).
    use_batch_norm: None for the family's default.
    epochs: total epochs of the run (a resumed run trains up to this many).
    batch_size: training batch size.
    eval_batch_size: evaluation batch size (padding + mask: any size counts every example
      once).
    learning_rate: (peak) learning rate.
    lr_schedule: one of :data:`SCHEDULES`: ``constant``; ``cosine`` decay to 0 over the
      run; ``step``: times ``lr_decay_factor`` at each epoch of ``lr_boundaries``;
      ``linear`` decay to 0 over the run; ``onecycle`` (optax's cosine one-cycle over the
      run, peaking at ``learning_rate``).
    optimizer: ``ADAM`` or ``SGD``.
    momentum: SGD momentum.
    l2_reg_alpha: weight of ``sum(p**2)`` in the training objective only.
    seed: the one seed: init and data order derive from it.
    validation_size: examples held out of the training set for validation (None when the
      experiment has a fixed train/val/test split).
    split_seed: seed of the validation split (fixed across training seeds).
    data_dir: data root, or None for ``$GLONETS_DATA_DIR``.
    workdir: explicit run directory, or None for a new one under ``result_dir``.
    result_dir: root of automatically named run directories.
    tensorboard: also write TensorBoard event files.
    progress: a progress bar over each epoch's steps (None: only when on a terminal).
    weight_decay: ``weight_decay * w`` added to the gradient of every kernel (Dense and
      Conv weights; biases and batch-norm parameters get none) before the optimizer, as
      PyTorch's ``weight_decay`` does; it is not part of the reported loss.
    nesterov: Nesterov momentum (SGD only).
    lr_boundaries: epochs after which the ``step`` schedule multiplies the learning rate
      by ``lr_decay_factor`` (increasing, within 1..epochs).
    lr_decay_factor: the ``step`` schedule's factor, in (0, 1].
    warmup_epochs: linear warmup from 0 to ``learning_rate`` over this many epochs
      (fractions allowed), then the schedule over the remaining steps.
    remat: recompute the activations of the scanned blocks in the backward pass instead
      of storing them (less memory, more compute).
    label_smoothing: classification: the training loss uses targets smoothed by this
      much (the reported loss stays the plain cross-entropy).
    augment: image experiments: augment training batches inside the step.
    carry: CNN GloNet: the map that carries the sum across a stage transition,
      ``avgpool_conv`` or ``strided_conv`` (the paper's projection).
    glonet_sum: CNN GloNet: sum every ``block`` output or only each ``stage``'s last
      (the authors' notebook).
    glonet_head_norm: CNN GloNet: batch norm (affine, no ReLU) on the sum before the head,
      as ResNet-v2 normalises its stream (off: the paper's GloNet).
    glonet_head_rms: CNN GloNet: scale-only norm (no centring, no shift) on the sum before
      the head (off: the paper's GloNet).
    cache_dir: where decoded datasets are cached (None: the user cache folder).
    train_size: train on the first this many training examples only (None: all); for
      smoke runs and learning curves.
    image_size: image experiments that resize (Imagenette): the model's input side in
      pixels (None: the dataset's own size).
    min_crop_area: random-resized-crop augmentation: the smallest crop, as a fraction of
      the image's area.
    grad_clip_norm: when > 0, clip the loss gradient to this global L2 norm before weight
      decay and the optimizer (0: no clipping).
    plateau_patience: ``lr_schedule="plateau"``: the learning rate is multiplied by
      ``lr_decay_factor`` once the epoch's mean training objective has not improved for
      this many epochs (optax's ``reduce_on_plateau``).
    divergence_factor: a run whose mean training loss or validation loss in an epoch
      exceeds this multiple of its first step's loss has diverged (0: only a non-finite
      loss counts); see :func:`common.train.loop.check_bounded`.
    layer_usage: measure layer usage on the test set at initialisation and after training
      (off: ``python -m common.recompute_usage RUN_DIR`` measures it later).
    patience: early stopping: the run ends ``done`` once the validation metric has not
      improved by more than ``min_delta`` for this many epochs (0: never stops early); see
      :func:`common.train.loop.early_stop`.
    min_delta: early stopping: the smallest change of the validation metric that counts
      as an improvement.
    allow_unofficial_data: accept data files whose content differs from the official
      release's where its hash is known (MNIST); they are refused otherwise.
  """

  experiment: str
  model: str
  num_layers: int | None
  features: int | None = None
  use_batch_norm: bool | None
  epochs: int
  batch_size: int
  eval_batch_size: int
  learning_rate: float
  lr_schedule: str
  optimizer: str
  momentum: float
  l2_reg_alpha: float
  seed: int
  validation_size: int | None
  split_seed: int
  data_dir: str | None
  workdir: str | None
  result_dir: str
  tensorboard: bool = True
  progress: bool | None = None
  # Added with SCHEMA_VERSION 2. Every default reproduces the behaviour from before the
  # setting existed: an old config.json reads (and resumes) as it was trained.
  weight_decay: float = 0.0
  nesterov: bool = False
  lr_boundaries: tuple[int, ...] = ()
  lr_decay_factor: float = 0.1
  warmup_epochs: float = 0.0
  remat: bool = False
  label_smoothing: float = 0.0
  augment: bool = False
  carry: str = "avgpool_conv"
  glonet_sum: str = "block"
  glonet_head_norm: bool = False
  glonet_head_rms: bool = False
  cache_dir: str | None = None
  train_size: int | None = None
  image_size: int | None = None
  min_crop_area: float = 0.35
  grad_clip_norm: float = 0.0
  plateau_patience: int = 10
  allow_unofficial_data: bool = False
  divergence_factor: float = 100.0
  layer_usage: bool = True
  patience: int = 0
  min_delta: float = 0.0

  def __post_init__(self):
    # nan passes every comparison below; no setting means anything at nan or infinity.
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{field.name} must be a finite number; got {value}.")
    for name in ("epochs", "batch_size", "eval_batch_size", "features"):
      if getattr(self, name) is not None and getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}.")
    if self.num_layers is not None and self.num_layers < 1:
      raise ConfigError(f"num_layers must be >= 1; got {self.num_layers}.")
    if self.l2_reg_alpha < 0:
      raise ConfigError(f"l2_reg_alpha must be >= 0; got {self.l2_reg_alpha}.")
    if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
      raise ConfigError(f"learning_rate must be a finite number > 0; got {self.learning_rate}.")
    for name in ("seed", "split_seed"):
      if getattr(self, name) < 0:
        raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}.")
    if self.optimizer.upper() not in OPTIMIZERS:
      raise ConfigError(f"unknown optimizer {self.optimizer!r}; valid: "
                        f"{', '.join(OPTIMIZERS)}.")
    if self.lr_schedule not in SCHEDULES:
      raise ConfigError(f"unknown learning-rate schedule {self.lr_schedule!r}; valid: "
                        f"{', '.join(SCHEDULES)}.")
    if not 0 <= self.label_smoothing < 1:
      raise ConfigError(f"label_smoothing must be in [0, 1); got {self.label_smoothing}.")
    if self.carry not in CARRIES:
      raise ConfigError(f"unknown carry map {self.carry!r}; valid: {', '.join(CARRIES)}.")
    if self.glonet_sum not in ("block", "stage"):
      raise ConfigError(f"glonet_sum must be block or stage; got {self.glonet_sum!r}.")
    if self.momentum < 0:
      raise ConfigError(f"momentum must be >= 0; got {self.momentum}.")
    if self.grad_clip_norm < 0 or not math.isfinite(self.grad_clip_norm):
      raise ConfigError(f"grad_clip_norm must be a finite number >= 0 (0: off); got "
                        f"{self.grad_clip_norm}.")
    if not 0 < self.min_crop_area <= 1:
      raise ConfigError(f"min_crop_area must be in (0, 1]; got {self.min_crop_area}.")
    if self.divergence_factor != 0 and not self.divergence_factor > 1:
      raise ConfigError(f"divergence_factor must be > 1, or 0 to turn the check off; got "
                        f"{self.divergence_factor}.")
    if not 0 <= self.patience <= self.epochs:
      raise ConfigError(f"patience must be in 0..epochs={self.epochs} (0: no early stopping); "
                        f"got {self.patience}.")
    if self.min_delta < 0:
      raise ConfigError(f"min_delta must be >= 0; got {self.min_delta}.")
    if self.weight_decay < 0 or not math.isfinite(self.weight_decay):
      raise ConfigError(f"weight_decay must be a finite number >= 0; got {self.weight_decay}.")
    self._check_nesterov()
    self._check_schedule()

  def _check_nesterov(self) -> None:
    if not self.nesterov:
      return
    if self.optimizer.upper() != "SGD":
      raise ConfigError(f"nesterov applies to SGD only; got --optimizer={self.optimizer}. "
                        f"Pass --optimizer=SGD or drop --nesterov.")
    if self.momentum == 0:
      raise ConfigError("nesterov needs momentum: pass --momentum > 0 or drop --nesterov.")

  def _check_schedule(self) -> None:
    # Tuples only: a list would make the frozen config unhashable and differ from a tuple.
    if not isinstance(self.lr_boundaries, tuple):
      object.__setattr__(self, "lr_boundaries", tuple(self.lr_boundaries))
    bounds = self.lr_boundaries
    if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
      raise ConfigError(f"lr_boundaries must be whole epochs; got {list(bounds)}.")
    if self.lr_schedule == "step":
      if not bounds:
        raise ConfigError("--lr_schedule=step needs --lr_boundaries: the epochs after which "
                          "the learning rate is multiplied by --lr_decay_factor (e.g. 100,150).")
      if list(bounds) != sorted(set(bounds)):
        raise ConfigError(f"lr_boundaries must be strictly increasing; got {list(bounds)}.")
      if bounds[0] < 1 or bounds[-1] > self.epochs:
        raise ConfigError(f"lr_boundaries must lie within 1..epochs={self.epochs}; got "
                          f"{list(bounds)}.")
      if bounds[0] <= self.warmup_epochs:
        raise ConfigError(f"lr_boundaries must come after the warmup "
                          f"(--warmup_epochs={self.warmup_epochs}); got {list(bounds)}.")
    elif bounds:
      raise ConfigError(f"lr_boundaries apply to --lr_schedule=step only; got "
                        f"--lr_schedule={self.lr_schedule}. Drop them or use the step schedule.")
    if self.plateau_patience < 1:
      raise ConfigError(f"plateau_patience must be >= 1 epoch; got {self.plateau_patience}.")
    if self.lr_schedule == "plateau" and not self.lr_decay_factor < 1:
      raise ConfigError(f"--lr_schedule=plateau needs lr_decay_factor < 1 (it multiplies the "
                        f"rate on a plateau); got {self.lr_decay_factor}.")
    if not 0 < self.lr_decay_factor <= 1:
      raise ConfigError(f"lr_decay_factor must be in (0, 1]; got {self.lr_decay_factor}.")
    if not (0 <= self.warmup_epochs < self.epochs):
      raise ConfigError(f"warmup_epochs must be >= 0 and < epochs={self.epochs}; got "
                        f"{self.warmup_epochs} (a recipe's default, unless given): pass "
                        f"--warmup_epochs=0 or a fraction, or train for more epochs.")
    if self.warmup_epochs and self.lr_schedule == "onecycle":
      raise ConfigError("--lr_schedule=onecycle has its own warmup: drop --warmup_epochs.")

  def to_dict(self) -> dict[str, Any]:
    """All settings as a JSON-ready dict (tuples as lists, as JSON reads them back)."""
    return {k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(self).items()}

  def to_nested(self) -> dict[str, Any]:
    """The nested config holding every setting at its field (tools and tests that build a
    flat config; an experiment's own config holds only the fields it reads)."""
    out: dict[str, Any] = {}
    for name, value in self.to_dict().items():
      *sections, key = FIELDS[name].split(".")
      node = out
      for section in sections:
        node = node.setdefault(section, {})
      node[key] = value
    return out

  @classmethod
  def from_nested(cls, config: Mapping[str, Any]) -> "TrainConfig":
    """The flat view of a nested config whose model is parsed (``model.name`` a family,
    ``model.depth`` and ``model.use_batch_norm`` set).

    Raises:
      ConfigError: a setting out of range or an impossible combination.
    """
    values = {}
    for f in dataclasses.fields(cls):
      value = get_field(config, FIELDS[f.name], f.default)
      if value is dataclasses.MISSING:
        raise ConfigError(f"the config sets no {FIELDS[f.name]}.")
      values[f.name] = value
    values["lr_boundaries"] = tuple(values["lr_boundaries"])
    if isinstance(values["optimizer"], str):
      values["optimizer"] = values["optimizer"].upper()
    return cls(**values)
