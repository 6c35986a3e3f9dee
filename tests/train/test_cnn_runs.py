"""A tiny augmented CNN run end to end: data parallelism, kill -9 and resume, records."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from common import fileio
from common.ops import native
from common.train import TIMING_KEYS
from tests.conftest import REPO, hermetic_env

# Whole CNN runs in child processes, killed and resumed: minutes; CI runs them.
pytestmark = pytest.mark.slow


_MODULE = "tests.train.tiny_cnn_run"


def _math_only(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def _run(workdir, devices: int = 1, *args: str) -> dict:
  env = {**hermetic_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  proc = subprocess.run([sys.executable, "-m", _MODULE, str(workdir), *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_two_devices_match_one_for_an_augmented_batch_norm_cnn(tmp_path):
  """Batch statistics over the whole batch, augmentation keyed by step, not by device."""
  one = _run(tmp_path / "one", 1, "GloNet8", "1")
  two = _run(tmp_path / "two", 2, "GloNet8", "1")
  assert one["devices"] == 1 and two["devices"] == 2
  for key in ("train_loss", "val_loss", "test_loss", "test_accuracy"):
    np.testing.assert_allclose(two["final"][key], one["final"][key], rtol=2e-4, err_msg=key)


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path):
  straight = tmp_path / "straight"
  _run(straight, 1, "GloNet8", "4")
  killed = tmp_path / "killed"
  child = subprocess.Popen([sys.executable, "-m", _MODULE, str(killed), "GloNet8", "4"],
                           cwd=REPO, env=hermetic_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (killed / "checkpoints" / "1").exists():  # epoch 1 is durable; kill after it
    assert child.poll() is None and time.time() < deadline, "run ended before it was killed"
    time.sleep(0.01)
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  assert not (killed / "checkpoints" / "4").exists()
  _run(killed, 1, "GloNet8", "4")
  a = fileio.read_jsonl(straight / "metrics.jsonl")
  b = fileio.read_jsonl(killed / "metrics.jsonl")
  assert len(a) == 4 and _math_only(a) == _math_only(b)
  assert fileio.read_json(killed / "status.json")["status"] == "done"


def _default_signals() -> None:
  """In the child: SIGINT and SIGTERM as a terminal gives them, even when the test runner
  was started in the background (which ignores SIGINT, and an ignored signal stays
  ignored by design)."""
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _start_and_wait_for_epoch_1(workdir, epochs: str) -> subprocess.Popen:
  child = subprocess.Popen([sys.executable, "-m", _MODULE, str(workdir), "GloNet8", epochs],
                           cwd=REPO, env=hermetic_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
  deadline = time.time() + 240
  while not (workdir / "checkpoints" / "1").exists():
    assert child.poll() is None and time.time() < deadline, "run ended before the signal"
    time.sleep(0.01)
  return child


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_run_cleanly_and_the_rerun_equals_an_uninterrupted_one(
    tmp_path, signum, code):
  """SIGTERM (a scheduler's preemption) and Ctrl-C: status interrupted with the signal's
  name, the report rendered, one line on stderr and no traceback, exit 128 + signum."""
  stopped = tmp_path / "stopped"
  child = _start_and_wait_for_epoch_1(stopped, "12")
  sent = time.time()
  child.send_signal(signum)
  _, stderr = child.communicate(timeout=120)
  assert child.returncode == code, stderr[-3000:]
  assert time.time() - sent < 60  # a tiny run's device calls are short: the stop is prompt
  assert "Traceback" not in stderr
  last = stderr.strip().splitlines()[-1]
  assert last.startswith(f"interrupted by {signal.Signals(signum).name}: ") and "rerun" in last
  status = fileio.read_json(stopped / "status.json")
  assert status["status"] == "interrupted"
  assert signal.Signals(signum).name in status["message"]
  assert (stopped / "training_report.pdf").exists()
  assert not (stopped / "checkpoints" / "12").exists()
  if signum != signal.SIGTERM:
    return  # resuming after the stop is the same for both signals: checked once
  _run(stopped, 1, "GloNet8", "12")
  _run(tmp_path / "straight", 1, "GloNet8", "12")
  a = fileio.read_jsonl(tmp_path / "straight" / "metrics.jsonl")
  b = fileio.read_jsonl(stopped / "metrics.jsonl")
  assert len(a) == 12 and _math_only(a) == _math_only(b)
  assert fileio.read_json(stopped / "status.json")["status"] == "done"


def test_the_run_records_its_code_version_execution_path_and_usage(tmp_path):
  _run(tmp_path / "run", 1, "ResNet8", "1")
  config = fileio.read_json(tmp_path / "run" / "config.json")
  assert config["schema_version"] == 3
  assert config["model"]["registry"] == "cifar" and config["model"]["family"] == "ResNet"
  xla = native.cpu_ops_path() == "xla"  # unrolled and loop-free for XLA's convolutions
  assert config["model"]["execution"] == {
      "backend": "cpu", "cpu_ops": native.cpu_ops_path(), "remat": False,
      "unrolled_scan": xla, "loop_free_steps": xla}
  code = config["environment"]["code"]
  assert len(code["commit"]) == 40 or code["commit"] == "unknown"
  summary = fileio.read_json(tmp_path / "run" / "summary.json")
  assert summary["selection_metric"] == "accuracy" and summary["selection_mode"] == "max"
  usage = fileio.read_json(tmp_path / "run" / "usage.json")
  assert usage["final"]["num_blocks"] == 3 and usage["final"]["stage_boundaries"] == [0, 1, 2]
  assert "estimated from" in usage["init"]["batch_stats"]


def test_a_resume_records_the_devices_it_ran_on(tmp_path):
  """Issue 13.8: a run resumed on another number of devices says so in config.json."""
  run = tmp_path / "run"
  _run(run, 1, "GloNet8", "1", "constant")
  _run(run, 2, "GloNet8", "2", "constant")  # trained one epoch further on two devices
  config = fileio.read_json(run / "config.json")
  assert len(config["environment"]["devices"]) == 1
  (resume,) = config["resumes"]
  assert len(resume["devices"]) == 2 and resume["code"] == config["environment"]["code"]
