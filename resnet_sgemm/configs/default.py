r"""SGEMM GPU-kernel runtimes: deep regression, GloNet vs ResNet-v2 vs MLP (``default``).

  python -m resnet_sgemm.train --config=resnet_sgemm/configs/default.py \
      --config.model.name=GloNet --config.model.depth=100

The paper's setting: Adam 1e-2, batch 1024, width 16, L2 1e-5 in the training loss only,
200 epochs, a fixed 70/10/20 split drawn by ``data.split_seed`` (resnet_sgemm/README.md
for Table 1).

Variants:
  default: the paper's setting above.
  smoke: the same for 5 epochs: a first run, in seconds.
"""

import ml_collections

from common.run_config import base_config, check_variant

VARIANTS = ("default", "smoke")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  check_variant(variant, VARIANTS, "resnet_sgemm")
  c = base_config("resnet_sgemm", variant)
  c.model.name = "GloNet"  # GloNet, MLP or ResNet
  c.model.depth = 10
  c.model.features = 16  # hidden width
  c.optim.learning_rate = 1e-2
  c.optim.l2_reg_alpha = 1e-5
  c.train.epochs = 200
  c.train.batch_size = 1024
  c.eval.batch_size = 8192
  if variant == "smoke":
    c.train.epochs = 5
  return c
