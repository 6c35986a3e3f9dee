r"""Seconds per training epoch on SGEMM, GloNet vs ResNet-v2, the paper's Table 1 setting.

  python -m benchmarks.sgemm_epoch_time                       # depths 10..1000
  python -m benchmarks.sgemm_epoch_time --depths=50,1000 --repeats=5
  python -m benchmarks.sgemm_epoch_time --layout=batch_major   # A/B: activation layout
  python -m benchmarks.sgemm_epoch_time --backward=autodiff     # A/B: GloNet's custom VJP

Uses synthetic data of the real shape (169,120 training rows of 14 features, batch 1024,
so 165 steps per epoch) and the exact training path of ``common.train`` (the compiled
``run_steps`` over a device-resident permutation, Adam, L2 1e-5), so it measures the same
work as a sweep's ``train_seconds`` without its evaluation or I/O. For each depth the
models are timed in turn, one epoch at a time, ``--repeats`` rounds, and the median is
kept: interleaving makes the GloNet/ResNet ratio robust to slow drifts of a shared machine.
Compile time is measured apart and never included.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from common.models import build_model
from common.report import paper
from common.train import steps
from common.train.optimizers import make_optimizer, make_schedule
from common.train.state import create_train_state
from common.train.tasks import Regression

_DEPTHS = flags.DEFINE_list("depths", [str(d) for d in paper.TABLE1_DEPTHS], "Depths.")
_MODELS = flags.DEFINE_list("models", ["GloNet", "ResNet"],
                            "Models; ResNet uses batch norm (the paper's ResNetv2).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs per model and depth.")
_FEATURES = flags.DEFINE_integer("features", 16, "Hidden width.")
_LAYOUT = flags.DEFINE_enum(
    "layout", "auto", ["auto", "batch_major", "feature_major"],
    "Hidden activation layout: auto (what training uses: chosen by width, see "
    "common.models.mlp.FEATURE_MAJOR_MAX_FEATURES), or forced, for A/B comparisons.")
_BACKWARD = flags.DEFINE_enum(
    "backward", "auto", ["auto", "autodiff"],
    "auto: what training uses (GloNet's plain Dense+ReLU stack runs through the custom VJP "
    "of common.models.dense_chain where it was measured faster); autodiff: never.")
_LAYOUTS = {"auto": None, "batch_major": False, "feature_major": True}
_ROWS = 169120
_BATCH = 1024


class _Trainer:
  """One model's compiled epoch on fixed synthetic data."""

  def __init__(self, name: str, depth: int, x, y):
    task = Regression()
    model = build_model(name, num_layers=depth, features=_FEATURES.value, out_dim=1).clone(
        feature_major=_LAYOUTS[_LAYOUT.value],
        custom_backward=None if _BACKWARD.value == "auto" else False)
    tx = make_optimizer("ADAM", make_schedule(1e-2, "constant", 1))
    self.state = jax.jit(lambda k: create_train_state(model, tx, x[:1], k))(jax.random.key(0))
    self.steps = _ROWS // _BATCH
    run = jax.jit(steps.make_step_runner(steps.make_train_step(task, 1e-5), _BATCH, self.steps),
                  donate_argnums=(0, 1))
    self.args = (x, y, jax.random.permutation(jax.random.key(1), _ROWS).astype(jnp.int32),
                 jnp.int32(self.steps))
    self.task = task
    t0 = time.perf_counter()
    self.exe = run.lower(self.state, steps.init_accumulator(task), *self.args).compile()
    self.compile_seconds = time.perf_counter() - t0

  def epoch(self) -> float:
    acc = steps.init_accumulator(self.task)
    jax.block_until_ready(acc)
    t0 = time.perf_counter()
    self.state, acc = self.exe(self.state, acc, *self.args)
    jax.block_until_ready((self.state, acc))
    return time.perf_counter() - t0


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(_ROWS, 14)).astype(np.float32))
  y = jnp.asarray(rng.normal(size=(_ROWS, 1)).astype(np.float32))
  paper_seconds = dict(zip(paper.TABLE1_DEPTHS, zip(paper.TABLE1_RESNET_SECONDS,
                                                    paper.TABLE1_GLONET_SECONDS, strict=True),
                           strict=True))
  print(f"devices: {jax.devices()}  jax {jax.__version__}; {_ROWS // _BATCH} steps/epoch, "
        f"batch {_BATCH}, width {_FEATURES.value}, layout {_LAYOUT.value}, "
        f"backward {_BACKWARD.value}; median of {_REPEATS.value} epochs")
  names = _MODELS.value
  print(f"{'depth':>6} " + " ".join(f"{n + ' s':>10}" for n in names)
        + f" {'ratio':>6} {'paper':>6} " + " ".join(f"{n + ' compile':>15}" for n in names))
  for depth in map(int, _DEPTHS.value):
    trainers = [_Trainer(n, depth, x, y) for n in names]
    for t in trainers:
      t.epoch()  # warm-up
    times = [[] for _ in trainers]
    for _ in range(_REPEATS.value):
      for t, ts in zip(trainers, times, strict=True):
        ts.append(t.epoch())
    med = [float(np.median(ts)) for ts in times]
    ratio = med[0] / med[1] if len(med) > 1 else float("nan")
    pr = paper_seconds.get(depth)
    print(f"{depth:>6} " + " ".join(f"{m:>10.2f}" for m in med) + f" {ratio:>6.2f} "
          f"{(pr[1] / pr[0]) if pr else float('nan'):>6.2f} "
          + " ".join(f"{t.compile_seconds:>15.2f}" for t in trainers), flush=True)


if __name__ == "__main__":
  app.run(main)
