"""SGEMM: parsing and validation, split and scaler, every family, Table 1, train.py."""

import glob
import os
import shutil
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import fileio, report
from common.errors import DataError
from common.models import DENSE_MODELS, build_model
from common.report.runs import Run
from common.train import Regression, steps
from common.train.optimizers import make_optimizer, make_schedule
from common.train.state import create_train_state
from resnet_sgemm import data as sgemm
from resnet_sgemm import paper
from tests.conftest import fake_run as _fake_run
from tests.conftest import run_module, set_settings
from tests.helpers import error_line, train_main

HEADER = ",".join([*sgemm.FEATURES, *sgemm.RUNS])


def _csv_text(rows: int, seed: int = 0) -> str:
  rng = np.random.default_rng(seed)
  feats = rng.choice([1, 2, 4, 8, 16, 32, 64, 128], size=(rows, 14))
  runtime = np.exp(1 + 0.02 * feats.sum(1, keepdims=True) + rng.normal(0, 0.01, (rows, 4)))
  lines = [HEADER] + [",".join([*map(str, f), *(f"{r:.2f}" for r in rt)])
                      for f, rt in zip(feats, runtime, strict=True)]
  return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def sgemm_root(tmp_path_factory) -> str:
  """A data root with a full-size synthetic ``sgemm/sgemm_product_dataset.zip``."""
  root = tmp_path_factory.mktemp("data")
  os.makedirs(root / "sgemm")
  with zipfile.ZipFile(root / "sgemm" / sgemm.ZIP_NAME, "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("sgemm_product.csv", _csv_text(sgemm.NUM_ROWS))
    z.writestr("__MACOSX/._sgemm_product.csv", b"junk")
  return str(root)


def test_parse_small_csv():
  table = sgemm.parse_csv(_csv_text(50), "test.csv", expected_rows=50)
  assert table.shape == (50, 18)


def test_columns_are_found_by_name_in_any_order():
  text = _csv_text(5)
  header, *rows = text.strip().split("\n")
  cols = header.split(",")
  order = list(reversed(range(len(cols))))
  shuffled = "\n".join(",".join(line.split(",")[i] for i in order) for line in [header, *rows])
  np.testing.assert_array_equal(sgemm.parse_csv(shuffled, "s.csv", 5),
                                sgemm.parse_csv(text, "t.csv", 5))


def test_missing_column_is_named():
  text = _csv_text(5).replace("Run3 (ms)", "Run3")
  with pytest.raises(DataError, match=r"lacks the column\(s\) Run3 \(ms\)"):
    sgemm.parse_csv(text, "bad.csv", 5)


def test_non_numeric_cell_is_located():
  lines = _csv_text(5).split("\n")
  cells = lines[3].split(",")
  cells[2] = "abc"
  lines[3] = ",".join(cells)
  with pytest.raises(DataError, match=r"bad.csv line 4, column 'KWG': 'abc' is not a number"):
    sgemm.parse_csv("\n".join(lines), "bad.csv", 5)


def test_wrong_row_count_is_refused():
  with pytest.raises(DataError, match="has 7 data rows, expected 241600"):
    sgemm.parse_csv(_csv_text(7), "short.csv")


def test_truncated_zip_is_refused(tmp_path):
  path = tmp_path / "sgemm" / sgemm.ZIP_NAME
  os.makedirs(path.parent)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("sgemm_product.csv", _csv_text(10))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  with pytest.raises(DataError, match="is not a readable zip archive"):
    sgemm.load_sgemm(str(tmp_path))


def test_missing_data_names_the_paths(tmp_path):
  with pytest.raises(DataError, match=r"looked for .*sgemm/sgemm_product_dataset.zip"):
    sgemm.load_sgemm(str(tmp_path))


def test_split_sizes_are_70_10_20_and_disjoint():
  train, val, test = sgemm.split_indices(sgemm.NUM_ROWS, seed=0)
  assert (len(train), len(val), len(test)) == (169120, 24160, 48320)
  assert len(np.unique(np.concatenate([train, val, test]))) == sgemm.NUM_ROWS
  again = sgemm.split_indices(sgemm.NUM_ROWS, seed=0)
  assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))


