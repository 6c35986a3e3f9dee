"""Loading a trained model back from a run directory (for scoring, analysis, notebooks)."""

import os
from typing import Any

import jax
import jax.numpy as jnp

from common.config import TrainConfig
from common.errors import ConfigError, RunDirError
from common.train import rundir
from common.train.checkpoint import Checkpointer
from common.train.optimizers import optimizer_from_config
from common.train.state import TrainState, create_train_state


def load_config(run_path: str) -> TrainConfig:
  """The :class:`TrainConfig` a run directory was made with.

  Args:
    run_path: the run directory.

  Returns:
    Its configuration, from ``config.json``.

  Raises:
    RunDirError: not a run directory, or its config.json is damaged or outdated.
  """
  record = rundir.read_config(run_path)
  try:
    return TrainConfig.from_nested(record["config"])
  except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:  # wrong values
    reason = str(e) if isinstance(e, ConfigError) else type(e).__name__
    raise RunDirError(f"{os.path.join(run_path, rundir.CONFIG)} is unreadable or not a "
                      f"run's config ({reason}); restore it from a copy of the run.") from e


def load_trained_state(run_path: str, model: Any, input_shape: tuple[int, ...],
                       epoch: int | None = None) -> tuple[TrainState, int]:
  """Restores the train state of ``run_path`` onto the current devices.

  Args:
    run_path: the run directory.
    model: the module the run trained (rebuild it from :func:`load_config`).
    input_shape: shape of one input example (without the batch axis).
    epoch: which checkpoint; None for the latest.

  Returns:
    ``(state, epoch)``.

  Raises:
    RunDirError: no checkpoint to restore.
  """
  config = load_config(run_path)
  # The schedule's length does not change the optimizer state's structure: any will do.
  tx, _ = optimizer_from_config(config, steps_per_epoch=1)
  like = jax.eval_shape(lambda: create_train_state(
      model, tx, jnp.zeros((1, *input_shape)), jax.random.key(0)))
  like = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype) if hasattr(s, "shape") else s, like)
  folder = os.path.join(run_path, rundir.CHECKPOINTS)
  if not os.path.isdir(folder):
    # Not opened: a Checkpointer would create an empty folder in the user's run.
    raise RunDirError(f"{run_path} has no {rundir.CHECKPOINTS}/ folder (removed, or not "
                      f"copied with the run); put it back to load the trained model.")
  with Checkpointer(folder) as ckpt:
    if epoch:
      problem = ckpt.verify(epoch)
      if problem:
        raise RunDirError(f"the checkpoint of epoch {epoch} in {run_path} is damaged: "
                          f"{problem}.")
      state, _ = ckpt.restore(epoch, like)
    else:  # the newest intact one, named in a warning when it is not the latest
      state, _, epoch = ckpt.restore_latest(like, move_aside=False)
    if not epoch:
      raise RunDirError(f"{run_path} has no checkpoint yet (no epoch finished).")
  return state.replace(apply_fn=model.apply, tx=tx), epoch
