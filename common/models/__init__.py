"""Flax modules: the GloNet primitive (stacks, stages), model families and registries."""

from common.models.glonet import BlockStack, Stage
from common.models.mlp import StackedMLP
from common.models.registry import (
    CIFAR_MODELS,
    DENSE_MODELS,
    IMAGENET_MODELS,
    REGISTRIES,
    ModelSpec,
    build_family,
    build_from_config,
    build_model,
    canonical_config,
    get_registry,
    model_label,
    parse_model_name,
)
from common.models.resnet_v2 import ResNetV2

__all__ = ["BlockStack", "CIFAR_MODELS", "DENSE_MODELS", "IMAGENET_MODELS", "REGISTRIES",
           "ModelSpec", "ResNetV2", "Stage", "StackedMLP", "build_family",
           "build_from_config", "build_model",
           "canonical_config", "get_registry", "model_label", "parse_model_name"]
