"""Every device of a host: training, evaluation and the usage pass split over 4 and 8 fake
CPU devices equal one device, and a checkpoint moves between device counts."""

import json
import subprocess
import sys

import numpy as np
import pytest

from common import fileio
from tests.conftest import REPO, hermetic_env

# Child processes with 4 and 8 fake devices: minutes; CI runs them.
pytestmark = pytest.mark.slow

# One training step (64 examples, batch 64), then both evaluations and the usage pass, for
# an MLP GloNet and for a CNN GloNet with batch norm and augmentation; prints what each
# gave and how the evaluation data was laid out over the devices.
_STEP_AND_EVAL = r"""
import json, sys
import jax, numpy as np
from common.config import TrainConfig
from common.data import fake_classification, fake_images
from common.data.augment import image_preprocess
from common.models import CIFAR_MODELS, DENSE_MODELS, build_from_config, canonical_config
from common.train import Classification
from common.train.trainer import Trainer
from common.usage import compute_usage

def config(model, registry, **kw):
  return canonical_config(TrainConfig(
      experiment="test", model=model, num_layers=kw.pop("num_layers", None),
      features=kw.pop("features", 1), use_batch_norm=None, epochs=1, batch_size=64,
      eval_batch_size=50, learning_rate=0.05, lr_schedule="constant", optimizer="SGD",
      momentum=0.9, l2_reg_alpha=0.0, seed=0, validation_size=None, split_seed=0,
      data_dir=None, workdir=None, result_dir="unused", tensorboard=False, progress=False,
      **kw), registry)

out = {"devices": jax.device_count()}
cases = {
    "mlp": (config("GloNet", DENSE_MODELS, num_layers=6, features=16), DENSE_MODELS,
            fake_classification(n_train=64, n_val=30, n_test=70, seed=0), None),
    "cnn": (config("GloNet8", CIFAR_MODELS), CIFAR_MODELS,
            fake_images(n_train=64, n_val=30, n_test=70),
            image_preprocess((0.3,) * 3, (0.3,) * 3, augment=True, pad=1)),
}
for name, (cfg, registry, dataset, pre) in cases.items():
  model, _, _ = build_from_config(cfg, 4, registry)
  trainer = Trainer.build(cfg, model, dataset, Classification(4), preprocess=pre)
  state, sums, _ = trainer.train_epoch(trainer.state, 1, progress=False)
  test = trainer._eval["test"]
  usage = compute_usage(state, dataset.test, Classification(4), model, batch_size=20,
                        preprocess=pre, reference=dataset.train)
  out[name] = {
      "steps": trainer.steps_per_epoch, "train_loss": float(sums["loss"]),
      **trainer.evaluate(state, "val"), **trainer.evaluate(state, "test"),
      "params": [float(np.abs(np.asarray(p)).sum()) for p in jax.tree.leaves(state.params)],
      "usage_l1": usage["l1"], "usage_examples": usage["examples"],
      "exit_mean_loss": usage["early_exit_mean"]["loss"],
      # The same, from the trainer's replicated device copy (what the usage hook passes).
      "exit_mean_loss_in_place": compute_usage(
          state, dataset.test, Classification(4), model, batch_size=20, preprocess=pre,
          reference=trainer.train_inputs)["early_exit_mean"]["loss"],
      # And from the trainer's padded test copy (batches of 50 split over the devices).
      "usage_l1_in_place": compute_usage(
          state, trainer.eval_split("test"), Classification(4), model, preprocess=pre,
          reference=trainer.train_inputs)["l1"],
      "eval_spec": str(test.x.sharding.spec) if hasattr(test.x.sharding, "spec") else "",
      "eval_batch": int(test.x.shape[1]),
      "eval_shard_rows": int(test.x.addressable_shards[0].data.shape[1]),
  }
print(json.dumps(out))
"""

