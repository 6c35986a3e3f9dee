r"""Deep regression on the UCI SGEMM GPU-kernel runtimes: GloNet vs ResNet-v2 vs MLP.

  python -m resnet_sgemm.train --model=GloNet100 --epochs=200
  python -m resnet_sgemm.train --model=ResNet100 --use_batch_norm=false

Target: log of the mean of the four runtimes (ms). Paper setting by default: Adam,
learning rate 1e-2, batch 1024, width 16, L2 1e-5 in the training loss only, 200 epochs.
Writes a run directory (see the repository README) plus scaler.json.
"""

import os
import sys

if __package__ in (None, ""):  # `cd resnet_sgemm && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import logging  # noqa: E402

from common import flags as common_flags  # noqa: E402
from common.models import DENSE_MODELS, build_from_config, canonical_config  # noqa: E402
from common.train import run_experiment  # noqa: E402
from resnet_sgemm.data import load_for_config  # noqa: E402

common_flags.define_train_flags(
    model="GloNet", num_layers=10, features=16, epochs=200, batch_size=1024,
    learning_rate=1e-2, l2_reg_alpha=1e-5, eval_batch_size=8192,
    extra_help=f"One of {', '.join(sorted(DENSE_MODELS))}, with an optional depth suffix "
               f"(GloNet1000).")


def main(argv):
  del argv
  config = canonical_config(common_flags.config_from_flags("resnet_sgemm"), DENSE_MODELS)
  # Fails before any I/O on a bad name or depth.
  model, name, info = build_from_config(config, 1, DENSE_MODELS)
  dataset, task = load_for_config(config)
  run_path, summary = run_experiment(
      config, model, name, dataset, task, extra_config={"model": info},
      extra_files={"scaler.json": dataset.info["scaler"]})
  final = summary["final"] or {}
  logging.info("Done: %s  test_mse %.5f", run_path, final.get("test_mse", float("nan")))


if __name__ == "__main__":
  common_flags.run_main(main)
