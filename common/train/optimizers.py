"""Optimizers and learning-rate schedules, from a :class:`TrainConfig` or by name.

:func:`optimizer_from_config` is what training and restoring use. :func:`make_schedule` and
:func:`make_optimizer` build the same pieces from explicit arguments (benchmarks, tests).

The optimizer is the chain of the transformations the config asks for and nothing else
(clipping, weight decay, then Adam or SGD): a run with neither has the bare optimizer, whose
state is optax's own, and no clipping pass computes a norm it does not use.
"""

from typing import Any

import jax
import optax

from common.config import OPTIMIZERS, SCHEDULES, TrainConfig
from common.errors import ConfigError

__all__ = ["OPTIMIZERS", "SCHEDULES", "decay_mask", "make_optimizer", "make_schedule",
           "optimizer_from_config", "plateau_scale", "schedule_from_config"]

# Parameters that weight decay applies to: the weights of Dense and Conv layers. Biases and
# batch-norm scales/offsets are left alone (as is usual: decaying them only hurts). The
# name, not the rank, decides: scanned blocks stack their biases into 2-D arrays.
DECAYED_PARAMS = frozenset({"kernel"})


def _decay_after_warmup(name: str, learning_rate: float, steps: int,
                        boundaries_and_scales: dict[int, float] | None = None
                        ) -> optax.Schedule:
  """The schedule's own shape over ``steps`` steps (after any warmup)."""
  steps = max(1, steps)
  if name in ("constant", "plateau"):  # plateau: scaled by reduce_on_plateau's state
    return optax.constant_schedule(learning_rate)
  if name == "cosine":
    return optax.cosine_decay_schedule(learning_rate, steps)
  if name == "linear":
    return optax.linear_schedule(learning_rate, 0.0, steps)
  if name == "onecycle":
    return optax.cosine_onecycle_schedule(steps, learning_rate)
  if name == "step":
    if not boundaries_and_scales:
      raise ConfigError("the step schedule needs boundaries: use schedule_from_config with "
                        "--lr_boundaries.")
    return optax.piecewise_constant_schedule(learning_rate, boundaries_and_scales)
  raise ConfigError(f"unknown learning-rate schedule {name!r}; valid: {', '.join(SCHEDULES)}.")


def schedule_from_config(config: TrainConfig, steps_per_epoch: int) -> optax.Schedule:
  """The learning rate of ``config`` as a function of the optimizer step.

  Args:
    config: the run's settings (``learning_rate`` is the peak; ``lr_schedule``,
      ``lr_boundaries``, ``lr_decay_factor``, ``warmup_epochs``, ``epochs``).
    steps_per_epoch: optimizer steps per epoch.

  Returns:
    An optax schedule over ``epochs * steps_per_epoch`` steps: a linear warmup from 0 over
    ``warmup_epochs`` (when > 0), then the schedule over the remaining steps. The ``step``
    schedule's boundaries stay at their epochs whatever the warmup.

  Raises:
    ConfigError: ``steps_per_epoch`` < 1.
  """
  if steps_per_epoch < 1:
    raise ConfigError(f"steps_per_epoch must be >= 1; got {steps_per_epoch}.")
  total = config.epochs * steps_per_epoch
  warmup = 0
  if config.warmup_epochs > 0:  # at least one step, and at least one step after it
    warmup = min(max(1, round(config.warmup_epochs * steps_per_epoch)), total - 1)
  # join_schedules restarts the count at the warmup's end: shift the boundaries back.
  boundaries = {b * steps_per_epoch - warmup: config.lr_decay_factor
                for b in config.lr_boundaries}
  main = _decay_after_warmup(config.lr_schedule, config.learning_rate, total - warmup,
                             boundaries)
  if not warmup:
    return main
  ramp = optax.linear_schedule(0.0, config.learning_rate, warmup)
  return optax.join_schedules([ramp, main], [warmup])


