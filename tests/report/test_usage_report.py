"""Layer usage (order, shares, early exit) and the run / sweep reports."""

import glob
import json
import os

import jax
import jax.numpy as jnp
import matplotlib.colors
import numpy as np
import optax
import pytest

from common import fileio, report
from common import usage as usage_lib
from common.data import Dataset, Split, fake_classification
from common.models import DENSE_MODELS, build_model
from common.report import pdf, run_report, sweep_report
from common.report.runs import Run, data_text, find_runs
from common.train import Classification, NonFiniteLossError
from common.train.checkpoint import Checkpointer
from common.train.state import create_train_state
from common.train.trainer import pad_split
from common.usage import compute_usage
from tests.conftest import fake_run, run_module, set_settings
from tests.helpers import run_tiny, tiny_config


def _glonet_state(layers=8, features=6, in_dim=20, classes=4, seed=0):
  model = build_model("GloNet", registry=DENSE_MODELS, num_layers=layers, features=features,
                      out_dim=classes)
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
  u = compute_usage(state, ds.test, Classification(4), model, batch_size=7)
  np.testing.assert_allclose(u["l1"], np.arange(1, 13), rtol=1e-6)
  layer_l1 = [p["l1"] for p in u["param_l1"]]
  assert [p["layer"] for p in u["param_l1"]][:3] == ["stem", "stack[0]", "stack[1]"]
  np.testing.assert_allclose(layer_l1[:12], 6 * np.arange(1, 13), rtol=1e-6)  # 6 biases each
  assert len(u["param_l1"]) == 13 and u["param_l1"][-1]["layer"] == "head"


def test_shares_and_early_exit_match_a_direct_computation():
  model, state = _glonet_state(layers=9, seed=3)
  ds = fake_classification(n_test=53, seed=3)
  u = compute_usage(state, ds.test, Classification(4), model, batch_size=10)
  logits, [taps] = state.apply_fn({"params": state.params}, jnp.asarray(ds.test.x),
                                  method="with_taps")
  used = taps["feat"]
  kernel, bias = state.params["head"]["kernel"], state.params["head"]["bias"]
  contrib = np.array([np.mean(np.abs(np.asarray(x @ kernel))) for x in used])
  np.testing.assert_allclose(u["share"], contrib / contrib.sum(), rtol=1e-4)
  assert abs(sum(u["share"]) - 1) < 1e-6
  k_star = int(np.argmax(np.cumsum(contrib / contrib.sum()) >= 0.95 - 1e-9)) + 1
  assert u["blocks_used"] == k_star and 1 <= k_star <= 8
  exits = u["early_exit"]["accuracy"]  # blocks_needed: the first k within 0.005 of all 8
  assert u["blocks_needed"] == next(k for k in range(1, 9) if exits[k - 1] >= exits[-1] - 0.005)
  for k in range(1, 9):
    out = np.asarray(used[:k].sum(0) @ kernel + bias)
    acc = np.mean(out.argmax(-1) == ds.test.y)
    loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(out, ds.test.y))
    assert abs(u["early_exit"]["accuracy"][k - 1] - acc) < 1e-6
    np.testing.assert_allclose(u["early_exit"]["loss"][k - 1], loss, rtol=1e-4)
  np.testing.assert_allclose(u["early_exit"]["accuracy"][-1],
                             np.mean(np.asarray(logits).argmax(-1) == ds.test.y))


def test_early_exit_with_the_left_out_blocks_at_their_mean_matches_a_direct_computation():
  """``early_exit_mean``: blocks k+1..L replaced by their mean contribution on a reference
  split (the training examples), so that a prefix keeps the average the head expects."""
  model, state = _glonet_state(layers=9, seed=5)
  ds = fake_classification(n_train=61, n_test=53, seed=5)
  kernel, bias = (np.asarray(state.params["head"][k]) for k in ("kernel", "bias"))

  def contributions(x):  # (L, N, classes): block i's exact share of the output
    _, [taps] = state.apply_fn({"params": state.params}, jnp.asarray(x), method="with_taps")
    return np.einsum("lbc,co->lbo", np.asarray(taps["feat"]), kernel)

  mean = contributions(ds.train.x).mean(axis=1)
  test = contributions(ds.test.x)
  u = compute_usage(state, ds.test, Classification(4), model, batch_size=10,
                    reference=ds.train)
  exits = u["early_exit_mean"]
  assert exits["k"] == list(range(1, 9)) and exits["reference_examples"] == 61
  for k in range(1, 9):
    out = bias + test[:k].sum(0) + mean[k:].sum(0)
    acc = np.mean(out.argmax(-1) == ds.test.y)
    loss = np.mean(optax.softmax_cross_entropy_with_integer_labels(out, ds.test.y))
    assert abs(exits["accuracy"][k - 1] - acc) < 1e-6
    np.testing.assert_allclose(exits["loss"][k - 1], loss, rtol=1e-4)
  # With every block in, nothing is left out: the full model, as the zero-filled curve.
  np.testing.assert_allclose(exits["loss"][-1], u["early_exit"]["loss"][-1], rtol=1e-5)
  assert u["blocks_needed_mean"] == next(
      k for k in range(1, 9) if exits["accuracy"][k - 1] >= u["early_exit"]["accuracy"][-1] - 0.005)
  # The two curves differ before the last block (these blocks have non-zero means).
  assert not np.allclose(exits["loss"][:-1], u["early_exit"]["loss"][:-1])
  # The trainer's device copy of the inputs, read in place, gives the same curve (the last
  # batch of 10 holds one example and nine masked repeats of it).
  on_device = compute_usage(state, ds.test, Classification(4), model, batch_size=10,
                            reference=jax.device_put(ds.train.x))
  assert on_device["early_exit_mean"]["reference_examples"] == 61
  np.testing.assert_allclose(on_device["early_exit_mean"]["loss"], exits["loss"], rtol=1e-6)
  assert on_device["early_exit_mean"]["accuracy"] == exits["accuracy"]
  # The trainer's padded device copy of the test split, read in place, gives the same usage.
  padded = compute_usage(state, pad_split(ds.test, 10, None), Classification(4), model,
                         batch_size=10, reference=ds.train)
  assert padded["examples"] == u["examples"] == 53
  for key in ("l1", "share", "contribution"):
    np.testing.assert_allclose(padded[key], u[key], rtol=1e-6, err_msg=key)
  for key in ("early_exit", "early_exit_mean"):
    np.testing.assert_allclose(padded[key]["loss"], u[key]["loss"], rtol=1e-6, err_msg=key)
    assert padded[key]["accuracy"] == u[key]["accuracy"]
  # No reference, no such curve.
  assert "early_exit_mean" not in compute_usage(state, ds.test, Classification(4), model)


