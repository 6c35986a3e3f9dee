"""Model registries: names to constructors, with depth suffixes (``GloNet50``).

A name is a family (``GloNet``) optionally followed by a depth (``GloNet50``); the depth
means the same as ``--num_layers`` (the README's one depth convention). There is one
registry per kind of input: ``dense`` (vectors: MNIST, SGEMM), ``cifar`` (32x32 images)
and ``imagenet`` (ImageNet-shaped networks: Imagenette); each has a ``ResNet`` and a
``GloNet``, so every lookup names its registry
(there is no default that could silently build the MLP when the CNN was meant). Unknown
names are rejected with the list of valid ones.
"""

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from common.errors import ConfigError
from common.models import resnet_v2
from common.models.mlp import StackedMLP


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """One family of a registry.

  Attributes:
    build: ``build(depth, out_dim, use_batch_norm, options) -> nn.Module``; ``options``
      maps family options (``features``, ``remat``, ``carry``...) to values; a missing
      option takes the family's default.
    default_batch_norm: the family's batch-norm setting when the user gives none.
    description: one line for ``--help`` and error messages.
    options: the options ``build`` reads; any other is refused.
  """

  build: Callable[..., nn.Module]
  default_batch_norm: bool
  description: str
  options: tuple[str, ...] = ()


def _mlp_family(residual: bool, glonet: bool) -> Callable[..., nn.Module]:
  def build(depth: int, out_dim: int, use_batch_norm: bool, options: Mapping[str, Any]
            ) -> nn.Module:
    features = options.get("features", 256)
    if features < 1:
      raise ConfigError(f"features must be >= 1; got {features}.")
    model = StackedMLP(num_layers=depth, features=features, out_dim=out_dim,
                       residual=residual, glonet=glonet, use_batch_norm=use_batch_norm,
                       remat=options.get("remat", False))
    model.validate()  # fail at build time, before any data is loaded
    return model
  return build


_DENSE_OPTIONS = ("features", "remat")
_CONV_OPTIONS = ("carry", "glonet_sum", "glonet_head_norm", "glonet_head_rms", "remat")


def _conv_family(mode: str, stem: str = "cifar") -> Callable[..., nn.Module]:
  if stem == "imagenet":
    stage_sizes, widths = resnet_v2.imagenet_stage_sizes, resnet_v2.IMAGENET_WIDTHS
  else:
    stage_sizes, widths = resnet_v2.cifar_stage_sizes, resnet_v2.CIFAR_WIDTHS

  def build(depth: int, out_dim: int, use_batch_norm: bool, options: Mapping[str, Any]
            ) -> nn.Module:
    model = resnet_v2.ResNetV2(
        stage_sizes=stage_sizes(depth), widths=widths, stem=stem,
        out_dim=out_dim, mode=mode, use_batch_norm=use_batch_norm,
        carry=options.get("carry", "avgpool_conv"), remat=options.get("remat", False),
        glonet_sum=options.get("glonet_sum", "block"),
        glonet_head_norm=options.get("glonet_head_norm", False),
        glonet_head_rms=options.get("glonet_head_rms", False))
    model.validate()  # GloNet options given to ResNet or Plain are refused there
    return model
  return build


DENSE_MODELS: dict[str, ModelSpec] = {
    "GloNet": ModelSpec(_mlp_family(residual=False, glonet=True), False,
                        "Dense+ReLU layers, the head reads the sum of all their outputs",
                        _DENSE_OPTIONS),
    "MLP": ModelSpec(_mlp_family(residual=False, glonet=False), False,
                     "plain Dense+ReLU layers, the head reads the last one", _DENSE_OPTIONS),
    "ResNet": ModelSpec(_mlp_family(residual=True, glonet=False), True,
                        "pre-activation (v2) residual MLP, two Dense layers per block",
                        _DENSE_OPTIONS),
}

CIFAR_MODELS: dict[str, ModelSpec] = {
    "ResNet": ModelSpec(_conv_family("residual"), True,
                        "pre-activation ResNet-v2, 16/32/64 channels, depth 6n+2", _CONV_OPTIONS),
    "Plain": ModelSpec(_conv_family("plain"), True,
                       "the ResNet-v2 blocks without skip connections", _CONV_OPTIONS),
    "GloNet": ModelSpec(_conv_family("glonet"), True,
                        "no skips; the head reads the sum of the stem and every block "
                        "output, carried across stages", _CONV_OPTIONS),
}

IMAGENET_MODELS: dict[str, ModelSpec] = {
    "ResNet": ModelSpec(_conv_family("residual", "imagenet"), True,
                        "pre-activation ResNet-v2 with the ImageNet stem, 64-512 channels, "
                        "depth 18 or 34", _CONV_OPTIONS),
    "Plain": ModelSpec(_conv_family("plain", "imagenet"), True,
                       "the ResNet-v2 blocks without skip connections", _CONV_OPTIONS),
    "GloNet": ModelSpec(_conv_family("glonet", "imagenet"), True,
                        "no skips; the head reads the sum of the stem and every block "
                        "output, carried across stages", _CONV_OPTIONS),
}

REGISTRIES: dict[str, dict[str, ModelSpec]] = {
    "dense": DENSE_MODELS, "cifar": CIFAR_MODELS, "imagenet": IMAGENET_MODELS}


def get_registry(name: str) -> dict[str, ModelSpec]:
  """The registry called ``name`` (``dense``, ``cifar`` or ``imagenet``)."""
  if name not in REGISTRIES:
    raise ConfigError(f"unknown model registry {name!r}; valid: {', '.join(REGISTRIES)}.")
  return REGISTRIES[name]


# A valid depth of each registry, for the examples in error messages.
_EXAMPLE_DEPTH = {"dense": 10, "cifar": 20, "imagenet": 18}


