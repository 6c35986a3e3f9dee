"""The one GloNet primitive: scanned stacks of identical blocks, stages, and their taps.

Every family (Dense or convolutional) is built from these pieces, which know nothing
about what a block computes:

* :class:`BlockStack` runs ``length`` identical blocks with ``nn.scan`` (parameters and
  batch statistics stacked on a leading axis), so a 1000-block stack compiles about as
  fast as a 10-block one. Per block it computes ``y_i = block(h_{i-1})`` and, by ``mode``:
  ``plain`` ``h_i = y_i``; ``residual`` ``h_i = h_{i-1} + y_i``; ``glonet`` ``h_i = y_i``
  and ``S = S + y_i`` (the GloNet sum, carried in and out so that it can continue across
  stages). ``remat`` rematerialises each block in the backward pass (memory for compute).
* :class:`Stage` is one resolution: an optional unscanned first block that changes the
  shape (stride, channels), a carry map that moves the running GloNet sum to the new
  shape, and a :class:`BlockStack` of identical blocks.
* Taps: with ``taps=True`` every block also emits a *reduced* record of the term the model
  uses (GloNet: the summed output; residual: the branch; plain: the activation):
  ``{"l1": (batch,) mean |x|, "feat": (batch, channels) pooled features}``. They are scan
  outputs, reduced inside the scan, so a usage pass never holds every activation map.

Carry maps are learnable, bias-free and linear, and initialised so that the sum passes a
transition unchanged (an identity embedding of the channels); being linear, they keep each
block's contribution to a linear head exact (see :mod:`common.usage`).
"""

import functools
from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.ops import conv as conv_ops

