"""The oneDNN CPU operations (convolution; batch norm + ReLU) equal XLA's and fall back."""

import os
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from common.models import CIFAR_MODELS, build_model
from common.ops import batch_norm as batch_norm_ops
from common.ops import conv, native
from tests.conftest import REPO, hermetic_env
from tests.helpers import init_variables

NATIVE = native.load().available
needs_native = pytest.mark.skipif(not NATIVE, reason=f"no oneDNN build: {native.load().reason}")
DN = ("NHWC", "HWIO", "NHWC")

# Every convolution the model zoo runs (CIFAR ResNet-v2 / Plain / GloNet and the carry
# maps; the ImageNet-style stem and stride-2 3x3 convs of ResNet18/34), plus padding that
# no model uses but lax accepts. Batch sizes are odd on purpose.
# (batch, size, in_channels, out_channels, kernel, stride, padding)
SHAPES = [
    (3, 32, 3, 16, 3, 1, "SAME"),      # CIFAR stem
    (5, 32, 16, 16, 3, 1, "SAME"),     # stage-1 blocks
    (3, 32, 16, 32, 3, 2, "SAME"),     # stride-2 first conv of a stage (pads 0 / 1)
    (3, 32, 16, 32, 1, 2, "SAME"),     # 1x1 projection shortcut, strided carry
    (7, 8, 64, 64, 3, 1, "SAME"),      # stage-3 blocks
    (1, 16, 32, 64, 1, 1, "SAME"),     # average-pool carry's 1x1 conv
    (3, 33, 3, 8, 7, 2, "SAME"),       # ImageNet 7x7/2 stem on an odd size
    (2, 9, 5, 7, 3, 2, "VALID"),
    (3, 11, 4, 6, 3, 2, ((1, 2), (0, 1))),
]


def _reference(x, w, stride, padding):
  return lax.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=DN)


def _fast(x, w, stride, padding):
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  return conv.conv_general_dilated(x, w, (stride, stride), padding, dimension_numbers=dn)


def _operands(n, size, cin, cout, k, seed=0):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.normal(size=(n, size, size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)
  return x, w


def _value_and_grads(fn, x, w, stride, padding):
  probe = jnp.asarray(np.random.default_rng(1).normal(size=fn(x, w, stride, padding).shape),
                      jnp.float32)
  loss = lambda x, w: jnp.sum(fn(x, w, stride, padding) * probe)
  y = jax.jit(fn, static_argnums=(2, 3))(x, w, stride, padding)
  gx, gw = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, w)
  return y, gx, gw


@needs_native
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s[:6])) + str(s[6]))
def test_equals_lax_in_value_and_both_gradients(shape):
  """Tolerance: 1e-5 of the largest magnitude (float32 sums of up to 7*7*64 terms, taken
  in another order)."""
  n, size, cin, cout, k, stride, padding = shape
  x, w = _operands(n, size, cin, cout, k)
  expected = _value_and_grads(_reference, x, w, stride, padding)
  got = _value_and_grads(_fast, x, w, stride, padding)
  for name, a, b in zip(("value", "input gradient", "weight gradient"), expected, got, strict=True):
    assert a.shape == b.shape, name
    scale = float(jnp.max(jnp.abs(a)))
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale, err_msg=name)


@needs_native
def test_native_results_are_bitwise_reproducible():
  x, w = _operands(5, 16, 32, 32, 3)
  first = _value_and_grads(_fast, x, w, 1, "SAME")
  for _ in range(2):
    for a, b in zip(first, _value_and_grads(_fast, x, w, 1, "SAME"), strict=True):
      np.testing.assert_array_equal(a, b)


@needs_native
def test_the_models_take_the_native_path_and_unsupported_calls_stay_on_xla():
  model = build_model("GloNet8", registry=CIFAR_MODELS, num_layers=None, out_dim=10)
  x = jnp.zeros((2, 32, 32, 3))
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  text = str(jax.make_jaxpr(lambda p: model.apply(p, x, train=False))(params))
  assert "glonets_conv_fwd" in text and "conv_general_dilated" not in text
  x, w = _operands(2, 8, 4, 4, 3)
  dn = lax.conv_dimension_numbers(x.shape, w.shape, DN)
  for kwargs in ({"rhs_dilation": (2, 2)}, {"lhs_dilation": (2, 2)},
                 {"feature_group_count": 2}):
    text = str(jax.make_jaxpr(lambda x, w, kw=kwargs: conv.conv_general_dilated(
        x, w[:, :, : 4 // kw.get("feature_group_count", 1)], (1, 1), ((1, 1), (1, 1)),
        dimension_numbers=dn, **kw))(x, w))
    assert "glonets_conv" not in text and "conv_general_dilated" in text
  text = str(jax.make_jaxpr(lambda x, w: conv.conv_general_dilated(
      x, w, (1, 1), "SAME", dimension_numbers=dn))(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)))
  assert "glonets_conv" not in text


