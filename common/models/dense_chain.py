"""A chain of Dense+ReLU layers (plain or GloNet-summed) with a faster backward pass.

``dense_relu_chain`` computes exactly what a :class:`common.models.stack.BlockStack` of
``DenseBlock`` layers without batch norm computes::

    out_l = relu(in_l @ W_l + b_l),   in_0 = h,   in_{l+1} = out_l
    returns (out_{n-1}, s + sum_l out_l)

but with a hand-written VJP. Reverse-mode autodiff of the scan computes, for every layer,
the input gradient ``dz_l @ W_l^T`` *and* the weight gradient ``in_l^T @ dz_l`` inside the
reverse loop, so both are small sequential matmuls. Only the input gradient is on the
sequential path: here the reverse loop computes ``dz_l`` alone, and every weight gradient
is computed afterwards in one batched matmul over the layers (``einsum('lbi,lbj->lij')``),
which XLA runs as one operation. The backward pass keeps only the chain's input and every
layer's output (each layer's input is the previous output; the ReLU mask is recovered
from the output). This pays off when the chained matmuls are small: on the MNIST GloNet at
depth 100 (width 256, batch 256) the CPU train step is about 10% faster, while with larger
batches or tiny widths autodiff is faster; :mod:`common.models.mlp` chooses by shape, and
``benchmarks/README.md`` has the measurements.

The values equal autodiff's up to float32 summation order (tested in
``tests/test_dense_chain.py``).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _forward(h, s, kernels, biases, glonet_sum):
  def layer(carry, wb):
    x, acc = carry
    out = jax.nn.relu(jnp.dot(x, wb[0]) + wb[1])
    return (out, acc + out if glonet_sum else acc), out

  (h_last, s), outs = lax.scan(layer, (h, s), (kernels, biases))
  return h_last, s, outs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def dense_relu_chain(
    h: jax.Array, s: jax.Array, kernels: jax.Array, biases: jax.Array, glonet_sum: bool
) -> tuple[jax.Array, jax.Array]:
  """Runs ``n`` Dense+ReLU layers; see the module docstring.

  Args:
    h: the chain's input, shape ``(batch, ..., features)``.
    s: the running GloNet sum to add the layer outputs to (returned unchanged without
      ``glonet_sum``).
    kernels: stacked kernels, shape ``(n, features, features)``.
    biases: stacked biases, shape ``(n, features)``.
    glonet_sum: add every layer's output to ``s``.

  Returns:
    ``(h_last, s)``: the last layer's output and the (updated) sum.
  """
  h_last, s, _ = _forward(h, s, kernels, biases, glonet_sum)
  return h_last, s


def _chain_fwd(h, s, kernels, biases, glonet_sum):
  h_last, s, outs = _forward(h, s, kernels, biases, glonet_sum)
  return (h_last, s), (h, kernels, outs)


def _chain_bwd(glonet_sum, residuals, cotangents):
  h, kernels, outs = residuals
  g_h, g_s = cotangents
  # The gradient reaching out_l from the sum is g_s for every layer (GloNet); from the
  # next layer it is dz_{l+1} @ W_{l+1}^T; the last output also gets g_h.
  from_sum = g_s if glonet_sum else jnp.zeros_like(g_s)

  def layer(g_out, w_out):
    w, out = w_out
    dz = jnp.where(out > 0, g_out + from_sum, 0.0)
    return jnp.dot(dz, w.T), dz

  g_in, dzs = lax.scan(layer, g_h, (kernels, outs), reverse=True)
  # Layer l > 0 reads out_{l-1}; layer 0 reads h. Concatenating the small per-layer
  # results, not the large inputs, avoids copying every activation once more.
  g_kernels = jnp.concatenate([
      jnp.einsum("...i,...j->ij", h, dzs[0])[None],
      jnp.einsum("l...i,l...j->lij", outs[:-1], dzs[1:]),
  ], axis=0)
  g_biases = jnp.sum(dzs, axis=tuple(range(1, dzs.ndim - 1)))
  return g_in, g_s, g_kernels, g_biases


dense_relu_chain.defvjp(_chain_fwd, _chain_bwd)
