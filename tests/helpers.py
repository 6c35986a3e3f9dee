"""Helpers shared by several test modules: a tiny in-process run, error-line and model checks.

Test modules import these rather than each other's private functions, so that a module
can be read, run or moved on its own.
"""

import contextlib
import functools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from typing import Any
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from common import cli
from common import experiment as experiment_lib
from common.config import TrainConfig
from common.data import fake_classification
from common.errors import DivergedError, UserError
from common.experiment import default_hooks
from common.models import DENSE_MODELS, build_from_config, canonical_config
from common.train import TIMING_KEYS, Classification, run_experiment
from common.train.trainer import CPU_INIT_COMPILER_OPTIONS


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


def run_tiny(config, dataset=None, *, hooks: bool = False):
  """Runs ``config`` in process on a small fake 4-class dataset; returns (path, summary).

  With ``hooks`` the layer-usage pass and the report run at the end, as in a program;
  without, only training and its records (what most tests check, in half the time).
  """
  dataset = dataset or fake_classification(n_train=320, n_val=100, n_test=130, seed=0)
  config = canonical_config(config, DENSE_MODELS)
  model, name, info = build_from_config(config, 4, DENSE_MODELS)
  return run_experiment(config, model, name, dataset, Classification(4),
                        extra_config={"model": info},
                        hooks=default_hooks(config, model, dataset, Classification(4))
                        if hooks else ())


@contextlib.contextmanager
def hermetic_environ() -> Iterator[None]:
  """What :func:`tests.conftest.hermetic_env` gives a child process, for code run in
  process: no ``$GLONETS_DATA_DIR`` and an empty TFDS folder, so no test finds real data."""
  empty_tfds = os.path.join(tempfile.gettempdir(), "glonets_tests_empty_tfds")
  with mock.patch.dict(os.environ, {"TFDS_DATA_DIR": empty_tfds, "TQDM_DISABLE": "1"}):
    os.environ.pop("GLONETS_DATA_DIR", None)
    os.environ.pop("LAUNCHER", None)
    yield


def run_train(experiment: str, *args: str) -> tuple[str, dict[str, Any]]:
  """``python -m <experiment>.train args`` in process: the program's own parse of the
  command line and its run, without a child process. Returns ``(run_path, summary)``."""
  config = cli.parse_config(experiment, [f"{experiment}.train", *args])
  with hermetic_environ():
    return experiment_lib.run(config)


def train_main(module: str, *args: str) -> subprocess.CompletedProcess:
  """``python -m <module> args`` for an experiment's ``train.py``, in process: how the
  program ends (exit status, its ``error:`` line) as :func:`common.cli.run_main` ends it,
  without a child process. Unexpected exceptions propagate, as a traceback would show."""
  experiment = module.removesuffix(".train")
  try:
    run_train(experiment, *args)
  except UserError as e:
    return subprocess.CompletedProcess([module, *args], 2, "", f"error: {e}\n")
  except DivergedError as e:
    return subprocess.CompletedProcess([module, *args], 1, "", f"error: {e}\n")
  return subprocess.CompletedProcess([module, *args], 0, "", "")


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


def init_variables(model, *args, **kwargs):
  """``model.init(*args, **kwargs)`` compiled as one program, as training compiles it (on
  the CPU at optimisation level 1, which gives the same values to the bit; see
  ``tests/models/test_init.py``), instead of op by op: a CNN's variables in about 1.5 s
  instead of 3 to 11."""
  init = jax.jit(functools.partial(model.init, **kwargs)).lower(*args)
  return init.compile(CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu"
                      else None)(*args)


def assert_same_model(a, b, x):
  """Same parameters at init, same gradients (train mode, batch norm included)."""
  variables = init_variables(a, jax.random.key(0), x)
  jax.tree.map(np.testing.assert_array_equal, variables,
               init_variables(b, jax.random.key(0), x))

  def loss(params, model):
    out, _ = model.apply({**variables, "params": params}, x, train=True,
                         mutable=["batch_stats"])
    return jnp.sum(out ** 2)

  g1, g2 = (jax.grad(loss)(variables["params"], m) for m in (a, b))
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), g1, g2)
