"""Several processes, one run: two local processes with jax.distributed over the loopback
address (two fake CPU devices each) against one process with four devices."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common import fileio
from common.train import TIMING_KEYS
from tests.conftest import REPO, hermetic_env

_MODULE = "tests.train.multi_process_run"


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  return {**hermetic_env(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _start(workdir, epochs: int, processes: int, index: int, port: int) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, "-m", _MODULE, str(workdir), str(epochs), str(processes), str(index),
       str(port)], cwd=REPO, env=_env(4 // processes), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _run(workdir, epochs: int, processes: int) -> list[dict]:
  """Runs the processes of one run to the end; returns what each printed."""
  port = _free_port()
  children = [_start(workdir, epochs, processes, i, port) for i in range(processes)]
  outputs = []
  for child in children:
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-3000:]
    outputs.append(json.loads(out.strip().splitlines()[-1]))
  return outputs


def _math_only(records):
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


@pytest.mark.slow
def test_two_processes_equal_one_and_resume_after_one_is_killed(tmp_path):
  """Two processes (2 fake devices each) against one process with the same 4 devices and
  global batch; one of the two is killed mid-run, both are rerun and resume; then the run
  resumes once more in a single process."""
  epochs = 6
  (one,) = _run(tmp_path / "one", epochs, 1)
  assert one["processes"] == 1 and one["devices"] == 4

  two = tmp_path / "two"
  port = _free_port()
  children = [_start(two, epochs, 2, i, port) for i in range(2)]
  deadline = time.time() + 240
  while not (two / "checkpoints" / "2").exists():
    assert all(c.poll() is None for c in children) and time.time() < deadline
    time.sleep(0.02)
  children[1].send_signal(signal.SIGKILL)
  children[1].wait()
  try:  # process 0 fails its next collective; a scheduler would kill it next
    children[0].communicate(timeout=20)
  except subprocess.TimeoutExpired:
    children[0].kill()
    children[0].communicate()
  assert not (two / "checkpoints" / str(epochs)).exists()

  resumed = _run(two, epochs, 2)  # the same two commands again
  assert [r["processes"] for r in resumed] == [2, 2] and resumed[0]["devices"] == 4
  # Every process computes the same numbers (timings aside), those of the one process.
  assert _math_only([resumed[0]["final"]]) == _math_only([resumed[1]["final"]])
  for key in ("train_loss", "val_loss", "test_loss", "val_accuracy", "test_accuracy"):
    np.testing.assert_allclose(resumed[0]["final"][key], one["final"][key], rtol=1e-3,
                               err_msg=key)
  # One run directory, written by process 0 alone, that says how it ran.
  record = fileio.read_json(two / "config.json")
  assert record["environment"]["process_count"] == 2
  assert len(record["environment"]["devices"]) == 4
  assert fileio.read_json(two / "status.json")["status"] == "done"
  assert len(fileio.read_jsonl(two / "metrics.jsonl")) == epochs
  assert os.path.exists(two / "training_report.pdf")

  # The two-process run resumes in one process (and records that it did).
  (more,) = _run(two, epochs + 1, 1)
  assert more["final"]["epoch"] == epochs + 1
  assert [r["process_count"] for r in fileio.read_json(two / "config.json")["resumes"]] == [
      2, 1]
