r"""Imagenette: ImageNet-shaped ResNet-v2 vs Plain (no skips) vs GloNet (no skips + the sum).

  python -m resnet_imagenette.train --model=ResNet18                   # CPU recipe, 128 px
  python -m resnet_imagenette.train --model=GloNet34 --recipe=gpu      # longer, 192 px
  python -m resnet_imagenette.train --model=Plain18 --use_batch_norm=false

Models: ``ResNet18``, ``ResNet34``, ``Plain18/34``, ``GloNet18/34``: the ImageNet stem
(7x7/2 conv, 3x3/2 max-pool), basic blocks [2,2,2,2] or [3,4,6,3] at 64-512 channels,
batch norm on by default. Images stay uint8 on the device at ``image_size / 0.875``;
random-resized crop and horizontal flip run inside the jitted step, evaluation takes the
centre crop. The official val images are the test set; ``--validation_size`` training
images are held out for selection. The recipes are the variants of configs/default.py.
Writes a run directory (docs/run_directory.md); rerunning with the same --workdir
resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd resnet_imagenette && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import cli  # noqa: E402
from common.experiment import Experiment  # noqa: E402
from common.models import IMAGENET_MODELS  # noqa: E402
from resnet_imagenette.data import NUM_CLASSES, load_for_config, preprocess_for  # noqa: E402

EXPERIMENT = Experiment(registry=IMAGENET_MODELS, num_outputs=NUM_CLASSES,
                        load=load_for_config, preprocess=preprocess_for)

if __name__ == "__main__":
  cli.main("resnet_imagenette", __file__)
