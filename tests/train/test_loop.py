"""The epoch loop and the run directory: resume, failure, locking, the file contract."""

import json
import os
import re
import shutil

import jax
import numpy as np
import pytest

from common import fileio
from common.data import Dataset, Split, fake_classification
from common.errors import ConfigError, DeviceMemoryError, RunDirError
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.report import run_report
from common.report.runs import Run
from common.train import Classification, LossExplodedError, NonFiniteLossError, rundir
from common.train.checkpoint import Checkpointer
from common.train.loop import check_bounded, nonfinite_message
from common.train.restore import load_config
from common.train.trainer import Trainer
from tests.helpers import math_only, run_tiny, tiny_config


def test_run_directory_contract(tmp_path):
  path, summary = run_tiny(tiny_config(tmp_path))
  files = set(os.listdir(path))
  assert {"config.json", "metrics.jsonl", "summary.json", "status.json", "checkpoints",
          "tensorboard"} <= files
  records = fileio.read_jsonl(os.path.join(path, "metrics.jsonl"))
  assert [r["epoch"] for r in records] == [1, 2, 3]
  for key in ("train_loss", "val_loss", "test_loss", "train_accuracy", "val_accuracy",
              "test_accuracy", "learning_rate", "train_seconds"):
    assert all(np.isfinite(r[key]) for r in records), key
  assert records[0]["learning_rate"] > records[-1]["learning_rate"]  # cosine decays
  config = fileio.read_json(os.path.join(path, "config.json"))
  assert config["config"]["train"]["seed"] == 0 and config["environment"]["packages"]["jax"]
  assert config["data"]["sizes"] == {"train": 320, "val": 100, "test": 130}
  # The MLP families' execution path at the training batch size (a narrow GloNet without
  # batch norm: feature-major layout and the custom-VJP chain), recorded as taken.
  assert config["model"]["execution"] == {
      "backend": "cpu", "feature_major": True, "custom_backward": True, "remat": False}
  assert fileio.read_json(os.path.join(path, "status.json"))["status"] == "done"
  assert summary["num_params"] > 0 and summary["compile_seconds"] > 0
  assert summary["epochs_completed"] == 3
  assert summary["best"]["val_accuracy"] == max(r["val_accuracy"] for r in records)
  assert os.listdir(os.path.join(path, "tensorboard"))


@pytest.mark.parametrize("model", [  # ResNet: batch-norm statistics too
    "GloNet", pytest.param("ResNet", marks=pytest.mark.slow)])