def registry_name(registry: dict[str, ModelSpec], default: str | None = None) -> str:
  """The name under which ``registry`` is listed in ``REGISTRIES`` (``default`` for a
  registry not listed there; without one, that is a ValueError)."""
  name = next((k for k, v in REGISTRIES.items() if v is registry), default)
  if name is None:
    raise ValueError("a model registry not listed in REGISTRIES")
  return name


def _example_depth(registry: dict[str, ModelSpec]) -> int:
  """A depth the registry has, for error messages (a dense one for unlisted registries)."""
  return _EXAMPLE_DEPTH[registry_name(registry, default="dense")]


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
        f"suffix (e.g. {sorted(registry)[0]}{_example_depth(registry)}).")
  suffix = int(match.group(2)) if match.group(2) else None
  if suffix is not None and num_layers is not None and suffix != num_layers:
    raise ConfigError(
        f"--model={name} says depth {suffix} but --num_layers={num_layers}; give one of them "
        f"or make them agree.")
  depth = suffix if suffix is not None else num_layers
  if depth is None:
    raise ConfigError(f"no depth for model {name!r}: pass --num_layers or a suffix like "
                      f"{family}{_example_depth(registry)}.")
  if depth < 1:
    raise ConfigError(f"depth must be a positive number of layers (--num_layers, "
                      f"model.depth); got {depth}.")
  return family, depth


def build_model(
    name: str,
    *,
    registry: dict[str, ModelSpec],
    num_layers: int | None,
    out_dim: int,
    use_batch_norm: bool | None = None,
    **options: Any,
) -> nn.Module:
  """Builds a model by name.

  Args:
    name: family name, optionally with a depth suffix (``ResNet24``).
    registry: the family table (``DENSE_MODELS``, ``CIFAR_MODELS``).
    num_layers: depth, when the name carries none.
    out_dim: output width.
    use_batch_norm: None for the family's default.
    **options: family options (``features``, ``remat``, ``carry``...); a missing one
      takes the family's default.

  Returns:
    An unbound Flax module.

  Raises:
    ConfigError: for an unknown name or an impossible depth/width.
  """
  family, depth = parse_model_name(name, num_layers, registry)
  spec = registry[family]
  bn = spec.default_batch_norm if use_batch_norm is None else use_batch_norm
  return spec.build(depth, out_dim, bn, options)


# Non-default variants of the convolutional GloNet, marked in its label so that a sweep
# report never pools them with the paper's GloNet: (option, value, mark).
_GLONET_VARIANT_MARKS = (("glonet_head_norm", True, "head BN"),
                         ("glonet_head_rms", True, "head RMS"),
                         ("glonet_sum", "stage", "stage sum"),
                         ("carry", "strided_conv", "strided carry"))


def model_label(family: str, use_batch_norm: bool, registry: dict[str, ModelSpec],
                options: Mapping[str, Any] | None = None) -> str:
  """Legend label of a family: its name, marked when batch norm differs from its default
  and, for a convolutional GloNet, with each non-default variant option it uses."""
  marks = []
  if use_batch_norm != registry[family].default_batch_norm:
    marks.append("BN" if use_batch_norm else "no BN")
  if family == "GloNet" and registry is not DENSE_MODELS:
    marks += [mark for key, value, mark in _GLONET_VARIANT_MARKS
              if (options or {}).get(key) == value]
  return f"{family} ({', '.join(marks)})" if marks else family


def canonical_config(config, registry: dict[str, ModelSpec]):
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


def build_family(registry: dict[str, ModelSpec], family: str, depth: int, out_dim: int,
                 use_batch_norm: bool, options: Mapping[str, Any], batch_size: int
                 ) -> tuple[nn.Module, dict[str, Any]]:
  """Builds a parsed model (family and depth known) and the record ``config.json`` keeps.

  Args:
    registry: the family table.
    family: a family of ``registry``.
    depth: its depth.
    out_dim: output width.
    use_batch_norm: explicit (the family's default already applied).
    options: the family's options (``features``, ``remat``, ``carry``...), validated by
      the family.
    batch_size: the training batch size, for the recorded execution path.

  Returns:
    ``(model, record)``: the module and its record (registry, family, depth, blocks,
    label, stage boundaries and the execution path at ``batch_size``).
  """
  spec = registry[family]
  unknown = sorted(set(options) - set(spec.options))
  if unknown:
    raise ConfigError(f"{family} has no option {', '.join(unknown)}; its options are "
                      f"{', '.join(spec.options)}.")
  model = spec.build(depth, out_dim, use_batch_norm, options)
  record = {"registry": registry_name(registry), "family": family, "num_layers": depth,
            "num_blocks": model.num_blocks, "use_batch_norm": use_batch_norm,
            "label": model_label(family, use_batch_norm, registry, options),
            "stage_boundaries": model.stage_boundaries,
            "execution": model.execution(batch_size)}
  if "features" in options:
    record["features"] = options["features"]
  return model, record


def build_from_config(config, out_dim: int, registry: dict[str, ModelSpec]
                      ) -> tuple[nn.Module, str, dict]:
  """Builds the model a flat :class:`~common.config.TrainConfig` asks for (tests, tools).

  Args:
    config: the run configuration.
    out_dim: output width.
    registry: the family table.

  Returns:
    ``(model, name, record)``: the module, its canonical name with depth (``GloNet24``)
    and the record of :func:`build_family`.
  """
  config = canonical_config(config, registry)
  family, depth = config.model, config.num_layers
  options = {k: getattr(config, k) for k in registry[family].options}
  model, record = build_family(registry, family, depth, out_dim, config.use_batch_norm,
                               options, config.batch_size)
  return model, f"{family}{depth}", record