def test_non_glonet_models_report_l1_only():
  model = build_model("ResNet", registry=DENSE_MODELS, num_layers=8, features=6, out_dim=4)
  state = create_train_state(model, optax.sgd(0.1), jnp.ones((1, 20)), jax.random.key(0))
  u = compute_usage(state, fake_classification(n_test=20).test, Classification(4), model)
  assert len(u["l1"]) == 3 and "share" not in u and "early_exit" not in u
  assert [p["layer"] for p in u["param_l1"]] == [
      "stem", "stack[0]", "stack[1]", "stack[2]", "final_bn", "head"]


def test_twelve_layer_glonet_run_has_usage_and_a_report_that_re_renders(tmp_path):
  config = tiny_config(tmp_path, num_layers=12, epochs=2)
  path, _ = run_tiny(config, hooks=True)
  u = fileio.read_json(os.path.join(path, "usage.json"))
  for when in ("init", "final"):
    assert len(u[when]["l1"]) == 11 and len(u[when]["share"]) == 11
    assert abs(sum(u[when]["share"]) - 1) < 1e-5
    assert 1 <= u[when]["blocks_used"] <= 11
    assert u[when]["early_exit"]["k"] == list(range(1, 12))
    assert u[when]["early_exit_mean"]["k"] == list(range(1, 12))  # the training split's means
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


@pytest.mark.slow
def test_the_usage_pass_reads_the_trainers_test_copy_when_batched_alike(tmp_path, monkeypatch):
  # The run's usage pass takes batches of min(eval_batch_size, 500): at 50 it reads the
  # trainer's padded test copy (no second one is made); at 600 it pads its own (batches of
  # 500). Same usage.
  padded = []
  pad = usage_lib.pad_to_batches
  monkeypatch.setattr(usage_lib, "pad_to_batches",
                      lambda split, *a: padded.append(len(split)) or pad(split, *a))
  results = {}
  for eval_batch in (50, 600):
    padded.clear()
    path, _ = run_tiny(tiny_config(tmp_path / str(eval_batch), eval_batch_size=eval_batch,
                                   epochs=1), hooks=True)
    results[eval_batch] = fileio.read_json(os.path.join(path, "usage.json"))
    assert padded == ([] if eval_batch == 50 else [130, 130]), padded  # init and final
  for when in ("init", "final"):
    same, own = results[50][when], results[600][when]
    assert same["examples"] == own["examples"] == 130
    for key in ("l1", "share"):
      np.testing.assert_allclose(same[key], own[key], rtol=1e-5, err_msg=key)
    assert same["early_exit"]["accuracy"] == own["early_exit"]["accuracy"]


def test_a_failed_run_still_renders(tmp_path):
  ds = fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  x = np.array(ds.train.x)
  x[:] = np.nan
  config = tiny_config(tmp_path)
  with pytest.raises(NonFiniteLossError):
    run_tiny(config, dataset=Dataset(Split(x, ds.train.y), ds.val, ds.test, ds.info),
             hooks=True)
  for name in ("training_report.pdf", "training_metrics.png", "layer_usage.png"):
    assert os.path.getsize(os.path.join(config.workdir, name)) > 1000


