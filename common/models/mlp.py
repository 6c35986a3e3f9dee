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

from common.errors import ConfigError
from common.models import blocks, dense_chain
from common.models.glonet import BlockStack, Taps, concat_taps, dense_tap, single_tap

# The two CPU fast paths below were chosen from measurements on this project's 2-core CPU
# (numbers in `benchmarks/README.md`: the custom VJP under `benchmarks.throughput`, the
# layout under `benchmarks.sgemm_epoch_time`); they are taken by default
# on the CPU backend only, and on other backends only when forced. Parameters, outputs and
# gradients are the same either way (up to float summation order; tested).
#
# Plain Dense+ReLU stacks (GloNet, MLP) at least this wide, on batches of at most this many
# rows, apply their stack through `dense_chain.dense_relu_chain`, whose backward computes
# every weight gradient in one batched matmul after the reverse loop.
HOISTED_WEIGHT_GRAD_MIN_FEATURES = 128
HOISTED_WEIGHT_GRAD_MAX_ROWS = 256
# Models at most this wide keep hidden activations feature-major, ``(features, batch)``
# (`blocks.FeatureMajorDense`): a narrow ``x @ W`` has output rows one vector register
# wide, and XLA's CPU backend runs ``W.T @ x`` much faster. Feature-major plain stacks
# also take `dense_chain` (its in-loop variant).
FEATURE_MAJOR_MAX_FEATURES = 64


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _feature_major_tap(used: jax.Array) -> Taps:
  """``dense_tap`` of a term stored ``(features, batch)``."""
  return dense_tap(used.T)


def _chain(params, h, s, *, glonet_sum: bool, feature_major: bool):
  """`dense_chain` applied to a scanned ``DenseBlock`` stack's parameters."""
  dense = params["scan"]["block"]["dense"]
  return dense_chain.dense_relu_chain(h, s, dense["kernel"], dense["bias"], glonet_sum,
                                      feature_major)


