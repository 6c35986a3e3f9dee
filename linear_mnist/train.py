r"""Trains a fully connected GloNet, MLP or residual MLP on MNIST.

  python -m linear_mnist.train --model=GloNet --num_layers=10 --features=256 --epochs=10

Writes a run directory (see the repository README): config.json, metrics.jsonl,
summary.json, status.json, usage.json, checkpoints/, the figures and training_report.pdf.
Rerunning with the same --workdir resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd linear_mnist && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags, logging  # noqa: E402

from common import flags as common_flags  # noqa: E402
from common.models import DENSE_MODELS, build_from_config, canonical_config  # noqa: E402
from common.train import run_experiment  # noqa: E402
from linear_mnist.data import NUM_CLASSES, load_for_config  # noqa: E402

common_flags.define_train_flags(
    model="GloNet", num_layers=10, features=256, epochs=10, batch_size=256,
    learning_rate=1e-3, lr_schedule="cosine", validation_size=5000,
    extra_help=f"One of {', '.join(sorted(DENSE_MODELS))}.")
_ALLOW_UNOFFICIAL = flags.DEFINE_boolean(
    "allow_unofficial_data", False,
    "Train on local MNIST files whose decompressed content is not the official files' "
    "(refused otherwise; recorded in config.json either way).")


def main(argv):
  del argv
  config = canonical_config(common_flags.config_from_flags(
      "linear_mnist", allow_unofficial_data=_ALLOW_UNOFFICIAL.value), DENSE_MODELS)
  # Fails before any I/O on a bad name or depth.
  model, name, info = build_from_config(config, NUM_CLASSES, DENSE_MODELS)
  dataset, task = load_for_config(config)
  run_path, summary = run_experiment(config, model, name, dataset, task,
                                     extra_config={"model": info})
  final = summary["final"] or {}
  logging.info("Done: %s  test_accuracy %.4f", run_path, final.get("test_accuracy", float("nan")))


if __name__ == "__main__":
  common_flags.run_main(main)
