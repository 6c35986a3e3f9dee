"""Layer usage (order, shares, early exit) and the run / sweep reports."""

import copy
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import fileio, report
from common.data import Dataset, Split, fake_classification
from common.models import build_model
from common.train import Classification, NonFiniteLossError
from common.train.checkpoint import Checkpointer
from common.train.state import create_train_state
from common.usage import compute_usage
from tests.conftest import run_module
from tests.test_loop import _config, _run


def _glonet_state(layers=8, features=6, in_dim=20, classes=4, seed=0):
  model = build_model("GloNet", num_layers=layers, features=features, out_dim=classes)
  state = create_train_state(model, optax.sgd(0.1), jnp.ones((1, in_dim)), jax.random.key(seed))
  return model, state


def test_usage_is_in_network_order_after_a_checkpoint_round_trip(tmp_path):
  """Block i outputs the constant i (zero kernels, bias i), so l1 must read 1, 2, ..., L."""
  model, state = _glonet_state(layers=13)  # 12 blocks: stem + 11 scanned
  params = jax.tree.map(np.zeros_like, jax.device_get(state.params))
  params["stem"]["dense"]["bias"][:] = 1.0
  for i in range(11):
    params["stack"]["scan"]["block"]["dense"]["bias"][i] = i + 2.0
  state = state.replace(params=jax.tree.map(jnp.asarray, params))
  with Checkpointer(tmp_path / "ckpt") as ckpt:  # a real round trip, as after a resume
    ckpt.save(1, state, {})
    state, _ = ckpt.restore(1, state)
  ds = fake_classification(n_test=30)
  u = compute_usage(state, ds.test, Classification(4), glonet=True,
                    param_order=model.param_order, batch_size=7)
  np.testing.assert_allclose(u["l1"], np.arange(1, 13), rtol=1e-6)
  layer_l1 = [p["l1"] for p in u["param_l1"]]
  assert [p["layer"] for p in u["param_l1"]][:3] == ["stem", "stack[0]", "stack[1]"]
  np.testing.assert_allclose(layer_l1[:12], 6 * np.arange(1, 13), rtol=1e-6)  # 6 biases each
  assert len(u["param_l1"]) == 13 and u["param_l1"][-1]["layer"] == "head"


def test_shares_and_early_exit_match_a_direct_computation():
  model, state = _glonet_state(layers=9, seed=3)
  ds = fake_classification(n_test=53, seed=3)
  u = compute_usage(state, ds.test, Classification(4), glonet=True,
                    param_order=model.param_order, batch_size=10)
  logits, used = state.apply_fn({"params": state.params}, jnp.asarray(ds.test.x), capture=True)
  kernel, bias = state.params["head"]["kernel"], state.params["head"]["bias"]
  contrib = np.array([np.mean(np.abs(np.asarray(x @ kernel))) for x in used])
  np.testing.assert_allclose(u["share"], contrib / contrib.sum(), rtol=1e-4)
  assert abs(sum(u["share"]) - 1) < 1e-6
  k_star = int(np.argmax(np.cumsum(contrib / contrib.sum()) >= 0.95 - 1e-9)) + 1
  assert u["blocks_used"] == k_star and 1 <= k_star <= 8
  for k in range(1, 9):
    out = np.asarray(used[:k].sum(0) @ kernel + bias)
    acc = np.mean(out.argmax(-1) == ds.test.y)
    loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(out, ds.test.y))
    assert abs(u["early_exit"]["accuracy"][k - 1] - acc) < 1e-6
    np.testing.assert_allclose(u["early_exit"]["loss"][k - 1], loss, rtol=1e-4)
  np.testing.assert_allclose(u["early_exit"]["accuracy"][-1],
                             np.mean(np.asarray(logits).argmax(-1) == ds.test.y))


def test_non_glonet_models_report_l1_only():
  model = build_model("ResNet", num_layers=8, features=6, out_dim=4)
  state = create_train_state(model, optax.sgd(0.1), jnp.ones((1, 20)), jax.random.key(0))
  u = compute_usage(state, fake_classification(n_test=20).test, Classification(4), glonet=False,
                    param_order=model.param_order)
  assert len(u["l1"]) == 3 and "share" not in u and "early_exit" not in u
  assert [p["layer"] for p in u["param_l1"]] == [
      "stem", "stack[0]", "stack[1]", "stack[2]", "final_bn", "head"]


