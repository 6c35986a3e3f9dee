"""Damaged checkpoints are never restored silently: checksums, fallback, clear failure."""

import os

import pytest

from common import fileio
from common.errors import RunDirError
from common.train.checkpoint import MANIFEST, Checkpointer
from common.train.restore import load_trained_state
from tests.helpers import math_only, run_tiny, tiny_config


def _largest_file(step_dir: str) -> str:
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir) for f in fs if f != MANIFEST]
  return max(files, key=os.path.getsize)


def _flip_one_bit(path: str) -> None:
  with open(path, "r+b") as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0x01]))


def _truncate(path: str) -> None:
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def _drop_record(path: str) -> None:
  os.remove(os.path.join(path, MANIFEST))


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["bit", "truncated", "record", "record_and_bit"])
# Orbax reads shards in coroutines; when a damaged shard fails the restore, the ones still
# pending are dropped and their exceptions reach the garbage collector, not the run.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_damaged_latest_checkpoint_is_named_and_the_previous_one_resumes(
    tmp_path, damage, caplog):
  straight, _ = run_tiny(tiny_config(tmp_path / "a"))
  run, _ = run_tiny(tiny_config(tmp_path / "b"))
  step = os.path.join(run, "checkpoints", "3")
  with Checkpointer(os.path.join(run, "checkpoints")) as ckpt:
    assert ckpt.verify(3) is None and ckpt.verify(2) is None
  if damage == "bit":
    _flip_one_bit(_largest_file(step))
  elif damage == "truncated":
    _truncate(_largest_file(step))
  elif damage == "record":  # a kill between orbax's commit and the record: never checked
    _drop_record(step)
  else:  # no record, and a file orbax cannot read
    _drop_record(step)
    _truncate(_largest_file(step))
  with Checkpointer(os.path.join(run, "checkpoints")) as ckpt:
    assert ckpt.verify(3) is not None
  caplog.set_level("WARNING")
  run_tiny(tiny_config(tmp_path / "b"))  # the same command again
  warnings = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
  assert len(warnings) == 1 and "epoch 3" in warnings[0] and "from epoch 2" in warnings[0]
  assert os.listdir(os.path.join(run, "checkpoints_damaged"))  # kept for inspection
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(os.path.join(run, "metrics.jsonl"))
  assert len(b) == 3 and math_only(a) == math_only(b)  # epoch 3 redone, exactly
  assert fileio.read_json(os.path.join(run, "status.json"))["status"] == "done"
  with Checkpointer(os.path.join(run, "checkpoints")) as ckpt:
    assert ckpt.verify(3) is None


def test_a_first_save_cut_short_before_its_record_trains_the_run_from_its_start(tmp_path):
  """A kill -9 between orbax's commit of epoch 1 and its record: nothing to resume from
  that was checked, so the run starts again, and ends as a straight run."""
  straight, _ = run_tiny(tiny_config(tmp_path / "a", epochs=1))
  run, _ = run_tiny(tiny_config(tmp_path / "b", epochs=1))
  _drop_record(os.path.join(run, "checkpoints", "1"))
  os.remove(os.path.join(run, "metrics.jsonl"))  # written after the record
  run_tiny(tiny_config(tmp_path / "b", epochs=1))
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  assert math_only(a) == math_only(fileio.read_jsonl(os.path.join(run, "metrics.jsonl")))
  assert os.listdir(os.path.join(run, "checkpoints_damaged"))
  with Checkpointer(os.path.join(run, "checkpoints")) as ckpt:
    assert ckpt.verify(1) is None


def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
  run, _ = run_tiny(tiny_config(tmp_path))
  for epoch in (2, 3):
    _flip_one_bit(_largest_file(os.path.join(run, "checkpoints", str(epoch))))
  with pytest.raises(RunDirError, match=r"no intact checkpoint .*epoch 3: .*epoch 2: .*Move"):
    run_tiny(tiny_config(tmp_path))
  assert fileio.read_json(os.path.join(run, "status.json"))["status"] == "failed"


def test_analysis_uses_the_newest_intact_checkpoint_and_leaves_the_run_as_it_is(tmp_path):
  config = tiny_config(tmp_path)
  run, _ = run_tiny(config)
  _flip_one_bit(_largest_file(os.path.join(run, "checkpoints", "3")))
  from common.models import DENSE_MODELS, build_from_config, canonical_config  # noqa: PLC0415
  model, _, _ = build_from_config(canonical_config(config, DENSE_MODELS), 4, DENSE_MODELS)
  _, epoch = load_trained_state(run, model, (20,))
  assert epoch == 2 and os.path.exists(os.path.join(run, "checkpoints", "3"))
  with pytest.raises(RunDirError, match="epoch 3 .* is damaged"):
    load_trained_state(run, model, (20,), epoch=3)


