r"""Imagenette: ImageNet-shaped ResNet-v2 vs Plain (no skips) vs GloNet (no skips, the sum).

  python -m resnet_imagenette.train --config=resnet_imagenette/configs/default.py:cpu
  python -m resnet_imagenette.train --config=resnet_imagenette/configs/default.py:gpu \
      --config.model.name=GloNet --config.model.depth=34

Variants:
  cpu: 128 px, 20 epochs, SGD with Nesterov momentum, batch 64, a one-epoch warmup to
    0.05 then linear decay to zero, weight decay 5e-4, label smoothing 0.1. Five seeds:
    ResNet18 84.93%, GloNet18 82.69%.
  gpu: 192 px, 80 epochs, batch 128, a three-epoch warmup. Two seeds on an H100:
    ResNet18 88.11%, GloNet18 88.56%.
  smoke: GloNet18 under cpu at 48 px for one epoch on 1280 training examples, without
    warmup and with the gradient norm clipped at 1: a first run, in under a minute (the
    first run at a new image size also decodes every image, once).
Peak 0.05 in both: GloNet18 diverges at 0.1 where ResNet18 trains, and one rate for
every family keeps the comparison fair (resnet_imagenette/README.md).
"""

import ml_collections

from common.run_config import add_conv_glonet_options, base_config, check_variant

VARIANTS = ("cpu", "gpu", "smoke")


def get_config(variant: str = "cpu") -> ml_collections.ConfigDict:
  check_variant(variant, VARIANTS, "resnet_imagenette")
  c = base_config("resnet_imagenette", variant)
  c.model.name = "ResNet"  # ResNet, Plain or GloNet, depth 18 or 34
  c.model.depth = 18
  add_conv_glonet_options(c.model)
  c.data.validation_size = 500
  c.data.augment = True  # random-resized crop and horizontal flip
  c.data.label_smoothing = 0.1
  c.data.image_size = 128  # model input side; images are cached at image_size / 0.875
  c.data.min_crop_area = 0.35  # smallest random-resized crop, as a fraction of the area
  c.optim.optimizer = "SGD"
  c.optim.learning_rate = 0.05
  c.optim.momentum = 0.9
  c.optim.nesterov = True
  c.optim.schedule = "linear"
  c.optim.weight_decay = 5e-4
  if variant in ("cpu", "smoke"):
    c.optim.warmup_epochs = 1.0
    c.train.epochs = 20
    c.train.batch_size = 64
    c.eval.batch_size = 250
  if variant == "smoke":
    c.model.name = "GloNet"
    c.data.image_size = 48
    c.data.train_size = 1280
    c.optim.warmup_epochs = 0.0
    c.optim.grad_clip_norm = 1.0
    c.train.epochs = 1
  elif variant == "gpu":
    c.data.image_size = 192
    c.optim.warmup_epochs = 3.0
    c.train.epochs = 80
    c.train.batch_size = 128
    c.eval.batch_size = 500
  return c
