r"""CIFAR-10: ResNet-v2 vs Plain (no skips) vs GloNet (no skips + the GloNet sum).

  python -m resnet_cifar10.train --model=GloNet20                    # CPU-budget recipe
  python -m resnet_cifar10.train --model=ResNet56 --recipe=authors   # the authors' 200 epochs
  python -m resnet_cifar10.train --model=GloNet20 --glonet_sum=stage --carry=strided_conv

Models: ``ResNet{N}``, ``Plain{N}``, ``GloNet{N}`` for N = 6n+2 (20, 32, 44, 56, 110...),
batch norm on by default (``--use_batch_norm=false`` removes it). Images stay uint8 on the
device; pad-4 random crop and horizontal flip run inside the jitted step. Writes a run
directory (see the repository README); rerunning with the same --workdir resumes.
"""

import os
import sys

if __package__ in (None, ""):  # `cd resnet_cifar10 && python train.py` without installing
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from common import flags as common_flags  # noqa: E402
from common.image_experiment import run_image_experiment  # noqa: E402
from common.models import CIFAR_MODELS  # noqa: E402
from resnet_cifar10.data import NUM_CLASSES, load_for_config, preprocess_for  # noqa: E402

# The CPU-budget recipe (the defaults): SGD with Nesterov momentum, a one-epoch linear
# warmup to 0.1, then linear decay to zero, weight decay 5e-4 on the kernels, batch 128,
# 30 epochs.
common_flags.define_train_flags(
    model="GloNet20", num_layers=None, features=None, epochs=30, batch_size=128,
    learning_rate=0.1, optimizer="SGD", lr_schedule="linear", momentum=0.9, nesterov=True,
    weight_decay=5e-4, warmup_epochs=1.0, validation_size=5000, eval_batch_size=1000,
    extra_help=f"One of {', '.join(sorted(CIFAR_MODELS))} with a depth 6n+2 (GloNet20, "
               f"ResNet56, Plain110...).")
# The authors' notebook (GloNet+CNN.ipynb): SGD 0.1, momentum 0.9, weight decay 1e-4,
# batch 128, x0.1 every 50 epochs, 200 epochs. Flags given explicitly still win.
AUTHORS_RECIPE = {"optimizer": "SGD", "learning_rate": 0.1, "momentum": 0.9,
                  "nesterov": False, "weight_decay": 1e-4, "batch_size": 128,
                  "lr_schedule": "step", "lr_boundaries": ["50", "100", "150"],
                  "lr_decay_factor": 0.1, "warmup_epochs": 0.0, "epochs": 200,
                  "label_smoothing": 0.0}
RECIPES = {"cpu": None, "authors": AUTHORS_RECIPE}
common_flags.define_recipe_flag(RECIPES, "cpu",
                                "Defaults of the training flags: cpu (30 epochs, see the "
                                "README) or authors (their 200-epoch SGD schedule).")
common_flags.define_image_flags(
    augment_help="Pad-4 random crop + horizontal flip of training images.")


def main(argv):
  del argv
  # No --features: the families fix every width. Runs record their first stage's, 16.
  run_image_experiment("resnet_cifar10", CIFAR_MODELS, NUM_CLASSES, load_for_config,
                       preprocess_for, RECIPES, features=16)


if __name__ == "__main__":
  common_flags.run_main(main)