def test_sweep_report_on_fake_runs(tmp_path):
  root = str(tmp_path / "sweep")
  for depth, used in ((6, 3), (10, 4), (24, 4)):
    for seed, acc in ((0, 0.97), (1, 0.95)):
      fake_run(root, "GloNet", depth, seed, acc, seconds=depth / 10, used=used)
  fake_run(root, "MLP", 6, 0, 0.96)
  fake_run(root, "MLP", 24, 0, 0.1, state="diverged")
  from common.train.rundir import RunDir  # noqa: PLC0415
  holder = RunDir(fake_run(root, "MLP", 10, 0, 0.5, state="running"))
  holder.acquire()  # running: a live process holds it
  try:
    out = report.render_sweep(root)
  finally:
    holder.release()
  for key in ("metric", "blocks", "curves", "report"):
    assert os.path.getsize(out[key]) > 5000, key
  summary = fileio.read_json(out["summary"])
  groups = {(g["label"], g["depth"]): g for g in summary["groups"]}
  assert summary["metric"] == "accuracy" and len(summary["running"]) == 1
  g10 = groups[("GloNet", 10)]
  np.testing.assert_allclose(g10["test_best_val"], [0.96, 0.01], atol=1e-9)
  assert g10["blocks_used"][0] == 4 and g10["seconds_per_epoch"][0] == 1.0
  assert groups[("MLP", 24)]["status"] == {"diverged": 1}
  assert groups[("MLP", 24)]["test_best_val"] == [None, None]
  assert ("MLP", 10) not in groups  # still running: listed, not aggregated
  assert summary["status_counts"] == {"diverged": 1, "done": 7, "running": 1}


def test_sweep_report_tells_diverged_interrupted_and_failed_runs_apart(tmp_path):
  root = str(tmp_path / "sweep")
  for depth in (6, 10, 24):
    fake_run(root, "GloNet", depth, 0, 0.9)
  fake_run(root, "GloNet", 24, 1, 0.9, state="diverged",
           message="non-finite training loss at epoch 2, step 5 of 9")
  fake_run(root, "GloNet", 10, 1, 0.9, state="interrupted", message="interrupted by SIGTERM")
  fake_run(root, "MLP", 10, 0, 0.9, state="interrupted",
           message="interrupted; rerun the same command with this --workdir to resume")
  fake_run(root, "MLP", 24, 0, 0.9, state="failed", message="ValueError: boom")
  out = report.render_sweep(root)
  assert os.path.getsize(out["metric"]) > 5000
  summary = fileio.read_json(out["summary"])
  assert summary["status_counts"] == {"diverged": 1, "done": 3, "failed": 1, "interrupted": 2}
  groups = {(g["label"], g["depth"]): g for g in summary["groups"]}
  assert groups[("GloNet", 24)]["status"] == {"done": 1, "diverged": 1}
  assert groups[("GloNet", 24)]["seeds"] == [0]  # only done runs are aggregated
  assert groups[("GloNet", 10)]["status"] == {"done": 1, "interrupted": 1}
  assert groups[("MLP", 10)]["status"] == {"interrupted": 1}
  assert groups[("MLP", 24)]["messages"] == [
      {"seed": 0, "status": "failed", "message": "ValueError: boom"}]
  markdown = open(out["markdown"]).read()
  assert "| GloNet | 24 | 1 | diverged | non-finite training loss at epoch 2" in markdown
  assert "| GloNet | 10 | 1 | interrupted | interrupted by SIGTERM |" in markdown
  assert "| MLP | 24 | 0 | failed | ValueError: boom |" in markdown
  assert "| GloNet | 24 | 1 diverged, 1 done |" in markdown


def test_sweep_report_tells_dead_runs_from_live_ones_and_names_damaged_files(tmp_path):
  """Issue 13.5: a "running" run that no process holds is ``died``; one held by a live
  process stays running; a damaged metrics line or config never drops a run silently."""
  from common.train.rundir import RunDir  # noqa: PLC0415
  root = str(tmp_path / "sweep")
  fake_run(root, "GloNet", 6, 0, 0.9)
  dead = fake_run(root, "GloNet", 10, 0, 0.9, state="running")
  live = fake_run(root, "GloNet", 24, 0, 0.9, state="running")
  holder = RunDir(live)
  holder.acquire()  # a live process (this one) holds it
  damaged = fake_run(root, "MLP", 6, 0, 0.9)
  with open(os.path.join(damaged, "metrics.jsonl")) as f:
    lines = f.read().splitlines()
  with open(os.path.join(damaged, "metrics.jsonl"), "w") as f:
    f.write("\n".join([lines[0], '{"epoch": 2, "train_lo\x00', lines[1]]) + "\n")
  unreadable = fake_run(root, "MLP", 10, 0, 0.9)
  with open(os.path.join(unreadable, "config.json"), "w") as f:
    f.write("{not json")
  wrong_shape = fake_run(root, "MLP", 24, 0, 0.9)
  with open(os.path.join(wrong_shape, "config.json"), "w") as f:
    f.write('{"config": null}')
  try:
    out = report.render_sweep(root)
  finally:
    holder.release()
  summary = fileio.read_json(out["summary"])
  assert summary["status_counts"] == {"died": 1, "done": 2, "running": 1}
  assert summary["running"] == [live]
  assert summary["unreadable"] == [
      f"{path}/config.json is unreadable or not a run's config ({reason}); restore it from a "
      f"copy of the run." for path, reason in ((unreadable, "JSONDecodeError"),
                                                (wrong_shape, "its config is not a JSON object"))]
  markdown = open(out["markdown"]).read()
  assert "| GloNet | 10 | 0 | died | no process holds the run" in markdown
  assert "metrics.jsonl line 2 is damaged (skipped)" in markdown
  assert "Run directories left out (unreadable)" in markdown and unreadable in markdown
  run = Run.load(damaged)
  assert [r["epoch"] for r in run.metrics] == [1, 2] and run.problems
  paths = run_report.render_run(damaged)  # the single-run report renders too
  assert os.path.getsize(paths["report"]) > 0
  assert "Damaged" in run_report.status_text(run)
  assert "no process holds" in run_report.status_text(Run.load(dead))


