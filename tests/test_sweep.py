"""The sweep runner: a grid of points, skipping done ones, never hiding a refused one."""

import os

from common import fileio
from tests.conftest import run_module

GRID = ["--module=linear_mnist.train", "--models=GloNet MLP", "--depths=3", "--seeds=0"]


def test_sweep_runs_skips_and_reports(fake_mnist_root, tmp_path):
  root = tmp_path / "sweep"
  flags = [f"--data_dir={fake_mnist_root}", "--epochs=1", "--features=8", "--batch_size=1000",
           "--eval_batch_size=5000", "--tensorboard=false"]
  first = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags)
  assert first.returncode == 0, first.stderr[-3000:]
  for model in ("GloNet", "MLP"):
    status = fileio.read_json(root / model / "depth_3" / "seed_0" / "status.json")
    assert status["status"] == "done"
  assert (root / "sweep_report.pdf").stat().st_size > 10000
  metrics = root / "GloNet" / "depth_3" / "seed_0" / "metrics.jsonl"
  stamp = os.stat(metrics).st_mtime_ns

  again = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags)
  assert again.returncode == 0 and again.stderr.count("skip ") == 2
  assert os.stat(metrics).st_mtime_ns == stamp

  # Another command on the same points is not skipped: train.py refuses it (a cosine
  # schedule cannot change its length), and the sweep says so with its exit status.
  changed = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags[:1],
                       "--epochs=2", *flags[2:])
  assert changed.returncode == 1 and "exit 2" in changed.stderr
  log = (root / "logs" / "GloNet_depth3_seed0.log").read_text()
  assert "cannot be resumed with these (epochs: 1 -> 2)" in log