def test_resume_ends_with_the_same_metrics_as_an_uninterrupted_run(tmp_path, monkeypatch,
                                                                   model):
  straight, _ = run_tiny(tiny_config(tmp_path / "a", model=model))
  # Crash right after the first checkpoint, then run the same command again.
  original = Checkpointer.save

  def save_then_crash(self, epoch, state, meta):
    original(self, epoch, state, meta)
    if epoch == 1:
      raise KeyboardInterrupt

  monkeypatch.setattr(Checkpointer, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    run_tiny(tiny_config(tmp_path / "b", model=model))
  status = fileio.read_json(tmp_path / "b" / "run" / "status.json")
  assert status["status"] == "interrupted" and "resume" in status["message"]
  monkeypatch.setattr(Checkpointer, "save", original)
  resumed, _ = run_tiny(tiny_config(tmp_path / "b", model=model))
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(os.path.join(resumed, "metrics.jsonl"))
  assert len(b) == 3 and math_only(a) == math_only(b)


def test_a_constant_rate_run_can_be_extended(tmp_path):
  straight, _ = run_tiny(tiny_config(tmp_path / "a", lr_schedule="constant"))
  run_tiny(tiny_config(tmp_path / "b", lr_schedule="constant", epochs=2))
  extended, _ = run_tiny(tiny_config(tmp_path / "b", lr_schedule="constant", epochs=3))
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(os.path.join(extended, "metrics.jsonl"))
  assert math_only(a) == math_only(b)


@pytest.mark.slow
def test_a_damaged_usage_file_is_computed_again_on_resume(tmp_path):
  # It once stopped the resumed run with a JSON traceback.
  path, _ = run_tiny(tiny_config(tmp_path, lr_schedule="constant", epochs=1), hooks=True)
  with open(os.path.join(path, "usage.json"), "w") as f:
    f.write('{"init": {"l1"')  # cut short
  _, summary = run_tiny(tiny_config(tmp_path, lr_schedule="constant", epochs=2), hooks=True)
  assert summary["epochs_completed"] == 2
  usage = fileio.read_json(os.path.join(path, "usage.json"))
  assert usage["init"]["epoch"] == 0 and usage["final"]["epoch"] == 2


def test_a_cosine_run_cannot_change_its_length(tmp_path):
  run_tiny(tiny_config(tmp_path, epochs=1))
  with pytest.raises(RunDirError, match=r"epochs: 1 -> 3"):
    run_tiny(tiny_config(tmp_path, epochs=3))


def test_a_finished_run_is_not_trained_again(tmp_path):
  # Nor rebuilt: a rebuild rewrote the summary's compile timings, and a kill during it
  # marked the finished run interrupted.
  config = tiny_config(tmp_path, epochs=2)
  path, _ = run_tiny(config, hooks=True)
  names = (rundir.METRICS, rundir.SUMMARY, rundir.STATUS, rundir.CONFIG, "usage.json")
  before = {name: open(os.path.join(path, name)).read() for name in names}
  _, summary = run_tiny(config, hooks=True)
  assert {name: open(os.path.join(path, name)).read() for name in names} == before
  assert summary["epochs_completed"] == 2


@pytest.mark.parametrize("damaged", [rundir.STATUS, rundir.SUMMARY])
@pytest.mark.parametrize("content", ['{"status": "do', "null"])  # cut short; not a record
def test_a_finished_run_with_a_damaged_record_is_completed_again(tmp_path, damaged, content):
  # Rewritten by the rerun (its records say done again) instead of a JSON traceback.
  config = tiny_config(tmp_path, epochs=2)
  path, _ = run_tiny(config)
  metrics = open(os.path.join(path, rundir.METRICS)).read()
  with open(os.path.join(path, damaged), "w") as f:
    f.write(content)
  _, summary = run_tiny(config)
  assert summary["epochs_completed"] == 2
  assert fileio.read_json(os.path.join(path, rundir.STATUS))["status"] == "done"
  assert fileio.read_json(os.path.join(path, rundir.SUMMARY))["epochs_completed"] == 2
  # No epoch is trained again: a retrained epoch would record its own timings.
  assert open(os.path.join(path, rundir.METRICS)).read() == metrics


def test_resume_with_other_settings_is_refused(tmp_path):
  run_tiny(tiny_config(tmp_path, epochs=1))
  with pytest.raises(RunDirError, match=r"model.depth: 4 -> 6"):
    run_tiny(tiny_config(tmp_path, num_layers=6))


@pytest.mark.parametrize("content,reason", [
    ('{"config": {"mod', "JSONDecodeError"),  # cut short
    ('{"config": {}, "model": null}', "its model is not a JSON object"),
    ('{"config": {}, "environment": null}', "its environment is not a JSON object"),
    ('{"config": {}, "resumes": [null]}', "its resumes are not a list of JSON objects"),
    ("[]", "not a JSON object")])
def test_resume_with_a_damaged_config_is_one_error(tmp_path, content, reason):
  # Once a JSON traceback or an AttributeError; the checkpoints are left as they are.
  config = tiny_config(tmp_path, epochs=1)
  path, _ = run_tiny(config)
  with open(os.path.join(path, rundir.CONFIG), "w") as f:
    f.write(content)
  with pytest.raises(RunDirError, match=re.escape(
      f"config.json is unreadable or not a run's config ({reason}); restore it")):
    run_tiny(config)


@pytest.mark.parametrize("setting,value", [("optim", {"optimizer": None}),
                                           ("model", {"depth": "four"})])
def test_a_config_with_a_setting_of_the_wrong_type_is_one_error(tmp_path, setting, value):
  # What restore.load_config (usage recomputation, prediction) reads; once an
  # AttributeError traceback from the config's own checks.
  path, _ = run_tiny(tiny_config(tmp_path, epochs=1))
  record = fileio.read_json(os.path.join(path, rundir.CONFIG))
  record["config"][setting].update(value)
  fileio.atomic_write_json(os.path.join(path, rundir.CONFIG), record)
  with pytest.raises(RunDirError, match="is unreadable or not a run's config"):
    load_config(path)


def test_nonfinite_loss_marks_the_run_diverged_and_keeps_what_was_written(tmp_path):
  ds = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  x = np.array(ds.train.x)
  x[5] = np.nan
  bad = Dataset(Split(x, ds.train.y), ds.val, ds.test, ds.info)
  config = tiny_config(tmp_path)
  with pytest.raises(NonFiniteLossError, match=r"epoch 1, step \d+ of 5"):
    run_tiny(config, dataset=bad)
  run = config.workdir
  status = fileio.read_json(os.path.join(run, "status.json"))
  assert status["status"] == "diverged"
  assert "non-finite training loss at epoch 1" in status["message"]
  assert fileio.read_jsonl(os.path.join(run, "metrics.jsonl")) == []
  assert fileio.read_json(os.path.join(run, "summary.json"))["epochs_completed"] == 0


@pytest.mark.parametrize("explodes", [False, True])
def test_a_loss_that_explodes_but_stays_finite_marks_the_run_diverged(tmp_path, explodes):
  # Adam at a learning rate of 10 grows the weights by about 10 a step: the loss reaches
  # thousands (the initial loss is 2.8) without ever overflowing.
  # The healthy run learns (45% test accuracy, chance is 25%).
  settings = dict(optimizer="ADAM", learning_rate=10.0 if explodes else 3e-2,
                  lr_schedule="constant")
  config = tiny_config(tmp_path, **settings)
  if explodes:
    with pytest.raises(LossExplodedError, match=r"loss exploded at epoch \d \(5 steps\): "
                       r"mean training loss .* over 100 x the initial loss 2\.789"):
      run_tiny(config, hooks=True)
  else:
    run_tiny(config, hooks=True)
  run = Run.load(config.workdir)
  assert run.state == ("diverged" if explodes else "done")
  lines = run_report.header(run)
  if explodes:
    assert lines[0][0] == "Warning" and "diverged" in lines[0][1]
    assert dict(lines)["Layer usage"].startswith("No conclusion: This run diverged")
    assert "loss exploded" in run.status["message"]
    # Nothing of the exploded epoch is kept: the records end at the last good checkpoint.
    epochs = [r["epoch"] for r in run.metrics]
    with Checkpointer(os.path.join(config.workdir, rundir.CHECKPOINTS)) as ckpt:
      assert (ckpt.latest_epoch() or 0) == (epochs[-1] if epochs else 0)
  else:
    assert lines[0][0] == "Run directory" and not run.warning()
    assert "uses" in dict(lines)["Layer usage"]
  assert run.summary["initial_loss"] == pytest.approx(2.79, abs=0.01)


def test_a_metrics_log_damaged_mid_file_is_rewritten_on_resume(tmp_path):
  # Once a 41-line traceback: the log's lines were parsed to count the epochs it records.
  straight, _ = run_tiny(tiny_config(tmp_path / "a", lr_schedule="constant"))
  config = tiny_config(tmp_path / "b", lr_schedule="constant", epochs=2)
  path, _ = run_tiny(config)
  metrics = os.path.join(path, "metrics.jsonl")
  lines = open(metrics).read().splitlines()
  with open(metrics, "w") as f:
    f.write("\n".join(["{not json", *lines[1:]]) + "\n")
  run_tiny(tiny_config(tmp_path / "b", lr_schedule="constant", epochs=3))
  assert math_only(fileio.read_jsonl(metrics)) == math_only(
      fileio.read_jsonl(os.path.join(straight, "metrics.jsonl")))


def test_layer_usage_can_be_skipped_and_the_report_says_how_to_measure_it(tmp_path):
  config = tiny_config(tmp_path, learning_rate=3e-2, lr_schedule="constant", layer_usage=False)
  path, _ = run_tiny(config, hooks=True)
  assert not os.path.exists(os.path.join(path, "usage.json"))
  run = Run.load(path)
  assert run.state == "done"
  assert dict(run_report.header(run))["Layer usage"].startswith(
      "Not measured (--config.eval.layer_usage=false): python -m common.recompute_usage")
  assert os.path.exists(os.path.join(path, run_report.REPORT_PDF))


def test_the_divergence_bound_reads_training_and_validation_losses():
  record = {"epoch": 3, "train_loss": 2.0, "val_loss": 50.0}
  check_bounded(record, 1.0, 100.0, 10)  # within the bound
  check_bounded({**record, "val_loss": 1e9}, 1.0, 0.0, 10)  # the check is off
  check_bounded({**record, "val_loss": 1e9}, None, 100.0, 10)  # no initial loss known
  with pytest.raises(LossExplodedError, match=(
      r"validation loss 1e\+09 is over 100 x the initial loss 1 \(--config.eval."
      r"divergence_factor; 0 turns the check off\): the last good checkpoint is epoch 2; "
      r"try a lower --learning_rate or clip the gradient norm")):
    check_bounded({**record, "val_loss": 1e9}, 1.0, 100.0, 10)
  with pytest.raises(LossExplodedError, match=r"mean training loss 300 is over"):
    check_bounded({"epoch": 1, "train_loss": 300.0}, 1.0, 100.0, 10, grad_clip_norm=1.0)


@pytest.mark.parametrize("accuracy,at_chance", [(0.26, True), (0.36, True), (0.40, False),
                                                (float("nan"), False)])
def test_a_run_that_ends_at_chance_level_says_so_first(accuracy, at_chance):
  # 4 classes, 130 test examples: chance is 25%, three standard errors 11.4 points.
  run = Run(path="/r", config={"task": {"selection_metric": "accuracy", "num_classes": 4},
                               "data": {"sizes": {"test": 130}}},
            metrics=[{"epoch": 1, "test_accuracy": accuracy}], summary={},
            status={"status": "done"}, usage={})
  assert run.at_chance() is at_chance
  assert (run_report.header(run)[0][0] == "Warning") is at_chance
  if at_chance:
    assert "ended at chance level" in run.warning() and "guessing: 25.00%" in run.warning()


def test_running_out_of_device_memory_is_one_clear_error_in_a_consistent_run(tmp_path):
  # A real allocation failure: the stacked 2**28-wide hidden layers need 512 PiB, more than
  # any address space, so it fails whatever the machine's overcommit policy.
  config = tiny_config(tmp_path, features=2**28, epochs=1)
  # Caught here, not by pytest.raises: were the error to escape untranslated, pytest would
  # print its frames' arguments, and the repr of an array whose allocation failed hangs.
  try:
    run_tiny(config)
    error = None
  except Exception as e:  # noqa: BLE001
    error = e
  assert isinstance(error, DeviceMemoryError), f"{type(error).__name__}: {error}"
  message = str(error)
  # It fails while the parameters are placed: no setting that resumes can help.
  assert message.startswith("GloNet4's data, parameters and optimizer state do not fit in "
                            "the memory of the CPU: RESOURCE_EXHAUSTED: Out of memory "
                            "allocating"), message
  assert "--remat" not in message and "--eval_batch_size" not in message
  assert "more memory (resuming this --workdir)" in message and "new --workdir" in message
  assert isinstance(error.__cause__, jax.errors.JaxRuntimeError)
  status = fileio.read_json(os.path.join(config.workdir, "status.json"))
  assert status == {**status, "status": "failed", "message": message}
  saved = fileio.read_json(os.path.join(config.workdir, "config.json"))
  assert saved["config"]["model"]["features"] == 2**28  # the run directory stays a run


def _oom_at_epoch_2(monkeypatch):
  """Makes Trainer.train_epoch fail as XLA does when a step's buffers cannot be placed."""
  original = Trainer.train_epoch

  def train_epoch(self, state, epoch, progress):
    if epoch == 2:  # as XLA raises it, at the first read of a result that could not be placed
      raise jax.errors.JaxRuntimeError(
          "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1073741824 bytes.")
    return original(self, state, epoch, progress)

  monkeypatch.setattr(Trainer, "train_epoch", train_epoch)
  return original


@pytest.mark.slow
def test_a_run_out_of_device_memory_mid_way_resumes_with_remat(tmp_path, monkeypatch):
  # Batch norm keeps the blocks in the scan that --remat rematerialises (a plain GloNet
  # MLP on the CPU takes the custom Dense chain instead, where --remat changes nothing).
  config = tiny_config(tmp_path / "b", use_batch_norm=True)
  model, _, _ = build_from_config(canonical_config(config, DENSE_MODELS), 4, DENSE_MODELS)
  assert model.execution(64)["custom_backward"] is False
  straight, _ = run_tiny(tiny_config(tmp_path / "a", use_batch_norm=True))
  original = _oom_at_epoch_2(monkeypatch)
  with pytest.raises(DeviceMemoryError) as error:
    run_tiny(config)
  assert str(error.value).endswith(
      "allocate 1073741824 bytes. Rerun with --remat (recomputes the scanned blocks' "
      "activations in the backward pass) or a smaller --eval_batch_size (now 50), resuming "
      "this --workdir; a smaller --batch_size, model or input needs a new --workdir."), error
  monkeypatch.setattr(Trainer, "train_epoch", original)
  resumed, _ = run_tiny(tiny_config(tmp_path / "b", use_batch_norm=True, remat=True))
  assert fileio.read_json(os.path.join(resumed, "status.json"))["status"] == "done"
  # The resume says that its epochs ran rematerialised.
  record = fileio.read_json(os.path.join(resumed, "config.json"))
  assert record["config"]["run"]["remat"] is False
  assert record["resumes"][-1]["changed"] == {"run.remat": True}
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(os.path.join(resumed, "metrics.jsonl"))
  assert len(b) == 3 and [sorted(r) for r in a] == [sorted(r) for r in b]
  # The same math: rematerialised blocks recompute the same activations (float order aside).
  for ra, rb in zip(math_only(a), math_only(b), strict=True):
    np.testing.assert_allclose([rb[k] for k in sorted(ra)], [ra[k] for k in sorted(ra)],
                               rtol=1e-6)


@pytest.mark.parametrize("overrides", [{"remat": True}, {}])
def test_out_of_device_memory_names_remat_only_where_it_can_help(tmp_path, monkeypatch,
                                                                 overrides):
  # Already on, or a GloNet MLP on the CPU's custom Dense chain (which --remat skips).
  config = tiny_config(tmp_path, **overrides)
  model, _, _ = build_from_config(canonical_config(config, DENSE_MODELS), 4, DENSE_MODELS)
  assert config.remat or model.execution(64)["custom_backward"]
  _oom_at_epoch_2(monkeypatch)
  with pytest.raises(DeviceMemoryError) as error:
    run_tiny(config)
  assert "--remat" not in str(error.value)
  assert "Rerun with a smaller --eval_batch_size (now 50), resuming this --workdir" in str(
      error.value)


def test_only_resource_exhaustion_of_memory_is_a_device_memory_error(tmp_path):
  from common.train import loop
  config = canonical_config(tiny_config(tmp_path), DENSE_MODELS)
  model, name, _ = build_from_config(config, 4, DENSE_MODELS)
  # gRPC's status for a collective's message over its size limit: not the device's memory.
  other = jax.errors.JaxRuntimeError(
      "RESOURCE_EXHAUSTED: Received message larger than max (8388608 vs. 4194304)")
  assert loop._device_memory_error(other, config, model, name, building=False) is None
  oom = jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 8 bytes.")
  assert isinstance(loop._device_memory_error(oom, config, model, name, building=False),
                    DeviceMemoryError)


def test_nonfinite_message_suggests_clipping_only_where_it_is_off():
  unclipped = nonfinite_message(10, 2, 10)
  assert unclipped.startswith("non-finite training loss at epoch 2, step 1 of 10 (global step 11)")
  assert "last good checkpoint is epoch 1" in unclipped
  assert "--learning_rate or clip the gradient norm (--grad_clip_norm=1)" in unclipped
  clipped = nonfinite_message(10, 2, 10, grad_clip_norm=1.0)
  assert "--learning_rate" in clipped and "grad_clip_norm" not in clipped
  assert "will not help" in nonfinite_message(0, 1, 10)  # step 0: the initial model


def test_a_locked_run_directory_is_refused(tmp_path):
  config = tiny_config(tmp_path)
  holder = rundir.open_run_dir(config.workdir, config.result_dir, "GloNet4")
  try:
    with pytest.raises(RunDirError, match="in use by another process"):
      run_tiny(config)
  finally:
    holder.release()


def test_a_taken_session_name_is_never_reused(tmp_path, monkeypatch):
  """Two runs drawing the same name: the second gets a new one (mkdir is the arbiter)."""
  draws = iter(["aaaaaaaa" + "0" * 24, "aaaaaaaa" + "0" * 24, "bbbbbbbb" + "0" * 24])
  monkeypatch.setattr(rundir.uuid, "uuid4", lambda: type("U", (), {"hex": next(draws)})())
  a = rundir.new_session_dir(str(tmp_path), "GloNet10")
  b = rundir.new_session_dir(str(tmp_path), "GloNet10")
  assert a.endswith("_aaaaaaaa") and b.endswith("_bbbbbbbb")


def test_a_non_run_directory_is_not_overwritten(tmp_path):
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "notes.txt").write_text("mine")
  with pytest.raises(RunDirError, match="not a run directory"):
    run_tiny(tiny_config(tmp_path))


