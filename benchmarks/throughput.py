r"""Compile time and train-step throughput of the GloNet MLP, against a matmul peak.

  python -m benchmarks.throughput                      # depths 10 100 1000, width 256, batch 256
  python -m benchmarks.throughput --depths=100 --optimizer=SGD

For each depth it prints the ahead-of-time compile seconds of the training loop, the
time per train step (an epoch of the production ``Trainer``, the object training runs:
batch gather on device, forward, backward, optimizer update), the matmul FLOPs per step,
the achieved GFLOP/s, and that as a fraction of a dense float32 matmul peak measured in
the same process. FLOPs count only the Dense layers' matmuls: 2*B*in*out for the forward
pass, the same for the weight gradient, and the same again for the input gradient of every
layer but the first. It also prints the throughput of chained (dependent) matmuls of
the step's shape, the ceiling of the step's sequential part on this machine. Nothing here
is asserted: this is a measurement, not a test.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.harness import EpochTimer, bench_config, median_seconds, synthetic_dataset
from common.models import DENSE_MODELS, build_from_config
from common.train.tasks import Classification
from common.train.trainer import Trainer

_DEPTHS = flags.DEFINE_list("depths", ["10", "100", "1000"], "Depths (num_layers) to measure.")
_FEATURES = flags.DEFINE_integer("features", 256, "Hidden width.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Batch size.")
_IN_DIM = flags.DEFINE_integer("in_dim", 784, "Input width (MNIST: 784).")
_OPTIMIZER = flags.DEFINE_enum("optimizer", "ADAM", ["ADAM", "SGD"], "Optimizer.")
_STEPS = flags.DEFINE_integer("steps", 20, "Train steps per timed epoch.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed epochs per depth (the median is kept).")
_PEAK_N = flags.DEFINE_integer("peak_n", 2048, "Size of the square matmul timing the peak.")


def matmul_peak_gflops(n: int, repeats: int = 10) -> float:
  """GFLOP/s of an ``n x n @ n x n`` float32 matmul (median of ``repeats``)."""
  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul)
  mm(a, b).block_until_ready()
  return 2 * n**3 / median_seconds(lambda: mm(a, b), repeats) / 1e9


def chained_matmul_gflops(batch: int, features: int, length: int = 100,
                          repeats: int = 10) -> float:
  """GFLOP/s of ``length`` dependent ``(batch, features) @ (features, features)`` matmuls.

  These are the shapes of a train step's sequential matmuls (the forward pass and the
  input gradients), each waiting for the previous one, so this is the ceiling of what a
  step made of them can reach on this machine, whatever the framework around them.
  """
  keys = jax.random.split(jax.random.key(0), 2)
  h = jax.random.normal(keys[0], (batch, features), jnp.float32)
  w = jax.random.normal(keys[1], (length, features, features), jnp.float32) / features**0.5
  chain = jax.jit(lambda h, w: jax.lax.scan(lambda c, wl: (jnp.dot(c, wl), None), h, w)[0])
  chain(h, w).block_until_ready()
  return 2 * batch * features**2 * length / median_seconds(lambda: chain(h, w), repeats) / 1e9


def glonet_step_flops(num_layers: int, in_dim: int, features: int, out_dim: int,
                      batch: int) -> float:
  """Matmul FLOPs of one GloNet train step (see the module docstring)."""
  dims = [(in_dim, features)] + [(features, features)] * (num_layers - 2) + [(features, out_dim)]
  fwd = sum(2 * batch * i * o for i, o in dims)
  input_grads = fwd - 2 * batch * in_dim * features
  return 2 * fwd + input_grads


def measure_depth(num_layers: int) -> dict[str, float]:
  """Compiles and times the training loop of a GloNet of ``num_layers`` layers."""
  b, f, n_steps = _BATCH.value, _FEATURES.value, _STEPS.value
  task = Classification(10)
  config = bench_config(num_layers=num_layers, features=f, batch_size=b,
                        optimizer=_OPTIMIZER.value)
  model, _, _ = build_from_config(config, 10, DENSE_MODELS)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(b * n_steps, _IN_DIM.value)).astype(np.float32)
  y = rng.integers(0, 10, b * n_steps).astype(np.int32)
  trainer = Trainer.build(config, model, synthetic_dataset(x, y), task, eval_splits=())
  timer = EpochTimer(trainer)
  timer.run()  # warm-up
  step_s = float(np.median([timer.run() for _ in range(_REPEATS.value)])) / n_steps

  # The two halves of a step, timed apart: gradient (forward + backward) and update.
  state, batch = timer.state, (jnp.asarray(x[:b]), jnp.asarray(y[:b]))

  def loss_fn(params):
    return task.per_example(state.apply_fn({"params": params}, batch[0], train=True),
                            batch[1])["loss"].mean()

  grad_fn = jax.jit(jax.grad(loss_fn))
  grads = grad_fn(state.params)
  grad_s = median_seconds(lambda: grad_fn(state.params), _REPEATS.value)
  update_fn = jax.jit(lambda st, g: st.apply_gradients(grads=g))
  update_fn(state, grads)
  update_s = median_seconds(lambda: update_fn(state, grads), _REPEATS.value)
  flops = glonet_step_flops(num_layers, _IN_DIM.value, f, 10, b)
  return {"compile_s": trainer.timings["compile_seconds_train"], "step_ms": step_s * 1e3,
          "gflops": flops / step_s / 1e9, "grad_ms": grad_s * 1e3, "update_ms": update_s * 1e3}


def main(argv):
  del argv
  peak = matmul_peak_gflops(_PEAK_N.value)
  print(f"devices: {jax.devices()}  jax {jax.__version__}")
  print(f"matmul peak ({_PEAK_N.value}^3 float32): {peak:.1f} GFLOP/s")
  chained = chained_matmul_gflops(_BATCH.value, _FEATURES.value)
  print(f"chained {_BATCH.value}x{_FEATURES.value}x{_FEATURES.value} matmuls (the step's "
        f"sequential ones): {chained:.1f} GFLOP/s, {chained / peak:.2f} of peak")
  print(f"GloNet MLP, width {_FEATURES.value}, batch {_BATCH.value}, {_OPTIMIZER.value}, "
        f"{_STEPS.value} steps per epoch")
  print(f"{'depth':>6} {'compile s':>10} {'step ms':>9} {'GFLOP/s':>9} {'of peak':>8} "
        f"{'grad ms':>9} {'update ms':>10}")
  for depth in map(int, _DEPTHS.value):
    r = measure_depth(depth)
    print(f"{depth:>6} {r['compile_s']:>10.2f} {r['step_ms']:>9.2f} {r['gflops']:>9.1f} "
          f"{r['gflops'] / peak:>8.2f} {r['grad_ms']:>9.2f} {r['update_ms']:>10.2f}")
  print("grad ms: forward+backward alone; update ms: the optimizer update alone (both timed "
        "apart from the step).")
  print(f"matmul peak re-measured after: {matmul_peak_gflops(_PEAK_N.value):.1f} GFLOP/s")


if __name__ == "__main__":
  app.run(main)
