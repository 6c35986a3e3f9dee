r"""Deep regression on the UCI SGEMM GPU-kernel runtimes: GloNet vs ResNet-v2 vs MLP.

  python -m resnet_sgemm.train --model=GloNet100 --epochs=200
  python -m resnet_sgemm.train --model=ResNet100 --use_batch_norm=false

Target: log of the mean of the four runtimes (ms). The paper's setting by default
(configs/default.py). Writes a run directory (docs/run_directory.md) plus scaler.json.
"""

import os
import sys

if __package__ in (None, ""):  # `cd resnet_sgemm && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402
from common.experiment import Experiment  # noqa: E402
from common.models import DENSE_MODELS  # noqa: E402
from resnet_sgemm.data import SCALER, load_for_config  # noqa: E402

EXPERIMENT = Experiment(registry=DENSE_MODELS, num_outputs=1, load=load_for_config,
                        run_files=lambda dataset: {SCALER: dataset.info["scaler"]})

if __name__ == "__main__":
  cli.main("resnet_sgemm", __file__)
