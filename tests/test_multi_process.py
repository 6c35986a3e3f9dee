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

_MODULE = "tests.multi_process_run"


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


def test_two_processes_equal_one_process_with_the_same_global_batch(tmp_path):
  (one,) = _run(tmp_path / "one", 3, 1)
  two = _run(tmp_path / "two", 3, 2)
  assert one["processes"] == 1 and one["devices"] == 4
  assert [o["processes"] for o in two] == [2, 2] and two[0]["devices"] == 4
  # Every process computes the same numbers (timings aside).
  assert _math_only([two[0]["final"]]) == _math_only([two[1]["final"]])
  for key in ("train_loss", "val_loss", "test_loss", "val_accuracy", "test_accuracy"):
    np.testing.assert_allclose(two[0]["final"][key], one["final"][key], rtol=5e-4,
                               err_msg=key)
  # One run directory, written by process 0 alone, that says how it ran.
  record = fileio.read_json(tmp_path / "two" / "config.json")
  assert record["environment"]["process_count"] == 2
  assert len(record["environment"]["devices"]) == 4
  assert fileio.read_json(tmp_path / "two" / "status.json")["status"] == "done"
  assert len(fileio.read_jsonl(tmp_path / "two" / "metrics.jsonl")) == 3
  assert os.path.exists(tmp_path / "two" / "training_report.pdf")
  # The two-process run resumes in one process (and records that it did).
  (more,) = _run(tmp_path / "two", 4, 1)
  assert more["final"]["epoch"] == 4
  (resume,) = fileio.read_json(tmp_path / "two" / "config.json")["resumes"]
  assert resume["process_count"] == 1


@pytest.mark.slow
def test_killing_one_process_and_rerunning_both_resumes(tmp_path):
  epochs = 30
  straight = _run(tmp_path / "straight", epochs, 2)
  killed = tmp_path / "killed"
  port = _free_port()
  children = [_start(killed, epochs, 2, i, port) for i in range(2)]
  deadline = time.time() + 240
  while not (killed / "checkpoints" / "2").exists():
    assert all(c.poll() is None for c in children) and time.time() < deadline
    time.sleep(0.02)
  children[1].send_signal(signal.SIGKILL)
  children[1].wait()
  try:  # process 0 fails its next collective; a scheduler would kill it next
    children[0].communicate(timeout=20)
  except subprocess.TimeoutExpired:
    children[0].kill()
    children[0].communicate()
  assert not (killed / "checkpoints" / str(epochs)).exists()
  assert fileio.read_json(killed / "status.json")["status"] in ("running", "failed")

  resumed = _run(killed, epochs, 2)  # the same two commands again
  assert resumed[0]["final"]["epoch"] == epochs
  assert fileio.read_json(killed / "status.json")["status"] == "done"
  a = _math_only(fileio.read_jsonl(tmp_path / "straight" / "metrics.jsonl"))
  b = _math_only(fileio.read_jsonl(killed / "metrics.jsonl"))
  assert len(a) == len(b) == epochs
  for ra, rb in zip(a, b, strict=True):
    for key in ra:
      np.testing.assert_allclose(rb[key], ra[key], rtol=1e-5, err_msg=f"{key} {ra['epoch']}")
  assert straight[0]["final"]["epoch"] == epochs
  assert len(fileio.read_json(killed / "config.json")["resumes"]) == 1