def test_torn_last_jsonl_line_is_ignored(tmp_path):
  path = tmp_path / "m.jsonl"
  path.write_text(json.dumps({"epoch": 1}) + "\n" + '{"epoch": 2, "tr')
  assert fileio.read_jsonl(path) == [{"epoch": 1}]


def test_equivalent_spellings_resume_the_same_run(tmp_path):
  run_tiny(tiny_config(tmp_path, model="GloNet4", num_layers=None, epochs=1,
                       lr_schedule="constant"))
  _, summary = run_tiny(tiny_config(tmp_path, model="GloNet", num_layers=4,
                                    use_batch_norm=False, epochs=2, lr_schedule="constant"))
  assert summary["epochs_completed"] == 2
  resumes = fileio.read_json(os.path.join(tmp_path, "run", "config.json"))["resumes"]
  assert [r["epochs"] for r in resumes] == [2]


def test_resume_on_other_data_is_refused(tmp_path):
  run_tiny(tiny_config(tmp_path, epochs=1))
  other = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  other.info["sha256"] = "something else"
  with pytest.raises(RunDirError, match="data sha256"):
    run_tiny(tiny_config(tmp_path, epochs=1), dataset=other)


def test_fewer_epochs_than_trained_is_refused(tmp_path):
  run_tiny(tiny_config(tmp_path, epochs=2, lr_schedule="constant"))
  with pytest.raises(RunDirError, match="already trained 2 epochs"):
    run_tiny(tiny_config(tmp_path, epochs=1, lr_schedule="constant"))
  status = fileio.read_json(os.path.join(tmp_path, "run", "status.json"))
  assert status["status"] == "done"  # a refused command leaves the run as it was


