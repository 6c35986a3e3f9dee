r"""Trains a fully connected GloNet, MLP or residual MLP on MNIST.

  python -m linear_mnist.train --model=GloNet --num_layers=10 --features=256 --epochs=10

Writes a run directory (see README.md): config.json, metrics.jsonl, summary.json,
status.json, checkpoints/. Rerunning with the same --workdir resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd linear_mnist && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # noqa: E402

from common import flags as common_flags  # noqa: E402
from common.models import build_model, parse_model_name  # noqa: E402
from common.models.registry import DENSE_MODELS, model_label  # noqa: E402
from common.train import Classification, run_experiment  # noqa: E402
from linear_mnist.data import NUM_CLASSES, load_mnist  # noqa: E402

common_flags.define_train_flags(
    model="GloNet", num_layers=10, features=256, epochs=10, batch_size=256,
    learning_rate=1e-3, lr_schedule="cosine", validation_size=5000,
    extra_help=f"One of {', '.join(sorted(DENSE_MODELS))}.")


def main(argv):
  del argv
  config = common_flags.config_from_flags("linear_mnist")
  # Validate the model before touching data or the disk.
  family, depth = parse_model_name(config.model, config.num_layers, DENSE_MODELS)
  model = build_model(config.model, num_layers=config.num_layers, features=config.features,
                      out_dim=NUM_CLASSES, use_batch_norm=config.use_batch_norm)
  dataset = load_mnist(config.data_dir, config.validation_size, config.split_seed)
  run_path, summary = run_experiment(
      config, model, f"{family}{depth}", dataset, Classification(NUM_CLASSES),
      extra_config={"model": {"family": family, "num_layers": depth,
                              "label": model_label(family, model.use_batch_norm),
                              "num_blocks": model.num_blocks,
                              "use_batch_norm": model.use_batch_norm}})
  final = summary["final"] or {}
  logging.info("Done: %s  test_accuracy %.4f", run_path, final.get("test_accuracy", float("nan")))


if __name__ == "__main__":
  common_flags.run_main(main)
