r"""Compile time, train throughput and usage-pass memory of the CIFAR-shaped CNN trunk.

  python -m benchmarks.cnn_trunk --model=GloNet110
  python -m benchmarks.cnn_trunk --model=ResNet110 --usage_examples=10000

Builds the production ``Trainer`` for a CIFAR model (32x32x3 uint8 images kept on the
device, pad-crop-flip and normalisation inside the jitted step, SGD with Nesterov and
weight decay), then prints: the ahead-of-time compile seconds of the training loop and of
the evaluator (identical blocks are scanned, so depth 110 compiles about as fast as depth
20), training images per second over ``--steps`` steps (the median of ``--repeats``
epochs), and the seconds and the process's peak resident memory of a layer-usage pass
over ``--usage_examples`` images (per-block outputs are reduced inside the scan). Peak
memory is the process's maximum RSS, so run one model per process. Nothing is asserted.
"""

import resource
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.harness import EpochTimer, bench_config, synthetic_dataset
from common.data import Split
from common.data.augment import image_preprocess
from common.models import CIFAR_MODELS, build_from_config, canonical_config
from common.train.tasks import Classification
from common.train.trainer import Trainer
from common.usage import compute_usage

_MODEL = flags.DEFINE_string("model", "GloNet110", "A CIFAR model name with its depth.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Training batch size.")
_STEPS = flags.DEFINE_integer("steps", 4, "Train steps per timed epoch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs (the median is kept).")
_USAGE = flags.DEFINE_integer("usage_examples", 10000, "Images in the usage pass (0: skip).")
_REMAT = flags.DEFINE_boolean("remat", False, "Rematerialise the scanned blocks.")


def _peak_rss_mib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv):
  del argv
  config = canonical_config(bench_config(
      model=_MODEL.value, num_layers=None, use_batch_norm=None, batch_size=_BATCH.value,
      learning_rate=0.1, optimizer="SGD", nesterov=True, weight_decay=5e-4,
      remat=_REMAT.value, eval_batch_size=500), CIFAR_MODELS)
  model, name, info = build_from_config(config, 10, CIFAR_MODELS)
  rng = np.random.default_rng(0)
  n = _BATCH.value * _STEPS.value
  x = rng.integers(0, 256, (max(n, _USAGE.value), 32, 32, 3)).astype(np.uint8)
  y = rng.integers(0, 10, len(x)).astype(np.int32)
  preprocess = image_preprocess((0.49, 0.48, 0.45), (0.2, 0.2, 0.2))
  task = Classification(10)
  print(f"devices: {jax.devices()}  jax {jax.__version__}; {name}, batch {_BATCH.value}, "
        f"remat {_REMAT.value}, blocks {model.num_blocks}")
  rss0 = _peak_rss_mib()
  trainer = Trainer.build(config, model, synthetic_dataset(x[:n], y[:n]), task,
                          preprocess=preprocess, eval_splits=("test",))
  timings = trainer.timings
  print(f"parameters {trainer.num_params:,}; compile train "
        f"{timings['compile_seconds_train']:.2f} s, eval {timings['compile_seconds_eval']:.2f} s")
  timer = EpochTimer(trainer)
  timer.run()  # warm-up
  seconds = float(np.median([timer.run() for _ in range(_REPEATS.value)]))
  print(f"train: {n / seconds:.1f} images/s ({seconds / _STEPS.value:.3f} s/step); "
        f"peak RSS so far {_peak_rss_mib():.0f} MiB (before build {rss0:.0f})")
  if _USAGE.value:
    split = Split(x[:_USAGE.value], y[:_USAGE.value])
    t0 = time.perf_counter()
    usage = compute_usage(timer.state, split, task, model, batch_size=500,
                          preprocess=preprocess)
    print(f"usage pass over {usage['examples']} images: {time.perf_counter() - t0:.1f} s "
          f"(compile included), {usage['num_blocks']} blocks; peak RSS {_peak_rss_mib():.0f} "
          f"MiB")


if __name__ == "__main__":
  app.run(main)
