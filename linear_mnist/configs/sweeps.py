"""The depth sweeps of linear_mnist: ``GRID=<name> bash linear_mnist/train_script.sh``."""

from common.run_config import Sweep

SWEEPS = {
    # A first look in about a minute: one epoch on 10000 examples (`python -m reproduce`).
    "smoke": Sweep("smoke", models=("GloNet", "MLP"), depths=(5, 50)),
    # About 50 min on 2 cores (README).
    "cpu": Sweep("default", models=("GloNet", "MLP", "ResNet"),
                 depths=(6, 10, 24, 50, 100, 200), settings={"train.epochs": 10}),
    # The depths of the paper's MNIST figure (5..200 layers), three seeds, longer training.
    "paper": Sweep("default", models=("GloNet", "MLP", "ResNet"),
                   depths=(6, 10, 20, 40, 60, 80, 100, 200), seeds=(0, 1, 2),
                   settings={"train.epochs": 20}),
}
