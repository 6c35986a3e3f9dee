"""`python -m reproduce`: claims judged from run directories, and the command end to end."""

import os
import subprocess
import sys

import pytest

from common import fileio
from reproduce import report
from reproduce.claims import FAILS, HOLDS, NOT_MEASURED
from tests.conftest import REPO, fake_run, hermetic_env


def _verdicts(root) -> dict[str, dict[str, str]]:
  return {c["key"]: c for c in fileio.read_json(os.path.join(root, "claims.json"))["claims"]}


def test_each_claim_is_judged_from_the_runs_or_says_how_to_measure_it(tmp_path):
  out = str(tmp_path / "out")
  mnist = os.path.join(out, "linear_mnist")
  for label, depth, acc in [("GloNet", 5, 0.95), ("GloNet", 50, 0.94), ("MLP", 5, 0.95),
                            ("MLP", 50, 0.11)]:
    fake_run(mnist, label, depth, 0, acc, experiment="linear_mnist")
  cifar = os.path.join(out, "resnet_cifar10")
  fake_run(cifar, "GloNet", 20, 0, 0.80, experiment="resnet_cifar10")
  fake_run(cifar, "ResNet", 20, 0, 0.86, experiment="resnet_cifar10")
  damaged = os.path.join(mnist, "GloNet", "depth_9", "seed_0")
  os.makedirs(damaged)
  with open(os.path.join(damaged, "config.json"), "w") as f:
    f.write("{")
  fake_run(os.path.join(out, "resnet_imagenette"), "GloNet", 18, 0, 0.5,
           experiment="linear_mnist")  # a foreign run where Imagenette's belong

  paths = report.render(out, "smoke")
  verdicts = _verdicts(out)
  assert verdicts["mnist_depth"]["verdict"] == HOLDS
  assert verdicts["mnist_depth"]["ours"] == "GloNet5 95.0% (1 seed), GloNet50 94.0% (1 seed)"
  assert verdicts["mnist_plain"]["verdict"] == HOLDS
  assert verdicts["cifar_glonet20"]["verdict"] == FAILS
  # The smoke grid has one CIFAR-10 depth: the cpu budget's grid (in its own folder, as
  # its runs differ) can judge a depth claim.
  assert verdicts["cifar_depth"]["verdict"] == NOT_MEASURED
  assert verdicts["cifar_depth"]["ours"].endswith(
      "python -m reproduce --budget=cpu --experiments=resnet_cifar10")
  # No SGEMM run yet: this budget's grid measures it once run.
  assert verdicts["sgemm_time"]["ours"].endswith(
      f"python -m reproduce --budget=smoke --experiments=resnet_sgemm --root={out}")
  assert verdicts["imagenette_glonet18"]["verdict"] == NOT_MEASURED
  problems = fileio.read_json(paths["json"])["problems"]
  assert any(damaged in p and "unreadable" in p for p in problems), problems
  assert sum(damaged in p for p in problems) == 1
  assert any("holds runs of linear_mnist, not of resnet_imagenette" in p for p in problems)
  markdown = open(paths["markdown"]).read()
  assert "| A fully connected GloNet keeps its test accuracy as depth grows. |" in markdown
  assert os.path.getsize(paths["pdf"]) > 10_000


@pytest.mark.slow
def test_the_smoke_budget_runs_then_collects_without_training(fake_mnist_root, tmp_path):
  out = tmp_path / "out"
  command = [sys.executable, "-m", "reproduce", f"--root={out}", "--experiments=linear_mnist",
             f"--data_dir={fake_mnist_root}", "--", "--allow_unofficial_data"]
  proc = subprocess.run(command, cwd=REPO, env=hermetic_env(), capture_output=True,
                        text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == str(out / "reproduction.pdf")
  verdicts = _verdicts(out)
  assert {verdicts[k]["verdict"] for k in ("mnist_depth", "mnist_plain")} <= {HOLDS, FAILS}
  assert verdicts["sgemm_time"]["verdict"] == NOT_MEASURED
  statuses = [fileio.read_json(os.path.join(d, "status.json"))["status"]
              for d, _, files in os.walk(out / "linear_mnist") if "status.json" in files]
  assert statuses == ["done"] * 4
  os.remove(out / "reproduction.pdf")
  proc = subprocess.run([*command[:3], "--collect", *command[3:]], cwd=REPO,
                        env=hermetic_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "run  " not in proc.stderr  # nothing trained
  assert (out / "reproduction.pdf").exists()
