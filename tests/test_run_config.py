"""Nested configs, their variants, the original flags as shorthands, and ``run`` in process."""

import importlib
import os

import pytest

from common import experiment, fileio
from common.config import TrainConfig
from common.errors import ConfigError, RunDirError
from tests.helpers import error_line, train_main

EXPERIMENTS = {"linear_mnist": ("default",), "resnet_sgemm": ("default",),
               "resnet_cifar10": ("cpu", "authors"), "resnet_imagenette": ("cpu", "gpu")}


def _get_config(name: str, *variant: str):
  return importlib.import_module(f"{name}.configs.default").get_config(*variant)


def _flat(config):
  return TrainConfig.from_nested(experiment.resolve(config))


@pytest.mark.parametrize("name,variant", [(n, v) for n, vs in EXPERIMENTS.items() for v in vs])
def test_every_variant_is_a_valid_run_config(name, variant):
  config = _get_config(name, variant)
  assert (config.experiment, config.variant) == (name, variant)
  _flat(config)  # every value in range, every combination allowed


def test_the_variants_hold_the_recipes():
  cpu, authors = (_flat(_get_config("resnet_cifar10", v)) for v in ("cpu", "authors"))
  assert (cpu.epochs, cpu.lr_schedule, cpu.nesterov, cpu.weight_decay, cpu.warmup_epochs) == (
      30, "linear", True, 5e-4, 1.0)
  assert (authors.epochs, authors.lr_schedule, authors.lr_boundaries, authors.nesterov,
          authors.weight_decay, authors.warmup_epochs) == (
              200, "step", (50, 100, 150), False, 1e-4, 0.0)
  gpu = _flat(_get_config("resnet_imagenette", "gpu"))
  assert (gpu.image_size, gpu.epochs, gpu.batch_size, gpu.warmup_epochs,
          gpu.eval_batch_size) == (192, 80, 128, 3.0, 500)
  mnist = _flat(_get_config("linear_mnist"))
  assert (mnist.model, mnist.num_layers, mnist.features, mnist.lr_schedule) == (
      "GloNet", 10, 256, "cosine")


def test_an_unknown_variant_names_the_valid_ones():
  with pytest.raises(ConfigError, match="unknown config variant 'gpu' of resnet_cifar10; "
                                        "valid: cpu, authors"):
    _get_config("resnet_cifar10", "gpu")


def test_only_a_family_s_own_options_reach_it():
  config = _get_config("linear_mnist")
  with config.unlocked():
    config.model.carry = "strided_conv"
  with pytest.raises(ConfigError, match="GloNet has no option carry; its options are "
                                        "features, remat"):
    experiment.run(config, "/nonexistent/never/written")


def test_run_in_process_trains_then_resumes_with_nothing_to_do(fake_mnist_root, tmp_path):
  config = _get_config("linear_mnist")
  config.model.depth, config.model.features = 3, 16
  config.train.epochs, config.data.train_size = 2, 512
  config.run.data_dir, config.run.progress = fake_mnist_root, False
  config.run.allow_unofficial_data = True  # the fake files are not the official MNIST
  path, summary = experiment.run(config, str(tmp_path / "run"))
  assert fileio.read_json(os.path.join(path, "status.json"))["status"] == "done"
  record = fileio.read_json(os.path.join(path, "config.json"))
  assert record["config"]["variant"] == "default" and record["model_name"] == "GloNet3"
  assert record["config"]["model"]["depth"] == 3
  assert record["config"]["data"]["train_size"] == 512
  again_path, again = experiment.run(config, str(tmp_path / "run"))
  assert (again_path, again) == (path, summary)
  config.optim.learning_rate = 0.5
  with pytest.raises(RunDirError, match="optim.learning_rate: 0.001 -> 0.5"):
    experiment.run(config, str(tmp_path / "run"))


_FAKE = ("--allow_unofficial_data", "--progress=false", "--tensorboard=false")


def test_old_flags_and_the_config_form_make_the_same_run(fake_mnist_root, tmp_path):
  old = train_main("linear_mnist.train", "--model=MLP4", "--features=8", "--epochs=1",
                   "--learning_rate=0.01", "--train_size=256", f"--data_dir={fake_mnist_root}",
                   f"--workdir={tmp_path / 'old'}", *_FAKE)
  assert old.returncode == 0, old.stderr[-3000:]
  new = train_main("linear_mnist.train", "--config=linear_mnist/configs/default.py",
                   "--config.model.name=MLP", "--config.model.depth=4",
                   "--config.model.features=8", "--config.train.epochs=1",
                   "--config.optim.learning_rate=0.01", "--config.data.train_size=256",
                   f"--config.run.data_dir={fake_mnist_root}",
                   "--config.run.allow_unofficial_data=true", "--config.run.progress=false",
                   "--config.run.tensorboard=false", f"--workdir={tmp_path / 'new'}")
  assert new.returncode == 0, new.stderr[-3000:]
  configs = [fileio.read_json(tmp_path / d / "config.json") for d in ("old", "new")]
  configs[1]["config"]["run"]["workdir"] = str(tmp_path / "old")
  assert configs[0]["config"] == configs[1]["config"]
  metrics = [fileio.read_jsonl(tmp_path / d / "metrics.jsonl") for d in ("old", "new")]
  assert [m["test_accuracy"] for m in metrics[0]] == [m["test_accuracy"] for m in metrics[1]]


@pytest.mark.parametrize("args,message", [
    (("--config.optim.learnin_rate=0.1",), "names no field of the config: learnin_rate"),
    (("--config.train.epochs=ten",), "flag --config.train.epochs=ten"),
    (("--config=linear_mnist/configs/default.py:gpu",),
     "unknown config variant 'gpu' of linear_mnist"),
    (("--config=linear_mnist/configs/nothere.py",), "--config could not be loaded"),
    (("--model=Transformer",), "unknown model 'Transformer'"),
    (("--recipe=authors", "--config=linear_mnist/configs/default.py"),
     "--recipe and --config both choose the config"),
])
def test_a_bad_config_is_one_error_line_and_writes_nothing(tmp_path, args, message):
  proc = train_main("linear_mnist.train", *args, f"--data_dir={tmp_path / 'empty'}",
                    f"--result_dir={tmp_path / 'out'}")
  assert message in error_line(proc)
  assert not os.path.exists(tmp_path / "out")
