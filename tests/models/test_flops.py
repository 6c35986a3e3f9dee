"""The FLOP counter behind the benchmarks' GFLOP/s and fraction-of-peak columns."""
import jax
import jax.numpy as jnp
from jax import lax

from benchmarks.flops import count_flops, matmul_gflops, resnet_gflop, train_gflop_per_image
from benchmarks.harness import bench_config
from common.models import CIFAR_MODELS, build_from_config, canonical_config


def _conv(x, w, stride=1, groups=1):
  return lax.conv_general_dilated(x, w, (stride, stride), "SAME",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  feature_group_count=groups)


def test_convolutions_and_products_are_counted_exactly():
  x = jnp.ones((2, 8, 8, 6))
  assert count_flops(_conv, x, jnp.ones((3, 3, 6, 4))) == 2 * 2 * 8 * 8 * 4 * 6 * 9
  assert count_flops(lambda x, w: _conv(x, w, 2), x, jnp.ones((3, 3, 6, 4))) == \
      2 * 2 * 4 * 4 * 4 * 6 * 9
  # Grouped: each output channel reads in/groups input channels.
  assert count_flops(lambda x, w: _conv(x, w, groups=2), x, jnp.ones((3, 3, 3, 4))) == \
      2 * 2 * 8 * 8 * 4 * 3 * 9
  assert count_flops(jnp.matmul, jnp.ones((5, 7)), jnp.ones((7, 3))) == 2 * 5 * 7 * 3
  # Elementwise work is not counted.
  assert count_flops(lambda a: jax.nn.relu(a * 2 + 1), jnp.ones((64, 64))) == 0


def test_scans_count_every_step_and_jit_remat_are_looked_into():
  w = jnp.ones((4, 4))

  def scanned(x):
    return lax.scan(lambda c, _: (jax.checkpoint(lambda c: c @ w)(c), None), x, None,
                    length=6)[0]

  assert count_flops(jax.jit(scanned), jnp.ones((3, 4))) == 6 * 2 * 3 * 4 * 4


def test_resnet20_forward_is_its_known_work_whether_scanned_or_unrolled():
  # Stem, 18 3x3 convs in three stages (two strided), two 1x1 projections and the head.
  per_conv = {32: 2 * 32 * 32 * 16 * 16 * 9, 16: 2 * 16 * 16 * 32 * 32 * 9,
              8: 2 * 8 * 8 * 64 * 64 * 9}
  expected = (2 * 32 * 32 * 16 * 3 * 9 + 6 * per_conv[32] + 5 * per_conv[16]
              + 2 * 16 * 16 * 32 * 16 * 9 + 5 * per_conv[8] + 2 * 8 * 8 * 64 * 32 * 9
              + 2 * 16 * 16 * 32 * 16 + 2 * 8 * 8 * 64 * 32 + 2 * 64 * 10)
  assert expected == 81_626_368  # 40.8M multiply-adds, the usual figure for ResNet20
  config = canonical_config(bench_config(model="ResNet20", num_layers=None,
                                         use_batch_norm=True), CIFAR_MODELS)
  model = build_from_config(config, 10, CIFAR_MODELS)[0]
  for unroll in (True, False):
    assert train_gflop_per_image(model.clone(unroll_scan=unroll), 32) * 1e9 == \
        3 * expected
  assert resnet_gflop("ResNet20", CIFAR_MODELS, 32) * 1e9 == 3 * expected


def test_matmul_rate_is_measured():
  assert matmul_gflops(n=128, repeats=2) > 0
