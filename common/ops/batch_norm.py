"""Training-mode batch norm + ReLU in one oneDNN op on the CPU backend.

:class:`BatchNormReLU` has exactly the variables of ``nn.BatchNorm`` (``params``: ``scale``,
``bias``; ``batch_stats``: ``mean``, ``var``) and the same statistics (biased batch
variance, running averages with ``momentum``), so a model may use it in training and
``nn.BatchNorm`` in evaluation, and checkpoints do not change. Its forward and backward
passes are oneDNN's batch normalisation with the ReLU fused (two passes over the
activation each way, where XLA's autodiff of the same layer makes several). Models use it
where :func:`applies` (the oneDNN path of :func:`common.ops.native.cpu_ops_path`, 4-D
float32 activations); everywhere else they keep ``nn.BatchNorm`` and ``nn.relu``.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common.ops import native


def applies(x: jax.Array) -> bool:
  """Whether the fused op can take ``x`` (the CPU path is oneDNN, NHWC float32)."""
  return (x.ndim == 4 and x.dtype == jnp.float32 and native.cpu_ops_path() == "onednn")


def _workspace(x_shape, epsilon: float) -> int:
  size = native.batch_norm_workspace_bytes(*x_shape, epsilon)
  if size < 0:
    raise ValueError(f"oneDNN rejects a batch norm of shape {x_shape}")
  return size


def _forward(x, scale, shift, epsilon: float):
  c = x.shape[-1]
  outs = (jax.ShapeDtypeStruct(x.shape, jnp.float32), jax.ShapeDtypeStruct((c,), jnp.float32),
          jax.ShapeDtypeStruct((c,), jnp.float32),
          jax.ShapeDtypeStruct((_workspace(x.shape, epsilon),), jnp.uint8))
  return jax.ffi.ffi_call("glonets_bn_relu_fwd", outs, vmap_method="sequential")(
      x, scale, shift, epsilon=np.float32(epsilon))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def batch_norm_relu(x: jax.Array, scale: jax.Array, shift: jax.Array, epsilon: float
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``relu((x - mean) / sqrt(var + eps) * scale + shift)`` with the batch's statistics
  over all but the last axis; returns ``(y, mean, var)``. ``mean`` and ``var`` are for
  the running averages only: their gradients are not propagated."""
  y, mean, var, _ = _forward(x, scale, shift, epsilon)
  return y, mean, var


def _batch_norm_relu_fwd(x, scale, shift, epsilon):
  y, mean, var, workspace = _forward(x, scale, shift, epsilon)
  return (y, mean, var), (x, scale, mean, var, workspace)


def _batch_norm_relu_bwd(epsilon, residuals, cotangents):
  x, scale, mean, var, workspace = residuals
  dy = cotangents[0]
  c = x.shape[-1]
  outs = (jax.ShapeDtypeStruct(x.shape, jnp.float32), jax.ShapeDtypeStruct((c,), jnp.float32),
          jax.ShapeDtypeStruct((c,), jnp.float32))
  dx, dscale, dshift = jax.ffi.ffi_call("glonets_bn_relu_bwd", outs, vmap_method="sequential")(
      x, dy, scale, mean, var, workspace, epsilon=np.float32(epsilon))
  return dx, dscale, dshift


batch_norm_relu.defvjp(_batch_norm_relu_fwd, _batch_norm_relu_bwd)


class BatchNormReLU(nn.Module):
  """``nn.BatchNorm(axis=-1)`` in training mode, then ReLU, as one oneDNN op.

  Attributes:
    momentum: running-average momentum (as ``nn.BatchNorm``).
    epsilon: added to the variance.
  """

  momentum: float = 0.99
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
    scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
    y, mean, var = batch_norm_relu(x, scale, bias, self.epsilon)
    if not self.is_initializing():
      mean, var = lax.stop_gradient(mean), lax.stop_gradient(var)
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return y
