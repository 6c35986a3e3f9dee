"""The convolutional trunk: parameter counts, exact GloNet readout, usage across stages."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.data import Split, fake_images
from common.data.augment import image_preprocess, pad_crop_flip
from common.errors import ConfigError
from common.models import CIFAR_MODELS, build_model
from common.models.blocks import BatchRMSNorm
from common.models.glonet import AvgPoolConvCarry, StridedConvCarry
from common.models.registry import model_label
from common.models.resnet_v2 import ResNetTiny, ResNetV2
from common.ops import native
from common.train import steps
from common.train.optimizers import make_optimizer
from common.train.state import count_params, create_train_state, model_variables
from common.train.tasks import Classification
from common.train.trainer import pad_split
from common.usage import compute_usage, warm_batch_stats
from tests.helpers import assert_same_model, init_variables

cifar = functools.partial(build_model, registry=CIFAR_MODELS, num_layers=None, out_dim=10)


def _resnet_v2_params(n: int, skips: bool = True, final_bn: bool = True,
                      carries: bool = False) -> int:
  """Parameters of a CIFAR ResNet-v2 with n blocks per stage, counted layer by layer."""
  conv = lambda cin, cout, k=3: k * k * cin * cout  # noqa: E731 - bias-free convs
  bn = lambda c: 2 * c  # noqa: E731 - scale and offset
  total = conv(3, 16)  # stem
  total += n * (2 * conv(16, 16) + 2 * bn(16))  # stage 1
  for cin, cout in ((16, 32), (32, 64)):  # stages 2, 3: first block, then n - 1 blocks
    total += conv(cin, cout) + conv(cout, cout) + bn(cin) + bn(cout)
    total += conv(cin, cout, 1) if skips else 0  # projection shortcut
    total += conv(cin, cout, 1) if carries else 0  # GloNet carry map
    total += (n - 1) * (2 * conv(cout, cout) + 2 * bn(cout))
  return total + (bn(64) if final_bn else 0) + 64 * 10 + 10


@pytest.mark.parametrize("name,expected", [
    ("ResNet20", 272_282), ("ResNet56", _resnet_v2_params(9)),
    ("ResNet110", _resnet_v2_params(18)), ("Plain20", _resnet_v2_params(3, skips=False)),
    ("GloNet20", _resnet_v2_params(3, skips=False, final_bn=False, carries=True)),
])
def test_exact_parameter_counts(name, expected):
  model = cifar(name)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert count_params(shapes["params"]) == expected
  assert _resnet_v2_params(3) == 272_282  # the formula agrees with the published 0.27M


def test_imagenet_stem_resnet18_v2_parameter_count_and_shapes():
  """Conv weights as torchvision's ResNet18 (11,166,912 without its classifier), the 17
  batch norms of a pre-activation network (none in the stem), a 10-class head."""
  model = ResNetV2(stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512), out_dim=10,
                   stem="imagenet")
  x = jnp.zeros((1, 128, 128, 3))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert count_params(shapes["params"]) == 11_166_912 + 7_808 + 5_130 == 11_179_850
  assert shapes["params"]["stem"]["kernel"].shape == (7, 7, 3, 64)
  assert jax.eval_shape(model.apply, shapes, x).shape == (1, 10)
  with pytest.raises(ConfigError, match="unknown stem"):
    ResNetV2(stage_sizes=(1,), widths=(4,), out_dim=2, stem="vit").init(
        jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def test_depth_convention_and_blocks():
  assert cifar("ResNet20").num_blocks == 9  # residual branches
  assert cifar("GloNet20").num_blocks == 10 and cifar("Plain20").num_blocks == 10  # + stem
  assert cifar("GloNet20").stage_boundaries == [0, 4, 7]
  assert cifar("ResNet110").stage_boundaries == [0, 18, 36]
  with pytest.raises(ConfigError, match="6n\\+2"):
    cifar("ResNet18")
  plain = cifar("Plain20", use_batch_norm=False)
  shapes = jax.eval_shape(lambda: plain.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert "batch_stats" not in shapes


@pytest.mark.parametrize("carry", [AvgPoolConvCarry, StridedConvCarry])
def test_carry_maps_pass_the_sum_through_at_init(carry):
  s = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
  module = carry(6)
  out = module.apply(init_variables(module, jax.random.key(1), s), s)
  expected = (s.reshape(2, 4, 2, 4, 2, 4).mean(axis=(2, 4)) if carry is AvgPoolConvCarry
              else s[:, ::2, ::2])
  np.testing.assert_allclose(out[..., :4], expected, atol=1e-6)
  np.testing.assert_array_equal(out[..., 4:], 0.0)


def _trained_like(model, x):
  """Variables with random (not initial) values, so no identity hides a bug."""
  variables = init_variables(model, jax.random.key(0), x)
  rng = np.random.default_rng(7)  # host noise: nothing to compile per parameter shape
  params = jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape, np.float32),
                        variables["params"])
  # One compiled program: op by op, a CNN's first training-mode pass takes 15 s or more.
  train_pass = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  _, updates = train_pass({**variables, "params": params}, x)
  return {"params": params, **updates}


@pytest.mark.parametrize("bn,carry,size", [
    # 7: an odd map at the transition (224 px -> 7x7)
    (bn, carry, size) if (bn, carry, size) in ((False, "avgpool_conv", 8),
                                                (True, "strided_conv", 7))
    else pytest.param(bn, carry, size, marks=pytest.mark.slow)
    for bn in (True, False) for carry in ("avgpool_conv", "strided_conv") for size in (8, 7)])
def test_glonet_logits_are_the_bias_plus_every_block_contribution(carry, bn, size):
  model = ResNetTiny(out_dim=3, mode="glonet", carry=carry, use_batch_norm=bn)
  x = jax.random.normal(jax.random.key(1), (5, size, size, 3))
  variables = _trained_like(model, x)
  logits, taps = model.apply(variables, x, method="with_taps")
  np.testing.assert_allclose(logits, model.apply(variables, x), atol=1e-5)
  maps, bias = model.readout(variables["params"])
  assert [t["feat"].shape for t in taps] == [(2, 5, 4), (2, 5, 8)]  # stem + 1 | 2 blocks
  contrib = jnp.concatenate([jnp.einsum("lbc,co->lbo", t["feat"], r)
                             for t, r in zip(taps, maps, strict=True)])
  np.testing.assert_allclose(bias + contrib.sum(0), logits, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("carry", ["avgpool_conv", "strided_conv"])
@pytest.mark.parametrize("option,name,stat,added", [
    ("glonet_head_norm", "head_bn", "mean", 2 * 8),  # scale and offset of 8 channels
    ("glonet_head_rms", "head_rms", "mean_square", 8)])  # scales only
def test_head_norms_are_folded_into_an_exact_readout(carry, option, name, stat, added):
  """The optional norms on the GloNet sum: per-channel affine (batch norm) or scale
  (``glonet_head_rms``) at evaluation, so usage stays exact."""
  model = ResNetTiny(out_dim=3, mode="glonet", carry=carry, **{option: True})
  x = jax.random.normal(jax.random.key(1), (5, 8, 8, 3))
  variables = _trained_like(model, x)
  stats = variables["batch_stats"][name][stat]
  assert stats.shape == (8,) and not np.allclose(stats, 0 if stat == "mean" else 1)
  logits, taps = model.apply(variables, x, method="with_taps")
  maps, bias = model.readout(variables["params"], variables["batch_stats"])
  contrib = jnp.concatenate([jnp.einsum("lbc,co->lbo", t["feat"], r)
                             for t, r in zip(taps, maps, strict=True)])
  np.testing.assert_allclose(bias + contrib.sum(0), logits, rtol=1e-4, atol=1e-4)
  if option == "glonet_head_rms":  # no centring, no shift: the head's own bias only
    np.testing.assert_array_equal(bias, variables["params"]["head"]["bias"])
  plain_head = ResNetTiny(out_dim=3, mode="glonet", carry=carry)
  assert (count_params(variables["params"])
          == count_params(init_variables(plain_head, jax.random.key(0), x)["params"]) + added)
  with pytest.raises(ValueError, match="needs batch_stats"):
    model.readout(variables["params"])
  with pytest.raises(ConfigError, match="GloNet models only"):
    ResNetTiny(out_dim=3, mode="residual", **{option: True}).init(jax.random.key(0), x)
  with pytest.raises(ConfigError, match="needs use_batch_norm"):
    ResNetTiny(out_dim=3, mode="glonet", use_batch_norm=False,
               **{option: True}).init(jax.random.key(0), x)


def test_scale_only_norm_divides_by_the_batch_root_mean_square():
  """In training, each channel over its batch root mean square (not centred), so the norm
  does not see its input's scale; one head norm at a time."""
  s = jax.random.normal(jax.random.key(2), (4, 3, 3, 8)) + 1.0
  norm = BatchRMSNorm()
  nv = norm.init(jax.random.key(0), s, train=True)
  out, _ = norm.apply(nv, s, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out, s / jnp.sqrt(jnp.mean(s**2, axis=(0, 1, 2)) + 1e-5),
                             rtol=1e-5)
  out2, _ = norm.apply(nv, 2 * s, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(out2, out, rtol=1e-4)
  with pytest.raises(ConfigError, match="choose one"):
    ResNetTiny(out_dim=3, mode="glonet", glonet_head_rms=True,
               glonet_head_norm=True).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


def test_labels_mark_every_glonet_variant_so_reports_never_pool_them():
  def label(family, bn, options=None):
    return model_label(family, bn, CIFAR_MODELS, options)
  assert label("GloNet", True) == label("GloNet", True, {"carry": "avgpool_conv"}) == "GloNet"
  assert label("GloNet", True, {"glonet_head_norm": True}) == "GloNet (head BN)"
  assert label("GloNet", True, {"glonet_head_rms": True}) == "GloNet (head RMS)"
  assert (label("GloNet", False, {"glonet_sum": "stage", "carry": "strided_conv"})
          == "GloNet (no BN, stage sum, strided carry)")
  assert label("ResNet", True, {"glonet_head_norm": True, "carry": "strided_conv"}) == "ResNet"


@pytest.mark.parametrize("carry", ["avgpool_conv", "strided_conv"])
def test_stage_granularity_sums_the_stem_and_each_stage_output(carry):
  """The authors' variant: one summed term per stage, and the readout stays exact."""
  model = ResNetTiny(out_dim=3, mode="glonet", carry=carry, glonet_sum="stage")
  x = jax.random.normal(jax.random.key(1), (5, 8, 8, 3))
  variables = _trained_like(model, x)
  logits, taps = model.apply(variables, x, method="with_taps")
  assert [t["feat"].shape for t in taps] == [(2, 5, 4), (1, 5, 8)]  # stem + stage 1 | stage 2
  assert model.num_blocks == 3 and model.stage_boundaries == [0, 2]
  maps, bias = model.readout(variables["params"])
  contrib = jnp.concatenate([jnp.einsum("lbc,co->lbo", t["feat"], r)
                             for t, r in zip(taps, maps, strict=True)])
  np.testing.assert_allclose(bias + contrib.sum(0), logits, rtol=1e-4, atol=1e-4)
  # Same parameters as the block-granularity GloNet: only what is summed differs.
  block = ResNetTiny(out_dim=3, mode="glonet", carry=carry)
  assert (jax.tree.map(jnp.shape, init_variables(block, jax.random.key(0), x))
          == jax.tree.map(jnp.shape, variables))
  assert not np.allclose(block.apply(variables, x), logits)
  with pytest.raises(ConfigError, match="GloNet models only"):
    ResNetTiny(out_dim=3, mode="plain", glonet_sum="stage").init(jax.random.key(0), x)


def test_label_smoothing_changes_the_training_loss_not_the_reported_one():
  logits = jax.random.normal(jax.random.key(0), (6, 4))
  y = jnp.array([0, 1, 2, 3, 0, 1])
  plain, smooth = Classification(4), Classification(4, label_smoothing=0.1)
  np.testing.assert_array_equal(plain.per_example(logits, y)["loss"],
                                smooth.per_example(logits, y)["loss"])
  np.testing.assert_allclose(plain.training_loss(logits, y), plain.per_example(logits, y)["loss"],
                             rtol=1e-6)
  targets = 0.9 * jax.nn.one_hot(y, 4) + 0.1 / 4
  want = -jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1)
  np.testing.assert_allclose(smooth.training_loss(logits, y), want, rtol=1e-5)


