"""Command lines: bad settings fail before anything is written (one ``error:`` line, exit
status 2), found in process through the program's own parse; the program itself is run
once for its exit paths and its help."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common import cli
from common.data import cache
from common.errors import ConfigError, Interrupted
from common.train.signals import interrupt_on_signals
from tests.conftest import REPO, hermetic_env, run_module
from tests.helpers import error_line, train_main

_FAKE = "--allow_unofficial_data"  # the fake files are not the official MNIST


@pytest.mark.parametrize("flag,match", [
    ("--split_seed=-1", "split_seed must be >= 0"),
    ("--seed=-2", "seed must be >= 0"),
    ("--learning_rate=inf", "learning_rate must be a finite number"),
    ("--learning_rate=nan", "learning_rate must be a finite number"),
    ("--l2_reg_alpha=nan", "l2_reg_alpha must be a finite number"),
    ("--l2_reg_alpha=inf", "l2_reg_alpha must be a finite number"),
    ("--momentum=nan", "momentum must be a finite number"),
    ("--warmup_epochs=inf", "warmup_epochs must be a finite number"),
    ("--patience=2", "patience must be in 0..epochs=1 (0: no early stopping); got 2."),
    ("--patience=-1", "patience must be in 0..epochs=1"),
    ("--min_delta=nan", "min_delta must be a finite number"),
    ("--min_delta=-0.1", "min_delta must be >= 0"),
    ("--epochs=abc", "flag --epochs=abc"),
    ("--no_such_flag=1", "no_such_flag"),
    ("true", "unexpected arguments: true; flags take the form --name=value"),  # `--flag true`
])
def test_a_bad_value_or_flag_is_one_error_line(fake_mnist_root, tmp_path, flag, match):
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--result_dir={tmp_path / 'out'}", "--epochs=1", flag)
  assert match in error_line(proc)
  assert not os.path.exists(tmp_path / "out")


def test_a_result_dir_that_is_a_file_is_one_error_line(fake_mnist_root, tmp_path):
  (tmp_path / "file").write_text("x")
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--result_dir={tmp_path / 'file'}", "--epochs=1")
  line = error_line(proc)
  assert str(tmp_path / "file") in line and "--result_dir" in line


def test_a_refused_foreign_workdir_is_left_untouched(fake_mnist_root, tmp_path):
  foreign = tmp_path / "mine"
  foreign.mkdir()
  (foreign / "notes.txt").write_text("keep me")
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}", _FAKE,
                    f"--workdir={foreign}", "--epochs=1")
  assert "not a run directory" in error_line(proc)
  assert os.listdir(foreign) == ["notes.txt"]  # no lock file written into it


def test_parse_config_is_the_program_s_parse_and_leaves_no_global_flags():
  config = cli.parse_config("resnet_cifar10", ["train.py", "--recipe=authors", "--epochs=3",
                                               "--config.optim.learning_rate=0.05"])
  assert (config.variant, config.train.epochs, config.optim.learning_rate) == (
      "authors", 3, 0.05)
  again = cli.parse_config("resnet_cifar10", ["train.py"])  # nothing carried over
  assert (again.variant, again.train.epochs) == ("cpu", 30)
  with pytest.raises(ConfigError, match="Unknown command line flag 'epochz'"):
    cli.parse_config("linear_mnist", ["train.py", "--epochz=3"])


def test_the_program_ends_a_refused_command_with_one_line_and_status_2(tmp_path):
  # A flag refused while parsing, and a setting refused by the run (run_main's path).
  assert "Did you mean: epochs" in error_line(run_module("linear_mnist.train", "--epochz=1"))
  proc = run_module("linear_mnist.train", "--model=Transformer",
                    f"--result_dir={tmp_path / 'out'}")
  assert "unknown model 'Transformer'" in error_line(proc)
  assert not os.path.exists(tmp_path / "out")


def test_help_lists_the_program_s_flags_with_their_fields():
  proc = run_module("resnet_cifar10.train", "--help")
  assert proc.returncode == 0, proc.stderr[-2000:]
  for text in ("--epochs", "Sets --config.train.epochs (default 30)", "--recipe",
               "--config"):
    assert text in proc.stdout, text
  assert "--features" not in proc.stdout  # not a field of the CNN experiments


def test_a_signal_before_any_run_directory_is_one_line_and_its_exit_status():
  # SIGTERM while the data were read or decoded once killed a program silently.
  code = ("import time\nfrom common.cli import run_main\n"
          "def main(argv):\n  print('ready', flush=True)\n  time.sleep(60)\n"
          "run_main(main)\n")
  proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=hermetic_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == "ready"
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 143
  assert stderr.strip().splitlines() == [
      "interrupted by SIGTERM: rerun the same command to go on (a run directory, once made, "
      "keeps every finished epoch)."]


def _catches(pid: int, signum: int) -> bool:
  """Whether process ``pid`` has a handler for ``signum`` (Linux: /proc/<pid>/status)."""
  with open(f"/proc/{pid}/status") as f:
    mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
  return bool(int(mask, 16) >> (signum - 1) & 1)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_a_program_imports_is_one_line(tmp_path, signum):
  # Ctrl-C during the imports once printed 38 lines of import machinery, or was dropped
  # when it landed in JAX's garbage-collection callback; SIGTERM killed without a word.
  proc = subprocess.Popen(
      [sys.executable, "-m", "linear_mnist.train", f"--workdir={tmp_path / 'run'}"],
      cwd=REPO, env=hermetic_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 60
  while not _catches(proc.pid, signal.SIGTERM):  # `import common` set its handlers
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.005)
  proc.send_signal(signum)  # JAX and Flax are still being imported
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 128 + signum, stderr[-3000:]
  assert "Traceback" not in stderr
  assert stderr.strip().splitlines()[-1] == (
      f"interrupted by {signal.Signals(signum).name} while the program started: nothing "
      f"was written.")
  assert not (tmp_path / "run").exists()


def test_a_signal_during_a_cache_write_leaves_no_partial_file(tmp_path, monkeypatch):
  # A decoded dataset is hundreds of megabytes: a stop mid-write must not leave its
  # temporary file behind.
  savez = np.savez

  def savez_then_signal(f, **arrays):
    savez(f, **arrays)
    os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-write: before the fsync and rename

  monkeypatch.setattr(np, "savez", savez_then_signal)
  with pytest.raises(Interrupted), interrupt_on_signals():
    cache.cached_arrays("key", lambda: {"x": np.zeros(1000)}, str(tmp_path))
  assert os.listdir(tmp_path) == []
