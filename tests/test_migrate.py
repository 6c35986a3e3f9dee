"""Run directories of format 2 (commit 6041609), migrated once, work with this version.

``tests/fixtures/legacy_runs/`` holds two tiny finished runs made by the last code that
recorded a flat config (see ``make_legacy_runs.py`` there). Unmigrated, every reader refuses
them with one line naming the command; on a migrated copy of each, today's code must
re-render the report, resume the run for one more epoch (the old checkpoint restores into
today's train state), recompute its usage and, for SGEMM, score new kernels with
``resnet_sgemm.predict``.
"""

import hashlib
import importlib.util
import json
import os
import re
import shutil

import numpy as np
import pytest

from common import fileio, migrate, recompute_usage
from common.errors import UserError
from common.train.checkpoint import MANIFEST, Checkpointer
from tests.conftest import run_module
from tests.helpers import error_line, train_main

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "legacy_runs")
REPORT_FILES = ("training_metrics.png", "layer_usage.png", "training_report.pdf")


def _load_generator():
  # The generator is a script beside the fixtures, not a package: it must also run against
  # the old code, so it imports nothing from this repository.
  spec = importlib.util.spec_from_file_location(
      "make_legacy_runs", os.path.join(FIXTURES, "make_legacy_runs.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


gen = _load_generator()

# name -> (train module, the flags the fixture was trained with)
RUNS = {
    gen.MNIST_RUN: ("linear_mnist.train", gen.MNIST_FLAGS),
    gen.SGEMM_RUN: ("resnet_sgemm.train", gen.SGEMM_FLAGS),
}
# The MNIST run in the quick test command, the SGEMM run too in the full one.
_ONE_QUICK = [gen.MNIST_RUN, pytest.param(gen.SGEMM_RUN, marks=pytest.mark.slow)]


def _read_json(path: str) -> dict:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _read_jsonl(path: str) -> list[dict]:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
  """Regenerated fake data of both runs, checked against the hashes their runs recorded."""
  root = str(tmp_path_factory.mktemp("legacy_data"))
  mnist_folder = os.path.join(root, "mnist")
  gen.write_fake_mnist(mnist_folder)
  recorded = _read_json(os.path.join(FIXTURES, gen.MNIST_RUN, "config.json"))["data"]["sha256"]
  assert {f: _sha256(os.path.join(mnist_folder, f)) for f in recorded} == recorded, (
      "the regenerated fake MNIST differs from the fixture run's: the run would refuse to "
      "resume")
  csv_path = gen.write_fake_sgemm_csv(root)
  recorded = _read_json(os.path.join(FIXTURES, gen.SGEMM_RUN, "config.json"))["data"]["sha256"]
  assert _sha256(csv_path) == recorded, "the regenerated fake SGEMM CSV differs from the run's"
  return root


def _copy_run(name: str, tmp_path, migrated: bool = True) -> str:
  """A writable copy of a fixture run (tests must never modify the fixture itself),
  migrated in process unless told otherwise."""
  path = str(tmp_path / name)
  shutil.copytree(os.path.join(FIXTURES, name), path)
  if migrated:
    assert migrate.migrate(path) == ["config.json"]
  return path


@pytest.mark.parametrize("name", sorted(RUNS))
def test_an_unmigrated_run_is_refused_with_the_command_that_migrates_it(name, data_root,
                                                                       tmp_path):
  run = _copy_run(name, tmp_path, migrated=False)
  before = open(os.path.join(run, "config.json")).read()
  module, train_flags = RUNS[name]
  proc = train_main(module, *train_flags, f"--data_dir={data_root}", f"--workdir={run}")
  assert f"rewrite its records once with `python -m common.migrate {run}`" in error_line(proc)
  assert open(os.path.join(run, "config.json")).read() == before


def test_the_command_migrates_once_and_keeps_the_originals(tmp_path):
  runs = [_copy_run(name, tmp_path, migrated=False) for name in sorted(RUNS)]
  original = fileio.read_json(os.path.join(runs[0], "config.json"))
  proc = run_module("common.migrate", *runs)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert fileio.read_json(os.path.join(runs[0], "config.json.bak")) == original
  record = fileio.read_json(os.path.join(runs[0], "config.json"))
  assert record["schema_version"] == 3 and record["task"]["selection_mode"] == "max"
  config = record["config"]
  assert (config["experiment"], config["model"]["name"], config["model"]["depth"],
          config["model"]["features"], config["optim"]["schedule"]) == (
              "linear_mnist", "GloNet", 4, 8, "constant")
  assert config["run"]["allow_unofficial_data"] is True
  assert "augment" not in config["data"]  # only the fields MNIST's config has
  assert migrate.migrate(runs[0]) == []  # already current
  (tmp_path / "not_a_run").mkdir()
  proc = run_module("common.migrate", str(tmp_path / "not_a_run"), runs[1])
  assert "nothing to migrate" in error_line(proc)


def test_checkpoints_from_before_checksums_get_their_records(tmp_path):
  run = _copy_run(gen.MNIST_RUN, tmp_path, migrated=False)
  checkpoints = os.path.join(run, "checkpoints")
  os.remove(os.path.join(checkpoints, "CHECKSUMMED"))  # as written before checksums
  for epoch in ("1", "2"):
    os.remove(os.path.join(checkpoints, epoch, MANIFEST))
  assert migrate.migrate(run) == [f"checkpoints/{e}/{MANIFEST}" for e in ("1", "2")] + [
      "config.json"]
  with Checkpointer(checkpoints) as ckpt:
    assert ckpt.verify(1) is None and ckpt.verify(2) is None


def test_fixture_is_pruned_and_small():
  for name in RUNS:
    names = os.listdir(os.path.join(FIXTURES, name))
    assert not [n for n in names if n.endswith((".png", ".pdf", ".lock"))], names
    assert "tensorboard" not in names and "checkpoints" in names
  total = sum(os.path.getsize(os.path.join(d, f))
              for d, _, files in os.walk(FIXTURES) for f in files)
  assert total < 2_000_000, total


@pytest.mark.parametrize("name", _ONE_QUICK)
def test_report_rerenders(name, tmp_path):
  run = _copy_run(name, tmp_path)
  proc = run_module("common.report", run)
  assert proc.returncode == 0, proc.stderr[-3000:]
  for fname in REPORT_FILES:
    path = os.path.join(run, fname)
    assert os.path.exists(path) and os.path.getsize(path) > 0, fname


@pytest.mark.parametrize("name", _ONE_QUICK)
def test_resume_trains_one_more_epoch(name, data_root, tmp_path):
  run = _copy_run(name, tmp_path)
  module, train_flags = RUNS[name]
  old_metrics = _read_jsonl(os.path.join(run, "metrics.jsonl"))
  assert [r["epoch"] for r in old_metrics] == [1, 2]
  args = [f for f in train_flags if not f.startswith("--epochs=")]
  proc = train_main(module, *args, "--epochs=3", f"--data_dir={data_root}",
                    f"--workdir={run}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _read_json(os.path.join(run, "status.json"))["status"] == "done"
  metrics = _read_jsonl(os.path.join(run, "metrics.jsonl"))
  assert [r["epoch"] for r in metrics] == [1, 2, 3]
  assert metrics[:2] == old_metrics  # the old epochs are kept, not retrained
  assert np.isfinite(metrics[2]["train_loss"]) and np.isfinite(metrics[2]["test_loss"])


def test_sgemm_predict(tmp_path):
  run = _copy_run(gen.SGEMM_RUN, tmp_path)
  kernels = tmp_path / "kernels.csv"
  kernels.write_text(gen.fake_sgemm_csv_text(rows=5, seed=9))
  out = tmp_path / "pred.csv"
  proc = run_module("resnet_sgemm.predict", f"--workdir={run}", f"--input={kernels}",
                    f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  header, *lines = out.read_text().strip().split("\n")
  assert header.endswith("predicted_log_ms,predicted_ms") and len(lines) == 5
  for line in lines:
    log_ms, ms = map(float, line.split(",")[-2:])
    assert np.isfinite(log_ms) and np.isfinite(ms) and ms > 0


@pytest.mark.parametrize("name", _ONE_QUICK)
def test_usage_is_recomputed_from_the_checkpoint(name, data_root, tmp_path):
  """The old run's usage, recomputed by today's code, equals what it wrote, plus the new
  fields (blocks_needed, stage boundaries); the initial state is rebuilt from the seed."""
  run = _copy_run(name, tmp_path)
  old = _read_json(os.path.join(run, "usage.json"))
  new = recompute_usage.recompute(run, data_root)
  assert new == _read_json(os.path.join(run, "usage.json"))
  for when in ("init", "final"):
    np.testing.assert_allclose(new[when]["l1"], old[when]["l1"], rtol=1e-5, err_msg=when)
    np.testing.assert_allclose(new[when]["share"], old[when]["share"], rtol=1e-4, atol=1e-7)
    assert new[when]["blocks_used"] == old[when]["blocks_used"]
    assert new[when]["stage_boundaries"] == [0]
    assert 1 <= new[when]["blocks_needed"] <= new[when]["num_blocks"]
  assert os.path.getsize(os.path.join(run, "layer_usage.png")) > 0


@pytest.mark.parametrize("damage,shown", [
    ("no_folder", "has no checkpoints/ folder (removed, or not copied with the run)"),
    ("no_last", "last epoch (2) is damaged or missing; the newest intact one, of epoch 1,"),
])
def test_usage_is_not_recomputed_without_the_last_checkpoint(data_root, tmp_path, damage,
                                                               shown):
  # Once: the latest intact (older) epoch's usage written as the usage after training, and
  # a missing folder created empty.
  run = _copy_run(sorted(RUNS)[0], tmp_path)
  checkpoints = os.path.join(run, "checkpoints")
  shutil.rmtree(checkpoints if damage == "no_folder" else os.path.join(checkpoints, "2"))
  before = open(os.path.join(run, "usage.json")).read()
  with pytest.raises(UserError, match=re.escape(shown)):
    recompute_usage.recompute(run, data_root)
  assert open(os.path.join(run, "usage.json")).read() == before
  assert os.path.exists(checkpoints) == (damage != "no_folder")


@pytest.mark.parametrize("status,shown", [
    ('{"status": "interrupted", "message": "interrupted by SIGTERM"}', "status: interrupted)"),
    ('{"status": "do', "status: unknown; status.json is unreadable (JSONDecodeError))"),  # torn
])
def test_usage_of_an_unfinished_run_is_not_recomputed(data_root, tmp_path, status, shown):
  # Its latest checkpoint is not the state after training: the report would call it so.
  run = _copy_run(sorted(RUNS)[0], tmp_path)
  with open(os.path.join(run, "status.json"), "w") as f:
    f.write(status)
  before = open(os.path.join(run, "usage.json")).read()
  with pytest.raises(UserError, match=re.escape(f"{run} is not finished ({shown}")):
    recompute_usage.recompute(run, data_root)
  assert open(os.path.join(run, "usage.json")).read() == before
  assert "give one or more run directories" in error_line(run_module("common.recompute_usage"))


@pytest.mark.parametrize("content,error", [('{"config": {"mod', "JSONDecodeError"),  # cut short
                                           ('{"config": null}', "its config is not a JSON object"),
                                           ("[]", "not a JSON object")])
def test_usage_of_a_run_with_a_damaged_config_is_one_error_line(data_root, tmp_path, content,
                                                                  error):
  run = _copy_run(sorted(RUNS)[0], tmp_path)
  with open(os.path.join(run, "config.json"), "w") as f:
    f.write(content)
  with pytest.raises(UserError,
                     match=re.escape(f"config.json is unreadable or not a run's config ({error})")):
    recompute_usage.recompute(run, data_root)
