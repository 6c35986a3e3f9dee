"""resnet_cifar10/train.py end to end on fake CIFAR-10 files of the official sizes."""

import os

import pytest

from common import fileio
from tests.conftest import write_fake_cifar10_binary
from tests.helpers import error_line, train_main


@pytest.fixture(scope="module")
def fake_cifar_root(tmp_path_factory) -> str:
  return write_fake_cifar10_binary(str(tmp_path_factory.mktemp("cifar_data")))


@pytest.mark.slow
def test_the_smoke_variant_trains_one_short_epoch(fake_cifar_root, tmp_path):
  run = tmp_path / "run"
  proc = train_main("resnet_cifar10.train", "--config=resnet_cifar10/configs/default.py:smoke",
      "--progress=false", f"--data_dir={fake_cifar_root}",
      f"--cache_dir={tmp_path / 'cache'}", f"--workdir={run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert fileio.read_json(run / "status.json")["status"] == "done"
  config = fileio.read_json(run / "config.json")
  assert config["model"]["registry"] == "cifar" and config["model"]["family"] == "GloNet"
  assert config["config"]["data"]["augment"] and config["config"]["optim"]["nesterov"]
  assert "features" not in config["config"]["model"]  # the families fix every width
  assert config["data"]["sizes"] == {"train": 5000, "val": 5000, "test": 10000}
  assert config["config"]["optim"]["grad_clip_norm"] == 1 and config["model"]["num_layers"] == 20
  usage = fileio.read_json(run / "usage.json")
  assert usage["final"]["num_blocks"] == 10 and usage["final"]["stage_boundaries"] == [0, 4, 7]
  assert os.path.getsize(run / "training_report.pdf") > 0
  assert os.listdir(tmp_path / "cache")  # decoded once into the cache, not the data root


@pytest.mark.slow
def test_authors_recipe_is_one_flag_away(fake_cifar_root, tmp_path):
  """The recipe sets the authors' values (checked in config.json) unless a flag overrides."""
  run = tmp_path / "run"
  proc = train_main("resnet_cifar10.train", "--model=ResNet8", "--recipe=authors", "--epochs=1",
      "--lr_boundaries=1", "--train_size=128", "--progress=false", "--tensorboard=false",
      f"--data_dir={fake_cifar_root}", f"--cache_dir={tmp_path / 'cache'}",
      f"--workdir={run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  config = fileio.read_json(run / "config.json")["config"]
  optim, train = config["optim"], config["train"]
  assert (config["variant"], optim["optimizer"], optim["learning_rate"], optim["weight_decay"],
          train["batch_size"], optim["schedule"], optim["nesterov"]) == (
              "authors", "SGD", 0.1, 1e-4, 128, "step", False)
  assert train["epochs"] == 1 and optim["boundaries"] == [1]  # the explicit flags win


@pytest.mark.parametrize("module", ["resnet_cifar10.train", "resnet_imagenette.train"])
def test_features_is_not_a_flag_of_the_cnn_experiments(tmp_path, module):
  # Once accepted, recorded in config.json and ignored: the families fix every width.
  proc = train_main(module, "--features=32", f"--data_dir={tmp_path / 'empty'}",
                    f"--result_dir={tmp_path / 'out'}")
  assert "Unknown command line flag 'features'" in error_line(proc)
  assert not os.path.exists(tmp_path / "out")


def test_missing_data_is_one_error_line_and_no_run_directory(tmp_path):
  proc = train_main("resnet_cifar10.train", f"--data_dir={tmp_path / 'empty'}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--result_dir={tmp_path / 'out'}")
  assert proc.returncode == 2, proc.stderr[-2000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "cifar" in errors[0].lower() and "Traceback" not in proc.stderr
  assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("flag,message", [
    ("--validation_size=50000", "--validation_size must be between 1 and 49999"),
    ("--train_size=45001", "--train_size=45001 must be between 1 and the training split's "
                           "45,000 examples"),
])
@pytest.mark.slow  # writes 60,000 fake images first
def test_impossible_sizes_are_refused_before_the_decode(fake_cifar_root, tmp_path, flag,
                                                         message):
  proc = train_main("resnet_cifar10.train", flag, f"--data_dir={fake_cifar_root}",
                    f"--cache_dir={tmp_path / 'cache'}", f"--workdir={tmp_path / 'run'}")
  assert message in error_line(proc)
  assert not os.path.exists(tmp_path / "run") and not os.path.exists(tmp_path / "cache")
