"""The ``main`` of an image-classification experiment (CIFAR-10, Imagenette).

The two convolutional experiments differ only in their flags' defaults, their recipes,
their model registry and their data module; everything between the parsed flags and the
finished run directory is this one function, so a fix here reaches both.
"""

from collections.abc import Callable, Mapping
from typing import Any

from absl import flags, logging

from common import flags as common_flags
from common.config import TrainConfig
from common.models import build_from_config, canonical_config
from common.train import run_experiment
from common.train.steps import Preprocess
from common.train.tasks import Classification


def run_image_experiment(
    experiment: str,
    registry: Mapping[str, Any],
    num_classes: int,
    load_for_config: Callable[[TrainConfig], tuple[Any, Classification]],
    preprocess_for: Callable[[TrainConfig], Preprocess],
    recipes: Mapping[str, Mapping[str, Any] | None],
    **settings: Any,
) -> tuple[str, dict[str, Any]]:
  """Applies the chosen recipe, builds the model, loads the data and trains.

  Args:
    experiment: the experiment's name (``resnet_cifar10``), recorded in ``config.json``.
    registry: the experiment's model registry (``CIFAR_MODELS``).
    num_classes: classes of the head.
    load_for_config: the data module's loader: config -> ``(dataset, task)``.
    preprocess_for: the data module's augmentation: config -> preprocess function.
    recipes: ``{--recipe value: flag defaults}`` as given to ``define_recipe_flag``.
    **settings: experiment-specific config fields beyond the common and image flags:
      the flags' holders (``image_size=_IMAGE_SIZE``), read after the recipe is applied
      (required for a field a recipe sets), or plain values (``features=16``).

  Returns:
    ``(run_path, summary)`` of :func:`common.train.run_experiment`.
  """
  config, recipe = experiment_config(experiment, registry, recipes, **settings)
  # Fails before any I/O on a bad name or depth.
  model, name, info = build_from_config(config, num_classes, registry)
  dataset, task = load_for_config(config)
  run_path, summary = run_experiment(config, model, name, dataset, task,
                                     preprocess=preprocess_for(config),
                                     extra_config={"model": info, "recipe": recipe})
  final = summary["final"] or {}
  logging.info("Done: %s  test_accuracy %.4f", run_path, final.get("test_accuracy", float("nan")))
  return run_path, summary


def experiment_config(experiment: str, registry: Mapping[str, Any],
                      recipes: Mapping[str, Mapping[str, Any] | None],
                      **settings: Any) -> tuple[TrainConfig, str]:
  """The run's config from the parsed flags with the chosen recipe applied, and its name.

  ``settings`` holding flag holders are read only after the recipe has set their flags:
  a value read before (``_IMAGE_SIZE.value`` in ``main``) would silently keep the flag's
  default, as ``--recipe=gpu`` once trained at 128 px instead of its 192.
  """
  for key, value in settings.items():
    if not isinstance(value, flags.FlagHolder) and any(key in (r or {}) for r in recipes.values()):
      raise TypeError(f"{key} is set by a recipe: pass its flag holder, not its value.")
  recipe = common_flags.apply_recipe(recipes)
  resolved = {k: v.value if isinstance(v, flags.FlagHolder) else v for k, v in settings.items()}
  config = canonical_config(common_flags.config_from_flags(
      experiment, **resolved, **common_flags.image_settings()), registry)
  return config, recipe
