"""Helpers shared by several test modules: a tiny in-process run, error-line and model checks.

Test modules import these rather than each other's private functions, so that a module
can be read, run or moved on its own.
"""

import jax
import jax.numpy as jnp
import numpy as np

from common.config import TrainConfig
from common.data import fake_classification
from common.experiment import default_hooks
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.train import TIMING_KEYS, Classification, run_experiment


def tiny_config(tmp_path, **overrides) -> TrainConfig:
  """A 3-epoch, 4-layer GloNet config writing to ``tmp_path/run``; ``overrides`` win."""
  base = dict(
      experiment="test", model="GloNet", num_layers=4, features=16, use_batch_norm=None,
      epochs=3, batch_size=64, eval_batch_size=50, learning_rate=3e-3, lr_schedule="cosine",
      optimizer="ADAM", momentum=0.9, l2_reg_alpha=0.0, seed=0, validation_size=128,
      split_seed=0, data_dir=None, workdir=str(tmp_path / "run"), result_dir=str(tmp_path),
      tensorboard=True, progress=False)
  base.update(overrides)
  return TrainConfig(**base)


def run_tiny(config, dataset=None):
  """Runs ``config`` in process on a small fake 4-class dataset; returns (path, summary)."""
  dataset = dataset or fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  config = canonical_config(config, DENSE_MODELS)
  model, name, info = build_from_config(config, 4, DENSE_MODELS)
  return run_experiment(config, model, name, dataset, Classification(4),
                        extra_config={"model": info},
                        hooks=default_hooks(config, model, dataset, Classification(4)))


def math_only(records):
  """Metric records without their timings: what must repeat exactly across reruns."""
  return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def error_line(proc) -> str:
  """The one ``error:`` line of a process that exited with status 2, without a traceback."""
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr and "FATAL" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, proc.stderr[-2000:]
  return errors[0]


def assert_same_model(a, b, x):
  """Same parameters at init, same gradients (train mode, batch norm included)."""
  variables = a.init(jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, variables, b.init(jax.random.key(0), x))

  def loss(params, model):
    out, _ = model.apply({**variables, "params": params}, x, train=True,
                         mutable=["batch_stats"])
    return jnp.sum(out ** 2)

  g1, g2 = (jax.grad(loss)(variables["params"], m) for m in (a, b))
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), g1, g2)