def test_a_run_without_its_checkpoints_is_refused_not_trained_again_from_scratch(tmp_path):
  # It once restarted at epoch 1 and rewrote metrics.jsonl, the summary and the usage.
  path, _ = run_tiny(tiny_config(tmp_path, epochs=2, lr_schedule="constant"))
  before = {name: open(os.path.join(path, name)).read()
            for name in (rundir.METRICS, rundir.SUMMARY, rundir.STATUS)}
  shutil.rmtree(os.path.join(path, rundir.CHECKPOINTS))  # pruned, or not copied
  with pytest.raises(RunDirError, match=r"records 2 trained epochs in metrics.jsonl but holds "
                                        r"no checkpoint.*put the checkpoints back"):
    run_tiny(tiny_config(tmp_path, epochs=3, lr_schedule="constant"))
  assert {name: open(os.path.join(path, name)).read() for name in before} == before
  assert not os.path.exists(os.path.join(path, rundir.CHECKPOINTS))


def test_bad_batch_size_is_refused_before_anything_is_written(tmp_path):
  with pytest.raises(ConfigError, match="larger than the training split"):
    run_tiny(tiny_config(tmp_path, batch_size=10_000))
  assert not os.path.exists(tmp_path / "run")


def test_an_epoch_is_the_same_in_one_call_or_in_chunks(tmp_path, monkeypatch):
  """One device call, ~20 chunks (a progress bar, or a first epoch without one), or chunks
  sized by time: the same steps in the same order every way, exactly ``steps_per_epoch``
  of them."""
  from common.train import trainer as trainer_lib  # pylint: disable=g-import-not-at-top
  from common.train.trainer import Trainer  # pylint: disable=g-import-not-at-top

  config = canonical_config(tiny_config(tmp_path, batch_size=16), DENSE_MODELS)
  model, _, _ = build_from_config(config, 4, DENSE_MODELS)
  dataset = fake_classification(n_train=330, n_val=10, n_test=10, seed=0)
  trainer = Trainer.build(config, model, dataset, Classification(4), eval_splits=())
  assert trainer.steps_per_epoch == 20 and len(trainer._chunks) == 20  # pylint: disable=protected-access
  results = []
  for progress in (False, True):
    fresh = jax.tree.map(lambda a: a.copy(), trainer.state)  # train_epoch donates its input
    state, sums, _ = trainer.train_epoch(fresh, 1, progress=progress)
    results.append((state, sums))
    assert int(sums["steps"]) == 20 and float(sums["count"]) == 320 and int(state.step) == 20
  # After an epoch, calls are sized to SECONDS_PER_CALL at the measured speed.
  assert trainer._seconds_per_step is not None  # pylint: disable=protected-access
  for seconds_per_call, chunks in ((1e9, [20]), (1e-9, [1] * 20)):
    monkeypatch.setattr(trainer_lib, "SECONDS_PER_CALL", seconds_per_call)
    assert trainer._timed_chunks() == chunks  # pylint: disable=protected-access
    fresh = jax.tree.map(lambda a: a.copy(), trainer.state)
    state, sums, _ = trainer.train_epoch(fresh, 1, progress=False)
    results.append((state, sums))
  for b, sb in results[1:]:
    jax.tree.map(np.testing.assert_array_equal, results[0][0].params, b.params)
    assert float(results[0][1]["loss"]) == float(sb["loss"])


