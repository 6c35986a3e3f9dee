"""The depth sweeps of resnet_sgemm: ``GRID=<name> bash resnet_sgemm/train_script.sh``."""

from common.run_config import Sweep

_MODELS = ("GloNet", "ResNet", "ResNet:use_batch_norm=false", "MLP")
_DEPTHS = (10, 24, 50, 100, 200, 600, 1000)

SWEEPS = {
    # A first look in about two minutes: five epochs (`python -m reproduce`).
    "smoke": Sweep("smoke", models=("GloNet", "ResNet"), depths=(10, 100)),
    "cpu": Sweep("default", models=_MODELS, depths=_DEPTHS, seeds=(0, 1, 2),
                 settings={"train.epochs": 5}),
    # The paper's setting: 200 epochs (Table 1).
    "paper": Sweep("default", models=_MODELS, depths=_DEPTHS, seeds=(0, 1, 2)),
}
