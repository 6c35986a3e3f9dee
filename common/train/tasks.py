"""Losses and metrics per task, as per-example values that the loop sums and masks.

A task maps model outputs and targets to a dict of *per-example* values; ``"loss"`` is
the data loss that is optimised and reported (regularisers are added by the train step
and never reported as loss). Summing per-example values, then dividing by the number of
real examples, is what makes padded evaluation exact.
"""

import dataclasses

import jax
import jax.numpy as jnp
import optax


@dataclasses.dataclass(frozen=True)
class Classification:
  """Softmax cross-entropy on integer labels; reports ``loss`` and ``accuracy``."""

  num_classes: int
  metric_names: tuple[str, ...] = ("loss", "accuracy")
  selection_metric: str = "accuracy"  # best-validation epoch = highest val accuracy
  selection_mode: str = "max"
  # `blocks_needed` (common.usage): the first k whose early-exit accuracy is within half a
  # percentage point of the full model's.
  exit_tolerance: float = 0.005
  exit_tolerance_rule: str = "early-exit accuracy >= full accuracy - 0.005"

  @property
  def out_dim(self) -> int:
    return self.num_classes

  label_smoothing: float = 0.0  # of the training loss only

  def per_example(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """Returns per-example ``loss`` and ``accuracy`` (0/1), each of shape (batch,)."""
    loss = optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    correct = (jnp.argmax(outputs, axis=-1) == targets).astype(jnp.float32)
    return {"loss": loss, "accuracy": correct}

  def training_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example loss the optimizer minimises: cross-entropy on smoothed targets."""
    if not self.label_smoothing:
      return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    onehot = jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    smooth = optax.smooth_labels(onehot, self.label_smoothing)
    return optax.softmax_cross_entropy(outputs, smooth)


@dataclasses.dataclass(frozen=True)
class Regression:
  """Mean squared error; reports ``loss`` (= MSE), ``mse`` and ``mae``."""

  out_dim: int = 1
  metric_names: tuple[str, ...] = ("loss", "mse", "mae")
  selection_metric: str = "mse"  # best-validation epoch = lowest val MSE
  selection_mode: str = "min"
  # `blocks_needed` (common.usage): the first k whose early-exit MSE is within 5% of the
  # full model's.
  exit_tolerance: float = 0.05
  exit_tolerance_rule: str = "early-exit mse <= 1.05 x full mse"

  def per_example(self, outputs: jax.Array, targets: jax.Array) -> dict[str, jax.Array]:
    """Returns per-example squared and absolute errors, averaged over output dims."""
    err = outputs.reshape(outputs.shape[0], -1) - targets.reshape(targets.shape[0], -1)
    mse = jnp.mean(err**2, axis=-1)
    return {"loss": mse, "mse": mse, "mae": jnp.mean(jnp.abs(err), axis=-1)}

  def training_loss(self, outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example loss the optimizer minimises: the MSE."""
    return self.per_example(outputs, targets)["loss"]


Task = Classification | Regression