class StackedMLP(nn.Module):
  """Stem, a scanned stack of identical blocks, then a linear head.

  Attributes:
    num_layers: Dense layers on the input-to-output path, stem and head included.
    features: hidden width.
    out_dim: head width (classes, or 1 for regression).
    residual: pre-activation residual blocks (ResNet-v2) instead of post-activation
      Dense+ReLU layers.
    glonet: the head reads the sum of all blocks' outputs (GloNet) instead of the last
      (post-activation families only).
    use_batch_norm: batch norm inside the blocks (and before the ResNet head).
    feature_major: keep hidden activations as ``(features, batch)``; ``None`` (default)
      chooses by width on the CPU backend (``FEATURE_MAJOR_MAX_FEATURES``) and never on
      others.
    custom_backward: apply a plain Dense+ReLU stack (GloNet, MLP; no batch norm) through
      `dense_chain.dense_relu_chain`; ``None`` (default) chooses by shape on the CPU
      backend (the constants above) and never on others. Ignored for residual or
      batch-norm models.
    remat: rematerialise each scanned block in the backward pass.
  """

  # Parameter paths in network order (dict order is not trusted: checkpoint round trips
  # may sort keys, which scrambled the original code's plots).
  param_paths = (("stem",), ("stack",), ("final_bn",), ("head",))

  num_layers: int
  features: int
  out_dim: int
  residual: bool = False
  glonet: bool = False
  use_batch_norm: bool = False
  feature_major: bool | None = None
  custom_backward: bool | None = None
  remat: bool = False

  def takes_dense_chain(self, rows: int) -> bool:
    """Whether the Dense+ReLU stack runs through `dense_chain` on ``rows`` examples.

    Args:
      rows: batch size of the call.

    Returns:
      ``custom_backward`` when set; otherwise, on the CPU backend, whether the shape is
      one where the chain was measured faster. Always ``False`` for residual or
      batch-norm models.
    """
    if self.residual or self.use_batch_norm:
      return False
    if self.custom_backward is not None:
      return self.custom_backward
    if not _on_cpu():
      return False
    return self.uses_feature_major or (self.features >= HOISTED_WEIGHT_GRAD_MIN_FEATURES
                                       and rows <= HOISTED_WEIGHT_GRAD_MAX_ROWS)

  @property
  def uses_feature_major(self) -> bool:
    """Whether hidden activations are stored ``(features, batch)``."""
    if self.feature_major is None:
      return _on_cpu() and self.features <= FEATURE_MAJOR_MAX_FEATURES
    return self.feature_major

  def execution(self, rows: int) -> dict:
    """The execution path taken on ``rows``-example batches (recorded in config.json)."""
    return {"backend": jax.default_backend(), "feature_major": self.uses_feature_major,
            "custom_backward": self.takes_dense_chain(rows), "remat": self.remat}

  def validate(self) -> None:
    """Raises ConfigError if ``num_layers`` is impossible for this family."""
    n = self.num_layers
    if self.residual:
      if n < 4 or n % 2:
        raise ConfigError(
            f"a residual MLP has a stem, two Dense layers per block and a head, so "
            f"num_layers must be an even number >= 4 (got {n}); try {max(4, n + n % 2)}.")
      if self.glonet:
        raise ConfigError("a residual MLP with a GloNet sum is not a family of this "
                          "repository; use GloNet (no skips) or ResNet.")
    elif n < 2:
      raise ConfigError(f"num_layers must be >= 2 (one hidden layer and the head); got {n}.")

  # --- the usage contract (see common.usage) ---------------------------------------------

  @property
  def usage_mode(self) -> str:
    """What the per-block terms are: ``glonet`` sums, ``residual`` branches or ``plain``."""
    if self.residual:
      return "residual"
    return "glonet" if self.glonet else "plain"

  @property
  def num_blocks(self) -> int:
    """Number of per-block layer-usage entries (see the module docstring)."""
    return (self.num_layers - 2) // 2 if self.residual else self.num_layers - 1

  @property
  def stage_boundaries(self) -> list[int]:
    """First block index of each stage: one stage."""
    return [0]

  def readout(self, params, batch_stats=None) -> tuple[list[jax.Array], jax.Array]:
    """GloNet: ``output = b + x @ W`` for the summed vector, one readout group."""
    del batch_stats  # the head reads the sum directly
    return [params["head"]["kernel"]], params["head"]["bias"]

  def with_taps(self, x: jax.Array) -> tuple[jax.Array, list[Taps]]:
    """Evaluation-mode output and the per-block taps, one readout group."""
    out, taps = self.forward(x, train=False, want_taps=True)
    return out, [taps]

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps inputs ``(batch, ...)`` to outputs ``(batch, out_dim)``."""
    return self.forward(x, train=train, want_taps=False)[0]

  @nn.compact
  def forward(self, x: jax.Array, train: bool, want_taps: bool
              ) -> tuple[jax.Array, Taps | None]:
    """The model, optionally with taps ``{"l1": (L, B), "feat": (L, B, features)}``."""
    self.validate()
    fm = self.uses_feature_major
    x = x.reshape((x.shape[0], -1))
    rows = x.shape[0]
    if fm:
      x = x.T
    tap = (_feature_major_tap if fm else dense_tap) if want_taps else None
    if self.residual:
      h = blocks.dense(self.features, fm, name="stem")(x)
      branch = functools.partial(
          blocks.PreActResidualBranch, self.features, self.use_batch_norm, fm)
      h, _, taps = BlockStack(branch, (self.num_layers - 2) // 2, "residual",
                              remat=self.remat, name="stack")(h, train=train, tap=tap)
      if self.use_batch_norm:
        h = blocks.batch_norm(train, name="final_bn", feature_major=fm)(h)
      h = nn.relu(h)
    else:
      mode = "glonet" if self.glonet else "plain"
      h = blocks.DenseBlock(self.features, self.use_batch_norm, fm, name="stem")(x, train)
      layer = functools.partial(blocks.DenseBlock, self.features, self.use_batch_norm, fm)
      fast = (functools.partial(_chain, glonet_sum=self.glonet, feature_major=fm)
              if self.takes_dense_chain(rows) else None)
      h_last, s, taps = BlockStack(layer, self.num_layers - 2, mode, remat=self.remat,
                                   fast_apply=fast, name="stack")(
                                       h, h if self.glonet else None, train=train, tap=tap)
      if want_taps:  # the stem is block 1 of the post-activation families
        taps = concat_taps([single_tap(tap, h), taps])
      h = s if self.glonet else h_last
    if fm:  # back to (batch, features) for the head
      h = h.T
    return nn.Dense(self.out_dim, name="head")(h), taps