def _run_with_extra(config, extra):
  from common.data import fake_classification  # noqa: PLC0415
  from common.experiment import default_hooks  # noqa: PLC0415
  from common.models import DENSE_MODELS, build_from_config, canonical_config  # noqa: PLC0415
  from common.train import Classification, run_experiment  # noqa: PLC0415
  config = canonical_config(config, DENSE_MODELS)
  model, name, info = build_from_config(config, 4, DENSE_MODELS)
  dataset = fake_classification(320, 100, 130, seed=0)
  return run_experiment(config, model, name, dataset, Classification(4),
                        extra_config={"model": info}, extra_files=extra,
                        hooks=default_hooks(config, model, dataset, Classification(4)))


def test_a_run_directory_is_complete_or_not_begun(tmp_path, monkeypatch):
  """Issue 13.4: the experiment's files are written before config.json (a start cut
  between them is started again), and a resumed run rewrites any that are missing."""
  from common.train import rundir  # noqa: PLC0415
  extra = {"scaler.json": {"mean": [1.0], "std": [2.0]}}
  config = tiny_config(tmp_path, epochs=2)

  def killed(self, record):
    raise KeyboardInterrupt

  monkeypatch.setattr(rundir.RunDir, "write_config", killed)
  with pytest.raises(KeyboardInterrupt):
    _run_with_extra(config, extra)
  run = tmp_path / "run"
  assert os.path.exists(run / "scaler.json") and not os.path.exists(run / "config.json")
  monkeypatch.undo()
  _run_with_extra(config, extra)  # the same command starts the run over
  assert fileio.read_json(run / "status.json")["status"] == "done"
  os.remove(run / "scaler.json")  # as a kill in the old order (config first) left it
  _run_with_extra(config, extra)
  assert fileio.read_json(run / "scaler.json") == extra["scaler.json"]


@pytest.mark.slow
def test_a_full_disk_during_a_save_is_one_clear_failure_and_the_rerun_finishes_equal(
    tmp_path, monkeypatch):
  """Issue 13.3, with the failure orbax raises on a full disk (tensorstore's ValueError
  carrying the OS error code). test_full_disk.py fills a real file system."""
  import orbax.checkpoint as ocp  # noqa: PLC0415

  from common.errors import StorageError  # noqa: PLC0415
  straight, _ = run_tiny(tiny_config(tmp_path / "a"))
  original = ocp.CheckpointManager.save

  def full_disk(self, step, *args, **kwargs):
    if step == 2:
      os.makedirs(os.path.join(str(self.directory), "2.orbax-checkpoint-tmp", "state"))
      raise ValueError('RESOURCE_EXHAUSTED: Error writing "x": Failed to write 4539 bytes '
                       "to file 21: No space left on device [os_error_code='28']")
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
  with pytest.raises(StorageError, match=r"epoch 2 .*: no space left on device; the "
                                         r"checkpoint of epoch 1 is intact\. Free space"):
    run_tiny(tiny_config(tmp_path / "b"))
  run = tmp_path / "b" / "run"
  assert fileio.read_json(run / "status.json")["status"] == "failed"
  assert os.listdir(run / "checkpoints") == ["1"]  # no temporary folder
  assert not [n for n in os.listdir(run) if ".tmp." in n]
  monkeypatch.undo()
  run_tiny(tiny_config(tmp_path / "b"))  # space freed: the same command
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(run / "metrics.jsonl")
  assert math_only(a) == math_only(b)


def test_storage_failures_are_recognised_through_wrapping():
  from common.train.checkpoint import storage_failure  # noqa: PLC0415
  assert storage_failure(OSError(28, "No space left on device")) == "no space left on device"
  assert storage_failure(OSError(122, "Disk quota exceeded")) == "disk quota exceeded"
  try:
    try:
      raise OSError(30, "Read-only file system")
    except OSError as inner:
      raise RuntimeError("save failed") from inner
  except RuntimeError as outer:
    assert storage_failure(outer) == "read-only file system"
  assert storage_failure(ValueError("shape mismatch")) is None
