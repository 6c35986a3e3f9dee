"""Pure, jittable train and eval steps, and the device-side loops around them.

* :func:`make_train_step` builds ``train_step(state, batch, key) -> (state, metrics)``:
  one optimizer step; ``metrics`` are per-batch *sums* of the task's per-example values.
  ``key`` feeds the ``preprocess`` hook, which turns stored inputs (e.g. uint8 images
  kept on the device) into model inputs, augmented when training.
* :func:`make_step_runner` wraps it into ``run_steps(state, acc, x, y, perm, n)``: ``n``
  steps in one device call (a ``fori_loop`` with a dynamic trip count, so one executable
  serves every chunk length). Batches are gathered on device from the resident training
  arrays with the epoch's permutation; the position in the epoch is ``state.step mod
  steps_per_epoch``, so no step index crosses from host to device. Metrics accumulate in
  ``acc`` on device; the host reads them once per epoch.
* :func:`make_evaluator` scans a padded split batch by batch and returns masked sums, so
  every example counts exactly once whatever the batch size.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from common.data.augment import Preprocess, identity_preprocess
from common.train.state import TrainState, model_variables
from common.train.tasks import Task

Batch = tuple[jax.Array, jax.Array]
Metrics = dict[str, jax.Array]
def l2_penalty(params: Any) -> jax.Array:
  """Sum of squares of every parameter (the original code's ``alpha * sum(p**2)``)."""
  return sum(jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params))


def make_train_step(
    task: Task, l2_reg_alpha: float = 0.0, preprocess: Preprocess | None = None,
    monitor_objective: bool = False,
) -> Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]:
  """Returns a pure train step for ``task``.

  Args:
    task: defines the per-example loss and metrics.
    l2_reg_alpha: weight of the L2 penalty ``sum(p**2)`` over every parameter (the
      original SGEMM recipe) added to the *training objective only*; the reported
      ``loss`` stays the pure data loss. Decoupled, kernel-only weight decay is an
      optimizer setting instead (``common.train.optimizers``).
    preprocess: stored inputs to model inputs (train mode, with the step's key).
    monitor_objective: pass the step's objective to the optimizer as ``value`` (for
      optax's ``reduce_on_plateau``).

  Returns:
    ``train_step(state, (x, y), key) -> (new_state, metrics)`` where ``metrics`` holds
    the batch sums of the task's per-example values and ``objective`` (mean loss +
    penalty).
  """
  preprocess = preprocess or identity_preprocess

  def train_step(state: TrainState, batch: Batch, key: jax.Array
                 ) -> tuple[TrainState, Metrics]:
    x, y = batch
    x = preprocess(key, x, True)
    has_bn = bool(state.batch_stats)

    def objective_fn(params):
      variables = {"params": params}
      if has_bn:
        variables["batch_stats"] = state.batch_stats
        outputs, updates = state.apply_fn(variables, x, train=True, mutable=["batch_stats"])
      else:
        outputs, updates = state.apply_fn(variables, x, train=True), {}
      per_example = task.per_example(outputs, y)
      # The optimised loss (e.g. on smoothed labels); the reported one is per_example's.
      objective = jnp.mean(task.training_loss(outputs, y))
      if l2_reg_alpha:
        objective = objective + l2_reg_alpha * l2_penalty(params)
      return objective, (per_example, updates)

    (objective, (per_example, updates)), grads = jax.value_and_grad(
        objective_fn, has_aux=True)(state.params)
    if monitor_objective:
      steps, opt_state = state.tx.update(grads, state.opt_state, state.params,
                                         value=objective)
      state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, steps))
    else:
      state = state.apply_gradients(grads=grads)
    if has_bn:
      state = state.replace(batch_stats=updates["batch_stats"])
    metrics = {k: jnp.sum(v) for k, v in per_example.items()}
    metrics["objective"] = objective
    return state, metrics


  return train_step


def init_accumulator(task: Task) -> Metrics:
  """Zeroed device-side accumulator for one epoch of training metrics.

  ``first_nonfinite_step`` is the global step whose loss first became NaN/inf (-1: none),
  so a failure can be reported precisely without a host sync per step. ``first_loss`` is
  the mean loss of the epoch's first step (of the run's first epoch: the initial model's
  loss, against which the loop bounds later losses).
  """
  acc = {k: jnp.zeros((), jnp.float32) for k in task.metric_names}
  acc["objective"] = jnp.zeros((), jnp.float32)
  acc["count"] = jnp.zeros((), jnp.float32)
  acc["steps"] = jnp.zeros((), jnp.int32)
  acc["first_nonfinite_step"] = jnp.full((), -1, jnp.int32)
  acc["first_loss"] = jnp.zeros((), jnp.float32)
  return acc


