"""What run records say and how readers interpret them: code version, statuses, metric
semantics, paper hooks, and a report package without import side effects.

How the sweep runner acts on the statuses is tested in ``test_sweep.py``."""

import os
import re
import subprocess
import sys

import pytest

from common import fileio
from common.report import paper, runs, sweep_report
from common.report.runs import Run, effective_status, lower_is_better
from common.train.environment import code_version, describe_environment
from tests.conftest import REPO, fake_run, hermetic_env, run_module
from tests.helpers import error_line


@pytest.mark.skipif(not os.path.exists(os.path.join(REPO, ".git")),
                    reason="the tests run from a copy that is not a git checkout")
def test_code_version_inside_this_checkout():
  code = code_version()
  assert re.fullmatch(r"[0-9a-f]{40}", code["commit"]), code
  assert isinstance(code["dirty"], bool) and code["describe"]
  assert code_version(REPO) == code
  assert describe_environment()["code"] == code


def test_code_version_outside_a_checkout_is_unknown(tmp_path):
  unknown = {"commit": "unknown", "dirty": None, "describe": None}
  assert code_version(str(tmp_path)) == unknown
  assert code_version(str(tmp_path / "missing")) == unknown
  # A folder inside some checkout (a wheel installed into a venv that lives in a checkout)
  # must not be given that checkout's commit.
  assert code_version(os.path.join(REPO, "tests")) == unknown


@pytest.mark.parametrize("status, expected", [
    ({"status": "done"}, "done"),
    ({"status": "running", "message": "training"}, "running"),
    ({"status": "diverged", "message": "non-finite training loss at epoch 3"}, "diverged"),
    ({"status": "interrupted", "message": "SIGTERM"}, "interrupted"),
    ({"status": "failed", "message": "ValueError: x"}, "failed"),
    ({"status": "failed", "message": ""}, "failed"),
    ({}, "unknown"),
])
def test_effective_status(status, expected):
  assert effective_status(status) == expected


def test_metric_semantics_come_from_the_recorded_task(tmp_path):
  accuracy = Run.load(fake_run(str(tmp_path / "acc"), "GloNet", 6, 0, 0.9))
  assert accuracy.primary_metric == "accuracy" and not accuracy.lower_is_better("accuracy")
  assert accuracy.lower_is_better("loss")
  loss = Run.load(fake_run(str(tmp_path / "loss"), "GloNet", 6, 0, 0.9, task=("loss", "min")))
  assert loss.primary_metric == "loss" and loss.metric_mode("loss") == "min"
  maxed = Run.load(fake_run(str(tmp_path / "max"), "GloNet", 6, 0, 0.9, task=("mse", "max")))
  assert not maxed.lower_is_better("mse")  # what the run recorded, whatever the name
  assert lower_is_better("top1", "min") and lower_is_better("loss")
  assert not lower_is_better("accuracy") and not lower_is_better("loss", "max")
  summary = sweep_report.aggregate([loss])
  assert summary["metric"] == "loss" and summary["metric_mode"] == "min"


def test_paper_hooks_are_found_by_experiment_name():
  hooks = paper.load_hooks(["resnet_sgemm", "linear_mnist", "fake", "?", "os", "../x", "a.b"])
  assert list(hooks) == ["resnet_sgemm"]
  assert hooks["resnet_sgemm"].__name__ == "resnet_sgemm.paper"


def test_sgemm_sweep_gets_its_table1_through_the_hook(tmp_path):
  root = str(tmp_path / "sweep")
  for label, seconds in (("GloNet", 2.0), ("ResNet", 4.0)):
    fake_run(root, label, 50, 0, 0.9, seconds=seconds, experiment="resnet_sgemm")
  out = sweep_report.render_sweep(root)
  summary = fileio.read_json(out["summary"])
  assert summary["experiments"] == ["resnet_sgemm"]
  rows = {row[0]: row for row in summary["paper"]["resnet_sgemm"]["table1"][1:]}
  assert rows[50][1:4] == ["4.00", "2.00", "0.50"]
  assert "Paper Table 1 analogue" in open(out["markdown"]).read()
  assert os.path.getsize(os.path.join(root, "sweep_seconds_per_epoch.png")) > 5000


def test_a_sweep_report_never_mixes_experiments(tmp_path):
  # `--include` of another experiment's runs once rendered one garbled report.
  fake_run(str(tmp_path / "a"), "GloNet", 6, 0, 0.9, experiment="linear_mnist")
  fake_run(str(tmp_path / "b"), "GloNet", 6, 0, 0.9, experiment="resnet_sgemm")
  proc = run_module("common.report", f"--sweep={tmp_path / 'a'}", f"--include={tmp_path / 'b'}")
  assert "belong to 2 experiments (linear_mnist, resnet_sgemm); a sweep report compares the " \
         "runs of one" in error_line(proc)
  assert not os.path.exists(tmp_path / "a" / "sweep_report.pdf")


def test_a_sweep_without_hooks_has_no_paper_section(tmp_path):
  root = str(tmp_path / "sweep")
  fake_run(root, "GloNet", 6, 0, 0.9)
  out = sweep_report.render_sweep(root)
  assert "paper" not in fileio.read_json(out["summary"])
  assert "Table 1" not in open(out["markdown"]).read()
  assert not os.path.exists(os.path.join(root, "sweep_seconds_per_epoch.png"))


def test_importing_the_report_keeps_the_matplotlib_backend():
  code = ("import sys, matplotlib; matplotlib.use('svg'); import common.report, common.sweep; "
          "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
          "assert 'matplotlib.pyplot' not in sys.modules")
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=hermetic_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]


def test_statuses_and_labels_are_consistent():
  assert set(runs.OUTCOMES) <= set(runs.ENDED)
  assert set(runs.STATUS_LABELS) == set(runs.ENDED) - {runs.DONE}
