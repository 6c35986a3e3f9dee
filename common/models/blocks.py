"""The dense blocks that the MLP-family models stack.

A block maps a hidden vector of width ``features`` to another of the same width, so that
identical blocks can be scanned (``nn.scan``) with their parameters stacked on a leading
axis. Each block returns its *output* ``y``; how that output is combined with the stream
(replaced, added as a residual, summed into the GloNet sum) is decided by
:class:`common.models.glonet.BlockStack`, not by the block.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

# He (Kaiming) normal init for layers followed by a ReLU, as in the original code
# (``jax.nn.initializers.kaiming_normal``: variance 2/fan_in, truncated normal).
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

# PyTorch's BatchNorm defaults (its momentum 0.1 is 0.9 here), the same constants as the
# flax ImageNet example's ResNet.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(train: bool, name: str | None = None, feature_major: bool = False
               ) -> nn.BatchNorm:
  """Returns the batch-norm layer used everywhere in the model zoo.

  Args:
    train: normalise with (and update) batch statistics rather than the running ones.
    name: module name.
    feature_major: activations are ``(features, batch)`` (see :class:`FeatureMajorDense`)
      rather than ``(batch, features)``. Parameters and statistics are the same either way.

  Returns:
    The layer.
  """
  return nn.BatchNorm(
      use_running_average=not train, axis=0 if feature_major else -1,
      momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


class BatchRMSNorm(nn.Module):
  """Scale-only batch normalisation: each channel divided by its root mean square.

  ``y = x * scale / sqrt(E[x^2] + eps)`` per channel (the last axis), the mean square taken
  over every other axis of the batch in training and a running average of it (momentum
  and epsilon as :func:`batch_norm`'s) at evaluation. Unlike batch norm it neither
  centres nor shifts, so at evaluation it is a per-channel *scale* with no offset: a sum
  ``x_1 + ... + x_k`` of some of the terms it would normalise is read with no constant that
  belongs to the terms left out (what keeps a GloNet's early exit meaningful, see
  :class:`common.models.resnet_v2.ResNetV2`).
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    mean_square = self.variable("batch_stats", "mean_square",
                                lambda: jnp.ones((features,), jnp.float32))
    scale = self.param("scale", nn.initializers.ones, (features,))
    if train:
      ms = jnp.mean(jnp.square(x.astype(jnp.float32)), axis=tuple(range(x.ndim - 1)))
      if not self.is_initializing():
        mean_square.value = BN_MOMENTUM * mean_square.value + (1 - BN_MOMENTUM) * ms
    else:
      ms = mean_square.value
    return x * self.multiplier(scale, ms).astype(x.dtype)

  @staticmethod
  def multiplier(scale: jax.Array, mean_square: jax.Array) -> jax.Array:
    """The per-channel factor the norm applies, given its scale and mean square."""
    return scale * jax.lax.rsqrt(mean_square + BN_EPSILON)


class FeatureMajorDense(nn.Module):
  """``nn.Dense`` for activations stored feature-major, ``(features_in, batch)``.

  Its parameters (``kernel`` of shape ``(features_in, features)``, ``bias``), their names
  and their initial values are those of ``nn.Dense``, so a model has the same parameters
  and checkpoints in either layout; only the output layout, ``(features, batch)``,
  differs. Why it exists: for narrow layers (SGEMM's width 16) ``x @ W`` is a matmul whose
  output rows are one vector register wide, and the XLA CPU backend runs it at a fraction
  of the speed of ``W.T @ x``, whose long side is the batch (measured in
  ``benchmarks/README.md``; chosen in ``common/models/mlp.py``).

  Attributes:
    features: output width.
    kernel_init: initializer of the kernel, as for ``nn.Dense``.
  """

  features: int
  kernel_init: nn.initializers.Initializer = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, h: jax.Array) -> jax.Array:
    kernel = self.param("kernel", self.kernel_init, (h.shape[0], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    h = jnp.asarray(h, jnp.float32)
    y = jax.lax.dot_general(kernel, h, (((0,), (0,)), ((), ())))
    return y + bias.reshape((-1,) + (1,) * (h.ndim - 1))


def dense(features: int, feature_major: bool, name: str) -> nn.Module:
  """A Dense layer with He-normal init in the requested activation layout.

  Args:
    features: output width.
    feature_major: inputs and outputs are ``(features, batch)`` instead of
      ``(batch, features)``; the parameters are the same either way.
    name: module name (parameters are found by it).

  Returns:
    ``nn.Dense`` or :class:`FeatureMajorDense`.
  """
  if feature_major:
    return FeatureMajorDense(features, kernel_init=HE_NORMAL, name=name)
  return nn.Dense(features, kernel_init=HE_NORMAL, name=name)


class DenseBlock(nn.Module):
  """Post-activation block: ``act(BN(Dense(h)))`` (BN optional).

  This is one "layer" of the plain MLP and of GloNet: its output is the activation that
  the next block reads and that GloNet adds to its sum.

  Attributes:
    features: output width.
    use_batch_norm: put a BatchNorm between the Dense layer and the activation.
    feature_major: activations are ``(features, batch)`` (see :class:`FeatureMajorDense`).
  """

  features: int
  use_batch_norm: bool = False
  feature_major: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    y = dense(self.features, self.feature_major, name="dense")(h)
    if self.use_batch_norm:
      y = batch_norm(train, name="bn", feature_major=self.feature_major)(y)
    return nn.relu(y)


class PreActResidualBranch(nn.Module):
  """Residual branch of a pre-activation (ResNet-v2) block with two Dense layers.

  ``y = Dense(act(BN(Dense(act(BN(h))))))``; the caller adds it to ``h``. Without batch
  norm the branch is ``Dense(act(Dense(act(h))))``.

  Attributes:
    features: width of both Dense layers.
    use_batch_norm: normalise before each activation.
    feature_major: activations are ``(features, batch)`` (see :class:`FeatureMajorDense`).
  """

  features: int
  use_batch_norm: bool = True
  feature_major: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    y = h
    for i in range(2):
      if self.use_batch_norm:
        y = batch_norm(train, name=f"bn{i}", feature_major=self.feature_major)(y)
      y = nn.relu(y)
      y = dense(self.features, self.feature_major, name=f"dense{i}")(y)
    return y
