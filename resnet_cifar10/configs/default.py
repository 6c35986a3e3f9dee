r"""CIFAR-10: ResNet-v2 vs Plain (no skips) vs GloNet (no skips, the GloNet sum).

  python -m resnet_cifar10.train --config=resnet_cifar10/configs/default.py:cpu
  python -m resnet_cifar10.train --config=resnet_cifar10/configs/default.py:authors \
      --config.model.name=ResNet --config.model.depth=56

Variants:
  cpu: SGD with Nesterov momentum, a one-epoch warmup to 0.1 then linear decay to zero,
    weight decay 5e-4, batch 128, 30 epochs. ResNet20: 85.84% on the offline JPEG copy.
  authors: their notebook's SGD 0.1, momentum 0.9, weight decay 1e-4, x0.1 after epochs
    50, 100 and 150, 200 epochs. ResNet20: 86.66% on the same copy.
  smoke: cpu for one epoch on 5000 training examples, without warmup (one epoch has no
    room for it) and with the gradient norm clipped at 1 (without the warmup, GloNet20
    diverges in its first steps): a first run, in about a minute.
(resnet_cifar10/README.md.)
"""

import ml_collections

from common.run_config import add_conv_glonet_options, base_config, check_variant

VARIANTS = ("cpu", "authors", "smoke")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  check_variant(variant, VARIANTS, "resnet_cifar10")
  c = base_config("resnet_cifar10", variant)
  c.model.name = "GloNet"  # ResNet, Plain or GloNet, depth 6n+2
  c.model.depth = 20
  add_conv_glonet_options(c.model)
  c.data.validation_size = 5000
  c.data.augment = True  # pad-4 random crop and horizontal flip
  c.data.label_smoothing = 0.0
  c.optim.optimizer = "SGD"
  c.optim.learning_rate = 0.1
  c.optim.momentum = 0.9
  c.train.batch_size = 128
  c.eval.batch_size = 1000
  if variant in ("cpu", "smoke"):
    c.optim.nesterov = True
    c.optim.schedule = "linear"
    c.optim.warmup_epochs = 1.0
    c.optim.weight_decay = 5e-4
    c.train.epochs = 30
  if variant == "smoke":
    c.data.train_size = 5000
    c.optim.warmup_epochs = 0.0
    c.optim.grad_clip_norm = 1.0
    c.train.epochs = 1
  elif variant == "authors":
    c.optim.schedule = "step"
    c.optim.boundaries = (50, 100, 150)
    c.optim.decay_factor = 0.1
    c.optim.weight_decay = 1e-4
    c.train.epochs = 200
  return c