ModuleFactory = Callable[..., nn.Module]
Mode = Literal["plain", "residual", "glonet"]
MODES = ("plain", "residual", "glonet")
Taps = dict[str, jax.Array]
# ``tap(used) -> {"l1": (batch,), "feat": (batch, channels)}`` for one block's used term.
TapFn = Callable[[jax.Array], Taps]
# ``fast(params_of_the_stack, h, s) -> (h, s)``: an equivalent, faster application of a
# whole stack supplied by a family (the MLP's custom-VJP Dense chain); see BlockStack.
FastApply = Callable[[Any, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def dense_tap(used: jax.Array) -> Taps:
  """Tap of a ``(batch, features)`` term: its mean |x| and the term itself."""
  return {"l1": jnp.mean(jnp.abs(used), axis=-1), "feat": used}


def pooled_tap(used: jax.Array, stride: int = 1, pool_halvings: int = 0) -> Taps:
  """Tap of a ``(batch, height, width, channels)`` map.

  Args:
    used: the block's used term.
    stride: average only every ``stride``-th row and column. A stride-2 1x1 carry map
      reads the sum at even positions only, so a block ``k`` transitions before the head
      reaches it through ``used[:, ::2**k, ::2**k]``.
    pool_halvings: the 2x2 average pools (zero-padded at odd sizes, always dividing by
      4) between this block and the head. Each keeps the spatial sum divided by 4, so
      the head's global average of the carried term is ``sum(used) / (4**k * h * w)``
      with ``h x w`` the head's map: the spatial mean when every size is even, and still
      exact when one is odd (224 px inputs reach a 7x7 map).

  Returns:
    ``l1``: mean |x| over all of the map; ``feat``: what the head's global average reads
    of it (before the carry maps' 1x1 convs).
  """
  l1 = jnp.mean(jnp.abs(used), axis=(1, 2, 3))
  if pool_halvings:
    h, w = used.shape[1:3]
    for _ in range(pool_halvings):
      h, w = -(-h // 2), -(-w // 2)
    return {"l1": l1, "feat": jnp.sum(used, axis=(1, 2)) / (4 ** pool_halvings * h * w)}
  sub = used[:, ::stride, ::stride, :] if stride > 1 else used
  return {"l1": l1, "feat": jnp.mean(sub, axis=(1, 2))}


def _mode_check(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}.")


class _ScanStep(nn.Module):
  """One scanned step; see :class:`BlockStack`."""

  block: ModuleFactory
  mode: str
  tap: TapFn | None
  train: bool

  @nn.compact
  def __call__(self, carry: tuple[jax.Array, jax.Array], _: Any):
    h, s = carry
    y = self.block(name="block")(h, self.train)
    if self.mode == "residual":
      h = h + y
    else:
      h = y
    if self.mode == "glonet":
      s = s + y
    return (h, s), (self.tap(y) if self.tap is not None else None)


class BlockStack(nn.Module):
  """Scans ``length`` identical blocks; see the module docstring.

  Attributes:
    block: a factory ``block(name=...)`` returning a module ``(h, train) -> y`` with ``y``
      of the shape of ``h``. Use ``functools.partial`` to bind its hyperparameters.
    length: number of blocks (0 is allowed: the stack is then the identity).
    mode: ``plain``, ``residual`` or ``glonet``.
    remat: rematerialise each block in the backward pass (``nn.remat``): activation
      memory of one block instead of ``length``, for about one more forward pass.
    fast_apply: an equivalent application of the whole stack from its parameters, used
      when neither initialising nor tapping (the family guarantees equality; the MLP's
      custom-VJP chain). Parameters are always created by the scan, so they and the
      checkpoints are the same either way.
    unroll: unroll the scan into straight-line code (the parameters stay stacked, so
      checkpoints are the same). XLA's CPU backend runs a convolution's gradient inside a
      loop body some 30x slower than outside one (see ``common.models.resnet_v2``), so the
      convolutional families unroll on the CPU, at the price of a longer compile.
  """

  block: ModuleFactory
  length: int
  mode: str = "plain"
  remat: bool = False
  fast_apply: FastApply | None = None
  unroll: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, s: jax.Array | None = None, *, train: bool,
               tap: TapFn | None = None) -> tuple[jax.Array, jax.Array | None, Taps | None]:
    """Runs the stack.

    Args:
      h: the input stream.
      s: the running GloNet sum to continue (``None`` starts from zeros); used only in
        ``glonet`` mode.
      train: training mode (batch statistics are used and updated).
      tap: when given, also return every block's tap, stacked in network order.

    Returns:
      ``(h, s, taps)``: the last stream state, the GloNet sum (``None`` unless
      ``glonet``), and ``{"l1": (length, batch), "feat": (length, batch, C)}`` or None.
    """
    _mode_check(self.mode)
    glonet = self.mode == "glonet"
    if s is None and glonet:
      s = jnp.zeros_like(h)
    if self.length == 0:
      return h, s, (_empty_taps(tap, h) if tap is not None else None)
    if (self.fast_apply is not None and tap is None and not self.is_initializing()
        and "scan" in self.variables.get("params", {})):
      h, s_out = self.fast_apply(self.variables["params"],
                                 h, s if glonet else jnp.zeros_like(h))
      return h, (s_out if glonet else None), None
    step = nn.remat(_ScanStep) if self.remat else _ScanStep
    scan = nn.scan(step, variable_axes={"params": 0, "batch_stats": 0},
                   split_rngs={"params": True}, length=self.length,
                   unroll=self.length if self.unroll else 1)
    carry = (h, s if glonet else jnp.zeros((), h.dtype))
    (h, s_out), taps = scan(block=self.block, mode=self.mode, tap=tap, train=train,
                            name="scan")(carry, None)
    return h, (s_out if glonet else None), taps


def _empty_taps(tap: TapFn, h: jax.Array) -> Taps:
  shapes = jax.eval_shape(tap, h)
  return {k: jnp.zeros((0, *v.shape), v.dtype) for k, v in shapes.items()}


def concat_taps(parts: list[Taps | None]) -> Taps:
  """Concatenates per-block taps in network order (``None`` parts are skipped)."""
  parts = [p for p in parts if p is not None]
  return {k: jnp.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def single_tap(tap: TapFn, used: jax.Array) -> Taps:
  """The tap of one unscanned block, with the leading block axis of length 1."""
  return {k: v[None] for k, v in tap(used).items()}


def _channel_embedding(key, shape, dtype=jnp.float32):
  """A 1x1 conv kernel ``(1, 1, C_in, C_out)`` that copies channel i to channel i."""
  del key
  *_, c_in, c_out = shape
  return jnp.eye(c_in, c_out, dtype=dtype).reshape(shape)


class AvgPoolConvCarry(nn.Module):
  """Carries the GloNet sum across a transition: 2x2 average pool, then a 1x1 conv.

  Bias-free and linear; the kernel starts as an identity embedding of the channels, so
  the sum passes through unchanged (pooled) at initialisation. Global average pooling
  commutes with it: ``GAP(carry(s)) = GAP(s) @ K``.

  Attributes:
    features: output channels.
  """

  features: int

  @nn.compact
  def __call__(self, s: jax.Array) -> jax.Array:
    # SAME: an odd map (7x7 at 224 px) pools to the blocks' ceil(n / 2), the last row and
    # column padded with zeros; every window divides by 4, so the pool stays a fixed
    # linear map whose spatial sum is the input's / 4 (exact usage, see pooled_tap). At
    # even sizes this is the plain 2x2 average.
    s = nn.avg_pool(s, (2, 2), strides=(2, 2), padding="SAME", count_include_pad=True)
    return nn.Conv(self.features, (1, 1), use_bias=False, kernel_init=_channel_embedding,
                   conv_general_dilated=conv_ops.conv_general_dilated, name="conv")(s)

  @staticmethod
  def tap_for(transitions: int) -> TapFn:
    """The tap of a block ``transitions`` carries before the head (all positions count)."""
    return functools.partial(pooled_tap, pool_halvings=transitions)


class StridedConvCarry(nn.Module):
  """Carries the GloNet sum across a transition with a stride-2 1x1 conv (the paper's
  projection). Bias-free, linear, identity embedding at init. It reads only the even
  rows and columns, so 3/4 of the sum is dropped at every transition.

  Attributes:
    features: output channels.
  """

  features: int

  @nn.compact
  def __call__(self, s: jax.Array) -> jax.Array:
    return nn.Conv(self.features, (1, 1), strides=(2, 2), use_bias=False,
                   kernel_init=_channel_embedding,
                   conv_general_dilated=conv_ops.conv_general_dilated, name="conv")(s)

  @staticmethod
  def tap_for(transitions: int) -> TapFn:
    """The tap of a block ``transitions`` carries before the head: each keeps every
    second row and column (the first, as SAME padding at odd sizes does too)."""
    return functools.partial(pooled_tap, stride=2 ** transitions)


CARRIES = {"avgpool_conv": AvgPoolConvCarry, "strided_conv": StridedConvCarry}


class Stage(nn.Module):
  """One resolution of a trunk: optional first block, carry map, scanned stack.

  Attributes:
    block: factory of the identical blocks of the stack ``(h, train) -> y``.
    length: number of identical (scanned) blocks after ``first``.
    mode: ``plain``, ``residual`` or ``glonet``.
    first: factory of an unscanned block that changes the shape; it returns
      ``(h_new, used)``: the new stream (with its own shortcut in ``residual`` mode) and
      the term the model uses (the branch). None: the stage keeps the shape.
    carry: factory of the carry map applied to the running GloNet sum before the first
      block's output is added (``glonet`` mode with ``first`` only).
    remat: rematerialise the scanned blocks.
    unroll: unroll the stack's scan (see :class:`BlockStack`).
    sum_every: ``block`` (every block output joins the GloNet sum) or ``stage`` (only the
      stage's last output does: the authors' CIFAR notebook). With ``stage`` the blocks
      run as a plain stack and the stage has a single usage entry.
  """

  block: ModuleFactory
  length: int
  mode: str
  first: ModuleFactory | None = None
  carry: ModuleFactory | None = None
  remat: bool = False
  unroll: bool = False
  sum_every: str = "block"

  @nn.compact
  def __call__(self, h: jax.Array, s: jax.Array | None, *, train: bool,
               tap: TapFn | None = None) -> tuple[jax.Array, jax.Array | None, Taps | None]:
    """Runs the stage; arguments and results as :meth:`BlockStack.__call__`."""
    _mode_check(self.mode)
    if self.sum_every not in ("block", "stage"):
      raise ValueError(f"sum_every must be block or stage; got {self.sum_every!r}.")
    if self.mode == "glonet" and self.sum_every == "stage":
      return self._stage_sum(h, s, train=train, tap=tap)
    glonet = self.mode == "glonet"
    first_taps = None
    if self.first is not None:
      h, used = self.first(name="first")(h, train)
      if glonet:
        s = self._carried(s, h) + used
      if tap is not None:
        first_taps = single_tap(tap, used)
    h, s, rest = BlockStack(self.block, self.length, self.mode, remat=self.remat,
                            unroll=self.unroll, name="stack")(h, s, train=train, tap=tap)
    taps = concat_taps([first_taps, rest]) if tap is not None else None
    return h, s, taps

  def _stage_sum(self, h, s, *, train, tap):
    """GloNet at stage granularity: the blocks run plain, the stage output is summed."""
    if self.first is not None:
      h, _ = self.first(name="first")(h, train)
    h, _, _ = BlockStack(self.block, self.length, "plain", remat=self.remat,
                         unroll=self.unroll, name="stack")(h, None, train=train)
    return h, self._carried(s, h) + h, (single_tap(tap, h) if tap is not None else None)

  def _carried(self, s: jax.Array | None, h: jax.Array) -> jax.Array:
    """The running sum moved to ``h``'s shape by the carry map (zeros to start one)."""
    if s is None:
      return jnp.zeros_like(h)
    if s.shape == h.shape:
      return s
    if self.carry is None:
      raise ValueError("a glonet stage that changes the shape needs a carry map.")
    return self.carry(name="carry")(s)

