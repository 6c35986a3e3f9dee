"""The sweeps of resnet_cifar10: ``GRID=<name> bash resnet_cifar10/train_script.sh``."""

from common.run_config import Sweep

SWEEPS = {
    # A first look in about two minutes: one epoch on 5000 examples (`python -m reproduce`).
    "smoke": Sweep("smoke", models=("ResNet", "GloNet"), depths=(20,)),
    # The CPU recipe, 30 epochs.
    "cpu": Sweep("cpu", models=("ResNet", "Plain", "GloNet"), depths=(20, 56, 110)),
    # The authors' 200-epoch recipe (a GPU's work).
    "paper": Sweep("authors", models=("ResNet", "Plain", "GloNet"),
                   depths=(20, 32, 44, 56, 110), seeds=(0, 1, 2)),
    # The CPU-recipe search: one setting at a time away from the CPU recipe (README).
    "recipes": Sweep("cpu", models=(
        "ResNet:weight_decay=5e-4", "ResNet:weight_decay=2e-4", "ResNet:weight_decay=1e-4",
        "ResNet:weight_decay=1e-3", "ResNet:weight_decay=2e-4:label_smoothing=0.1",
        "ResNet:label_smoothing=0.1", "ResNet:learning_rate=0.05", "ResNet:learning_rate=0.2",
        "ResNet:batch_size=64", "GloNet:weight_decay=2e-4", "GloNet:weight_decay=1e-4",
        "GloNet:weight_decay=1e-3"), depths=(20,)),
}