@pytest.mark.parametrize("carry,head_norm", [
    pytest.param("avgpool_conv", "", marks=pytest.mark.slow),
    pytest.param("strided_conv", "", marks=pytest.mark.slow),
    ("avgpool_conv", "bn"), ("avgpool_conv", "rms")])
def test_usage_of_a_two_stage_glonet_is_exact_and_in_network_order(carry, head_norm):
  model = ResNetTiny(out_dim=4, mode="glonet", carry=carry, glonet_head_norm=head_norm == "bn",
                     glonet_head_rms=head_norm == "rms")
  ds = fake_images(n_train=64, n_val=8, n_test=37, size=8)
  pre = image_preprocess((0.3,) * 3, (0.3,) * 3)
  x = pre(None, jnp.asarray(ds.test.x), False)
  variables = _trained_like(model, x)
  tx = make_optimizer("SGD", lambda _: 0.1)
  state = create_train_state(model, tx, x[:1], jax.random.key(0)).replace(
      params=variables["params"], batch_stats=variables["batch_stats"])
  task = Classification(4)
  u = compute_usage(state, ds.test, task, model, batch_size=10, preprocess=pre,
                    reference=ds.train)
  assert u["num_blocks"] == 4 and u["stage_boundaries"] == [0, 2] and u["mode"] == "glonet"
  assert len(u["l1"]) == 4 and np.isclose(sum(u["share"]), 1.0)
  # The early exit from all blocks is the full model, evaluated by the training evaluator.
  split = pad_split(ds.test, 10, None)
  sums = jax.jit(steps.make_evaluator(task, pre))(state, split.x, split.y, split.mask)
  assert np.isclose(u["early_exit"]["accuracy"][-1], float(sums["accuracy"]) / 37)
  # So is the exit with the left-out blocks at their mean (none are left out at k = L).
  assert np.isclose(u["early_exit_mean"]["accuracy"][-1], float(sums["accuracy"]) / 37)
  assert u["early_exit_mean"]["reference_examples"] == 64
  np.testing.assert_allclose(u["early_exit"]["loss"][-1], float(sums["loss"]) / 37, rtol=1e-4)
  # l1 in network order: the stem's, taken from the model's own stem output.
  stem = jax.lax.conv_general_dilated(
      x, variables["params"]["stem"]["kernel"], (1, 1), "SAME",
      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(u["l1"][0], float(jnp.mean(jnp.abs(stem))), rtol=1e-4)
  names = [r["layer"] for r in u["param_l1"]]
  assert names == ["stem", "stage1/stack[0]", "stage2/carry", "stage2/first",
                   "stage2/stack[0]", *([f"head_{head_norm}"] if head_norm else []), "head"]


@pytest.mark.slow
def test_residual_and_plain_usage_have_no_shares():
  for mode, blocks in (("residual", 3), ("plain", 4)):
    model = ResNetTiny(out_dim=4, mode=mode)
    ds = fake_images(n_train=64, n_val=8, n_test=20, size=8)
    x = jnp.asarray(ds.test.x[:1], jnp.float32)
    state = create_train_state(model, make_optimizer("SGD", lambda _: 0.1), x,
                               jax.random.key(0))
    u = compute_usage(state, ds.test, Classification(4), model, batch_size=8,
                      preprocess=image_preprocess((0.3,) * 3, (0.3,) * 3))
    assert u["num_blocks"] == blocks and "share" not in u and len(u["l1"]) == blocks


def test_batch_norm_statistics_are_estimated_for_usage_at_init():
  model = ResNetTiny(out_dim=4, mode="glonet")
  ds = fake_images(n_train=64, n_val=8, n_test=20, size=8)
  x = jnp.asarray(ds.train.x)
  state = create_train_state(model, make_optimizer("SGD", lambda _: 0.1), x[:1] * 1.0,
                             jax.random.key(0))
  warm = warm_batch_stats(state, x, batch_size=64, num_batches=200)  # whole set: exact mean
  mean = warm.batch_stats["stage1"]["stack"]["scan"]["block"]["bn0"]["mean"]
  assert not np.allclose(mean, 0.0)
  # After many passes the running mean of the first BN is the mean of the stem output.
  stem = model.apply({"params": state.params, "batch_stats": warm.batch_stats}, x * 1.0,
                     method=lambda m, v: jax.lax.conv_general_dilated(
                         v, m.variables["params"]["stem"]["kernel"], (1, 1), "SAME",
                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
  np.testing.assert_allclose(mean[0], stem.mean(axis=(0, 1, 2)), rtol=1e-3, atol=1e-3)
  assert state.batch_stats is not warm.batch_stats  # the training state is untouched


@pytest.mark.slow
def test_remat_changes_neither_parameters_nor_gradients():
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  assert_same_model(*(ResNetTiny(out_dim=3, mode="glonet", remat=r) for r in (False, True)),
                    x)


@pytest.mark.slow
def test_unrolled_scan_is_the_same_model_and_chosen_for_xla_cpu_convolutions_only(
    monkeypatch):
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  assert_same_model(*(ResNetTiny(out_dim=3, mode="glonet", stage_sizes=(3, 2),
                                 unroll_scan=u) for u in (False, True)), x)
  default = ResNetTiny(out_dim=3)
  monkeypatch.setenv(native.CPU_OPS_ENV, "xla")
  assert default.unrolls and default.execution(8)["unrolled_scan"]
  assert default.loop_free_steps and default.execution(8)["cpu_ops"] == "xla"
  monkeypatch.setenv(native.CPU_OPS_ENV, "onednn")
  assert default.unrolls == (not native.load().available)
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert not default.unrolls and ResNetTiny(out_dim=3, unroll_scan=True).unrolls
  assert default.execution(8)["cpu_ops"] == "xla"


def test_augmentation_is_a_function_of_the_key():
  x = jnp.arange(2 * 6 * 6 * 3, dtype=jnp.uint8).reshape(2, 6, 6, 3)
  a = pad_crop_flip(jax.random.key(3), x, pad=2)
  np.testing.assert_array_equal(a, pad_crop_flip(jax.random.key(3), x, pad=2))
  assert a.shape == x.shape and a.dtype == x.dtype
  outs = {np.asarray(pad_crop_flip(jax.random.key(k), x, pad=2)).tobytes() for k in range(8)}
  assert len(outs) > 1
  pre = image_preprocess((0.5,) * 3, (0.25,) * 3)
  np.testing.assert_allclose(pre(None, x, False), (x / 255.0 - 0.5) / 0.25, rtol=1e-6)


def test_the_train_step_augments_reproducibly_from_its_key():
  model = ResNetTiny(out_dim=4, mode="glonet")
  ds = fake_images(n_train=32, size=8)
  batch = (jnp.asarray(ds.train.x[:16]), jnp.asarray(ds.train.y[:16]))
  pre = image_preprocess((0.3,) * 3, (0.3,) * 3)
  state = create_train_state(model, make_optimizer("SGD", lambda _: 0.1),
                             pre(None, batch[0][:1], False), jax.random.key(0))
  step = jax.jit(steps.make_train_step(Classification(4), preprocess=pre))
  a, _ = step(state, batch, jax.random.key(1))
  b, _ = step(state, batch, jax.random.key(1))
  c, _ = step(state, batch, jax.random.key(2))
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  assert not np.allclose(a.params["head"]["kernel"], c.params["head"]["kernel"])


@pytest.mark.slow
def test_evaluation_never_augments():
  model = ResNetTiny(out_dim=4, mode="plain")
  ds = fake_images(n_train=32, n_test=12, size=8)
  pre = image_preprocess((0.3,) * 3, (0.3,) * 3)
  state = create_train_state(model, make_optimizer("SGD", lambda _: 0.1),
                             pre(None, jnp.asarray(ds.test.x[:1]), False), jax.random.key(0))
  split = pad_split(Split(ds.test.x, ds.test.y), 12, None)
  evaluate = jax.jit(steps.make_evaluator(Classification(4), pre))
  first = evaluate(state, split.x, split.y, split.mask)
  second = evaluate(state, split.x, split.y, split.mask)
  assert float(first["loss"]) == float(second["loss"])
  logits = model.apply(model_variables(state), pre(None, jnp.asarray(ds.test.x), False))
  expected = Classification(4).per_example(logits, jnp.asarray(ds.test.y))["loss"].sum()
  np.testing.assert_allclose(float(first["loss"]), float(expected), rtol=1e-5)
