"""Bad settings fail before anything is written: one ``error:`` line, exit status 2."""

import os

import pytest

from tests.conftest import run_module
from tests.helpers import error_line

_FAKE = "--allow_unofficial_data"  # the fake files are not the official MNIST


@pytest.mark.parametrize("flag,match", [
    ("--split_seed=-1", "split_seed must be >= 0"),
    ("--seed=-2", "seed must be >= 0"),
    ("--learning_rate=inf", "learning_rate must be a finite number"),
    ("--learning_rate=nan", "learning_rate must be a finite number"),
    ("--epochs=abc", "flag --epochs=abc"),
    ("--no_such_flag=1", "no_such_flag"),
    ("true", "unexpected arguments: true; flags take the form --name=value"),  # `--flag true`
])
def test_a_bad_value_or_flag_is_one_error_line(fake_mnist_root, tmp_path, flag, match):
  proc = run_module("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--result_dir={tmp_path / 'out'}", "--epochs=1", flag)
  assert match in error_line(proc)
  assert not os.path.exists(tmp_path / "out")


def test_a_result_dir_that_is_a_file_is_one_error_line(fake_mnist_root, tmp_path):
  (tmp_path / "file").write_text("x")
  proc = run_module("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--result_dir={tmp_path / 'file'}", "--epochs=1")
  line = error_line(proc)
  assert str(tmp_path / "file") in line and "--result_dir" in line


def test_a_refused_foreign_workdir_is_left_untouched(fake_mnist_root, tmp_path):
  foreign = tmp_path / "mine"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("keep me")
  proc = run_module("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--workdir={foreign}", "--epochs=1")
  assert "not a run directory" in error_line(proc)
  assert os.listdir(foreign) == ["notes.txt"]  # no lock file written into it
