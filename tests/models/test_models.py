"""Model shapes, exact parameter counts, the GloNet identity and the registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.errors import ConfigError
from common.models import CIFAR_MODELS, DENSE_MODELS, parse_model_name
from common.models import build_model as _build_model
from common.train.state import count_params
from tests.helpers import init_variables


def build_model(name, **kwargs):
  return _build_model(name, registry=DENSE_MODELS, **kwargs)


def _init(model, in_dim=784, batch=3):
  x = jnp.ones((batch, in_dim))
  return init_variables(model, jax.random.key(0), x, train=False), x


@pytest.mark.parametrize("name,layers,features,expected", [
    ("GloNet", 10, 256, 729_866),   # the original repository's 10-layer GloNet on MNIST
    ("GloNet", 50, 256, 3_361_546),  # ... and its 50-layer one
    ("MLP", 10, 256, 729_866),
    # stem 784*256+256, 4 blocks of 2 Dense (2*65,792) + 2 BN (2*512), final BN 512, head 2,570
    ("ResNet", 10, 256, 200_960 + 4 * (2 * 65_792 + 2 * 512) + 512 + 2_570),
])
def test_exact_parameter_counts(name, layers, features, expected):
  model = build_model(name, num_layers=layers, features=features, out_dim=10)
  variables, _ = _init(model)
  assert count_params(variables["params"]) == expected


def test_resnet_without_batch_norm_has_no_bn_parameters():
  model = build_model("ResNet", num_layers=10, features=256, out_dim=10, use_batch_norm=False)
  variables, _ = _init(model)
  assert count_params(variables["params"]) == 200_960 + 4 * 2 * 65_792 + 2_570
  assert "batch_stats" not in variables


@pytest.mark.parametrize("name,layers,blocks", [("GloNet", 7, 6), ("MLP", 7, 6), ("ResNet", 8, 3)])
def test_output_and_tapped_block_shapes(name, layers, blocks):
  model = build_model(name, num_layers=layers, features=16, out_dim=4)
  variables, x = _init(model, in_dim=5)
  out = model.apply(variables, x)
  out2, [taps] = model.apply(variables, x, method="with_taps")
  assert out.shape == (3, 4)
  assert taps["feat"].shape == (blocks, 3, 16) and model.num_blocks == blocks
  assert taps["l1"].shape == (blocks, 3)
  np.testing.assert_allclose(taps["l1"], jnp.mean(jnp.abs(taps["feat"]), -1), rtol=1e-6)
  np.testing.assert_allclose(out, out2, rtol=1e-6)


def test_glonet_head_reads_the_sum_of_all_blocks():
  model = build_model("GloNet", num_layers=6, features=8, out_dim=3)
  variables, _ = _init(model, in_dim=5)
  x = jax.random.normal(jax.random.key(1), (4, 5))
  out, [taps] = model.apply(variables, x, method="with_taps")
  [w], b = model.readout(variables["params"])
  np.testing.assert_allclose(out, taps["feat"].sum(0) @ w + b, rtol=1e-5, atol=1e-5)


def test_blocks_are_stacked_by_scan():
  """Identical blocks share one parameter tree with a leading depth axis (nn.scan)."""
  model = build_model("GloNet", num_layers=200, features=8, out_dim=2)
  variables, _ = _init(model, in_dim=5)
  kernel = variables["params"]["stack"]["scan"]["block"]["dense"]["kernel"]
  assert kernel.shape == (198, 8, 8)


@pytest.mark.parametrize("name,num_layers,expected", [
    ("GloNet", 10, ("GloNet", 10)), ("GloNet24", None, ("GloNet", 24)),
    ("ResNet1000", 1000, ("ResNet", 1000)), ("MLP", 6, ("MLP", 6))])
def test_parse_model_name(name, num_layers, expected):
  assert parse_model_name(name, num_layers, DENSE_MODELS) == expected


@pytest.mark.parametrize("kwargs,match", [
    ({"name": "Foo", "num_layers": 10},
     "unknown model 'Foo'; valid models are GloNet, MLP, ResNet"),
    ({"name": "GloNet24", "num_layers": 10}, "says depth 24 but --num_layers=10"),
    ({"name": "GloNet", "num_layers": None}, "no depth"),
    ({"name": "GloNet", "num_layers": 1}, "num_layers must be >= 2"),
    ({"name": "ResNet", "num_layers": 11}, "even number >= 4"),
    ({"name": "GloNet", "num_layers": -3}, "positive"),
])
def test_registry_rejects_bad_requests(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    build_model(features=8, out_dim=2, **kwargs)


def test_every_lookup_names_its_registry():
  """Both registries have a ResNet; a lookup without a registry cannot silently pick one."""
  with pytest.raises(TypeError):
    _build_model("ResNet20", num_layers=None, out_dim=10)  # pylint: disable=missing-kwoa
  cnn = _build_model("ResNet20", registry=CIFAR_MODELS, num_layers=None, out_dim=10)
  mlp = _build_model("ResNet20", registry=DENSE_MODELS, num_layers=None, out_dim=10)
  assert type(cnn).__name__ == "ResNetV2" and type(mlp).__name__ == "StackedMLP"


@pytest.mark.parametrize("name,bn", [
    pytest.param("GloNet", False, marks=pytest.mark.slow),
    pytest.param("GloNet", True, marks=pytest.mark.slow), ("MLP", False),
    pytest.param("ResNet", True, marks=pytest.mark.slow), ("ResNet", False)])
def test_feature_major_layout_is_the_same_model(name, bn):
  """Both activation layouts have the same parameters, outputs, gradients and BN stats."""
  batch_major = build_model(name, num_layers=8, features=16, out_dim=3,
                            use_batch_norm=bn).clone(feature_major=False)
  feature_major = batch_major.clone(feature_major=True)
  assert feature_major.uses_feature_major and not batch_major.uses_feature_major
  x = jax.random.normal(jax.random.key(1), (32, 14))
  variables = init_variables(batch_major, jax.random.key(0), x, train=False)
  jax.tree.map(np.testing.assert_array_equal, variables,
               init_variables(feature_major, jax.random.key(0), x, train=False))

  def loss(params, model):
    out, new_state = model.apply({**variables, "params": params}, x, train=True,
                                 mutable=["batch_stats"])
    return jnp.sum(out ** 2), new_state

  results = [jax.value_and_grad(loss, has_aux=True)(variables["params"], m)
             for m in (batch_major, feature_major)]
  (value_b, stats_b), grads_b = results[0]
  (value_f, stats_f), grads_f = results[1]
  np.testing.assert_allclose(value_f, value_b, rtol=1e-5)
  scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads_b))
  jax.tree.map(lambda f, b: np.testing.assert_allclose(f, b, atol=1e-5 * scale),
               grads_f, grads_b)
  jax.tree.map(lambda f, b: np.testing.assert_allclose(f, b, atol=1e-5), stats_f, stats_b)
  out_b, [taps_b] = batch_major.apply(variables, x, method="with_taps")
  out_f, [taps_f] = feature_major.apply(variables, x, method="with_taps")
  assert taps_f["feat"].shape == taps_b["feat"].shape == (batch_major.num_blocks, 32, 16)
  np.testing.assert_allclose(out_f, out_b, atol=1e-5)
  jax.tree.map(lambda f, b: np.testing.assert_allclose(f, b, atol=1e-5), taps_f, taps_b)


def test_layout_is_chosen_by_width():
  """Narrow models run feature-major on the CPU, wide ones batch-major, unless told."""
  assert build_model("GloNet", num_layers=10, features=16, out_dim=1).uses_feature_major
  assert not build_model("GloNet", num_layers=10, features=256, out_dim=10).uses_feature_major
  assert not build_model("GloNet", num_layers=10, features=16, out_dim=1).clone(
      feature_major=False).uses_feature_major


def test_custom_backward_choice_can_be_forced_but_not_for_batch_norm():
  wide = build_model("GloNet", num_layers=4, features=256, out_dim=3)
  assert not wide.takes_dense_chain(1024) and wide.takes_dense_chain(256)
  assert wide.clone(custom_backward=True).takes_dense_chain(1024)
  assert not wide.clone(custom_backward=False).takes_dense_chain(256)
  resnet = build_model("ResNet", num_layers=4, features=16, out_dim=3)
  assert not resnet.clone(custom_backward=True).takes_dense_chain(8)


def test_cpu_fast_paths_are_not_taken_on_other_backends(monkeypatch):
  """The thresholds were measured on a CPU: elsewhere the generic path runs, unless forced."""
  narrow = build_model("GloNet", num_layers=10, features=16, out_dim=1)
  wide = build_model("GloNet", num_layers=10, features=256, out_dim=3)
  assert narrow.uses_feature_major and wide.takes_dense_chain(256)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not narrow.uses_feature_major and not narrow.takes_dense_chain(1024)
  assert not wide.takes_dense_chain(256)
  assert wide.clone(custom_backward=True).takes_dense_chain(256)
  assert narrow.execution(1024) == {"backend": "gpu", "feature_major": False,
                                    "custom_backward": False, "remat": False}