def _legend_texts(fig) -> list[str]:
  return [t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()]


@pytest.mark.slow
def test_usage_plot_with_and_without_stages_and_blocks_needed(tmp_path):
  """Old usage.json files (no stage_boundaries / blocks_needed) and new ones both render."""
  old = fake_run(str(tmp_path / "old"), "GloNet", 28, 0, 0.9, used=5)
  new = fake_run(str(tmp_path / "new"), "GloNet", 28, 0, 0.9, used=5, usage_extra={
      "stage_boundaries": [0, 9, 18], "blocks_needed": 7, "blocks_needed_tolerance": 0.01})
  one_stage = fake_run(str(tmp_path / "one"), "MLP", 28, 0, 0.9,
                       usage_extra={"stage_boundaries": [0], "blocks_needed": None})
  legends = {}
  for name, path in (("old", old), ("new", new), ("one", one_stage)):
    out = report.render_run(path)
    assert os.path.getsize(out["usage"]) > 5000 and os.path.getsize(out["report"]) > 5000
    legends[name] = _legend_texts(run_report.plot_layer_usage(Run.load(path)))
  assert "blocks used (final): 5" in legends["old"]
  assert not any("stage" in t or "needed" in t for t in legends["old"] + legends["one"])
  assert legends["new"].count("stage boundary") == 3  # on the l1, share and exit panels
  assert "blocks needed (final): 7 (early exit within 0.01 of full)" in legends["new"]
  assert run_report.stage_starts(Run.load(new).usage) == [9, 18]
  assert "need the first 7 blocks" in run_report.usage_sentence(Run.load(new))
  assert not any("train mean" in t for t in legends["new"])
  # The early exit with the left-out blocks at their training mean, where recorded.
  mean = fake_run(str(tmp_path / "mean"), "GloNet", 28, 0, 0.9, used=5, usage_extra={
      "blocks_needed": 7, "blocks_needed_mean": 4,
      "early_exit_mean": {"k": list(range(1, 28)), "accuracy": [0.5] * 27, "loss": [1.0] * 27}})
  fig = run_report.plot_layer_usage(Run.load(mean))
  legend = [" ".join(t.split()) for t in _legend_texts(fig)]  # long labels are wrapped
  assert {"init, rest at train mean", "final, rest at train mean"} <= set(legend)
  # The early-exit and share panels' long legends go below their axes, no wider than them,
  # instead of over the curves.
  fig.draw_without_rendering()
  for ax in fig.axes[1:3]:
    box, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert box.y1 < frame.y0 and box.width <= 1.05 * frame.width, (ax.get_title(), box, frame)
  assert "it needs the first 4" in run_report.usage_sentence(Run.load(mean))
  assert os.path.getsize(report.render_run(mean)["usage"]) > 5000


@pytest.mark.parametrize("state,said", [
    ("done", "the usage after training was not recorded (its pass failed at the end of the "
             "run: python -m common.recompute_usage RUN_DIR"),
    ("interrupted", "no usage after training (the run did not finish)"),
])
def test_a_run_without_final_usage_is_described_by_its_state(tmp_path, state, said):
  # A finished run whose final usage pass failed once read "the run did not finish".
  path = fake_run(str(tmp_path), "GloNet", 6, 0, 0.9, state=state)
  usage = fileio.read_json(os.path.join(path, "usage.json"))
  fileio.atomic_write_json(os.path.join(path, "usage.json"), {"init": usage["init"]})
  assert said in run_report.usage_sentence(Run.load(path))


def test_sweep_blocks_needed_series_and_column(tmp_path):
  root = str(tmp_path / "sweep")
  rule = "early-exit accuracy >= full accuracy - 0.005"  # as common.usage records it
  for depth, needed in ((6, 2), (10, 3)):
    fake_run(root, "GloNet", depth, 0, 0.9, usage_extra={
        "blocks_needed": needed, "blocks_needed_tolerance": 0.005, "blocks_needed_rule": rule})
  fake_run(root, "GloNet", 24, 0, 0.9)  # an older run: no blocks_needed
  fake_run(root, "GloNet", 30, 0, 0.9, usage_extra={  # with the mean-filled early exit
      "blocks_needed": 7, "blocks_needed_mean": 4, "blocks_needed_rule": rule})
  out = report.render_sweep(root)
  summary = fileio.read_json(out["summary"])
  needed = {g["depth"]: g["blocks_needed"][0] for g in summary["groups"]}
  assert needed == {6: 2, 10: 3, 24: None, 30: 7}
  markdown = open(out["markdown"]).read()
  assert "| blocks used | blocks needed |" in markdown and "| 3.0 of 9 |" in markdown
  assert "| 7.0 of 29 (4.0 mean-filled) |" in markdown
  labels = _legend_texts(sweep_report.plot_blocks_used(summary))
  assert labels == ["GloNet", "used, after training", "used, at init", f"needed ({rule})",
                    "all blocks"], labels


