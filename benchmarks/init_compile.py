r"""Compile time of a run's initialisation: XLA's CPU default against the trainer's options.

  python -m benchmarks.init_compile
  python -m benchmarks.init_compile --models=cifar:GloNet20,imagenet:ResNet18 --repeats=3

The trainer compiles the initial state (the model's init, its random draws, and the
optimizer's state) with ``common.train.trainer.CPU_INIT_COMPILER_OPTIONS`` on the CPU,
because at the default optimisation level the random draws alone take seconds to compile.
For each model this lowers the function ``Trainer.build`` compiles (``create_train_state``
on one example; here a float32 zero input with no ``preprocess``, which the random draws
that dominate the compile do not depend on), compiles it at
the default level and with the trainer's options, alternating which goes first over
``--repeats`` rounds (each compile from a fresh trace, so nothing is reused), and prints
the median seconds of each, their ratio, and whether the two initial states are equal to
the bit (the promise that lets the trainer use the faster compile). Nothing here is
asserted: this is a measurement; ``tests/models/test_init.py`` checks the equality.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from benchmarks.harness import bench_config
from common.models import build_from_config, canonical_config, get_registry
from common.train.optimizers import optimizer_from_config
from common.train.trainer import CPU_INIT_COMPILER_OPTIONS, init_state_fn, seed_keys

# registry -> (input shape of one example, number of classes, config overrides).
_SETTINGS = {
    "cifar": ((32, 32, 3), 10, dict(optimizer="SGD", use_batch_norm=None)),
    "imagenet": ((128, 128, 3), 10, dict(optimizer="SGD", use_batch_norm=None)),
    "dense": ((784,), 10, dict(features=256)),
}

_MODELS = flags.DEFINE_list(
    "models", ["dense:GloNet10", "dense:ResNet100", "cifar:ResNet20", "cifar:GloNet56",
               "imagenet:ResNet18", "imagenet:GloNet18"],
    "registry:model pairs to measure (registries: cifar, imagenet, dense).")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Compiles of each kind per model (median kept).")


def _init_fn(registry: str, name: str):
  """The trainer's init function for ``name`` and a sample input."""
  shape, classes, overrides = _SETTINGS[registry]
  config = canonical_config(bench_config(model=name, num_layers=None, **overrides),
                            get_registry(registry))
  model, _, _ = build_from_config(config, classes, get_registry(registry))
  tx, _ = optimizer_from_config(config, 100)
  sample = jnp.zeros((1, *shape), jnp.float32)
  key = seed_keys(0)[0]
  return (lambda: jax.jit(init_state_fn(model, tx))), (key, sample)


def measure(registry: str, name: str, repeats: int) -> dict[str, float | bool]:
  """Median compile seconds at the default level and with the trainer's options."""
  make, args = _init_fn(registry, name)
  seconds = {"default": [], "trainer": []}
  states = {}
  for round_ in range(repeats):
    order = ("default", "trainer") if round_ % 2 == 0 else ("trainer", "default")
    for kind in order:
      lowered = make().lower(*args)  # a fresh trace: no compiled executable to reuse
      t0 = time.perf_counter()
      exe = lowered.compile(CPU_INIT_COMPILER_OPTIONS if kind == "trainer" else None)
      seconds[kind].append(time.perf_counter() - t0)
      states[kind] = jax.device_get(exe(*args))
  same = all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(states["default"]),
                                                  jax.tree.leaves(states["trainer"]), strict=True))
  return {"default": float(np.median(seconds["default"])),
          "trainer": float(np.median(seconds["trainer"])), "same": same}


def main(argv):
  del argv
  print(f"devices: {jax.devices()}  jax {jax.__version__}  "
        f"trainer's options: {CPU_INIT_COMPILER_OPTIONS}")
  print(f"{'model':>20} {'default s':>10} {'trainer s':>10} {'ratio':>6}  same bits")
  for entry in _MODELS.value:
    registry, name = entry.split(":")
    r = measure(registry, name, _REPEATS.value)
    print(f"{entry:>20} {r['default']:>10.2f} {r['trainer']:>10.2f} "
          f"{r['default'] / r['trainer']:>6.2f}  {'yes' if r['same'] else 'NO'}", flush=True)


if __name__ == "__main__":
  app.run(main)