def make_schedule(learning_rate: float, schedule: str, total_steps: int) -> optax.Schedule:
  """Returns the learning rate as a function of the step, from explicit arguments.

  Args:
    learning_rate: the peak (constant: the only) learning rate.
    schedule: ``constant`` (the paper and the original code), ``cosine`` or ``linear``
      decay to 0 over ``total_steps``, or ``onecycle``. ``step`` needs boundaries: use
      :func:`schedule_from_config`.
    total_steps: length of the whole run in optimizer steps.

  Returns:
    An optax schedule.
  """
  if learning_rate <= 0:
    raise ConfigError(f"learning rate must be > 0; got {learning_rate}.")
  return _decay_after_warmup(schedule, learning_rate, total_steps)


def decay_mask(params: Any) -> Any:
  """True for the leaves of ``params`` that weight decay applies to (the kernels)."""

  def is_kernel(path, _):
    last = path[-1] if path else None
    return getattr(last, "key", getattr(last, "name", None)) in DECAYED_PARAMS

  return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(
    name: str, schedule: optax.Schedule, momentum: float = 0.9, *, nesterov: bool = False,
    weight_decay: float = 0.0, grad_clip_norm: float = 0.0) -> optax.GradientTransformation:
  """Builds the optimizer (defaults as in the original code: optax's Adam, SGD+momentum).

  Args:
    name: ``ADAM`` or ``SGD`` (case-insensitive).
    schedule: learning-rate schedule.
    momentum: SGD momentum (ignored by Adam); 0 means plain SGD.
    nesterov: Nesterov momentum (SGD only).
    weight_decay: ``weight_decay * w`` added to the gradient of each kernel (see
      :func:`decay_mask`) before the optimizer, as PyTorch's ``weight_decay`` (for Adam
      that is L2 regularisation, not AdamW's decoupled decay).
    grad_clip_norm: when > 0, the loss gradient is scaled down to this global L2 norm
      when it is larger (before weight decay is added, as
      ``torch.nn.utils.clip_grad_norm_`` before a PyTorch optimizer step).

  Returns:
    An optax gradient transformation: the optimizer, after the clipping and weight decay
    asked for, if any.
  """
  key = name.upper()
  if key == "ADAM":
    if nesterov:
      raise ConfigError("nesterov applies to SGD only: pass --optimizer=SGD or drop --nesterov.")
    tx = optax.adam(schedule)
  elif key == "SGD":
    tx = optax.sgd(schedule, momentum=momentum or None, nesterov=nesterov)
  else:
    raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
  if weight_decay < 0:
    raise ConfigError(f"weight_decay must be >= 0; got {weight_decay}.")
  if grad_clip_norm < 0:
    raise ConfigError(f"grad_clip_norm must be >= 0; got {grad_clip_norm}.")
  links = ([optax.clip_by_global_norm(grad_clip_norm)] if grad_clip_norm > 0 else []) + (
      [optax.add_decayed_weights(weight_decay, mask=decay_mask)] if weight_decay > 0 else [])
  return optax.chain(*links, tx) if links else tx


def optimizer_from_config(config: TrainConfig, steps_per_epoch: int
                          ) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """The optimizer of ``config`` and its learning-rate schedule (for logging).

  Args:
    config: the run's settings.
    steps_per_epoch: optimizer steps per epoch (the schedule's length depends on it; the
      optimizer state's structure does not).

  Returns:
    ``(optimizer, schedule)``.
  """
  schedule = schedule_from_config(config, steps_per_epoch)
  tx = make_optimizer(config.optimizer, schedule, config.momentum, nesterov=config.nesterov,
                      weight_decay=config.weight_decay, grad_clip_norm=config.grad_clip_norm)
  if config.lr_schedule == "plateau":
    # It averages the `value` the train step passes (the objective) over an epoch's steps
    # and scales the updates, which for SGD and Adam alike scales the learning rate.
    tx = optax.chain(tx, optax.contrib.reduce_on_plateau(
        factor=config.lr_decay_factor, patience=config.plateau_patience,
        accumulation_size=steps_per_epoch))
  return tx, schedule


def plateau_scale(opt_state: Any) -> jax.Array | None:
  """The factor reduce-on-plateau applies to the learning rate now (None without it)."""
  states = [s for s in jax.tree.leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.contrib.ReduceLROnPlateauState))
      if isinstance(s, optax.contrib.ReduceLROnPlateauState)]
  return states[0].scale if states else None