def test_sweep_report_joins_seeds_from_other_roots(tmp_path):
  """Seeds trained in separate sweep roots aggregate into one report, each run once."""
  main, other = str(tmp_path / "seed0"), str(tmp_path / "seeds12")
  fake_run(main, "GloNet", 10, 0, 0.90)
  fake_run(other, "GloNet", 10, 1, 0.94)
  fake_run(other, "GloNet", 10, 2, 0.98)
  out = report.render_sweep(main, include=[other, os.path.join(other, "GloNet")])
  (group,) = fileio.read_json(out["summary"])["groups"]
  assert group["runs"] == 3 and group["seeds"] == [0, 1, 2]
  assert sweep_report.results_table(fileio.read_json(out["summary"]))[1][2] == "3 done"
  np.testing.assert_allclose(group["test_best_val"][0], 0.94, atol=1e-9)
  assert out["report"].startswith(main) and other in open(out["markdown"]).read()
  with pytest.raises(FileNotFoundError, match="no run directories .* under .*empty"):
    report.render_sweep(main, include=[str(tmp_path / "empty")])


def test_report_cli_includes_every_folder_given_repeated_or_comma_separated(tmp_path):
  # A list flag given twice keeps its last value only: the first folder's runs would drop
  # out of the report without a word.
  main, a, b, c = (str(tmp_path / n) for n in ("main", "a", "b", "c"))
  for seed, folder in enumerate((main, a, b, c)):
    fake_run(folder, "GloNet", 10, seed, 0.9)
  fake_run(os.path.join(c, "again"), "GloNet", 10, 3, 0.9)  # seed 3 run twice
  proc = run_module("common.report", f"--sweep={main}", f"--include={a}", f"--include={b},{c}")
  assert proc.returncode == 0, proc.stderr
  summary = fileio.read_json(os.path.join(main, sweep_report.SUMMARY_JSON))
  (group,) = summary["groups"]
  assert group["seeds"] == [0, 1, 2, 3, 3]
  # Both runs of seed 3 enter the mean, and the table says so.
  assert sweep_report.results_table(summary)[1][2] == "5 done (seed 3 x2)"


_edit_config = set_settings


def test_sweep_report_never_averages_runs_of_different_settings(tmp_path):
  # A longer recipe's run and a learning-rate probe gathered into one report are rows of
  # their own, marked with what differs; seeds of one configuration still pool.
  root = str(tmp_path / "sweep")
  for seed, acc in ((0, 0.80), (1, 0.82)):
    _edit_config(fake_run(root, "GloNet", 10, seed, acc), {"learning_rate": 0.05, "epochs": 20})
  _edit_config(fake_run(root, "GloNet", 10, 2, 0.90), {"learning_rate": 0.05, "epochs": 80})
  _edit_config(fake_run(root, "GloNet", 18, 0, 0.70), {"learning_rate": 0.05, "epochs": 20})
  fake_run(root, "ResNet", 10, 0, 0.85)
  fake_run(root, "ResNet", 10, 1, 0.87)
  _edit_config(fake_run(root, "ResNet", 10, 2, 0.99), data={"release": "imagenette2-160"})
  groups = {(g["label"], g["depth"]): g
            for g in fileio.read_json(report.render_sweep(root)["summary"])["groups"]}
  short, long = "GloNet [epochs=20]", "GloNet [epochs=80]"
  assert set(groups) == {(short, 10), (long, 10), (short, 18), ("ResNet [data=n/a]", 10),
                         ("ResNet [data=imagenette2-160]", 10)}
  assert groups[(short, 10)]["seeds"] == [0, 1] and groups[(long, 10)]["seeds"] == [2]
  np.testing.assert_allclose(groups[(short, 10)]["test_best_val"][0], 0.81, atol=1e-9)
  assert groups[("ResNet [data=n/a]", 10)]["seeds"] == [0, 1]


def test_an_unreadable_metrics_file_leaves_the_run_in_the_report_with_a_note(tmp_path):
  # A folder in its place (or no permission) once stopped the whole sweep report.
  root = str(tmp_path / "sweep")
  fake_run(root, "GloNet", 6, 0, 0.9)
  odd = fake_run(root, "GloNet", 10, 0, 0.9)
  os.remove(os.path.join(odd, "metrics.jsonl"))
  os.mkdir(os.path.join(odd, "metrics.jsonl"))
  (run,) = [r for r in find_runs(root) if r.path == odd]
  assert run.metrics == [] and run.problems == ["metrics.jsonl is unreadable (IsADirectoryError)"]
  assert os.path.exists(report.render_sweep(root)["report"])


def test_a_run_trained_further_pools_at_its_final_length_and_other_data_never_pools(
    tmp_path):
  # A constant-rate run resumed from 20 to 80 epochs (as the SGEMM README's seed 0) once
  # read as a 20-epoch run; runs on a substitute copy or on files other than the official
  # ones once pooled with runs on the official data.
  root = str(tmp_path / "sweep")
  extended = fake_run(root, "GloNet", 10, 0, 0.80)
  _edit_config(extended, {"epochs": 20}, resumes=[{"at": "t", "epochs": 80}])
  _edit_config(fake_run(root, "GloNet", 10, 1, 0.90), {"epochs": 80})
  _edit_config(fake_run(root, "MLP", 10, 0, 0.7), data={"official_file": True})
  _edit_config(fake_run(root, "MLP", 10, 1, 0.7), data={"substitute": "re-encoded as JPEG"})
  _edit_config(fake_run(root, "MLP", 10, 2, 0.7), data={"official_content": False})
  groups = {(g["label"], g["depth"]): g
            for g in fileio.read_json(report.render_sweep(root)["summary"])["groups"]}
  assert groups[("GloNet", 10)]["seeds"] == [0, 1]
  assert {label for label, _ in groups if label.startswith("MLP")} == {
      "MLP [data=n/a]", "MLP [data=substitute]", "MLP [data=unofficial]"}
  texts = [data_text(Run.load(p)) for p in sorted(glob.glob(os.path.join(root, "MLP", "*", "*")))]
  assert [t.split("; ", 1)[1] for t in texts] == [
      "the official files.", "a substitute: re-encoded as JPEG.",
      "not the official files (allowed by --allow_unofficial_data)."]