def test_train_size_is_a_nested_random_subset_of_every_class():
  """Not the first N examples: in a source stored class by class those are one class."""
  from common.data import Dataset, Split  # pylint: disable=g-import-not-at-top
  y = np.repeat(np.arange(4), 250)  # sorted by class, as image folders are
  split = Split(np.arange(1000, dtype=np.float32)[:, None], y)
  dataset = Dataset(split, split, split)
  small, large = dataset.with_train_size(40), dataset.with_train_size(400)
  assert len(small.train) == 40 and set(small.train.y.tolist()) == {0, 1, 2, 3}
  assert set(small.train.x[:, 0].tolist()) <= set(large.train.x[:, 0].tolist())  # nested
  assert np.all(np.diff(large.train.x[:, 0]) > 0)  # in the split's order
  np.testing.assert_array_equal(dataset.with_train_size(40).train.x, small.train.x)


def test_early_stop_waits_patience_epochs_after_the_best_by_more_than_min_delta():
  from common.train.loop import early_stop  # noqa: PLC0415
  from common.train.tasks import Classification, Regression  # noqa: PLC0415

  def hist(key, values):
    return [{"epoch": i + 1, key: v} for i, v in enumerate(values)]

  acc = hist("val_accuracy", [0.5, 0.6, 0.605, 0.59, 0.6])
  assert early_stop(acc, Classification(4), 0, 0.0) is None  # off
  assert early_stop(acc, Classification(4), 3, 0.0) is None  # best 0.605 at epoch 3
  assert early_stop(acc, Classification(4), 2, 0.0)["best_epoch"] == 3
  # +0.005 is not more than min_delta: the best stays epoch 2, three epochs ago.
  assert early_stop(acc, Classification(4), 3, 0.01) == {
      "epoch": 5, "best_epoch": 2, "patience": 3, "min_delta": 0.01}
  mse = hist("val_mse", [1.0, 0.5, 0.6, 0.7])  # lower is better
  assert early_stop(mse, Regression(), 2, 0.0)["best_epoch"] == 2
  assert early_stop(mse, Regression(), 3, 0.0) is None


