"""Pure train/eval steps: a golden value, learning, exact padded evaluation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.data import fake_classification, fake_regression
from common.models import DENSE_MODELS, build_model
from common.train import steps
from common.train.optimizers import make_optimizer, make_schedule
from common.train.state import create_train_state
from common.train.tasks import Classification, Regression
from common.train.trainer import pad_split

_KEY = jax.random.key(0)


def _state(name="GloNet", layers=4, features=8, out_dim=4, in_dim=20, lr=1e-2, bn=None):
  model = build_model(name, registry=DENSE_MODELS, num_layers=layers, features=features,
                      out_dim=out_dim, use_batch_norm=bn)
  tx = make_optimizer("ADAM", make_schedule(lr, "constant", 1))
  return create_train_state(model, tx, jnp.ones((1, in_dim)), jax.random.key(0))


@pytest.mark.skipif(jax.default_backend() != "cpu",
                    reason="golden values recorded on the CPU; a GPU's matmuls round otherwise")
def test_two_steps_golden_value():
  """Two Adam steps of a tiny GloNet from seed 0 give these exact numbers.

  If you did not mean to change the model, its init, the loss or the optimizer, a failure
  here is a bug; if you did, update the reference values and say why in the commit.
  """
  ds = fake_classification(n_train=64, in_dim=20, num_classes=4, seed=0)
  state = _state()
  step = jax.jit(steps.make_train_step(Classification(4)))
  batch = (jnp.asarray(ds.train.x[:32]), jnp.asarray(ds.train.y[:32]))
  state, m1 = step(state, batch, _KEY)  # the key feeds only augmentation: none here
  state, m2 = step(state, batch, _KEY)
  l1_params = float(sum(jnp.sum(jnp.abs(p)) for p in jax.tree.leaves(state.params)))
  np.testing.assert_allclose(float(m1["loss"]) / 32, 5.526835918426514, rtol=1e-5)
  np.testing.assert_allclose(float(m2["loss"]) / 32, 4.802912712097168, rtol=1e-5)
  np.testing.assert_allclose(l1_params, 99.54544067382812, rtol=1e-5)
  assert int(state.step) == 2


@pytest.mark.parametrize("name,bn", [("GloNet", None), ("MLP", None), ("ResNet", True),
                                     ("ResNet", False)])
def test_loss_falls_on_a_learnable_task(name, bn):
  ds = fake_classification(n_train=512, in_dim=20, num_classes=4, seed=1)
  state = _state(name, layers=6, features=32, lr=3e-3, bn=bn)
  step = jax.jit(steps.make_train_step(Classification(4)))
  x, y = jnp.asarray(ds.train.x), jnp.asarray(ds.train.y)
  losses = []
  for i in range(60):
    sl = slice((i % 8) * 64, (i % 8 + 1) * 64)
    state, m = step(state, (x[sl], y[sl]), _KEY)
    losses.append(float(m["loss"]) / 64)
  assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:8]), losses[::8]


def test_l2_penalty_changes_the_objective_but_not_the_reported_loss():
  ds = fake_regression(n_train=64, seed=0)
  model = build_model("GloNet", num_layers=4, features=8, registry=DENSE_MODELS, out_dim=1)
  tx = optax.sgd(0.0)
  state = create_train_state(model, tx, jnp.ones((1, 14)), jax.random.key(0))
  batch = (jnp.asarray(ds.train.x[:16]), jnp.asarray(ds.train.y[:16]))
  _, plain = steps.make_train_step(Regression())(state, batch, _KEY)
  _, reg = steps.make_train_step(Regression(), l2_reg_alpha=0.5)(state, batch, _KEY)
  penalty = 0.5 * float(steps.l2_penalty(state.params))
  np.testing.assert_allclose(float(reg["loss"]), float(plain["loss"]), rtol=1e-6)
  np.testing.assert_allclose(float(reg["objective"]) - float(plain["objective"]), penalty,
                             rtol=1e-5)


def test_step_runner_matches_individual_steps():
  """The on-device loop over a permutation equals calling train_step batch by batch."""
  ds = fake_classification(n_train=96, in_dim=20, num_classes=4, seed=2)
  task = Classification(4)
  x, y = jnp.asarray(ds.train.x), jnp.asarray(ds.train.y)
  perm = jax.random.permutation(jax.random.key(3), 96).astype(jnp.int32)
  train_step = steps.make_train_step(task)
  runner = jax.jit(steps.make_step_runner(train_step, 32, 3), donate_argnums=(0, 1))
  state_a, acc = runner(_state(), steps.init_accumulator(task), x, y, perm, _KEY, jnp.int32(2))
  state_a, acc = runner(state_a, acc, x, y, perm, _KEY, jnp.int32(1))
  state_b, total = _state(), 0.0
  for i in range(3):
    idx = perm[i * 32:(i + 1) * 32]
    state_b, m = jax.jit(train_step)(state_b, (x[idx], y[idx]), jax.random.fold_in(_KEY, i))
    total += float(m["loss"])
  for a, b in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert int(acc["steps"]) == 3 and float(acc["count"]) == 96
  np.testing.assert_allclose(float(acc["loss"]), total, rtol=1e-5)
  assert int(acc["first_nonfinite_step"]) == -1


def test_padded_evaluation_counts_every_example_once():
  ds = fake_classification(n_train=16, n_test=7, in_dim=20, num_classes=4, seed=4)
  state = _state()
  task = Classification(4)
  padded = pad_split(ds.test, 3, None)  # 3 batches of 3, 2 padding rows
  assert padded.x.shape[:2] == (3, 3) and float(padded.mask.sum()) == 7
  sums = jax.jit(steps.make_evaluator(task))(state, padded.x, padded.y, padded.mask)
  logits = state.apply_fn({"params": state.params}, jnp.asarray(ds.test.x))
  want_loss = optax.softmax_cross_entropy_with_integer_labels(logits, ds.test.y).mean()
  want_acc = np.mean(np.argmax(logits, -1) == ds.test.y)
  assert float(sums["count"]) == 7
  np.testing.assert_allclose(float(sums["loss"]) / 7, want_loss, rtol=1e-5)
  np.testing.assert_allclose(float(sums["accuracy"]) / 7, want_acc, rtol=1e-6)


def test_nonfinite_loss_is_located_on_device():
  ds = fake_classification(n_train=96, in_dim=20, num_classes=4, seed=5)
  x = np.array(ds.train.x)
  x[40] = np.nan  # example 40 sits in the second batch of the identity order
  task = Classification(4)
  runner = jax.jit(steps.make_step_runner(steps.make_train_step(task), 32, 3))
  _, acc = runner(_state(), steps.init_accumulator(task), jnp.asarray(x),
                  jnp.asarray(ds.train.y), jnp.arange(96, dtype=jnp.int32), _KEY, jnp.int32(3))
  assert int(acc["first_nonfinite_step"]) == 1
