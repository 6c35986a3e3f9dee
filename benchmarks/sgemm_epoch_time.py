r"""Seconds per training epoch on SGEMM, GloNet vs ResNet-v2, the paper's Table 1 setting.

  python -m benchmarks.sgemm_epoch_time                       # depths 10..1000
  python -m benchmarks.sgemm_epoch_time --depths=50,1000 --repeats=5
  python -m benchmarks.sgemm_epoch_time --layout=batch_major   # A/B: activation layout
  python -m benchmarks.sgemm_epoch_time --backward=autodiff     # A/B: GloNet's custom VJP

Uses synthetic data of the real shape (169,120 training rows of 14 features, batch 1024,
so 165 steps per epoch) and the production ``Trainer`` of ``common.train`` (its compiled
epoch over a device-resident permutation, Adam, L2 1e-5), so it measures the same work as
a sweep's ``train_seconds`` without its evaluation or I/O. For each depth the
models are timed in turn, one epoch at a time, ``--repeats`` rounds, and the median is
kept: interleaving makes the GloNet/ResNet ratio robust to slow drifts of a shared machine.
Compile time is measured apart and never included.
"""

import jax
import numpy as np
from absl import app, flags

from benchmarks.harness import EpochTimer, bench_config, synthetic_dataset
from common.models import DENSE_MODELS, build_from_config
from common.train.tasks import Regression
from common.train.trainer import Trainer
from resnet_sgemm import paper

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


def _timer(name: str, depth: int, dataset) -> EpochTimer:
  """One model's built Trainer on the synthetic data (the paper's SGEMM recipe)."""
  config = bench_config(model=name, num_layers=depth, features=_FEATURES.value,
                        use_batch_norm=name == "ResNet", batch_size=_BATCH,
                        learning_rate=1e-2, l2_reg_alpha=1e-5)
  model, _, _ = build_from_config(config, 1, DENSE_MODELS)
  model = model.clone(feature_major=_LAYOUTS[_LAYOUT.value],
                      custom_backward=None if _BACKWARD.value == "auto" else False)
  return EpochTimer(Trainer.build(config, model, dataset, Regression(), eval_splits=()))


def main(argv):
  del argv
  rng = np.random.default_rng(0)
  dataset = synthetic_dataset(rng.normal(size=(_ROWS, 14)).astype(np.float32),
                              rng.normal(size=(_ROWS, 1)).astype(np.float32))
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
    trainers = [_timer(n, depth, dataset) for n in names]
    for t in trainers:
      t.run()  # warm-up
    times = [[] for _ in trainers]
    for _ in range(_REPEATS.value):
      for t, ts in zip(trainers, times, strict=True):
        ts.append(t.run())
    med = [float(np.median(ts)) for ts in times]
    ratio = med[0] / med[1] if len(med) > 1 else float("nan")
    pr = paper_seconds.get(depth)
    print(f"{depth:>6} " + " ".join(f"{m:>10.2f}" for m in med) + f" {ratio:>6.2f} "
          f"{(pr[1] / pr[0]) if pr else float('nan'):>6.2f} "
          + " ".join(f"{t.trainer.timings['compile_seconds_train']:>15.2f}" for t in trainers),
          flush=True)


if __name__ == "__main__":
  app.run(main)