def test_usage_curves_draw_one_panel_per_configuration(tmp_path):
  # The figure names its panels as the tables name their rows: a longer recipe's curves
  # are not drawn in the same panel, under the same legend entry, as the short recipe's.
  root = str(tmp_path / "sweep")
  for seed, epochs in ((0, 20), (1, 20), (2, 80)):
    _edit_config(fake_run(root, "GloNet", 10, seed, 0.9, used=3), {"epochs": epochs})
  fake_run(root, "GloNet", 18, 0, 0.9, used=4)  # epochs: TrainConfig's default
  runs = sweep_report.gather_runs(root)
  fig = sweep_report.plot_usage_curves(runs)
  panels = {ax.get_title(): len(ax.get_lines()) for ax in fig.axes if ax.get_title()}
  (deep,) = [r for r in runs if r.depth == 18]
  default = sweep_report.config_labels(runs)[deep.path]
  assert default.startswith("GloNet [epochs=") and "=20]" not in default and "=80]" not in default
  assert panels == {"GloNet [epochs=20]: usage per block": 2,
                    "GloNet [epochs=80]: usage per block": 1,
                    f"{default}: usage per block": 1}, panels


def test_usage_curves_of_many_depths_keep_their_legends_off_the_curves(tmp_path):
  # Seven depths (the SGEMM sweep's 10 to 1000) in each of four panels on two rows: every
  # legend goes below its own panel, no wider than it, and clear of the panel beneath.
  root = str(tmp_path / "sweep")
  for lr in range(4):
    for depth in (10, 20, 50, 100, 200, 500, 1000):
      _edit_config(fake_run(os.path.join(root, f"lr{lr}"), "GloNet", depth, 0, 0.9),
                   {"learning_rate": 0.01 * (lr + 1)})
  fig = sweep_report.plot_usage_curves(sweep_report.gather_runs(root))
  fig.draw_without_rendering()
  panels = [ax for ax in fig.axes if ax.get_title()]
  assert len(panels) == 4
  for ax in panels:
    box, frame = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert len(ax.get_legend().get_texts()) == 7
    assert box.y1 < frame.y0 and box.x1 <= frame.x1 + 1, (box, frame)
    below = [other.get_tightbbox() for other in panels
             if other.get_window_extent().y1 < frame.y0 and other.get_window_extent().x0 < box.x1
             and other.get_window_extent().x1 > box.x0]
    assert all(box.y0 > other.y1 for other in below), (box, below)


def test_depth_plots_of_many_configurations_stay_readable(tmp_path):
  # Ten configurations of one sweep: the depth axis names its depths plainly (18, not
  # 2x10^1), the legend goes below the axes instead of over the points, and the blocks-used
  # plot names each configuration once (a colour) and each quantity once (a line style).
  root = str(tmp_path / "sweep")
  for lr in range(10):
    for depth in (18, 34):
      _edit_config(fake_run(os.path.join(root, f"lr{lr}"), "GloNet", depth, 0, 0.9),
                   {"learning_rate": 0.01 * (lr + 1)})
  fake_run(root, "Dense", 18, 0, 0.8)  # a family without blocks used, listed first
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  fig = sweep_report.plot_metric_vs_depth(summary)
  fig.draw_without_rendering()
  (ax,) = fig.axes
  assert [t.get_text() for t in ax.get_xticklabels()] == ["18", "34"]
  legend = ax.get_legend()
  assert len(legend.get_texts()) == 11
  assert legend.get_window_extent().y1 < ax.get_window_extent().y0  # below the axes
  blocks = sweep_report.plot_blocks_used(summary)
  labels = _legend_texts(blocks)
  assert len(labels) == 10 + 2 + 1 and labels[-3:] == [
      "used, after training", "used, at init", "all blocks"], labels  # none records "needed"
  colors = {tuple(line.get_color()) if not isinstance(line.get_color(), str)
            else line.get_color() for line in blocks.axes[0].get_lines()
            if len(line.get_xdata()) and line.get_linestyle() == "-"}
  assert len(colors) == 10
  # A configuration has the same colour in both plots.
  def legend_colors(figure):
    legend = figure.axes[0].get_legend()
    return {t.get_text(): matplotlib.colors.to_hex(h.get_color())
            for t, h in zip(legend.get_texts(), legend.legend_handles, strict=True)}
  in_metric, in_blocks = legend_colors(fig), legend_colors(blocks)
  shared = [k for k in in_blocks if k in in_metric]
  assert len(shared) == 10 and all(in_blocks[k] == in_metric[k] for k in shared), (
      in_metric, in_blocks)