# A constant-rate MLP run with batch norm through run_experiment, trained to argv[2] epochs
# (a rerun with more epochs resumes and extends it).
_RUN = r"""
import json, sys
import jax
from common.config import TrainConfig
from common.data import fake_classification
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.train import Classification, run_experiment
config = canonical_config(TrainConfig(
    experiment="test", model="ResNet", num_layers=6, features=16, use_batch_norm=True,
    epochs=int(sys.argv[2]), batch_size=64, eval_batch_size=50, learning_rate=3e-3,
    lr_schedule="constant", optimizer="ADAM", momentum=0.9, l2_reg_alpha=0.0, seed=0,
    validation_size=None, split_seed=0, data_dir=None, workdir=sys.argv[1],
    result_dir=sys.argv[1], tensorboard=False, progress=False), DENSE_MODELS)
model, name, info = build_from_config(config, 4, DENSE_MODELS)
_, summary = run_experiment(config, model, name,
                            fake_classification(n_train=320, n_val=100, n_test=130, seed=0),
                            Classification(4), extra_config={"model": info})
print(json.dumps({"devices": jax.device_count(), "final": summary["final"]}))
"""


def _python(script: str, devices: int, *args: str) -> dict:
  env = {**hermetic_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  proc = subprocess.run([sys.executable, "-c", script, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def step_and_eval() -> dict[int, dict]:
  return {n: _python(_STEP_AND_EVAL, n) for n in (1, 4, 8)}


@pytest.mark.parametrize("case", ["mlp", "cnn"])
@pytest.mark.parametrize("devices", [4, 8])
def test_a_step_and_a_full_evaluation_equal_one_device(step_and_eval, case, devices):
  one, many = step_and_eval[1][case], step_and_eval[devices][case]
  assert step_and_eval[devices]["devices"] == devices and one["steps"] == 1
  for key in ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(many[key], one[key], rtol=2e-4, atol=1e-6, err_msg=key)
  np.testing.assert_allclose(many["params"], one["params"], rtol=2e-4)
  np.testing.assert_allclose(many["usage_l1"], one["usage_l1"], rtol=2e-4)
  np.testing.assert_allclose(many["exit_mean_loss"], one["exit_mean_loss"], rtol=2e-4)
  for run in (one, many):
    np.testing.assert_allclose(run["exit_mean_loss_in_place"], run["exit_mean_loss"], rtol=1e-5)
    np.testing.assert_allclose(run["usage_l1_in_place"], run["usage_l1"], rtol=1e-5)
  assert many["usage_examples"] == one["usage_examples"] == 70


@pytest.mark.parametrize("devices", [4, 8])
def test_evaluation_data_is_split_over_the_devices_not_copied(step_and_eval, devices):
  one, many = step_and_eval[1]["mlp"], step_and_eval[devices]["mlp"]
  assert one["eval_batch"] == one["eval_shard_rows"] == 50
  # The batch of 50 is padded to a multiple of the device count; each device holds a slice.
  assert many["eval_batch"] == -(-50 // devices) * devices
  assert many["eval_shard_rows"] == many["eval_batch"] // devices
  assert "data" in many["eval_spec"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict:
  """Three epochs on one device, uninterrupted."""
  return _python(_RUN, 1, str(tmp_path_factory.mktemp("straight") / "run"), "3")


@pytest.mark.parametrize("first,then", [(4, 1), (1, 4)])
def test_a_checkpoint_moves_between_device_counts(tmp_path, straight, first, then):
  """Two epochs on ``first`` devices, the third on ``then`` devices, equal three epochs on
  one device (to float summation order); the resume records where it ran."""
  moved = tmp_path / "moved"
  assert _python(_RUN, first, str(moved), "2")["devices"] == first
  resumed = _python(_RUN, then, str(moved), "3")
  assert resumed["devices"] == then
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(resumed["final"][key], straight["final"][key], rtol=5e-4,
                               err_msg=key)
  record = fileio.read_json(moved / "config.json")
  assert record["environment"]["devices"] != record["resumes"][-1]["devices"]
  assert len(fileio.read_jsonl(moved / "metrics.jsonl")) == 3
