"""The one GloNet primitive: a scanned stack of identical blocks with an optional sum.

``BlockStack`` runs ``length`` copies of a block with ``nn.scan`` (parameters and batch
statistics stacked on a leading axis of size ``length``), so a 1000-block stack compiles as
fast as a 10-block one. Per step ``i`` it computes the block output ``y_i = block(h_{i-1})``
and the new stream ``h_i = h_{i-1} + y_i`` (``residual``) or ``h_i = y_i``; with
``glonet_sum`` it also accumulates ``S = S + h_i``, the GloNet layer that feeds the head.

Any family gets skip / no-skip / GloNet as options of this one module rather than as copies.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.models import dense_chain

ModuleFactory = Callable[..., nn.Module]


class _ScanStep(nn.Module):
  """One scanned step; see :class:`BlockStack`."""

  block: ModuleFactory
  residual: bool
  glonet_sum: bool
  capture: bool
  train: bool

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], _: Any):
    h, s = carry
    y = self.block(name="block")(h, self.train)
    h = h + y if self.residual else y
    if self.glonet_sum:
      s = s + h
    # The per-block term the model "uses": the summed term for GloNet, the residual branch
    # for a residual stack, the activation for a plain one.
    used = (h if self.glonet_sum else y) if self.capture else None
    return (h, s), used


class BlockStack(nn.Module):
  """Scans ``length`` identical blocks; see the module docstring.

  Attributes:
    block: a factory ``block(name=...)`` returning a module ``(h, train) -> y`` that keeps
      the width of ``h``. Use ``functools.partial`` to bind its hyperparameters.
    length: number of blocks (0 is allowed: the stack is then the identity).
    residual: add each block's output to the stream (a skip connection).
    glonet_sum: accumulate the GloNet sum of the stream states.
    dense_relu_blocks: the caller guarantees that ``block`` is a ``DenseBlock`` without
      batch norm and ``residual`` is off. Parameters are still created by the scan (so
      they, and checkpoints, are the same either way), but applying the stack goes through
      :func:`common.models.dense_chain.dense_relu_chain`, whose backward pass is faster.
    feature_major: the blocks keep activations as ``(features, batch)``; the chain of
      ``dense_relu_blocks`` must know it (the generic scan does not care).
  """

  block: ModuleFactory
  length: int
  residual: bool = False
  glonet_sum: bool = False
  dense_relu_blocks: bool = False
  feature_major: bool = False

  @nn.compact
  def __call__(
      self, h: jax.Array, s: jax.Array | None = None, *, train: bool, capture: bool = False
  ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Runs the stack.

    Args:
      h: the input stream, shape ``(batch, ..., features)``.
      s: the running GloNet sum to continue (``None`` starts from zeros); ignored unless
        ``glonet_sum``.
      train: training mode (batch statistics are updated when blocks use batch norm).
      capture: also return each block's used term, stacked in network order.

    Returns:
      ``(h, s, used)``: the last stream state, the GloNet sum (``None`` without
      ``glonet_sum``), and the per-block terms of shape ``(length, *h.shape)`` when
      ``capture`` (else ``None``).
    """
    if s is None:
      s = jnp.zeros_like(h)
    if (self.dense_relu_blocks and self.length > 0 and not capture
        and not self.is_initializing()):
      if self.residual:
        raise ValueError("dense_relu_blocks requires residual=False.")
      dense = self.variables["params"]["scan"]["block"]["dense"]
      h, s = dense_chain.dense_relu_chain(
          h, s, dense["kernel"], dense["bias"], self.glonet_sum, self.feature_major)
      return h, (s if self.glonet_sum else None), None
    if self.length == 0:
      empty = jnp.zeros((0, *h.shape), h.dtype) if capture else None
      return h, (s if self.glonet_sum else None), empty
    scan = nn.scan(
        _ScanStep,
        variable_axes={"params": 0, "batch_stats": 0},
        split_rngs={"params": True},
        length=self.length,
    )
    (h, s), used = scan(
        block=self.block,
        residual=self.residual,
        glonet_sum=self.glonet_sum,
        capture=capture,
        train=train,
        name="scan",
    )((h, s), None)
    return h, (s if self.glonet_sum else None), used
