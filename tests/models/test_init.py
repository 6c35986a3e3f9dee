"""The trainer's initial state, compiled at a lower optimisation level on the CPU for a
faster start, equals the default compile bit for bit: a run starts where it always did."""

import jax
import numpy as np
import pytest

from common.config import TrainConfig
from common.data import fake_classification, fake_images
from common.data.augment import image_preprocess
from common.models import CIFAR_MODELS, DENSE_MODELS, build_from_config, canonical_config
from common.train import Classification, create_train_state, steps
from common.train.optimizers import optimizer_from_config
from common.train.trainer import Trainer, seed_keys


def _config(model: str, registry, **kw) -> TrainConfig:
  return canonical_config(TrainConfig(
      experiment="test", model=model, num_layers=kw.pop("num_layers", None),
      features=kw.pop("features", 1), use_batch_norm=None, epochs=1, batch_size=32,
      eval_batch_size=50, learning_rate=0.05, lr_schedule="cosine", optimizer="SGD",
      momentum=0.9, nesterov=True, weight_decay=5e-4, l2_reg_alpha=0.0, seed=3,
      validation_size=None, split_seed=0, data_dir=None, workdir=None, result_dir="unused",
      tensorboard=False, progress=False), registry)


_CASES = {
    "cnn": lambda: (_config("GloNet8", CIFAR_MODELS), CIFAR_MODELS,
                    fake_images(n_train=64, n_val=30, n_test=30),
                    image_preprocess((0.3,) * 3, (0.3,) * 3, augment=True, pad=1)),
    "mlp": lambda: (_config("ResNet", DENSE_MODELS, num_layers=6, features=16), DENSE_MODELS,
                    fake_classification(n_train=64, n_val=30, n_test=30), None),
}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options apply on the CPU only")
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(_CASES))
def test_the_initial_state_equals_the_default_compile_to_the_bit(case):
  config, registry, dataset, preprocess = _CASES[case]()
  model, _, _ = build_from_config(config, 4, registry)
  trainer = Trainer.build(config, model, dataset, Classification(4), preprocess=preprocess,
                          eval_splits=("test",))
  tx, _ = optimizer_from_config(config, trainer.steps_per_epoch)
  prepare = preprocess or steps.identity_preprocess
  sample = dataset.train.x[:1]
  default = jax.jit(lambda k, x: create_train_state(model, tx, prepare(None, x, False), k))(
      seed_keys(config.seed)[0], sample)
  built = jax.device_get((trainer.state.params, trainer.state.batch_stats,
                          trainer.state.opt_state))
  expected = jax.device_get((default.params, default.batch_stats, default.opt_state))
  assert jax.tree.structure(built) == jax.tree.structure(expected)
  leaves = jax.tree.leaves(expected)
  assert sum(np.asarray(a).size for a in leaves) > 1000
  for got, want in zip(jax.tree.leaves(built), leaves, strict=True):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