def test_a_run_stopped_early_is_done_and_its_rerun_trains_nothing_more(tmp_path):
  # A learning rate too small to move the model: validation accuracy never improves on
  # epoch 1, so with patience 2 the run stops after epoch 3 of 8.
  config = tiny_config(tmp_path, epochs=8, learning_rate=1e-12, patience=2,
                       lr_schedule="constant", tensorboard=False)
  path, summary = run_tiny(config)
  assert summary["epochs_completed"] == 3
  assert summary["early_stop"] == {"epoch": 3, "best_epoch": 1, "patience": 2,
                                   "min_delta": 0.0}
  status = fileio.read_json(os.path.join(path, "status.json"))
  assert status["status"] == "done"
  assert status["message"].startswith("stopped early after epoch 3: validation accuracy")
  # The same command again (as after a kill once the decision was taken): no epoch more.
  _, again = run_tiny(config)
  assert again["epochs_completed"] == 3 and again["early_stop"] == summary["early_stop"]
  assert len(fileio.read_jsonl(os.path.join(path, "metrics.jsonl"))) == 3
  assert not os.path.exists(os.path.join(path, "checkpoints", "4"))


def test_a_run_whose_patience_runs_out_at_its_last_epoch_did_not_stop_early(tmp_path):
  config = tiny_config(tmp_path, epochs=3, learning_rate=1e-12, patience=2,
                       lr_schedule="constant", tensorboard=False)
  path, summary = run_tiny(config)
  assert summary["epochs_completed"] == 3 and "early_stop" not in summary
  assert fileio.read_json(os.path.join(path, "status.json"))["message"] == "trained 3 epochs"


