"""The frozen run configuration that library code receives (never absl ``FLAGS``)."""

import dataclasses
from typing import Any

from common.errors import ConfigError

# Settings that may change when a run directory is resumed: they do not change the math.
# Everything else must match the run's config.json exactly. ``epochs`` may change (to
# train a finished run further) only with a constant learning rate: a decaying schedule
# is stretched over the whole run, so its length changes every step's learning rate.
RESUMABLE_KEYS = frozenset(
    {"epochs", "data_dir", "workdir", "result_dir", "tensorboard", "progress"})


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Every setting of a training run.

  Attributes:
    experiment: the experiment package (``linear_mnist``...), recorded for reports.
    model: model name as given (``GloNet``, ``ResNet24``...).
    num_layers: depth (see :mod:`common.models.mlp` for the convention); None when the
      model name carries it.
    features: hidden width.
    use_batch_norm: None for the family's default.
    epochs: total epochs of the run (a resumed run trains up to this many).
    batch_size: training batch size.
    eval_batch_size: evaluation batch size (padding + mask: any size counts every example
      once).
    learning_rate: (peak) learning rate.
    lr_schedule: ``constant`` or ``cosine``.
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
  """

  experiment: str
  model: str
  num_layers: int | None
  features: int
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

  def __post_init__(self):
    for name in ("epochs", "batch_size", "eval_batch_size", "features"):
      if getattr(self, name) < 1:
        raise ConfigError(f"{name} must be >= 1; got {getattr(self, name)}.")
    if self.num_layers is not None and self.num_layers < 1:
      raise ConfigError(f"num_layers must be >= 1; got {self.num_layers}.")
    if self.l2_reg_alpha < 0:
      raise ConfigError(f"l2_reg_alpha must be >= 0; got {self.l2_reg_alpha}.")

  def to_dict(self) -> dict[str, Any]:
    """All settings as a JSON-ready dict."""
    return dataclasses.asdict(self)


def incompatible_settings(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
  """Lists ``key: saved -> new`` for settings that forbid resuming a run directory."""
  keys = (set(saved) | set(new)) - RESUMABLE_KEYS
  if saved.get("lr_schedule", "constant") != "constant":
    keys.add("epochs")
  return [f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in sorted(keys)
          if saved.get(k) != new.get(k)]
