"""A tiny run as one process of several, for tests (JAX's multi-process runtime on CPU).

  python -m tests.train.multi_process_run WORKDIR EPOCHS NUM_PROCESSES PROCESS_ID PORT

Trains a residual MLP with batch norm (constant learning rate, global batch 64) on fake
data through ``run_experiment`` and prints the process count, the device count and the
final metrics as one JSON line. With NUM_PROCESSES=1 it is the plain single-process run.
Runs through ``run_main``, so signals and errors end it as they end ``train.py``.
"""

import json

import jax

from common.cli import run_main
from common.config import TrainConfig
from common.data import fake_classification
from common.experiment import default_hooks
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.train import Classification, distributed, run_experiment


def main(workdir: str, epochs: int, num_processes: int, process_id: int, port: int) -> None:
  distributed.initialize(num_processes, process_id, f"127.0.0.1:{port}")
  config = canonical_config(TrainConfig(
      experiment="test", model="ResNet", num_layers=6, features=16, use_batch_norm=True,
      epochs=epochs, batch_size=64, eval_batch_size=50, learning_rate=3e-3,
      lr_schedule="constant", optimizer="ADAM", momentum=0.9, l2_reg_alpha=0.0, seed=0,
      validation_size=None, split_seed=0, data_dir=None, workdir=workdir,
      result_dir=workdir, tensorboard=False, progress=False), DENSE_MODELS)
  model, name, info = build_from_config(config, 4, DENSE_MODELS)
  dataset = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  _, summary = run_experiment(config, model, name, dataset, Classification(4),
                              extra_config={"model": info},
                              hooks=default_hooks(config, model, dataset, Classification(4)))
  print(json.dumps({"processes": jax.process_count(), "devices": jax.device_count(),
                    "final": summary["final"]}))


if __name__ == "__main__":
  run_main(lambda argv: main(argv[1], *(int(a) for a in argv[2:6])), positional=True)