def test_seconds_per_epoch_pooled_over_machines_is_not_given(tmp_path):
  # The mean of an H100's and a CPU's epoch time is the speed of neither machine; and where
  # a sweep's runs come from several machines, each figure names its own, since one row
  # can hold a CPU's depth 18 beside an H100's depth 34.
  root = str(tmp_path / "sweep")
  cpu = {"devices": ["d0"], "device_kind": "cpu", "cpu": "AMD EPYC"}
  h100 = {"devices": ["d0"], "device_kind": "NVIDIA H100 80GB HBM3"}
  for seed, env in ((0, cpu), (1, h100)):
    _edit_config(fake_run(root, "GloNet", 10, seed, 0.9, seconds=10.0 * (seed + 1)),
                 environment=env)
  _edit_config(fake_run(root, "GloNet", 18, 0, 0.9, seconds=7.0), environment=h100)
  _edit_config(fake_run(root, "ResNet", 18, 0, 0.9, seconds=70.0), environment=cpu)
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  seconds = {row[0]: row[1:] for row in sweep_report.seconds_table(summary)[1:]}
  assert seconds == {"GloNet": ["n/a (2 machines)", "7.00 (NVIDIA H100 80GB HBM3)"],
                     "ResNet": ["", "70.00 (AMD EPYC)"]}
  assert [row[-1] for row in sweep_report.results_table(summary)[1:]] == [
      "n/a (2 machines)", "7.00 (NVIDIA H100 80GB HBM3)", "70.00 (AMD EPYC)"]
  # All on one machine: the figures alone (the report's header names the machine).
  one = str(tmp_path / "one")
  _edit_config(fake_run(one, "ResNet", 18, 0, 0.9, seconds=70.0), environment=cpu)
  summary = fileio.read_json(report.render_sweep(one)["summary"])
  assert sweep_report.seconds_table(summary)[1] == ["ResNet", "70.00"]
  # A run resumed on another machine: its epochs were timed on both.
  resumed = str(tmp_path / "resumed")
  _edit_config(fake_run(resumed, "ResNet", 18, 0, 0.9, seconds=70.0), environment=cpu,
               resumes=[{"at": "t", "epochs": 2, **h100}])
  summary = fileio.read_json(report.render_sweep(resumed)["summary"])
  assert sweep_report.seconds_table(summary)[1] == ["ResNet", "n/a (2 machines)"]


def test_report_cli_rejects_a_non_run_directory(tmp_path):
  proc = run_module("common.report", str(tmp_path))
  assert proc.returncode == 2 and "not a run directory" in proc.stderr


def test_reports_escape_paths_and_messages_and_render_the_same_bytes_twice(tmp_path):
  """Issue 13.8: a path or message with ``<`` or ``&`` is text, never markup; rendering
  twice from the same files gives the same PDF."""
  root = str(tmp_path / "a<b & c>")
  fake_run(root, "GloNet", 6, 0, 0.9)
  odd = fake_run(root, "GloNet", 10, 0, 0.9, state="interrupted",
                 message="ValueError: expected <int> & got <str> for long messages here")
  first = run_report.render_run(odd)["report"]
  data = open(first, "rb").read()
  assert run_report.render_run(odd)["report"] == first and open(first, "rb").read() == data
  out = report.render_sweep(root)
  data = open(out["report"], "rb").read()
  report.render_sweep(root)
  assert open(out["report"], "rb").read() == data


