"""The depth sweeps of resnet_imagenette: ``GRID=<name> bash resnet_imagenette/train_script.sh``."""

from common.run_config import Sweep

SWEEPS = {
    # A first look in about three minutes: 48 px, 1280 examples (`python -m reproduce`).
    "smoke": Sweep("smoke", models=("ResNet", "GloNet"), depths=(18,)),
    # The CPU recipe: 20 epochs at 128 px.
    "cpu": Sweep("cpu", models=("ResNet", "Plain", "GloNet"), depths=(18, 34)),
    # The longer GPU recipe: 80 epochs at 192 px.
    "gpu": Sweep("gpu", models=("ResNet", "Plain", "GloNet"), depths=(18, 34)),
}