def test_scaler_is_fitted_on_the_training_split_only():
  table = sgemm.parse_csv(_csv_text(1000), "t.csv", 1000)
  train, val, test = sgemm.split_indices(1000, seed=0)
  table[test, :14] += 100.0  # shift only the test rows: the scaler must not see them
  ds = sgemm.make_dataset(table, split_seed=0, info={})
  scaler = ds.info["scaler"]
  np.testing.assert_allclose(scaler["mean"], table[train, :14].mean(0), rtol=1e-9)
  np.testing.assert_allclose(ds.train.x.mean(0), 0, atol=1e-5)
  assert np.all(ds.test.x.mean(0) > 1)  # the shift stays visible in the test inputs
  np.testing.assert_allclose(ds.test.y[:, 0], np.log(table[test, 14:].mean(1)), rtol=1e-6)


@pytest.mark.parametrize("name,depth,bn", [
    ("GloNet", 10, None), ("GloNet", 1000, None), ("ResNet", 10, None), ("ResNet", 1000, None),
    ("ResNet", 24, False), ("MLP", 24, None)])
def test_smoke_every_family_takes_a_training_step(name, depth, bn):
  """A smoke test: the step runs at both ends of the depth range (values are tested in
  test_steps.py and test_models.py)."""
  model = build_model(name, registry=DENSE_MODELS, num_layers=depth, features=16, out_dim=1,
                      use_batch_norm=bn)
  tx = make_optimizer("ADAM", make_schedule(1e-2, "constant", 1))
  state = create_train_state(model, tx, jnp.ones((1, 14)), jax.random.key(0))
  rng = np.random.default_rng(0)
  batch = (jnp.asarray(rng.normal(size=(64, 14)), jnp.float32),
           jnp.asarray(rng.normal(size=(64, 1)), jnp.float32))
  new_state, m = jax.jit(steps.make_train_step(Regression(), 1e-5))(
      state, batch, jax.random.key(0))
  assert np.isfinite(float(m["loss"])) and int(new_state.step) == 1
  assert model.num_blocks == (depth - 1 if name != "ResNet" else (depth - 2) // 2)


def test_table1_section_on_fake_runs(tmp_path):
  root = str(tmp_path / "sweep")
  for depth, (g, r) in {50: (2.0, 4.0), 1000: (20.0, 50.0)}.items():
    for seed in (0, 1):
      for label, seconds in (("GloNet", g), ("ResNet", r)):
        path = _fake_run(root, label, depth, seed, 0.9, seconds=seconds)
        set_settings(path, {"experiment": "resnet_sgemm"})
  out = report.render_sweep(root)
  summary = fileio.read_json(out["summary"])
  rows = {row[0]: row for row in paper.table1_rows(summary)[1:]}
  assert rows[50][1:4] == ["4.00", "2.00", "0.50"] and rows[1000][3] == "0.40"
  assert rows[1000][4:] == [675, 289, "0.43"] and rows[10][1] == ""
  assert os.path.getsize(os.path.join(root, paper.TIMING_PNG)) > 5000
  assert os.path.getsize(out["report"]) > 10000
  assert "Paper Table 1 analogue" in open(out["markdown"]).read()
  # GloNet timed on one machine and ResNet on another: their ratio compares the machines.
  for path in glob.glob(os.path.join(root, "ResNet", "*", "*")):
    config = fileio.read_json(os.path.join(path, "config.json"))
    config["environment"] = {"devices": ["d0"], "device_kind": "NVIDIA H100 80GB HBM3"}
    fileio.atomic_write_json(os.path.join(path, "config.json"), config)
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  rows = {row[0]: row for row in paper.table1_rows(summary)[1:]}
  assert rows[50][1:4] == ["4.00", "2.00", "n/a (2 machines)"]


@pytest.mark.slow
def test_table1_pairs_configurations_of_the_two_families(tmp_path):
  # Runs of two lengths get recipe marks (GloNet [epochs=5]...): Table 1 once found its
  # rows by the exact labels GloNet and ResNet only, and left its "ours" columns empty.
  root = str(tmp_path / "sweep")
  for epochs, (g, r) in {5: (2.0, 4.0), 200: (3.0, 5.0)}.items():
    for label, seconds in (("GloNet", g), ("ResNet", r)):
      path = _fake_run(os.path.join(root, f"e{epochs}"), label, 50, 0, 0.9, seconds=seconds)
      set_settings(path, {"experiment": "resnet_sgemm", "epochs": epochs})
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  assert paper.table1_pairs(summary) == [("GloNet [epochs=200]", "ResNet [epochs=200]"),
                                         ("GloNet [epochs=5]", "ResNet [epochs=5]")]
  tables = summary["paper"]["resnet_sgemm"]["table1_pairs"]
  assert [{row[0]: row for row in t["rows"][1:]}[50][1:4] for t in tables] == [
      ["5.00", "3.00", "0.60"], ["4.00", "2.00", "0.50"]]
  assert summary["paper"]["resnet_sgemm"]["table1"] == tables[0]["rows"]
  # ResNet run at one length only: unmarked, it pairs with the GloNet configuration of
  # its length (its recipe says 200 epochs), not with the 5-epoch one.
  shutil.rmtree(os.path.join(root, "e5", "ResNet"))
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  assert paper.table1_pairs(summary) == [("GloNet [epochs=200]", "ResNet")]
  assert {row[0]: row for row in summary["paper"]["resnet_sgemm"]["table1"][1:]}[50][1:4] == [
      "5.00", "3.00", "0.60"]
  # One configuration of each family pairs as it is.
  shutil.rmtree(os.path.join(root, "e5"))
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  assert paper.table1_pairs(summary) == [("GloNet", "ResNet")]


def _group(family: str, **recipe) -> dict:
  marks = ", ".join(f"{k}={v}" for k, v in recipe.items() if k != "weight_decay")
  return {"label": f"{family} [{marks}]" if marks else family,
          "recipe": {"weight_decay": 0.0, **recipe}}


def test_table1_pairs_configurations_whose_recipes_agree_on_every_marked_setting():
  # GloNet runs differing in length and learning rate, ResNet runs in length only: their
  # marks never match as text, and the table once fell back to labels no run had (its
  # "ours" columns empty).
  summary = {"groups": [
      _group("GloNet", epochs=200, learning_rate=0.1), _group("GloNet", epochs=200,
                                                              learning_rate=0.01),
      _group("GloNet", epochs=5, learning_rate=0.1), _group("ResNet (no BN)", epochs=5),
      {**_group("ResNet", epochs=200), "recipe": {"epochs": 200, "learning_rate": 0.1}},
      {**_group("ResNet", epochs=5), "recipe": {"epochs": 5, "learning_rate": 0.1}}]}
  assert paper.table1_pairs(summary) == [
      ("GloNet [epochs=200, learning_rate=0.1]", "ResNet [epochs=200]"),
      ("GloNet [epochs=5, learning_rate=0.1]", "ResNet [epochs=5]")]
  # Marked on different settings: GloNet by learning rate (all 200 epochs), ResNet by
  # length; a setting one family's mark names is compared through the other's recipe.
  summary = {"groups": [
      {**_group("GloNet", learning_rate=lr), "recipe": {"epochs": 200, "learning_rate": lr}}
      for lr in (0.1, 0.01)] + [
      {**_group("ResNet", epochs=e), "recipe": {"epochs": e, "learning_rate": 0.1}}
      for e in (5, 200)]}
  assert paper.table1_pairs(summary) == [("GloNet [learning_rate=0.1]", "ResNet [epochs=200]")]


@pytest.mark.slow  # the quick suite trains through train.py in the smoke test below
def test_train_py_end_to_end(sgemm_root, tmp_path):
  workdir = tmp_path / "run"
  proc = train_main("resnet_sgemm.train", f"--data_dir={sgemm_root}", "--model=ResNet6",
                    "--features=8", "--epochs=1", f"--workdir={workdir}", "--progress=false")
  assert proc.returncode == 0, proc.stderr[-3000:]
  record = fileio.read_jsonl(workdir / "metrics.jsonl")[0]
  for key in ("train_mse", "val_mse", "test_mse", "train_loss", "val_loss", "test_loss"):
    assert np.isfinite(record[key]), key
  assert record["train_objective"] > record["train_loss"]  # L2 is in the objective only
  scaler = fileio.read_json(workdir / "scaler.json")
  assert scaler["features"] == list(sgemm.FEATURES) and len(scaler["mean"]) == 14
  config = fileio.read_json(workdir / "config.json")
  assert config["config"]["optim"]["l2_reg_alpha"] == 1e-5
  assert config["model"]["label"] == "ResNet"
  assert config["data"]["sizes"] == {"train": 169120, "val": 24160, "test": 48320}
  summary = fileio.read_json(workdir / "summary.json")
  assert summary["best_val_epoch"] == 1 and "test_mse" in summary["best"]

  # The run scores new kernel configurations through its saved scaler.
  kernels = tmp_path / "kernels.csv"
  kernels.write_text(_csv_text(3, seed=9))
  out = tmp_path / "pred.csv"
  proc = run_module("resnet_sgemm.predict", f"--workdir={workdir}", f"--input={kernels}",
                    f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = out.read_text().strip().split("\n")
  assert lines[0].endswith("predicted_log_ms,predicted_ms") and len(lines) == 4
  assert all(np.isfinite(float(line.split(",")[-1])) for line in lines[1:])

  # A missing or damaged scaler, or no run directory at all: one line naming the fix.
  scaler_path = workdir / "scaler.json"
  good = scaler_path.read_text()
  for damage in ("missing", "truncated"):
    if damage == "missing":
      scaler_path.unlink()
    else:
      scaler_path.write_text(good[:len(good) // 2])
    proc = run_module("resnet_sgemm.predict", f"--workdir={workdir}", f"--input={kernels}")
    line = error_line(proc)
    assert line.startswith(f"error: {scaler_path} is missing or damaged"), line
    assert f"rerun the run's training command with --workdir={workdir}" in line
    # As the message says: the training command writes it again, training nothing.
    proc = train_main("resnet_sgemm.train", f"--data_dir={sgemm_root}", "--model=ResNet6",
                      "--features=8", "--epochs=1", f"--workdir={workdir}", "--progress=false")
    assert proc.returncode == 0 and scaler_path.read_text() == good
  proc = run_module("resnet_sgemm.predict", f"--workdir={tmp_path / 'nowhere'}",
                    f"--input={kernels}")
  assert "nowhere" in error_line(proc)


def test_the_smoke_variant_trains_in_a_few_short_epochs(sgemm_root, tmp_path):
  workdir = tmp_path / "run"
  proc = train_main("resnet_sgemm.train", "--config=resnet_sgemm/configs/default.py:smoke",
                    f"--data_dir={sgemm_root}", f"--workdir={workdir}", "--progress=false")
  assert proc.returncode == 0, proc.stderr[-3000:]
  run = Run.load(str(workdir))
  assert run.state == "done" and run.settings["train.epochs"] == 5 and run.usage["final"]
  # The synthetic runtimes are a smooth function of the inputs: the MSE (of standardised
  # log runtimes) falls well below the variance it starts from.
  assert run.final_record()["test_mse"] < 0.5


def test_depth_suffix_and_flag_must_agree(tmp_path):
  proc = train_main("resnet_sgemm.train", "--model=GloNet24", "--num_layers=10",
                    f"--result_dir={tmp_path}")
  assert proc.returncode == 2 and "says depth 24 but --num_layers=10" in proc.stderr