def test_the_plateau_schedule_trains_a_batch_norm_model(tmp_path):
  # The step keeps the batch-norm statistics apart from the optimizer's updates.
  _, summary = run_tiny(tiny_config(tmp_path, model="ResNet", use_batch_norm=True, epochs=2,
                                    lr_schedule="plateau", plateau_patience=1,
                                    tensorboard=False))
  assert summary["epochs_completed"] == 2


def test_the_plateau_schedule_cuts_the_rate_after_patience_epochs_and_resumes_exactly(
    tmp_path, monkeypatch):
  # A rate too small to move the model: the training objective never improves after
  # epoch 1, so with patience 1 the rate halves after epochs 2 and 3 (optax counts the
  # epoch that sets the best value, then one without improvement).
  def config(where):
    return tiny_config(where, epochs=4, learning_rate=1e-9, lr_schedule="plateau",
                       plateau_patience=1, lr_decay_factor=0.5, tensorboard=False)

  straight, _ = run_tiny(config(tmp_path / "a"))
  rates = [r["learning_rate"] for r in fileio.read_jsonl(os.path.join(straight,
                                                                      "metrics.jsonl"))]
  np.testing.assert_allclose(rates, [1e-9, 1e-9, 5e-10, 2.5e-10], rtol=1e-6)
  # The plateau's state is in the checkpoint: a run stopped after epoch 2 resumes to the
  # same rates and metrics.
  original = Checkpointer.save

  def save_then_crash(self, epoch, state, meta):
    original(self, epoch, state, meta)
    if epoch == 2:
      raise KeyboardInterrupt

  monkeypatch.setattr(Checkpointer, "save", save_then_crash)
  with pytest.raises(KeyboardInterrupt):
    run_tiny(config(tmp_path / "b"))
  monkeypatch.setattr(Checkpointer, "save", original)
  resumed, _ = run_tiny(config(tmp_path / "b"))
  a = fileio.read_jsonl(os.path.join(straight, "metrics.jsonl"))
  b = fileio.read_jsonl(os.path.join(resumed, "metrics.jsonl"))
  assert math_only(a) == math_only(b)


def test_a_run_made_before_a_setting_existed_resumes_at_its_default(tmp_path):
  path, _ = run_tiny(tiny_config(tmp_path, epochs=2, lr_schedule="constant",
                                 tensorboard=False))
  record = fileio.read_json(os.path.join(path, "config.json"))
  del record["config"]["optim"]["plateau_patience"]  # as written before it existed
  fileio.atomic_write_json(os.path.join(path, "config.json"), record)
  _, summary = run_tiny(tiny_config(tmp_path, epochs=3, lr_schedule="constant",
                                    tensorboard=False))
  assert summary["epochs_completed"] == 3
  with pytest.raises(RunDirError, match=r"optim.plateau_patience: 10 -> 3"):
    run_tiny(tiny_config(tmp_path, epochs=4, lr_schedule="constant", plateau_patience=3,
                         tensorboard=False))
