"""A disk that fills up during a run: one error line, nothing more written, status failed.

On a real small file system (a tmpfs, where this process may mount one) and, where not,
with every write that needs new space failing once the disk is "full".
"""

import builtins
import errno
import os
import shlex
import subprocess
import sys

import pytest

from common import fileio
from common.train.checkpoint import Checkpointer
from tests.conftest import REPO, hermetic_env
from tests.helpers import error_line, train_main

ARGS = ["--model=GloNet", "--num_layers=3", "--features=16", "--batch_size=1000",
        "--eval_batch_size=2000", "--progress=false", "--allow_unofficial_data", "--epochs=3"]


def _fill(folder: str) -> None:
  """Writes ``folder/filler`` until the file system has no block left."""
  fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT, 0o644)
  try:
    for size in (1 << 20, 1 << 12, 1):
      try:
        while os.write(fd, b"\0" * size):
          pass
      except OSError as e:
        assert e.errno == errno.ENOSPC, e
  finally:
    os.close(fd)


def _files(run: str) -> dict[str, tuple[int, int]]:
  """Every file under ``run`` but its status, with size and modification time."""
  out = {}
  for dirpath, _, filenames in os.walk(run):
    for name in filenames:
      path = os.path.join(dirpath, name)
      if name != "status.json":
        stat = os.stat(path)
        out[os.path.relpath(path, run)] = (stat.st_size, stat.st_mtime_ns)
  return out


@pytest.fixture(params=["tmpfs", "simulated"])
def small_disk(request, tmp_path, monkeypatch):
  """``(folder, fill)``: a folder on a small file system and what fills it."""
  folder = tmp_path / "disk"
  folder.mkdir()
  if request.param == "simulated":
    full = []
    real_open = builtins.open

    def refusing_open(file, mode="r", *args, **kwargs):
      # Once full, only rewriting bytes a file already holds (mode r+) still works.
      if full and str(file).startswith(str(folder)) and set(mode) & set("wax"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
      return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    yield str(folder), lambda: full.append(True)
    return
  mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)],
                         capture_output=True, text=True, check=False)
  if mount.returncode:
    pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip()}")
  try:
    yield str(folder), lambda: _fill(str(folder))
  finally:
    subprocess.run(["umount", "-l", str(folder)], check=False)  # lazy: files may be open


@pytest.mark.slow
def test_a_disk_that_fills_up_ends_the_run_with_one_line_and_status_failed(
    small_disk, fake_mnist_root, monkeypatch, capfd):
  folder, fill = small_disk
  run = os.path.join(folder, "run")
  written = {}
  save = Checkpointer.save

  def save_then_fill(self, epoch, *args, **kwargs):
    save(self, epoch, *args, **kwargs)
    if epoch == 1:  # the disk fills up right after the first checkpoint
      fill()
      written.update(_files(run))

  monkeypatch.setattr(Checkpointer, "save", save_then_fill)
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}",
                    f"--workdir={run}", *ARGS)
  line = error_line(proc)
  assert "no space left on device" in line and "metrics.jsonl" in line, line
  assert "Free space, then rerun the same command to resume" in line
  captured = capfd.readouterr()
  assert "Traceback" not in captured.out + captured.err
  assert _files(run) == written  # nothing was written after the disk filled up
  status = fileio.read_json(os.path.join(run, "status.json"))
  assert status["status"] == "failed" and "no space left" in status["message"]

  # Space freed: the same command finishes the run.
  monkeypatch.undo()
  if os.path.exists(os.path.join(folder, "filler")):
    os.remove(os.path.join(folder, "filler"))
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}",
                    f"--workdir={run}", *ARGS)
  assert proc.returncode == 0, proc.stderr
  assert fileio.read_json(os.path.join(run, "status.json"))["status"] == "done"
  assert len(fileio.read_jsonl(os.path.join(run, "metrics.jsonl"))) == 3


@pytest.mark.slow
def test_a_file_size_limit_is_one_line_and_status_failed(fake_mnist_root, tmp_path):
  # `ulimit -f`: the first checkpoint's files pass the limit. Once 521 lines of orbax's
  # tracebacks and a status holding its raw text.
  run = tmp_path / "run"
  command = shlex.join([sys.executable, "-m", "linear_mnist.train",
                        f"--data_dir={fake_mnist_root}", f"--workdir={run}", *ARGS,
                        "--features=256"])
  proc = subprocess.run(["bash", "-c", f"ulimit -f 500 && exec {command}"], cwd=REPO,
                        env=hermetic_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2, proc.stderr[-3000:]
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, errors
  assert errors[0].startswith(f"error: cannot save the checkpoint of epoch 1 in "
                              f"{run}/checkpoints: file too large (the file-size limit, "
                              f"ulimit -f)"), errors[0]
  assert "Raise the file-size limit, then rerun the same command to resume" in errors[0]
  assert fileio.read_json(run / "status.json")["status"] == "failed"
  # Under load, the refused save's other writes can still fail on orbax's and tensorstore's
  # threads after the manager is closed, each with a traceback of asyncio's or orbax's
  # frames; none may come from this project's code.
  assert "/common/" not in proc.stderr.replace(str(fake_mnist_root), "")