def make_step_runner(
    train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]],
    batch_size: int,
    steps_per_epoch: int,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Callable[..., tuple[TrainState, Metrics]]:
  """Wraps ``train_step`` into a device loop over a chunk of an epoch.

  Args:
    train_step: from :func:`make_train_step`; its key is ``fold_in(aug_key, step)``.
    batch_size: examples per step.
    steps_per_epoch: steps in one epoch (``len(train) // batch_size``; the remainder of
      each epoch's permutation is skipped, a different remainder every epoch).
    batch_sharding: where to place each gathered batch (data parallelism); None keeps the
      default single-device placement.

  Returns:
    ``run_steps(state, acc, x, y, perm, aug_key, num_steps) -> (state, acc)``, not yet
    jitted (the caller jits it with ``donate_argnums=(0, 1)`` and compiles it ahead of
    time).
  """

  one_step = make_single_step(train_step, batch_size, steps_per_epoch, batch_sharding)

  def run_steps(state, acc, x, y, perm, aug_key, num_steps):
    body = lambda _, carry: one_step(*carry, x, y, perm, aug_key)
    return lax.fori_loop(0, num_steps, body, (state, acc))

  return run_steps


def make_single_step(
    train_step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]],
    batch_size: int,
    steps_per_epoch: int,
    batch_sharding: jax.sharding.Sharding | None = None,
) -> Callable[..., tuple[TrainState, Metrics]]:
  """One step of :func:`make_step_runner`'s loop, as a function of its own.

  ``run_one(state, acc, x, y, perm, aug_key) -> (state, acc)`` gathers the step's batch
  on device, trains and accumulates, exactly as one iteration of the runner. Models whose
  gradients XLA runs slowly inside a loop body (convolutions on the CPU) call it once per
  step instead of looping on device.
  """

  def run_one(state, acc, x, y, perm, aug_key):
    start = (state.step % steps_per_epoch) * batch_size
    idx = lax.dynamic_slice_in_dim(perm, start, batch_size)
    batch = (jnp.take(x, idx, axis=0), jnp.take(y, idx, axis=0))
    if batch_sharding is not None:
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    step = state.step
    state, m = train_step(state, batch, jax.random.fold_in(aug_key, step))
    new_acc = {k: acc[k] + m[k] for k in m}
    new_acc["first_loss"] = jnp.where(acc["steps"] == 0, m["loss"] / batch_size,
                                      acc["first_loss"])
    new_acc["count"] = acc["count"] + batch_size
    new_acc["steps"] = acc["steps"] + 1
    bad = ~jnp.isfinite(m["objective"])
    new_acc["first_nonfinite_step"] = jnp.where(
        (acc["first_nonfinite_step"] < 0) & bad, step, acc["first_nonfinite_step"])
    return state, new_acc

  return run_one


def make_evaluator(task: Task, preprocess: Preprocess | None = None
                   ) -> Callable[..., Metrics]:
  """Returns ``evaluate(state, x, y, mask) -> sums`` over a padded, batched split.

  Args:
    task: defines the per-example metrics.
    preprocess: stored inputs to model inputs (evaluation mode: no augmentation).

  Returns:
    A function taking ``x`` of shape ``(num_batches, batch, ...)``, ``y`` likewise and a
    0/1 ``mask`` of shape ``(num_batches, batch)``; it returns the masked sum of each
    per-example metric and ``count`` (the number of real examples).
  """

  preprocess = preprocess or identity_preprocess

  def evaluate(state: TrainState, x, y, mask) -> Metrics:
    variables = model_variables(state)

    def body(acc, inputs):
      xb, yb, mb = inputs
      outputs = state.apply_fn(variables, preprocess(None, xb, False), train=False)
      per_example = task.per_example(outputs, yb)
      # `where`, not a product: a padded row may produce inf/NaN, and 0 * inf is NaN.
      return {k: acc[k] + jnp.sum(jnp.where(mb > 0, per_example[k], 0.0)) for k in acc}, None

    zeros = {k: jnp.zeros((), jnp.float32) for k in task.metric_names}
    sums, _ = lax.scan(body, zeros, (x, y, mask))
    sums["count"] = jnp.sum(mask)
    return sums

  return evaluate