def test_cpu_conv_path_honours_the_environment(monkeypatch):
  monkeypatch.setenv(native.CPU_OPS_ENV, "xla")
  assert native.cpu_ops_path() == "xla"
  monkeypatch.setenv(native.CPU_OPS_ENV, "onednn")
  assert native.cpu_ops_path() == ("onednn" if NATIVE else "xla")
  monkeypatch.setenv(native.CPU_OPS_ENV, "fast")
  with pytest.raises(ValueError, match="must be 'onednn' or 'xla'"):
    native.cpu_ops_path()


_FALLBACK = """
import jax, jax.numpy as jnp, numpy as np
from jax import lax
from common.ops import conv, native
x = jnp.ones((2, 8, 8, 3)); w = jnp.ones((3, 3, 3, 4))
dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
f = lambda x, w: conv.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn)
g = jax.grad(lambda w: jnp.sum(f(x, w)))(w)
ref = jax.grad(lambda w: jnp.sum(lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                          dimension_numbers=dn)))(w)
np.testing.assert_allclose(g, ref, rtol=1e-6)
print("path", native.cpu_ops_path(), native.cpu_ops_path())
"""


@pytest.mark.parametrize("broken", ["no_onednn", "compiler_fails"])
def test_without_a_build_the_convolutions_fall_back_to_xla_with_one_warning(broken, tmp_path):
  env = {**hermetic_env(), "GLONETS_CACHE_DIR": str(tmp_path / "cache")}
  if broken == "no_onednn":
    empty = tmp_path / "empty"
    empty.mkdir()
    # No oneDNN under the named root nor (for this check) in the environment: hide the
    # venv's copy by pointing the root at an empty folder and the prefix checks at it too.
    env[native.ONEDNN_ROOT_ENV] = str(empty)
    code = ("import sys, site; sys.prefix = sys.base_prefix = site.USER_BASE = "
            f"{str(empty)!r}\n" + _FALLBACK)
  else:
    env["CXX"] = "/bin/false"  # a "compiler" that always fails
    env["PATH"] = "/nonexistent"  # and no other compiler on the PATH
    code = _FALLBACK
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "path xla xla" in proc.stdout
  warnings = [line for line in proc.stderr.splitlines() if "use XLA's kernels" in line]
  assert len(warnings) == 1, proc.stderr[-3000:]
  if broken == "compiler_fails":
    assert "failed" in warnings[0]
    assert not any(f.endswith(".so") for _, _, files in os.walk(tmp_path / "cache")
                   for f in files), "a failed build left a library behind"


# --- batch norm + ReLU ----------------------------------------------------------------------


@needs_native
@pytest.mark.parametrize("shape", [(5, 32, 32, 16), (3, 8, 8, 64), (1, 4, 4, 512), (7, 3, 5, 2)])
def test_fused_batch_norm_relu_equals_flax_batch_norm_then_relu(shape):
  """Output, gradients (input, scale, bias) and running statistics, to 2e-6 of the largest
  magnitude; the variables are nn.BatchNorm's, so checkpoints are interchangeable."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=shape) * 2 + 1, jnp.float32)
  probe = jnp.asarray(rng.normal(size=shape), jnp.float32)
  reference = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
  fused = batch_norm_ops.BatchNormReLU(momentum=0.9, epsilon=1e-5)
  variables = init_variables(reference, jax.random.key(0), x)
  assert jax.tree.structure(variables) == jax.tree.structure(
      init_variables(fused, jax.random.key(0), x))
  variables = jax.tree.map(
      lambda a: a + 0.3 * jnp.asarray(rng.normal(size=a.shape), jnp.float32), variables)

  def run(module, relu):
    def loss(params, x):
      y, updates = module.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                x, mutable=["batch_stats"])
      y = nn.relu(y) if relu else y
      return jnp.sum(y * probe), (y, updates)
    (_, (y, updates)), grads = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))(
        variables["params"], x)
    return [y, *jax.tree.leaves(grads), *jax.tree.leaves(updates)]

  for a, b in zip(run(reference, True), run(fused, False), strict=True):
    np.testing.assert_allclose(b, a, rtol=0, atol=2e-6 * float(jnp.max(jnp.abs(a))))


@needs_native
def test_cnn_training_uses_the_fused_batch_norm_and_evaluation_does_not():
  model = build_model("ResNet8", registry=CIFAR_MODELS, num_layers=None, out_dim=10)
  x = jnp.zeros((2, 32, 32, 3))
  variables = init_variables(model, jax.random.key(0), x, train=False)
  train = str(jax.make_jaxpr(lambda v: model.apply(v, x, train=True,
                                                   mutable=["batch_stats"]))(variables))
  evaluate = str(jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables))
  assert "glonets_bn_relu_fwd" in train and "glonets_bn_relu_fwd" not in evaluate