def test_twelve_layer_glonet_run_has_usage_and_a_report_that_re_renders(tmp_path):
  config = _config(tmp_path, num_layers=12, epochs=2)
  path, _ = _run(config)
  u = fileio.read_json(os.path.join(path, "usage.json"))
  for when in ("init", "final"):
    assert len(u[when]["l1"]) == 11 and len(u[when]["share"]) == 11
    assert abs(sum(u[when]["share"]) - 1) < 1e-5
    assert 1 <= u[when]["blocks_used"] <= 11
    assert u[when]["early_exit"]["k"] == list(range(1, 12))
  assert u["init"]["epoch"] == 0 and u["final"]["epoch"] == 2
  outputs = ["training_report.pdf", "training_metrics.png", "layer_usage.png"]
  for name in outputs:
    assert os.path.getsize(os.path.join(path, name)) > 5000
    os.remove(os.path.join(path, name))
  proc = run_module("common.report", path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  for name in outputs:
    assert os.path.getsize(os.path.join(path, name)) > 5000
  assert open(os.path.join(path, "training_report.pdf"), "rb").read(5) == b"%PDF-"


def test_a_failed_run_still_renders(tmp_path):
  ds = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  x = np.array(ds.train.x)
  x[:] = np.nan
  config = _config(tmp_path)
  with pytest.raises(NonFiniteLossError):
    _run(config, dataset=Dataset(Split(x, ds.train.y), ds.val, ds.test, ds.info))
  for name in ("training_report.pdf", "training_metrics.png", "layer_usage.png"):
    assert os.path.getsize(os.path.join(config.workdir, name)) > 1000


def _fake_run(root, label, depth, seed, acc, state="done", seconds=1.0, used=3):
  """Writes a run directory by hand, as another experiment following the contract would."""
  path = os.path.join(root, label, f"depth_{depth}", f"seed_{seed}")
  os.makedirs(path)
  fileio.atomic_write_json(os.path.join(path, "config.json"), {
      "config": {"experiment": "fake", "model": label, "num_layers": depth, "seed": seed},
      "model_name": f"{label}{depth}",
      "model": {"family": label, "num_layers": depth, "label": label}})
  records = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "test_loss": 1.2 / e,
              "train_accuracy": acc, "val_accuracy": acc, "test_accuracy": acc - 0.01 * (2 - e),
              "learning_rate": 0.1, "train_seconds": seconds, "eval_seconds": 0.1}
             for e in (1, 2)] if state != "failed" else []
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(f"{fileio.json.dumps(r)}\n" for r in records)
  fileio.atomic_write_json(os.path.join(path, "summary.json"), {
      "best": records[-1] if records else None, "best_val_epoch": 2 if records else None,
      "mean_train_seconds_per_epoch": seconds if records else None, "num_params": 10})
  fileio.atomic_write_json(os.path.join(path, "status.json"), {
      "status": state, "message": "non-finite training loss at epoch 1, step 3" if
      state == "failed" else ""})
  usage = {"num_blocks": depth - 1, "l1": list(np.linspace(1, 0.1, depth - 1)),
           "param_l1": [{"layer": str(i), "l1": 1.0} for i in range(depth)]}
  if label == "GloNet":
    share = np.full(depth - 1, 1.0 / (depth - 1))
    usage.update(share=share.tolist(), cumulative_share=np.cumsum(share).tolist(),
                 blocks_used=used, threshold=0.95,
                 early_exit={"k": list(range(1, depth)), "accuracy": [acc] * (depth - 1)})
  fileio.atomic_write_json(os.path.join(path, "usage.json"),
                           {"init": copy.deepcopy(usage), "final": usage})
  return path


def test_sweep_report_on_fake_runs(tmp_path):
  root = str(tmp_path / "sweep")
  for depth, used in ((6, 3), (10, 4), (24, 4)):
    for seed, acc in ((0, 0.97), (1, 0.95)):
      _fake_run(root, "GloNet", depth, seed, acc, seconds=depth / 10, used=used)
  _fake_run(root, "MLP", 6, 0, 0.96)
  _fake_run(root, "MLP", 24, 0, 0.1, state="failed")
  _fake_run(root, "MLP", 10, 0, 0.5, state="running")
  out = report.render_sweep(root)
  for key in ("metric", "blocks", "curves", "report"):
    assert os.path.getsize(out[key]) > 5000, key
  summary = fileio.read_json(out["summary"])
  groups = {(g["label"], g["depth"]): g for g in summary["groups"]}
  assert summary["metric"] == "accuracy" and len(summary["running"]) == 1
  g10 = groups[("GloNet", 10)]
  np.testing.assert_allclose(g10["test_best_val"], [0.96, 0.01], atol=1e-9)
  assert g10["blocks_used"][0] == 4 and g10["seconds_per_epoch"][0] == 1.0
  assert groups[("MLP", 24)]["status"] == {"failed": 1}
  assert groups[("MLP", 24)]["test_best_val"] == [None, None]
  assert ("MLP", 10) not in groups  # still running: listed, not aggregated


def test_sweep_report_joins_seeds_from_other_roots(tmp_path):
  """Seeds trained in separate sweep roots aggregate into one report, each run once."""
  main, other = str(tmp_path / "seed0"), str(tmp_path / "seeds12")
  _fake_run(main, "GloNet", 10, 0, 0.90)
  _fake_run(other, "GloNet", 10, 1, 0.94)
  _fake_run(other, "GloNet", 10, 2, 0.98)
  out = report.render_sweep(main, include=[other, os.path.join(other, "GloNet")])
  (group,) = fileio.read_json(out["summary"])["groups"]
  assert group["runs"] == 3 and group["seeds"] == [0, 1, 2]
  np.testing.assert_allclose(group["test_best_val"][0], 0.94, atol=1e-9)
  assert out["report"].startswith(main) and other in open(out["markdown"]).read()
  with pytest.raises(FileNotFoundError, match="empty"):
    report.render_sweep(main, include=[str(tmp_path / "empty")])


def test_report_cli_rejects_a_non_run_directory(tmp_path):
  proc = run_module("common.report", str(tmp_path))
  assert proc.returncode == 2 and "not a run directory" in proc.stderr
