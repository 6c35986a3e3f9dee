r"""Trains a fully connected GloNet, MLP or residual MLP on MNIST.

  python -m linear_mnist.train --model=GloNet --num_layers=10 --features=256 --epochs=10
  python -m linear_mnist.train --config=linear_mnist/configs/default.py \
      --config.model.depth=50

Writes a run directory (docs/run_directory.md): config.json, metrics.jsonl,
summary.json, status.json, usage.json, checkpoints/, the figures and training_report.pdf.
Rerunning with the same --workdir resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd linear_mnist && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402
from common.experiment import Experiment  # noqa: E402
from common.models import DENSE_MODELS  # noqa: E402
from linear_mnist.data import NUM_CLASSES, load_for_config  # noqa: E402

EXPERIMENT = Experiment(registry=DENSE_MODELS, num_outputs=NUM_CLASSES, load=load_for_config)

if __name__ == "__main__":
  cli.main("linear_mnist", __file__)