def test_sweep_seconds_per_epoch_is_each_runs_median(tmp_path):
  # An epoch paused or shared with other work must not stand for the model's speed.
  root = str(tmp_path / "sweep")
  for seed, slow in ((0, 1000.0), (1, 2000.0)):
    path = fake_run(root, "GloNet", 10, seed, 0.9, seconds=10.0)
    with open(os.path.join(path, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    records.append({**records[-1], "epoch": 3, "train_seconds": slow})
    records.append({**records[-1], "epoch": 4, "train_seconds": 12.0})
    with open(os.path.join(path, "metrics.jsonl"), "w") as f:
      f.writelines(f"{json.dumps(r)}\n" for r in records)
  out = report.render_sweep(root)
  (group,) = fileio.read_json(out["summary"])["groups"]
  assert group["seconds_per_epoch"][0] == 11.0  # median of 10, 10, slow, 12 per run
  assert "Median seconds per epoch" in open(out["markdown"]).read()


def test_run_report_gives_the_median_epoch_time_beside_the_mean(tmp_path):
  path = fake_run(str(tmp_path), "GloNet", 10, 0, 0.9, seconds=10.0)
  run = Run.load(path)
  run.metrics.append({**run.metrics[-1], "epoch": 3, "train_seconds": 1000.0})
  rows = dict(run_report._timing_rows(run)[1:])
  assert rows["median train time per epoch (no compile, no evaluation)"] == "10.00 s"


def test_sweep_table_gives_a_spread_only_where_two_seeds_or_more_are_done(tmp_path):
  # One seed has an unknown spread, not a spread of zero.
  root = str(tmp_path / "sweep")
  fake_run(root, "GloNet", 6, 0, 0.90)
  fake_run(root, "GloNet", 10, 0, 0.90)
  fake_run(root, "GloNet", 10, 1, 0.94)
  fake_run(root, "GloNet", 10, 2, 0.5, state="failed")
  out = report.render_sweep(root)
  rows = {row[1]: row for row in sweep_report.results_table(fileio.read_json(out["summary"]))[1:]}
  assert rows[6][3:5] == ["90.00", "90.00"]
  assert rows[10][3:5] == ["92.00 ± 2.00", "92.00 ± 2.00"]
  assert "| 90.00 | 90.00 |" in open(out["markdown"]).read()


def test_reports_say_which_copy_of_the_data_the_numbers_come_from(tmp_path):
  root = str(tmp_path / "sweep")
  copy, official, old = (fake_run(root, "GloNet", 10, s, 0.9) for s in (0, 1, 2))
  for path, data in (
      (copy, {"source": "/d/imagenette2-224.tar", "release": "imagenette2-224",
              "substitute": "re-encoded at 224x224", "test_split": "the official val images",
              "classes": ["tench", "church"]}),
      (official, {"source": "local IDX files", "folder": "/d/mnist", "official_files": True,
                  "sha256": {"train-images-idx3-ubyte.gz": "ab12"}})):  # a hash per file
    config = fileio.read_json(os.path.join(path, "config.json"))
    fileio.atomic_write_json(os.path.join(path, "config.json"), {**config, "data": data})
  texts = [data_text(Run.load(p)) for p in (copy, official, old)]
  assert texts == [
      "imagenette2-224 (/d/imagenette2-224.tar); a substitute: re-encoded at 224x224; "
      "test split: the official val images.",
      "local IDX files (/d/mnist); the official files.", "not recorded"]
  rows = dict(run_report._config_rows(Run.load(copy))[1:])
  assert rows["data: classes"] == "tench, church"
  out = report.render_sweep(root)
  assert fileio.read_json(out["summary"])["data"] == sorted(texts)
  assert f"Data: {texts[0]}" in open(out["markdown"]).read()
  # One copy (one content hash) read from two paths, say on two machines: one line naming
  # both paths; another copy at one of those paths stays a line of its own.
  for seed, source, sha in ((3, "/a/imagenette2-224.tar", "f00d"),
                            (4, "/b/imagenette2-224.tar", "f00d"),
                            (5, "/a/imagenette2-224.tar", "beef")):
    path = fake_run(root, "GloNet", 10, seed, 0.9)
    config = fileio.read_json(os.path.join(path, "config.json"))
    config["data"] = {"source": source, "release": "imagenette2-224", "sha256": sha}
    fileio.atomic_write_json(os.path.join(path, "config.json"), config)
  lines = fileio.read_json(report.render_sweep(root)["summary"])["data"]
  assert [t for t in lines if t.startswith("imagenette2-224 (/a") or "/b/" in t] == [
      "imagenette2-224 (/a/imagenette2-224.tar).",
      "imagenette2-224 (/a/imagenette2-224.tar, /b/imagenette2-224.tar)."], lines


def _legend_sizes(fig) -> list[float]:
  return [t.get_fontsize() for ax in fig.axes if ax.get_legend()
          for t in ax.get_legend().get_texts()]


def test_report_figures_are_page_wide_with_legends_of_8_points_or_more(tmp_path):
  # The layer-usage figure was four panels in a row, printed a sixth of the page high
  # with 4-point legends. Figures are now drawn at the page's width and placed at it.
  root = str(tmp_path / "sweep")
  run = Run.load(fake_run(root, "GloNet", 6, 0, 0.9))
  fake_run(root, "ResNet", 6, 0, 0.9)
  summary = fileio.read_json(report.render_sweep(root)["summary"])
  figures = [run_report.plot_layer_usage(run), run_report.plot_training_metrics(run),
             sweep_report.plot_metric_vs_depth(summary), sweep_report.plot_blocks_used(summary),
             sweep_report.plot_usage_curves([run])]
  for fig in figures:
    assert fig.get_size_inches()[0] == pytest.approx(pdf.FIGURE_WIDTH)
    sizes = _legend_sizes(fig)
    assert sizes and min(sizes) >= 8, sizes
  # Two panels a row: the GloNet usage figure is a 2 x 2 grid.
  assert len(run_report.plot_layer_usage(run).axes) == 4
  assert run_report.plot_layer_usage(run).get_size_inches()[1] > 6


def test_a_sweep_without_glonets_has_no_blocks_used_figure(tmp_path):
  root = str(tmp_path / "sweep")
  fake_run(root, "ResNet", 6, 0, 0.9)
  fake_run(root, "MLP", 6, 0, 0.9)
  out = report.render_sweep(root)
  assert "blocks" not in out and not os.path.exists(os.path.join(root, "sweep_blocks_used.png"))
  assert os.path.exists(out["curves"]) and os.path.exists(out["metric"])


def test_reports_name_the_budget_and_the_units_of_their_metric(tmp_path):
  path = fake_run(str(tmp_path / "s"), "GloNet", 6, 0, 0.9, task=("mse", "min"))
  record = fileio.read_json(os.path.join(path, "config.json"))
  record["config"].update(variant="smoke", train={"seed": 0, "epochs": 1})
  record["data"] = {"sizes": {"train": 5000, "val": 500, "test": 1000}}
  fileio.atomic_write_json(os.path.join(path, "config.json"), record)
  run = Run.load(path)
  assert dict(run_report.header(run))["Budget"] == ("1 epoch on 5,000 training examples "
                                                    "(recipe smoke)")
  assert run_report.metric_note(run) == "MSE: lower is better."
  summary = fileio.read_json(report.render_sweep(str(tmp_path / "s"))["summary"])
  assert summary["budgets"] == ["1 epoch on 5,000 training examples (recipe smoke)"]
