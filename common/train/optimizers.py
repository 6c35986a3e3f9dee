"""Optimizers and learning-rate schedules by name."""

import optax

from common.errors import ConfigError

OPTIMIZERS = ("ADAM", "SGD")
SCHEDULES = ("constant", "cosine")


def make_schedule(learning_rate: float, schedule: str, total_steps: int) -> optax.Schedule:
  """Returns the learning rate as a function of the step.

  Args:
    learning_rate: the peak (constant: the only) learning rate.
    schedule: ``constant`` (the paper and the original code) or ``cosine`` decay to 0
      over ``total_steps``.
    total_steps: length of the whole run in optimizer steps.

  Returns:
    An optax schedule.
  """
  if learning_rate <= 0:
    raise ConfigError(f"learning rate must be > 0; got {learning_rate}.")
  if schedule == "constant":
    return optax.constant_schedule(learning_rate)
  if schedule == "cosine":
    return optax.cosine_decay_schedule(learning_rate, max(1, total_steps))
  raise ConfigError(f"unknown learning-rate schedule {schedule!r}; valid: {', '.join(SCHEDULES)}.")


def make_optimizer(
    name: str, schedule: optax.Schedule, momentum: float = 0.9
) -> optax.GradientTransformation:
  """Builds the optimizer (defaults as in the original code: optax's Adam, SGD+momentum).

  Args:
    name: ``ADAM`` or ``SGD`` (case-insensitive).
    schedule: learning-rate schedule.
    momentum: SGD momentum (ignored by Adam); 0 means plain SGD.

  Returns:
    An optax gradient transformation.
  """
  key = name.upper()
  if key == "ADAM":
    return optax.adam(schedule)
  if key == "SGD":
    return optax.sgd(schedule, momentum=momentum or None)
  raise ConfigError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}.")
