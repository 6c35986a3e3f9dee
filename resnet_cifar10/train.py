r"""CIFAR-10: ResNet-v2 vs Plain (no skips) vs GloNet (no skips + the GloNet sum).

  python -m resnet_cifar10.train --model=GloNet20                    # CPU-budget recipe
  python -m resnet_cifar10.train --model=ResNet56 --recipe=authors   # the authors' 200 epochs
  python -m resnet_cifar10.train --model=GloNet20 --glonet_sum=stage --carry=strided_conv

Models: ``ResNet{N}``, ``Plain{N}``, ``GloNet{N}`` for N = 6n+2 (20, 32, 44, 56, 110...),
batch norm on by default (``--use_batch_norm=false`` removes it). Images stay uint8 on the
device; pad-4 random crop and horizontal flip run inside the jitted step. The recipes are
the variants of configs/default.py. Writes a run directory (docs/run_directory.md);
rerunning with the same --workdir resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd resnet_cifar10 && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402
from common.experiment import Experiment  # noqa: E402
from common.models import CIFAR_MODELS  # noqa: E402
from resnet_cifar10.data import NUM_CLASSES, load_for_config, preprocess_for  # noqa: E402

EXPERIMENT = Experiment(registry=CIFAR_MODELS, num_outputs=NUM_CLASSES, load=load_for_config,
                        preprocess=preprocess_for)

if __name__ == "__main__":
  cli.main("resnet_cifar10", __file__)
