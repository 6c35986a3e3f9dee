"""The flat view of the nested config, resume compatibility, and the optimizer recipes."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from common import cli
from common.config import TrainConfig
from common.errors import ConfigError, RunDirError
from common.rundir_contract import SCHEMA_VERSION, incompatible_settings
from common.train import optimizers, rundir
from common.train.optimizers import decay_mask, optimizer_from_config, schedule_from_config

LR = 0.1


def _config(**overrides) -> TrainConfig:
  base = dict(
      experiment="test", model="GloNet", num_layers=4, features=8, use_batch_norm=None,
      epochs=10, batch_size=32, eval_batch_size=50, learning_rate=LR,
      lr_schedule="constant", optimizer="ADAM", momentum=0.9, l2_reg_alpha=0.0, seed=0,
      validation_size=None, split_seed=0, data_dir=None, workdir=None, result_dir="r",
      tensorboard=False, progress=False)
  base.update(overrides)
  return TrainConfig(**base)


def _values(schedule, steps) -> np.ndarray:
  return np.array([float(schedule(s)) for s in steps])


# --- the nested record and resume compatibility ---------------------------------------


def test_the_nested_record_round_trips_to_the_same_flat_view():
  config = _config(lr_schedule="step", lr_boundaries=(3, 6))
  saved = json.loads(json.dumps(config.to_nested()))
  assert saved["optim"]["boundaries"] == [3, 6] and saved["model"]["name"] == "GloNet"
  assert TrainConfig.from_nested(saved) == config
  hash(TrainConfig.from_nested(saved))  # boundaries back as a tuple: still hashable
  assert incompatible_settings(saved, config.to_nested()) == []


def test_a_setting_missing_from_a_record_takes_its_default():
  nested = _config().to_nested()
  del nested["optim"]["weight_decay"]
  assert TrainConfig.from_nested(nested).weight_decay == 0.0
  del nested["model"]["name"]
  with pytest.raises(ConfigError, match="the config sets no model.name"):
    TrainConfig.from_nested(nested)


def test_resume_compares_the_result_sections_only():
  saved = _config().to_nested()
  assert incompatible_settings(saved, _config(eval_batch_size=7, epochs=20).to_nested()) == []
  assert incompatible_settings(saved, _config(remat=True, data_dir="x").to_nested()) == []
  assert incompatible_settings(saved, _config(weight_decay=1e-4).to_nested()) == [
      "optim.weight_decay: 0.0 -> 0.0001"]
  cosine = _config(lr_schedule="cosine").to_nested()
  assert incompatible_settings(cosine, _config(lr_schedule="cosine", epochs=20).to_nested()
                               ) == ["train.epochs: 10 -> 20"]
  other = {**saved, "experiment": "other"}
  assert incompatible_settings(saved, other) == ["experiment: 'test' -> 'other'"]


def test_check_compatible_names_each_setting_and_refuses_other_formats(tmp_path):
  record = {"schema_version": SCHEMA_VERSION, "config": _config().to_nested(),
            "data": {"sha256": "x"}}
  (tmp_path / rundir.CONFIG).write_text(json.dumps(record))
  run = rundir.RunDir(str(tmp_path))
  run.check_compatible(_config().to_nested(), record["data"])  # no error
  with pytest.raises(RunDirError, match=r"optim.learning_rate: 0.1 -> 0.2; "
                                        r"train.batch_size: 32 -> 64"):
    run.check_compatible(_config(learning_rate=0.2, batch_size=64).to_nested(), record["data"])
  for version, match in ((SCHEMA_VERSION + 1, "written by a newer version"),
                         (2, "python -m common.migrate")):
    record["schema_version"] = version
    (tmp_path / rundir.CONFIG).write_text(json.dumps(record))
    with pytest.raises(RunDirError, match=match):
      run.check_compatible(_config().to_nested(), record["data"])


# --- schedules ---------------------------------------------------------------------------

SPE = 5  # steps per epoch
TOTAL = 10 * SPE


def test_constant_and_cosine_are_as_before():
  constant = schedule_from_config(_config(), SPE)
  np.testing.assert_array_equal(_values(constant, [0, 17, TOTAL]), [LR] * 3)
  cosine = schedule_from_config(_config(lr_schedule="cosine"), SPE)
  before = optax.cosine_decay_schedule(LR, TOTAL)
  steps = [0, 1, 13, 25, 49, TOTAL]
  np.testing.assert_array_equal(_values(cosine, steps), _values(before, steps))
  np.testing.assert_array_equal(_values(optimizers.make_schedule(LR, "cosine", TOTAL), steps),
                                _values(before, steps))


def test_step_schedule_multiplies_at_each_boundary():
  sched = schedule_from_config(
      _config(lr_schedule="step", lr_boundaries=(3, 6), lr_decay_factor=0.1), SPE)
  # Epoch 3 ends at step 15: the factor applies from the first step of epoch 4.
  got = _values(sched, [0, 14, 15, 29, 30, TOTAL - 1])
  np.testing.assert_allclose(got, [LR, LR, LR * 0.1, LR * 0.1, LR * 0.01, LR * 0.01],
                             rtol=1e-6)


def test_warmup_rises_linearly_from_zero_then_follows_the_schedule():
  sched = schedule_from_config(_config(warmup_epochs=2), SPE)  # 10 warmup steps
  np.testing.assert_allclose(_values(sched, [0, 1, 5, 10, 11, TOTAL]),
                             [0, LR / 10, LR / 2, LR, LR, LR], rtol=1e-6, atol=1e-9)
  cosine = schedule_from_config(_config(lr_schedule="cosine", warmup_epochs=2), SPE)
  np.testing.assert_allclose(_values(cosine, [0, 5, 10, TOTAL]), [0, LR / 2, LR, 0],
                             rtol=1e-6, atol=1e-9)
  assert float(cosine(30)) == pytest.approx(LR / 2, rel=1e-5)  # half way through the decay


def test_step_boundaries_stay_at_their_epochs_with_warmup():
  sched = schedule_from_config(
      _config(lr_schedule="step", lr_boundaries=(3,), warmup_epochs=1), SPE)
  np.testing.assert_allclose(_values(sched, [0, 5, 14, 15]), [0, LR, LR, LR * 0.1],
                             rtol=1e-6)


def test_linear_schedule_reaches_zero_at_the_end():
  sched = schedule_from_config(_config(lr_schedule="linear"), SPE)
  np.testing.assert_allclose(_values(sched, [0, TOTAL // 2, TOTAL]), [LR, LR / 2, 0],
                             rtol=1e-6, atol=1e-9)


def test_onecycle_peaks_at_the_learning_rate():
  sched = schedule_from_config(_config(lr_schedule="onecycle"), SPE)
  values = _values(sched, range(TOTAL + 1))
  assert values.max() == pytest.approx(LR, rel=1e-6)
  assert values.argmax() == int(0.3 * TOTAL)
  assert values[0] == pytest.approx(LR / 25, rel=1e-6) and values[-1] < LR * 1e-4


# --- optimizers --------------------------------------------------------------------------


def _params():
  """Dense kernels (2-D; 3-D when stacked by a scan), biases (1-D; 2-D stacked), BN."""
  return {
      "stem": {"kernel": jnp.full((3, 4), 2.0), "bias": jnp.full((4,), 2.0)},
      "stack": {"scan": {"dense": {"kernel": jnp.full((2, 4, 4), 3.0),
                                   "bias": jnp.full((2, 4), 3.0)},
                         "bn": {"scale": jnp.full((2, 4), 1.5), "bias": jnp.full((2, 4), 0.5)}}},
      "final_bn": {"scale": jnp.ones((4,)), "bias": jnp.full((4,), 0.25)},
  }


def _step(tx, params, grads, n=1):
  state = tx.init(params)
  for _ in range(n):
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def test_decay_mask_selects_kernels_by_name_not_rank():
  mask = decay_mask(_params())
  flat = {jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(mask)[0]}
  assert {k for k, v in flat.items() if v} == {"['stem']['kernel']",
                                               "['stack']['scan']['dense']['kernel']"}


@pytest.mark.parametrize("optimizer", ["SGD", "ADAM"])
def test_weight_decay_shrinks_kernels_only(optimizer):
  wd = 0.01
  tx, _ = optimizer_from_config(
      _config(optimizer=optimizer, weight_decay=wd, learning_rate=LR), SPE)
  params = _params()
  new = _step(tx, params, jax.tree.map(jnp.zeros_like, params))
  mask = decay_mask(params)
  for decayed, old, after in zip(jax.tree.leaves(mask), jax.tree.leaves(params),
                                 jax.tree.leaves(new), strict=True):
    if not decayed:
      np.testing.assert_array_equal(after, old)
    elif optimizer == "SGD":  # the first momentum step is the gradient: w - lr * wd * w
      np.testing.assert_allclose(after, old - LR * wd * old, rtol=1e-6)
    else:  # Adam normalises the gradient wd * w: the kernel shrinks, by about lr
      assert np.all(after < old)


def test_the_optimizer_holds_only_the_transformations_asked_for():
  params = _params()
  for optimizer, before in (("ADAM", optax.adam(optax.constant_schedule(LR))),
                            ("SGD", optax.sgd(optax.constant_schedule(LR), momentum=0.9))):
    tx, _ = optimizer_from_config(_config(optimizer=optimizer), SPE)
    assert (jax.tree.structure(tx.init(params)) == jax.tree.structure(before.init(params)))
  tx, _ = optimizer_from_config(_config(weight_decay=1e-4), SPE)  # one more chain link
  assert jax.tree.structure(tx.init(params)) != jax.tree.structure(
      optax.adam(optax.constant_schedule(LR)).init(params))


def test_nesterov_differs_from_plain_momentum():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  plain, _ = optimizer_from_config(_config(optimizer="SGD"), SPE)
  nesterov, _ = optimizer_from_config(_config(optimizer="SGD", nesterov=True), SPE)
  a = _step(plain, params, grads, n=2)["stem"]["kernel"]
  b = _step(nesterov, params, grads, n=2)["stem"]["kernel"]
  # Plain: 1 + 1.9 gradients in 2 steps; Nesterov: 1.9 + 2.71 (g + m * trace each step).
  np.testing.assert_allclose(2.0 - a, LR * 2.9, rtol=1e-6)
  np.testing.assert_allclose(2.0 - b, LR * 4.61, rtol=1e-6)


def test_gradient_clipping_scales_the_loss_gradient_before_weight_decay():
  params = _params()
  grads = jax.tree.map(lambda p: 3.0 * jnp.ones_like(p), params)
  norm = float(optax.tree.norm(grads))
  clipped, _ = optimizer_from_config(_config(optimizer="SGD", momentum=0.0,
                                             grad_clip_norm=1.0, weight_decay=0.1), SPE)
  new = _step(clipped, params, grads)
  # Kernels: the clipped gradient (3 / norm) plus the unclipped decay (0.1 * 2.0).
  np.testing.assert_allclose(2.0 - new["stem"]["kernel"], LR * (3.0 / norm + 0.2), rtol=1e-5)
  np.testing.assert_allclose(2.0 - new["stem"]["bias"], LR * 3.0 / norm, rtol=1e-5)
  loose, _ = optimizer_from_config(_config(optimizer="SGD", momentum=0.0,
                                           grad_clip_norm=10 * norm), SPE)
  np.testing.assert_allclose(2.0 - _step(loose, params, grads)["stem"]["bias"], LR * 3.0,
                             rtol=1e-6)  # below the threshold: untouched
  off, _ = optimizer_from_config(_config(optimizer="SGD", momentum=0.0), SPE)
  assert jax.tree.structure(off.init(params)) == jax.tree.structure(
      optax.sgd(optax.constant_schedule(LR)).init(params))  # no clipping: the bare optimizer


def test_make_optimizer_keeps_its_old_signature():
  tx = optimizers.make_optimizer("sgd", optimizers.make_schedule(LR, "constant", 1), 0.0)
  new = _step(tx, _params(), jax.tree.map(jnp.ones_like, _params()))
  np.testing.assert_allclose(new["stem"]["bias"], 2.0 - LR)


# --- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, match", [
    ({"lr_schedule": "step"}, "needs --lr_boundaries"),
    ({"lr_schedule": "step", "lr_boundaries": (6, 3)}, "strictly increasing"),
    ({"lr_schedule": "step", "lr_boundaries": (3, 3)}, "strictly increasing"),
    ({"lr_schedule": "step", "lr_boundaries": (0, 3)}, r"within 1\.\.epochs=10"),
    ({"lr_schedule": "step", "lr_boundaries": (3, 11)}, r"within 1\.\.epochs=10"),
    ({"lr_schedule": "step", "lr_boundaries": (1,), "warmup_epochs": 1}, "after the warmup"),
    ({"lr_schedule": "cosine", "lr_boundaries": (3,)}, "apply to --lr_schedule=step only"),
    ({"lr_decay_factor": 0.0}, r"in \(0, 1\]"),
    ({"lr_decay_factor": 1.5}, r"in \(0, 1\]"),
    ({"warmup_epochs": -1.0}, "warmup_epochs must be >= 0 and < epochs"),
    ({"warmup_epochs": 10}, "warmup_epochs must be >= 0 and < epochs"),
    ({"lr_schedule": "onecycle", "warmup_epochs": 1}, "own warmup"),
    ({"lr_schedule": "plateau", "lr_decay_factor": 1.0}, "plateau needs lr_decay_factor < 1"),
    ({"plateau_patience": 0}, "plateau_patience must be >= 1 epoch"),
    ({"weight_decay": -1e-4}, "weight_decay must be"),
    ({"grad_clip_norm": -1.0}, "grad_clip_norm must be"),
    ({"min_crop_area": 0.0}, "min_crop_area must be"),
    ({"nesterov": True}, "SGD only"),
    ({"nesterov": True, "optimizer": "SGD", "momentum": 0.0}, "nesterov needs momentum"),
    ({"lr_schedule": "exponential"}, "unknown learning-rate schedule 'exponential'"),
    ({"optimizer": "RMSPROP"}, "unknown optimizer 'RMSPROP'"),
    ({"learning_rate": 0.0}, "learning_rate must be a finite number > 0"),
])
def test_bad_values_are_config_errors(overrides, match):
  with pytest.raises(ConfigError, match=match):
    _config(**overrides)


# --- flags -------------------------------------------------------------------------------

def _parse(*argv: str) -> str:
  try:
    config = cli.parse_config("linear_mnist", ["train.py", *argv])
    return json.dumps(TrainConfig.from_nested(config).to_dict())
  except ConfigError as e:
    return f"ConfigError: {e}"


def test_flags_fill_the_new_settings():
  d = json.loads(_parse("--optimizer=sgd", "--nesterov", "--lr_schedule=step",
                        "--lr_boundaries=3,6", "--lr_decay_factor=0.2", "--warmup_epochs=0.5",
                        "--remat"))
  assert (d["optimizer"], d["nesterov"], d["lr_schedule"], d["lr_boundaries"],
          d["lr_decay_factor"], d["warmup_epochs"], d["remat"], d["momentum"]) == (
              "SGD", True, "step", [3, 6], 0.2, 0.5, True, 0.9)
  assert d["weight_decay"] == 0.0 and d["features"] == 256  # the config's defaults
  defaults = json.loads(_parse())
  assert (defaults["lr_boundaries"], defaults["nesterov"], defaults["warmup_epochs"]) == (
      [], False, 0.0)


def test_bad_boundaries_flag_is_a_config_error():
  assert _parse("--lr_schedule=step", "--lr_boundaries=3,x").startswith(
      "ConfigError: --lr_boundaries must be comma-separated whole epochs")
