"""Model registry: names to constructors, with depth suffixes (``GloNet50``).

A name is a family (``GloNet``) optionally followed by a depth (``GloNet50``); the depth
means the same as ``--num_layers`` (see :mod:`common.models.mlp` for the convention).
Unknown names are rejected with the list of valid ones.
"""

import dataclasses
import re
from collections.abc import Callable

import flax.linen as nn

from common.errors import ConfigError
from common.models.mlp import StackedMLP


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What a registry entry builds and its defaults.

  Attributes:
    build: ``build(num_layers=, features=, out_dim=, use_batch_norm=) -> nn.Module``.
    default_batch_norm: the family's batch-norm setting when the user gives none.
    description: one line for ``--help`` and error messages.
  """

  build: Callable[..., nn.Module]
  default_batch_norm: bool
  description: str


def _mlp_family(residual: bool, glonet: bool) -> Callable[..., nn.Module]:
  def build(num_layers: int, features: int, out_dim: int, use_batch_norm: bool) -> nn.Module:
    model = StackedMLP(num_layers=num_layers, features=features, out_dim=out_dim,
                       residual=residual, glonet=glonet, use_batch_norm=use_batch_norm)
    model.setup_check()  # fail at build time, before any data is loaded
    return model
  return build


DENSE_MODELS: dict[str, ModelSpec] = {
    "GloNet": ModelSpec(_mlp_family(residual=False, glonet=True), False,
                        "Dense+ReLU layers, the head reads the sum of all their outputs"),
    "MLP": ModelSpec(_mlp_family(residual=False, glonet=False), False,
                     "plain Dense+ReLU layers, the head reads the last one"),
    "ResNet": ModelSpec(_mlp_family(residual=True, glonet=False), True,
                        "pre-activation (v2) residual MLP, two Dense layers per block"),
}

_NAME = re.compile(r"^([A-Za-z_]+?)(\d+)?$")


def parse_model_name(
    name: str, num_layers: int | None, registry: dict[str, ModelSpec]
) -> tuple[str, int]:
  """Splits ``GloNet50`` into ``("GloNet", 50)`` and reconciles it with ``num_layers``.

  Args:
    name: a family name, optionally with a depth suffix.
    num_layers: the depth given separately (``--num_layers``), or None.
    registry: the family table to look the name up in.

  Returns:
    ``(family, depth)``.

  Raises:
    ConfigError: unknown family, no depth at all, or two different depths.
  """
  match = _NAME.match(name)
  family = match.group(1) if match else name
  if family not in registry:
    valid = ", ".join(sorted(registry))
    raise ConfigError(
        f"unknown model {name!r}; valid models are {valid}, optionally with a depth "
        f"suffix (e.g. {sorted(registry)[0]}50).")
  suffix = int(match.group(2)) if match.group(2) else None
  if suffix is not None and num_layers is not None and suffix != num_layers:
    raise ConfigError(
        f"--model={name} says depth {suffix} but --num_layers={num_layers}; give one of them "
        f"or make them agree.")
  depth = suffix if suffix is not None else num_layers
  if depth is None:
    raise ConfigError(f"no depth for model {name!r}: pass --num_layers or a suffix like "
                      f"{family}10.")
  if depth < 1:
    raise ConfigError(f"depth must be a positive number of layers; got {depth}.")
  return family, depth


def build_model(
    name: str,
    *,
    num_layers: int | None,
    features: int,
    out_dim: int,
    use_batch_norm: bool | None = None,
    registry: dict[str, ModelSpec] = DENSE_MODELS,
) -> nn.Module:
  """Builds a model by name.

  Args:
    name: family name, optionally with a depth suffix (``ResNet24``).
    num_layers: depth, when the name carries none.
    features: hidden width.
    out_dim: output width.
    use_batch_norm: None for the family's default.
    registry: the family table (dense models by default).

  Returns:
    An unbound Flax module.

  Raises:
    ConfigError: for an unknown name or an impossible depth/width.
  """
  family, depth = parse_model_name(name, num_layers, registry)
  if features < 1:
    raise ConfigError(f"features must be >= 1; got {features}.")
  spec = registry[family]
  bn = spec.default_batch_norm if use_batch_norm is None else use_batch_norm
  return spec.build(num_layers=depth, features=features, out_dim=out_dim, use_batch_norm=bn)


def model_label(family: str, use_batch_norm: bool,
                registry: dict[str, ModelSpec] = DENSE_MODELS) -> str:
  """Legend label of a family: its name, marked when batch norm differs from its default."""
  if use_batch_norm == registry[family].default_batch_norm:
    return family
  return f"{family} (BN)" if use_batch_norm else f"{family} (no BN)"


def canonical_config(config, registry: dict[str, ModelSpec] = DENSE_MODELS):
  """The same config with the model spelled one way: family, depth, batch norm explicit.

  ``--model=GloNet50`` and ``--model=GloNet --num_layers=50`` then record (and resume) as
  the same run; so do an omitted ``--use_batch_norm`` and the family's default.

  Args:
    config: a :class:`~common.config.TrainConfig`.
    registry: the family table.

  Returns:
    A new config with ``model`` = family, ``num_layers`` = depth, ``use_batch_norm`` set.
  """
  family, depth = parse_model_name(config.model, config.num_layers, registry)
  bn = (registry[family].default_batch_norm if config.use_batch_norm is None
        else config.use_batch_norm)
  return dataclasses.replace(config, model=family, num_layers=depth, use_batch_norm=bn)


def build_from_config(config, out_dim: int, registry: dict[str, ModelSpec] = DENSE_MODELS
                      ) -> tuple[nn.Module, str, dict]:
  """Builds the model a :class:`~common.config.TrainConfig` asks for.

  Args:
    config: the run configuration (``model``, ``num_layers``, ``features``,
      ``use_batch_norm``).
    out_dim: output width.
    registry: the family table.

  Returns:
    ``(model, name, info)``: the module, its canonical name with depth (``GloNet24``) and
    the facts recorded in ``config.json["model"]`` (family, depth, blocks, label...).
  """
  family, depth = parse_model_name(config.model, config.num_layers, registry)
  model = build_model(config.model, num_layers=config.num_layers, features=config.features,
                      out_dim=out_dim, use_batch_norm=config.use_batch_norm, registry=registry)
  info = {"family": family, "num_layers": depth, "num_blocks": model.num_blocks,
          "use_batch_norm": model.use_batch_norm, "features": config.features,
          "label": model_label(family, model.use_batch_norm, registry)}
  return model, f"{family}{depth}", info
