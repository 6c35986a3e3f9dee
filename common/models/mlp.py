"""Fully connected model families: GloNet, plain MLP and pre-activation residual MLP.

Depth convention (the same for every family and every experiment): ``num_layers`` counts
**every Dense layer on the input-to-output path, the first (input) layer and the head
included**; batch norm layers are not counted. So ``GloNet`` with ``num_layers=10`` is the
original repository's 10-layer GloNet (9 hidden Dense+ReLU layers whose outputs are
summed, then a Dense head); on MNIST with width 256 it has 729,866 parameters.

==========  ==============================================  ===========================
family      layout (``N = num_layers``)                     blocks (layer-usage entries)
==========  ==============================================  ===========================
GloNet      stem Dense+ReLU, N-2 Dense+ReLU blocks, head    N-1: every hidden layer's
            on the sum of all N-1 hidden activations        activation (the summed terms)
MLP         the same layers, head on the last activation    N-1 activations
ResNet      stem Dense, (N-2)/2 pre-activation blocks       (N-2)/2 residual branches
            [BN]-ReLU-Dense-[BN]-ReLU-Dense + identity,
            final [BN]-ReLU, head  (N must be even)
==========  ==============================================  ===========================
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import ConfigError
from common.models import blocks
from common.models.stack import BlockStack

# Plain Dense+ReLU stacks (GloNet, MLP) of at least this width, trained on batches of at
# most this many rows, are applied through `dense_chain.dense_relu_chain`, whose backward
# pass computes all weight gradients in one batched matmul after the reverse loop. This
# pays off when the loop's chained matmuls are too small to keep both cores busy.
# Measured on the 2-core CPU with `python -m benchmarks.throughput --depths=100` (step ms,
# autodiff vs custom VJP): width 256 batch 256: 67.3 vs 60.7; width 128 batch 256: 25.1
# vs 22.9; width 64: 7.4 vs 8.5; width 256 batch 512: 126.8 vs 128.0; batch 1024: 238.7
# vs 244.1 (all batch-major). Feature-major stacks (below) always take the chain, whose
# backward then keeps the weight gradients in the loop; see `FEATURE_MAJOR_MAX_FEATURES`.
# Parameters are identical either way; re-measure before changing these on other hardware.
HOISTED_WEIGHT_GRAD_MIN_FEATURES = 128
HOISTED_WEIGHT_GRAD_MAX_ROWS = 256

# Models of at most this width keep their hidden activations feature-major,
# ``(features, batch)`` (`blocks.FeatureMajorDense`), unless told otherwise: a narrow
# ``x @ W`` has output rows one vector register wide, and XLA's CPU backend runs
# ``W.T @ x`` (long side = batch) much faster. Parameters are identical in both layouts.
# Seconds per SGEMM epoch (width 16, batch 1024), batch- vs feature-major, both with
# autodiff (`python -m benchmarks.sgemm_epoch_time --depths=100,1000 --backward=autodiff
# --layout=...`): GloNet 1.08 vs 0.59 (depth 100), 12.98 vs 6.54 (depth 1000); ResNet-v2
# with BN 1.73 vs 1.11, 22.72 vs 16.02. One-off microbenchmarks of the scanned stack on
# one core: feature-major also faster at widths 32 and 64 (batch 1024), equal at width 256
# (batch 256).
# Feature-major GloNet/MLP stacks also take `dense_chain` (in-loop variant): 6.54 -> 5.60 s
# per epoch at depth 1000, 0.59 -> 0.54 at depth 100 (`--backward=autodiff` vs auto).
FEATURE_MAJOR_MAX_FEATURES = 64


class StackedMLP(nn.Module):
  """Stem, a scanned stack of identical blocks, then a linear head.

  Attributes:
    num_layers: Dense layers on the input-to-output path, stem and head included.
    features: hidden width.
    out_dim: head width (classes, or 1 for regression).
    residual: pre-activation residual blocks (ResNet-v2) instead of post-activation
      Dense+ReLU layers.
    glonet: the head reads the sum of all blocks' outputs (GloNet) instead of the last.
    use_batch_norm: batch norm inside the blocks (and before the ResNet head).
    feature_major: keep hidden activations as ``(features, batch)``; ``None`` (default)
      chooses by width (``FEATURE_MAJOR_MAX_FEATURES``). Outputs, captured terms and
      parameters are the same in both layouts, up to float summation order.
    custom_backward: apply a plain Dense+ReLU stack (GloNet, MLP; no batch norm) through
      `dense_chain.dense_relu_chain`, whose hand-written backward pass is faster where
      measured; ``None`` (default) chooses by shape (the constants above). Ignored for
      residual or batch-norm models. Values and gradients are the same either way.
  """

  # Top-level parameter names in network order (dict order is not trusted: checkpoint
  # round trips may sort keys, which scrambled the original code's plots).
  param_order = ("stem", "stack", "final_bn", "head")

  num_layers: int
  features: int
  out_dim: int
  residual: bool = False
  glonet: bool = False
  use_batch_norm: bool = False
  feature_major: bool | None = None
  custom_backward: bool | None = None

  def takes_dense_chain(self, rows: int) -> bool:
    """Whether the Dense+ReLU stack runs through `dense_chain` on ``rows`` examples.

    Args:
      rows: batch size of the call.

    Returns:
      ``custom_backward`` when set; otherwise whether the shape is one where the chain was
      measured faster. Always ``False`` for residual or batch-norm models.
    """
    if self.residual or self.use_batch_norm:
      return False
    if self.custom_backward is not None:
      return self.custom_backward
    return self.uses_feature_major or (self.features >= HOISTED_WEIGHT_GRAD_MIN_FEATURES
                                       and rows <= HOISTED_WEIGHT_GRAD_MAX_ROWS)

  @property
  def uses_feature_major(self) -> bool:
    """Whether hidden activations are stored ``(features, batch)``."""
    if self.feature_major is None:
      return self.features <= FEATURE_MAJOR_MAX_FEATURES
    return self.feature_major

  def setup_check(self) -> None:
    """Raises ConfigError if ``num_layers`` is impossible for this family."""
    n = self.num_layers
    if self.residual:
      if n < 4 or n % 2:
        raise ConfigError(
            f"a residual MLP has a stem, two Dense layers per block and a head, so "
            f"num_layers must be an even number >= 4 (got {n}); try {max(4, n + n % 2)}.")
    elif n < 2:
      raise ConfigError(f"num_layers must be >= 2 (one hidden layer and the head); got {n}.")

  @property
  def num_blocks(self) -> int:
    """Number of per-block layer-usage entries (see the module docstring)."""
    return (self.num_layers - 2) // 2 if self.residual else self.num_layers - 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, capture: bool = False):
    """Maps inputs ``(batch, in_dim)`` to outputs ``(batch, out_dim)``.

    Args:
      x: input features.
      train: training mode (batch norm uses and updates batch statistics).
      capture: also return the per-block terms the model uses, in network order.

    Returns:
      The head output, or with ``capture`` a pair ``(output, used)`` where ``used`` has
      shape ``(num_blocks, batch, features)``: GloNet's summed terms, the residual branch
      outputs, or the plain MLP's activations. For GloNet ``output == head(sum(used))``.
    """
    self.setup_check()
    fm = self.uses_feature_major
    x = x.reshape((x.shape[0], -1))
    rows = x.shape[0]
    if fm:
      x = x.T
    if self.residual:
      h = blocks.dense(self.features, fm, name="stem")(x)
      branch = functools.partial(
          blocks.PreActResidualBranch, self.features, self.use_batch_norm, fm)
      h, s, used = BlockStack(
          branch, (self.num_layers - 2) // 2, residual=True, glonet_sum=self.glonet,
          name="stack")(h, train=train, capture=capture)
      if self.glonet:
        h = s
      else:
        if self.use_batch_norm:
          h = blocks.batch_norm(train, name="final_bn", feature_major=fm)(h)
        h = nn.relu(h)
    else:
      h = blocks.DenseBlock(self.features, self.use_batch_norm, fm, name="stem")(x, train)
      layer = functools.partial(blocks.DenseBlock, self.features, self.use_batch_norm, fm)
      h_last, s, used = BlockStack(
          layer, self.num_layers - 2, glonet_sum=self.glonet,
          dense_relu_blocks=self.takes_dense_chain(rows),
          feature_major=fm, name="stack")(
              h, s=h if self.glonet else None, train=train, capture=capture)
      if capture:  # the stem is block 1 of the post-activation families
        used = jnp.concatenate([h[None], used], axis=0)
      h = s if self.glonet else h_last
    if fm:  # back to (batch, features) for the head and the captured terms
      h = h.T
      if capture:
        used = jnp.swapaxes(used, 1, 2)
    out = nn.Dense(self.out_dim, name="head")(h)
    return (out, used) if capture else out
