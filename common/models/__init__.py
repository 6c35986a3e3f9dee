"""Flax modules: the GloNet stack primitive, model families and the registry."""

from common.models.mlp import StackedMLP
from common.models.registry import (
    DENSE_MODELS,
    ModelSpec,
    build_from_config,
    build_model,
    canonical_config,
    model_label,
    parse_model_name,
)
from common.models.stack import BlockStack

__all__ = ["BlockStack", "DENSE_MODELS", "ModelSpec", "StackedMLP", "build_from_config",
           "build_model", "canonical_config", "model_label", "parse_model_name"]
