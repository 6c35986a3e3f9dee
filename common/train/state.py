"""Training state: Flax's TrainState plus batch-norm statistics."""

from typing import Any

import jax
import optax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """``params``, optimizer state, step counter and (possibly empty) ``batch_stats``."""

  batch_stats: Any = None


def create_train_state(
    model, tx: optax.GradientTransformation, sample_input: jax.Array, key: jax.Array
) -> TrainState:
  """Initialises a model and its optimizer state.

  Args:
    model: an unbound Flax module called as ``model(x, train=...)``.
    tx: the optimizer.
    sample_input: one batch (any batch size) with the real input shape and dtype.
    key: the init key.

  Returns:
    A fresh TrainState at step 0.
  """
  variables = model.init(key, sample_input, train=False)
  return TrainState.create(
      apply_fn=model.apply, params=variables["params"], tx=tx,
      batch_stats=variables.get("batch_stats", {}))


def model_variables(state: TrainState) -> dict[str, Any]:
  """The variables dict ``model.apply`` needs in evaluation mode."""
  variables = {"params": state.params}
  if state.batch_stats:
    variables["batch_stats"] = state.batch_stats
  return variables


def count_params(params: Any) -> int:
  """Number of scalar parameters (batch statistics excluded)."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
