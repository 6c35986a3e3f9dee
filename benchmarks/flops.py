"""Floating-point work of a traced function, and the device's matmul rate to compare it with.

``count_flops`` walks the jaxpr of a function and adds up its convolutions and matrix
products (2 FLOPs per multiply-add), looking inside scans (times their length), jit, remat
and custom-derivative calls. Elementwise work (batch norm, ReLU, pooling) is left out: it is
small beside the convolutions of these networks and does not run on the matrix units. A
training step is counted as three forward passes (forward, input and weight gradients),
the usual convention.

``matmul_gflops`` times a large float32 matrix product at JAX's default precision on the
default device: the peak the benchmarks' rates are a fraction of, measured in the same run
on the same machine rather than read from a data sheet.
"""

import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

from benchmarks.harness import bench_config, conv_path
from common.models import build_from_config, canonical_config


def _sub_jaxprs(value: Any):
  """The jaxprs held in one equation parameter (a jaxpr, closed jaxpr or a list of them)."""
  if isinstance(value, jex.ClosedJaxpr):
    yield value.jaxpr
  elif isinstance(value, jex.Jaxpr):
    yield value
  elif isinstance(value, (tuple, list)):
    for v in value:
      yield from _sub_jaxprs(v)


def _jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      rhs = eqn.invars[1].aval.shape
      spec = eqn.params["dimension_numbers"].rhs_spec  # (out, in, *spatial) positions
      per_output = rhs[spec[1]] * math.prod(rhs[d] for d in spec[2:])  # in/groups x kernel
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * per_output
    elif name == "dot_general":
      (contract, _), _ = eqn.params["dimension_numbers"]
      lhs = eqn.invars[0].aval.shape
      total += 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in contract)
    else:
      # A scan runs its body `length` times; a cond runs one branch (count the costliest).
      times = eqn.params["length"] if name == "scan" else 1
      subs = [_jaxpr_flops(j) for v in eqn.params.values() for j in _sub_jaxprs(v)]
      if subs:
        total += times * (max(subs) if name == "cond" else sum(subs))
  return total


def count_flops(fn: Callable[..., Any], *args: Any) -> float:
  """FLOPs of the convolutions and matrix products of ``fn(*args)`` (traced, not run)."""
  return _jaxpr_flops(jax.make_jaxpr(fn)(*args).jaxpr)


def matmul_gflops(n: int | None = None, repeats: int = 10) -> float:
  """GFLOP/s of an ``n x n`` float32 matmul at default precision on the default device.

  Args:
    n: the matrix size; by default 2048 on a CPU and 8192 on an accelerator (large enough
      to reach the device's rate, small enough to time in seconds).
    repeats: timed products; the median is kept.
  """
  if n is None:
    n = 2048 if jax.default_backend() == "cpu" else 8192
  rng = np.random.default_rng(0)
  a = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
  b = jnp.asarray(rng.standard_normal((n, n)), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))  # compile and warm up
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - t0)
  return 2.0 * n ** 3 / float(np.median(times)) / 1e9


def train_gflop_per_image(model, size: int) -> float:
  """GFLOP of one training image: three forward passes (forward, input and weight
  gradients) of the model's convolutions and matrix products."""
  x = jnp.zeros((1, size, size, 3), jnp.float32)
  with conv_path("xla"):  # convolutions as XLA primitives, which count_flops reads
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    forward = count_flops(lambda v, x: model.apply(v, x, train=False), variables, x)
  return 3.0 * forward / 1e9


def resnet_gflop(name: str, registry, size: int) -> float:
  """Train GFLOP per image of the model ``name`` with batch norm (a PyTorch peer's work)."""
  config = canonical_config(bench_config(model=name, num_layers=None, use_batch_norm=True),
                            registry)
  return train_gflop_per_image(build_from_config(config, 10, registry)[0], size)
