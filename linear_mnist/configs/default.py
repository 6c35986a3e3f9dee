r"""MNIST: fully connected GloNet, MLP or residual MLP (variant ``default``).

  python -m linear_mnist.train --config=linear_mnist/configs/default.py \
      --config.model.name=GloNet --config.model.depth=10

Variants:
  default: GloNet10, width 256, Adam 1e-3 with cosine decay, 10 epochs: 97.97% test
    accuracy (linear_mnist/README.md).
  smoke: the same for one epoch on 10000 training examples: a first run, in seconds.
"""

import ml_collections

from common.run_config import base_config, check_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  check_variant(variant, VARIANTS, "linear_mnist")
  c = base_config("linear_mnist", variant)
  c.model.name = "GloNet"  # GloNet, MLP or ResNet
  c.model.depth = 10
  c.model.features = 256  # hidden width
  c.data.validation_size = 5000
  c.run.allow_unofficial_data = False  # refuse files that are not the official MNIST
  c.optim.learning_rate = 1e-3
  c.optim.schedule = "cosine"
  c.train.epochs = 10
  c.train.batch_size = 256
  c.eval.batch_size = 1000
  if variant == "smoke":
    c.data.train_size = 10000
    c.train.epochs = 1
  return c
