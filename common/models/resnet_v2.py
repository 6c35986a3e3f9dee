"""Convolutional families on the one trunk: pre-activation ResNet-v2, Plain, GloNet.

A trunk is a stem, then stages (:class:`common.models.glonet.Stage`): stage 1 keeps the
stem's shape, every later stage opens with a stride-2 block that doubles the channels,
then scans identical blocks. The three families are modes of the same trunk:

==========  ===================================================================
ResNet      pre-activation basic blocks [BN]-ReLU-conv3x3-[BN]-ReLU-conv3x3 with
            identity skips (a 1x1 projection on the pre-activated input where the
            shape changes), final [BN]-ReLU, global average pool, Dense head
Plain       the same blocks without any skip, final [BN]-ReLU, pool, head
GloNet      the same blocks without any skip; the head reads the global average of
            the GloNet sum of the stem output and *every* block output, carried
            across each transition by a learnable, bias-free linear map (no
            BN-ReLU before the head, as in the authors' notebook; optionally a
            batch norm without ReLU on the sum, ``glonet_head_norm``, or a
            scale-only norm, ``glonet_head_rms``)
==========  ===================================================================

``glonet_head_norm`` mirrors ResNet-v2's final batch norm on the GloNet sum, which is
otherwise the only unnormalised tensor a family's head reads (the sum of 9 terms in
GloNet18 makes its gradient at initialisation 5.5x ResNet18's). It has no ReLU, so at
evaluation it is a per-channel affine map: the head stays linear in every term and layer
usage stays exact (:meth:`ResNetV2.readout` folds it into the maps and the bias).
``glonet_head_rms`` divides each channel of the sum by its root mean square instead
(:class:`common.models.blocks.BatchRMSNorm`): no centring and no shift, so at evaluation
it is a per-channel scale with no offset, and an early exit (a prefix of the sum) is read
without the constant that batch norm's centring computes from the *whole* sum.

Depth convention (the repository's one convention, extended to convolutions): every conv
on the input-to-output path plus the head; shortcuts and carry maps are not counted (nor
is batch norm). A CIFAR network with ``n`` blocks per stage has ``6n + 2`` layers
(ResNet20: n = 3, 0.27M parameters). Layer usage has one entry per block, and for Plain
and GloNet the stem output is block 1 (as the MLP families count their first layer).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import ConfigError
from common.models import blocks
from common.models.glonet import CARRIES, Stage, Taps, concat_taps, single_tap
from common.ops import batch_norm as batch_norm_ops
from common.ops import conv as conv_ops
from common.ops import native

# The settings only a GloNet uses, with the values that mean "not set".
_GLONET_ONLY = {"carry": "avgpool_conv", "glonet_sum": "block", "glonet_head_norm": False,
                "glonet_head_rms": False}
FAMILIES = {"ResNet": "residual", "Plain": "plain", "GloNet": "glonet"}
STEMS = ("cifar", "imagenet")


def _conv(features: int, kernel: int, strides: int, name: str) -> nn.Conv:
  # Bias-free, as in the reference CIFAR ResNets (a bias before batch norm is redundant).
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides), padding="SAME",
                 use_bias=False, kernel_init=blocks.HE_NORMAL, name=name,
                 conv_general_dilated=conv_ops.conv_general_dilated)


def _pre_activation(h, train: bool, use_batch_norm: bool, name: str):
  if use_batch_norm:
    if train and batch_norm_ops.applies(h):
      # One oneDNN op for batch norm and ReLU, with nn.BatchNorm's variables.
      return batch_norm_ops.BatchNormReLU(momentum=blocks.BN_MOMENTUM,
                                          epsilon=blocks.BN_EPSILON, name=name)(h)
    h = blocks.batch_norm(train, name=name)(h)
  return nn.relu(h)


class PreActBranch(nn.Module):
  """``[BN]-ReLU-conv3x3(strides)-[BN]-ReLU-conv3x3``: the residual branch, or a Plain or
  GloNet block by itself.

  Attributes:
    features: output channels.
    strides: stride of the first conv.
    use_batch_norm: normalise before each ReLU.
  """

  features: int
  strides: int = 1
  use_batch_norm: bool = True

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    y = _pre_activation(h, train, self.use_batch_norm, "bn0")
    y = _conv(self.features, 3, self.strides, "conv0")(y)
    y = _pre_activation(y, train, self.use_batch_norm, "bn1")
    return _conv(self.features, 3, 1, "conv1")(y)


class PreActFirstBlock(nn.Module):
  """The shape-changing first block of a stage; returns ``(h_new, branch)``.

  With ``skip`` the new stream is ``branch + shortcut``, the shortcut a 1x1 projection of
  the pre-activated input (as in pre-activation ResNets); without it, the branch alone.

  Attributes:
    features: output channels.
    strides: stride of the first conv (and of the projection).
    use_batch_norm: normalise before each ReLU.
    skip: add the projection shortcut (ResNet).
  """

  features: int
  strides: int
  use_batch_norm: bool
  skip: bool

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    pre = _pre_activation(h, train, self.use_batch_norm, "bn0")
    y = _conv(self.features, 3, self.strides, "conv0")(pre)
    y = _pre_activation(y, train, self.use_batch_norm, "bn1")
    y = _conv(self.features, 3, 1, "conv1")(y)
    if not self.skip:
      return y, y
    return _conv(self.features, 1, self.strides, "projection")(pre) + y, y


class ResNetV2(nn.Module):
  """A stem and stages of pre-activation basic blocks in one of three modes.

  Attributes:
    stage_sizes: blocks per stage (the first block of every stage after the first one
      halves the resolution and changes the channels).
    widths: channels per stage.
    out_dim: classes.
    mode: ``residual`` (ResNet), ``plain`` or ``glonet``.
    use_batch_norm: batch norm before every ReLU.
    carry: GloNet carry map at transitions: ``avgpool_conv`` (2x2 average pool then a
      1x1 conv, the default) or ``strided_conv`` (a stride-2 1x1 conv, the paper's
      projection).
    stem: ``cifar`` (conv3x3, stride 1) or ``imagenet`` (conv7x7 stride 2, then a 3x3
      stride-2 max pool; no norm or ReLU in between, as in the pre-activation ResNet-v2
      of big_vision and Keras: the first block normalises its input).
    remat: rematerialise the scanned blocks in the backward pass.
    glonet_sum: GloNet only: ``block`` (the stem and every block output are summed) or
      ``stage`` (the stem and each stage's last output: the authors' notebook variant,
      whose usage has one entry per stage).
    glonet_head_norm: GloNet only: batch norm (affine, no ReLU) on the sum before the
      pool and head; needs ``use_batch_norm``. Off by default (the paper's GloNet).
    glonet_head_rms: GloNet only: the scale-only norm (:class:`blocks.BatchRMSNorm`) on
      the sum before the pool and head instead; needs ``use_batch_norm``. Off by default.
    unroll_scan: unroll the scanned blocks into straight-line code; None (default): only
      where the CPU runs XLA's own convolutions (no oneDNN build, or
      ``GLONETS_CPU_OPS=xla``), because XLA's CPU backend runs a convolution's gradient
      inside a loop body some 35x slower than outside (measured in
      ``benchmarks/README.md``), at the price of a longer compile. The oneDNN custom
      calls (``common/ops``) are as fast inside a loop, and other backends keep the scan
      unless told otherwise. Parameters are the same either way.
  """

  stage_sizes: Sequence[int]
  widths: Sequence[int]
  out_dim: int
  mode: str = "residual"
  use_batch_norm: bool = True
  carry: str = "avgpool_conv"
  stem: str = "cifar"
  remat: bool = False
  glonet_sum: str = "block"
  glonet_head_norm: bool = False
  glonet_head_rms: bool = False
  unroll_scan: bool | None = None

  def validate(self) -> None:
    """Raises ConfigError for impossible settings."""
    if len(self.stage_sizes) != len(self.widths) or not self.stage_sizes:
      raise ConfigError("stage_sizes and widths must be non-empty and of equal length.")
    if min(self.stage_sizes) < 1:
      raise ConfigError(f"every stage needs at least one block; got {self.stage_sizes}.")
    if self.mode not in FAMILIES.values():
      raise ConfigError(f"mode must be one of {sorted(FAMILIES.values())}; got {self.mode}.")
    if self.carry not in CARRIES:
      raise ConfigError(f"unknown carry map {self.carry!r}; valid: {', '.join(CARRIES)}.")
    if self.stem not in STEMS:
      raise ConfigError(f"unknown stem {self.stem!r}; valid: {', '.join(STEMS)}.")
    if self.glonet_sum not in ("block", "stage"):
      raise ConfigError(f"glonet_sum must be block or stage; got {self.glonet_sum!r}.")
    if self.mode != "glonet":
      # Refused rather than ignored: the run would record a setting it never used.
      given = [(k, str(getattr(self, k)).lower()) for k, default in _GLONET_ONLY.items()
               if getattr(self, k) != default]
      if given:
        option, value = given[0]
        family = {mode: name for name, mode in FAMILIES.items()}[self.mode]
        raise ConfigError(
            f"--{option}={value} applies to GloNet models only; drop it for {family} (in a "
            f"sweep, give it to GloNet alone: MODELS=\"{family} GloNet:{option}={value}\").")
    for option in ("glonet_head_norm", "glonet_head_rms"):
      if getattr(self, option) and not self.use_batch_norm:
        raise ConfigError(f"{option} normalises with batch statistics: it needs "
                          "use_batch_norm; drop one of the two.")
    if self.glonet_head_rms and self.glonet_head_norm:
      raise ConfigError("glonet_head_norm and glonet_head_rms are two norms for the same "
                        "place before the head: choose one.")

  # --- the usage contract (see common.usage) ---------------------------------------------

  @property
  def usage_mode(self) -> str:
    """What the per-block terms are: ``glonet`` sums, ``residual`` branches or ``plain``."""
    return self.mode

  @property
  def _stem_counts(self) -> bool:
    return self.mode != "residual"  # the stem output is a used term of Plain and GloNet

  @property
  def group_sizes(self) -> list[int]:
    """Usage entries per stage (the stem counts in stage 1 where it is a used term)."""
    sizes = [1] * len(self.stage_sizes) if self.glonet_sum == "stage" else list(self.stage_sizes)
    sizes[0] += int(self._stem_counts)
    return sizes

  @property
  def num_blocks(self) -> int:
    """Number of per-block layer-usage entries."""
    return sum(self.group_sizes)

  @property
  def stage_boundaries(self) -> list[int]:
    """First usage index of each stage, in network order."""
    starts, total = [], 0
    for size in self.group_sizes:
      starts.append(total)
      total += size
    return starts

  @property
  def param_paths(self) -> tuple[tuple[str, ...], ...]:
    """Parameter paths in network order (a ``stack`` path holds one row per block)."""
    paths: list[tuple[str, ...]] = [("stem",)]
    for i in range(len(self.stage_sizes)):
      name = f"stage{i + 1}"
      paths += [(name, "carry"), (name, "first"), (name, "stack")]
    return (*paths, ("final_bn",), ("head_bn",), ("head_rms",), ("head",))

  @property
  def unrolls(self) -> bool:
    """Whether the scanned blocks are unrolled (see ``unroll_scan``)."""
    if self.unroll_scan is None:
      return jax.default_backend() == "cpu" and native.cpu_ops_path() == "xla"
    return self.unroll_scan

  @property
  def loop_free_steps(self) -> bool:
    """Whether the trainer should call the train step once per step rather than loop over
    steps on device: the same XLA CPU slowness applies to a convolution's gradient inside
    the step loop, so whenever the blocks are unrolled for it the step runs outside any
    loop."""
    return self.unrolls

  def execution(self, rows: int) -> dict:
    """The execution path (recorded in config.json)."""
    del rows
    return {"backend": jax.default_backend(), "cpu_ops": native.cpu_ops_path(),
            "remat": self.remat,
            "unrolled_scan": self.unrolls, "loop_free_steps": self.loop_free_steps,
            **({"carry": self.carry, "glonet_sum": self.glonet_sum,
                "glonet_head_norm": self.glonet_head_norm,
                "glonet_head_rms": self.glonet_head_rms} if self.mode == "glonet"
               else {})}

  def readout(self, params, batch_stats=None) -> tuple[list[jax.Array], jax.Array]:
    """GloNet: the linear map from each stage's pooled block output to the logits.

    The head reads ``GAP(S_last)`` and every carry map is linear and commutes with global
    pooling, so a block of stage ``g`` contributes ``feat @ K_g ... K_{last-1} W`` where
    ``feat`` is its (strided, for ``strided_conv``) spatial mean (see ``_tap_for``). With
    ``glonet_head_norm`` the evaluation-mode batch norm ``x * a + c`` (per channel) also
    commutes with pooling: ``W`` becomes ``diag(a) W`` and the bias ``b + c W``; with
    ``glonet_head_rms`` only ``W`` changes, to ``diag(a) W``.

    Args:
      params: the model parameters.
      batch_stats: the model's batch statistics (needed with a head norm).

    Returns:
      ``([R_1, ..., R_S], bias)`` with ``R_g`` of shape ``(widths[g], out_dim)``.
    """
    r, bias = params["head"]["kernel"], params["head"]["bias"]
    if (self.glonet_head_norm or self.glonet_head_rms) and batch_stats is None:
      raise ValueError("readout of a GloNet with a head norm needs batch_stats.")
    if self.glonet_head_rms:
      r = blocks.BatchRMSNorm.multiplier(params["head_rms"]["scale"],
                                         batch_stats["head_rms"]["mean_square"])[:, None] * r
    if self.glonet_head_norm:
      bn, stats = params["head_bn"], batch_stats["head_bn"]
      scale = bn["scale"] * jax.lax.rsqrt(stats["var"] + blocks.BN_EPSILON)
      bias = bias + (bn["bias"] - stats["mean"] * scale) @ r
      r = scale[:, None] * r
    maps = [r]
    for g in range(len(self.stage_sizes) - 1, 0, -1):
      k = params[f"stage{g + 1}"]["carry"]["conv"]["kernel"]
      r = k.reshape(k.shape[-2], k.shape[-1]) @ r
      maps.append(r)
    return maps[::-1], bias

  def _tap_for(self, stage: int):
    return CARRIES[self.carry].tap_for(len(self.stage_sizes) - 1 - stage)

  def with_taps(self, x: jax.Array) -> tuple[jax.Array, list[Taps]]:
    """Evaluation-mode output and the per-block taps, one entry per stage."""
    return self.forward(x, train=False, want_taps=True)

  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """Maps images ``(batch, height, width, channels)`` (floats) to logits."""
    return self.forward(x, train=train, want_taps=False)[0]

  @nn.compact
  def forward(self, x: jax.Array, train: bool, want_taps: bool):
    """The model, optionally with per-stage taps."""
    self.validate()
    glonet = self.mode == "glonet"
    if self.stem == "imagenet":
      h = _conv(self.widths[0], 7, 2, "stem")(x)
      h = nn.max_pool(h, (3, 3), strides=(2, 2), padding="SAME")
    else:
      h = _conv(self.widths[0], 3, 1, "stem")(x)
    s = h if glonet else None
    taps: list[Taps] = []
    for g, (size, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
      tap = self._tap_for(g) if want_taps else None
      block = functools.partial(PreActBranch, width, 1, self.use_batch_norm)
      first = carry = None
      length = size
      if g > 0:
        first = functools.partial(PreActFirstBlock, width, 2, self.use_batch_norm,
                                  self.mode == "residual")
        carry = functools.partial(CARRIES[self.carry], width) if glonet else None
        length = size - 1
      stem_taps = single_tap(tap, h) if (want_taps and g == 0 and self._stem_counts) else None
      h, s, stage_taps = Stage(block, length, self.mode, first=first, carry=carry,
                               remat=self.remat, unroll=self.unrolls,
                               sum_every=self.glonet_sum,
                               name=f"stage{g + 1}")(h, s, train=train, tap=tap)
      if want_taps:
        taps.append(concat_taps([stem_taps, stage_taps]))
    if glonet:
      if self.glonet_head_norm:
        h = blocks.batch_norm(train, name="head_bn")(s)
      elif self.glonet_head_rms:
        h = blocks.BatchRMSNorm(name="head_rms")(s, train)
      else:
        h = s
    else:
      h = _pre_activation(h, train, self.use_batch_norm, "final_bn")
    h = jnp.mean(h, axis=(1, 2))
    return nn.Dense(self.out_dim, name="head")(h), (taps if want_taps else None)


CIFAR_WIDTHS = (16, 32, 64)


def cifar_stage_sizes(depth: int) -> tuple[int, int, int]:
  """Blocks per stage of a CIFAR network of ``depth = 6n + 2`` layers.

  Raises:
    ConfigError: the depth is not of the form 6n + 2 with n >= 1.
  """
  if depth < 8 or (depth - 2) % 6:
    near = max(8, 6 * round((depth - 2) / 6) + 2)
    raise ConfigError(
        f"a CIFAR ResNet-v2/Plain/GloNet has a stem conv, 3 stages of n blocks of two "
        f"convs and a head, so its depth must be 6n+2 (20, 32, 44, 56, 110...); got "
        f"{depth}, try {near}.")
  n = (depth - 2) // 6
  return (n, n, n)


IMAGENET_WIDTHS = (64, 128, 256, 512)
# Basic-block layouts of the ImageNet ResNets (He et al. 2016, Table 1): a 7x7 stem conv,
# two convs per block and the head, so depth = 2 * blocks + 2.
IMAGENET_STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def imagenet_stage_sizes(depth: int) -> tuple[int, ...]:
  """Blocks per stage of an ImageNet-shaped basic-block network of ``depth`` layers.

  Raises:
    ConfigError: a depth without a standard basic-block layout.
  """
  if depth not in IMAGENET_STAGE_SIZES:
    raise ConfigError(
        f"an ImageNet-shaped ResNet-v2/Plain/GloNet of basic blocks has depth "
        f"{' or '.join(str(d) for d in IMAGENET_STAGE_SIZES)} (the standard layouts "
        f"{', '.join(str(list(v)) for v in IMAGENET_STAGE_SIZES.values())}); got {depth}.")
  return IMAGENET_STAGE_SIZES[depth]


# A two-stage network with tiny widths, for tests only (flax examples keep such a variant).
ResNetTiny = functools.partial(ResNetV2, stage_sizes=(1, 2), widths=(4, 8))
