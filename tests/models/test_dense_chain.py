"""The custom-VJP Dense+ReLU chain equals autodiff through the generic scanned stack."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common.models import DENSE_MODELS, build_model, dense_chain
from common.models import mlp as mlp_lib
from tests.helpers import init_variables


def _reference_chain(h, s, kernels, biases, glonet_sum, feature_major=False):
  """What the chain computes, written as plain autodiff-able code."""
  for w, b in zip(kernels, biases, strict=True):
    h = nn.relu(w.T @ h + b[:, None]) if feature_major else nn.relu(jnp.dot(h, w) + b)
    if glonet_sum:
      s = s + h
  return h, s


@pytest.mark.parametrize("glonet_sum", [True, False])
@pytest.mark.parametrize("shape,feature_major,n", [
    pytest.param((6, 8), False, 4, marks=pytest.mark.slow),
    pytest.param((3, 2, 8), False, 4, marks=pytest.mark.slow),  # extra axes are batch-like
    ((8, 6), True, 4), ((8, 6), True, 1),  # feature-major (features, batch); one layer
])
def test_chain_value_and_gradients_equal_autodiff(glonet_sum, shape, feature_major, n):
  keys = jax.random.split(jax.random.key(0), 5)
  f = shape[0] if feature_major else shape[-1]
  h = jax.random.normal(keys[0], shape)
  s = jax.random.normal(keys[1], shape)
  kernels = jax.random.normal(keys[2], (n, f, f)) / np.sqrt(f)
  biases = 0.1 * jax.random.normal(keys[3], (n, f))
  probe_h, probe_s = jax.random.normal(keys[4], (2, *shape))

  def scalar(fn):
    def loss(*args):
      h_last, s_out = fn(*args, glonet_sum, feature_major)
      return jnp.sum(h_last * probe_h) + jnp.sum(s_out * probe_s)
    return loss

  args = (h, s, kernels, biases)
  got = jax.value_and_grad(scalar(dense_chain.dense_relu_chain), argnums=(0, 1, 2, 3))(*args)
  want = jax.value_and_grad(scalar(_reference_chain), argnums=(0, 1, 2, 3))(*args)
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for g, w in zip(got[1], want[1], strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,features", [
    pytest.param("GloNet", mlp_lib.HOISTED_WEIGHT_GRAD_MIN_FEATURES, marks=pytest.mark.slow),
    ("MLP", 16), ("GloNet", 16)])
def test_model_fast_path_matches_the_generic_scan(name, features):
  model = build_model(name, num_layers=6, features=features, registry=DENSE_MODELS, out_dim=5)
  x = jax.random.normal(jax.random.key(1), (8, 12))
  y = jnp.arange(8) % 5
  params = init_variables(model, jax.random.key(0), x)["params"]

  def loss(p, generic):
    # The same model with the chain switched off runs the generic nn.scan path.
    m = (model.clone(custom_backward=False, feature_major=model.uses_feature_major)
         if generic else model)
    logits = m.apply({"params": p}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  fast_loss, fast_grads = jax.value_and_grad(loss)(params, False)
  ref_loss, ref_grads = jax.value_and_grad(loss)(params, True)
  np.testing.assert_allclose(fast_loss, ref_loss, rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               fast_grads, ref_grads)
  # The fast path is really taken: its jaxpr holds the custom VJP, the generic one not.
  assert "custom_vjp_call" in str(jax.make_jaxpr(lambda p: loss(p, False))(params))
  assert "custom_vjp_call" not in str(jax.make_jaxpr(lambda p: loss(p, True))(params))


@pytest.mark.parametrize("features,batch,expected", [
    (mlp_lib.HOISTED_WEIGHT_GRAD_MIN_FEATURES, mlp_lib.HOISTED_WEIGHT_GRAD_MAX_ROWS, True),
    (mlp_lib.HOISTED_WEIGHT_GRAD_MIN_FEATURES - 1, 8, False),
    (mlp_lib.HOISTED_WEIGHT_GRAD_MIN_FEATURES, mlp_lib.HOISTED_WEIGHT_GRAD_MAX_ROWS + 1, False),
    (mlp_lib.FEATURE_MAJOR_MAX_FEATURES, 1024, True),  # feature-major: any batch
    (mlp_lib.FEATURE_MAJOR_MAX_FEATURES + 1, 8, False),
])
def test_fast_path_is_taken_only_where_it_was_measured_faster(features, batch, expected):
  model = build_model("GloNet", num_layers=4, features=features, registry=DENSE_MODELS, out_dim=3)
  x = jnp.ones((batch, 5))
  params = init_variables(model, jax.random.key(0), x[:1])["params"]
  jaxpr = jax.make_jaxpr(lambda p: model.apply({"params": p}, x, train=True))(params)
  assert ("custom_vjp_call" in str(jaxpr)) == expected
