"""Data parallelism: the same run on 1 and on 2 (fake CPU) devices gives the same numbers."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common.models import mlp
from tests.conftest import REPO, hermetic_env

# Child processes with 2 fake devices: a minute; CI runs them.
pytestmark = pytest.mark.slow

_SCRIPT = r"""
import json, sys
from common.config import TrainConfig
from common.data import fake_classification
from common.experiment import default_hooks
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.train import Classification, run_experiment
import jax
config = canonical_config(TrainConfig(
    experiment="test", model=sys.argv[2], num_layers=6, features=int(sys.argv[3]),
    use_batch_norm=None,
    epochs=2, batch_size=64, eval_batch_size=50, learning_rate=3e-3, lr_schedule="constant",
    optimizer="ADAM", momentum=0.9, l2_reg_alpha=1e-4, seed=0, validation_size=None,
    split_seed=0, data_dir=None, workdir=sys.argv[1], result_dir=sys.argv[1],
    tensorboard=False, progress=False), DENSE_MODELS)
model, name, info = build_from_config(config, 4, DENSE_MODELS)
dataset = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
_, summary = run_experiment(config, model, name, dataset, Classification(4),
                            extra_config={"model": info},
                            hooks=default_hooks(config, model, dataset, Classification(4)))
print(json.dumps({"devices": jax.device_count(), "final": summary["final"]}))
"""


def _run(tmp_path, devices: int, model: str = "ResNet", features: int = 16) -> dict:
  env = {**hermetic_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  proc = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / f"run{devices}"),
                         model, str(features)],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_match_one(tmp_path):
  """ResNet with batch norm: the statistics must be computed over the whole batch."""
  one, two = _run(tmp_path, 1), _run(tmp_path, 2)
  assert one["devices"] == 1 and two["devices"] == 2
  for key in ("train_loss", "val_loss", "test_loss", "val_accuracy"):
    np.testing.assert_allclose(two["final"][key], one["final"][key], rtol=2e-4, err_msg=key)
  assert os.path.exists(tmp_path / "run2" / "training_report.pdf")


def test_two_devices_match_one_through_the_custom_vjp(tmp_path):
  """GloNet at width 128 and batch 64 trains through `dense_chain` (its weight gradients
  contract the batch axis, which is split over the devices)."""
  assert 128 >= mlp.HOISTED_WEIGHT_GRAD_MIN_FEATURES and 64 <= mlp.HOISTED_WEIGHT_GRAD_MAX_ROWS
  one, two = _run(tmp_path, 1, "GloNet", 128), _run(tmp_path, 2, "GloNet", 128)
  assert one["devices"] == 1 and two["devices"] == 2
  for key in ("train_loss", "val_loss", "test_loss", "val_accuracy"):
    np.testing.assert_allclose(two["final"][key], one["final"][key], rtol=2e-4, err_msg=key)
