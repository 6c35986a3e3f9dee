"""A tiny augmented CNN run, as a subprocess of tests (kill -9, data parallelism).

  python -m tests.train.tiny_cnn_run WORKDIR [MODEL] [EPOCHS] [LR_SCHEDULE]

Trains ``MODEL`` (default GloNet8: the CIFAR trunk with one block per stage, batch norm)
on fake 8x8 uint8 images with pad-crop-flip augmentation inside the step, and prints the
device count and the final metrics as one JSON line. ``LR_SCHEDULE`` (default cosine)
``constant`` lets a finished run be trained further. Runs through the entry points'
``run_main``, so signals and errors end it as they end ``train.py``.
"""

import json

import jax

from common.cli import run_main
from common.config import TrainConfig
from common.data import fake_images
from common.data.augment import image_preprocess
from common.experiment import default_hooks
from common.models import CIFAR_MODELS, build_from_config, canonical_config
from common.train import Classification, run_experiment


def main(workdir: str, model: str = "GloNet8", epochs: int = 3,
         lr_schedule: str = "cosine") -> None:
  config = canonical_config(TrainConfig(
      experiment="test", model=model, num_layers=None, features=1, use_batch_norm=None,
      epochs=epochs, batch_size=32, eval_batch_size=50, learning_rate=0.05,
      lr_schedule=lr_schedule, optimizer="SGD", momentum=0.9, nesterov=True, weight_decay=5e-4,
      l2_reg_alpha=0.0, seed=0, validation_size=None, split_seed=0, data_dir=None,
      workdir=workdir, result_dir=workdir, tensorboard=False, progress=False), CIFAR_MODELS)
  model, name, info = build_from_config(config, 4, CIFAR_MODELS)
  dataset = fake_images(n_train=256, n_val=64, n_test=100)
  preprocess = image_preprocess((0.3,) * 3, (0.3,) * 3, augment=True, pad=1)
  _, summary = run_experiment(
      config, model, name, dataset, Classification(4), preprocess=preprocess,
      extra_config={"model": info},
      hooks=default_hooks(config, model, dataset, Classification(4), preprocess))
  print(json.dumps({"devices": jax.device_count(), "final": summary["final"]}))


if __name__ == "__main__":
  run_main(lambda argv: main(argv[1], *(argv[2:3]), *(int(a) for a in argv[3:4]),
                             *(argv[4:5])), positional=True)
