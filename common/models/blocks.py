"""The dense blocks that the MLP-family models stack.

A block maps a hidden vector of width ``features`` to another of the same width, so that
identical blocks can be scanned (``nn.scan``) with their parameters stacked on a leading
axis. Each block returns its *output* ``y``; how that output is combined with the stream
(replaced, added as a residual, summed into the GloNet sum) is decided by
:class:`common.models.stack.BlockStack`, not by the block.
"""

import flax.linen as nn
import jax

# He (Kaiming) normal init for layers followed by a ReLU, as in the original code
# (``jax.nn.initializers.kaiming_normal``: variance 2/fan_in, truncated normal).
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")

# PyTorch's BatchNorm defaults (momentum 0.1 there is 0.9 here), the convention of the
# ResNet-v2 baselines the paper compares against.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(train: bool, name: str | None = None) -> nn.BatchNorm:
  """Returns the batch-norm layer used everywhere in the model zoo."""
  return nn.BatchNorm(
      use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


class DenseBlock(nn.Module):
  """Post-activation block: ``act(BN(Dense(h)))`` (BN optional).

  This is one "layer" of the plain MLP and of GloNet: its output is the activation that
  the next block reads and that GloNet adds to its sum.

  Attributes:
    features: output width.
    use_batch_norm: put a BatchNorm between the Dense layer and the activation.
  """

  features: int
  use_batch_norm: bool = False

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    y = nn.Dense(self.features, kernel_init=HE_NORMAL, name="dense")(h)
    if self.use_batch_norm:
      y = batch_norm(train, name="bn")(y)
    return nn.relu(y)


class PreActResidualBranch(nn.Module):
  """Residual branch of a pre-activation (ResNet-v2) block with two Dense layers.

  ``y = Dense(act(BN(Dense(act(BN(h))))))``; the caller adds it to ``h``. Without batch
  norm the branch is ``Dense(act(Dense(act(h))))``.

  Attributes:
    features: width of both Dense layers.
    use_batch_norm: normalise before each activation.
  """

  features: int
  use_batch_norm: bool = True

  @nn.compact
  def __call__(self, h: jax.Array, train: bool) -> jax.Array:
    y = h
    for i in range(2):
      if self.use_batch_norm:
        y = batch_norm(train, name=f"bn{i}")(y)
      y = nn.relu(y)
      y = nn.Dense(self.features, kernel_init=HE_NORMAL, name=f"dense{i}")(y)
    return y
