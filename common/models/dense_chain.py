"""A chain of Dense+ReLU layers (plain or GloNet-summed) with a faster backward pass.

``dense_relu_chain`` computes exactly what a :class:`common.models.glonet.BlockStack` of
``DenseBlock`` layers without batch norm computes::

    out_l = relu(in_l @ W_l + b_l),   in_0 = h,   in_{l+1} = out_l
    returns (out_{n-1}, s + sum_l out_l)

but with a hand-written VJP. Two things make it faster than reverse-mode autodiff of the
scan, which computes, for every layer, the input gradient ``dz_l @ W_l^T`` and the weight
gradient ``in_l^T @ dz_l`` inside the reverse loop:

* the forward pass keeps only the chain's input and every layer's output (each layer's
  input is the previous output, and the ReLU mask is recovered from the output), so deep
  chains move less memory than under autodiff, which also keeps the pre-activations;
* batch-major (wide layers): only the input gradient is on the sequential path. The
  reverse loop computes ``dz_l`` alone, and every weight gradient is computed afterwards
  in one batched matmul over the layers (``einsum('lbi,lbj->lij')``), which XLA runs as
  one operation. This pays off when the chained matmuls are small but the layers wide:
  on the MNIST GloNet at depth 100 (width 256, batch 256) the CPU train step is about
  10% faster; with larger batches autodiff is faster.
* feature-major (narrow layers, ``(features, batch)``): the weight gradients stay in the
  reverse loop, where each layer's input is read in place, since a batched matmul of
  ``features x features`` outputs is too small to pay for re-reading every activation.
  On SGEMM (width 16, batch 1024) an epoch takes 0.54 instead of 0.59 s at depth 100 and
  5.60 instead of 6.54 s at depth 1000 (`python -m benchmarks.sgemm_epoch_time`, with and
  without `--backward=autodiff`).

:mod:`common.models.mlp` chooses by shape, and ``benchmarks/README.md`` has the
measurements.

The values equal autodiff's up to float32 summation order (tested in
``tests/models/test_dense_chain.py``).
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax


def _dense(x, w, b, feature_major):
  if feature_major:  # x: (features_in, batch), as in `blocks.FeatureMajorDense`
    return lax.dot_general(w, x, (((0,), (0,)), ((), ()))) + b[:, None]
  return jnp.dot(x, w) + b


def _forward(h, s, kernels, biases, glonet_sum, feature_major):
  def layer(carry, wb):
    x, acc = carry
    out = jax.nn.relu(_dense(x, wb[0], wb[1], feature_major))
    return (out, acc + out if glonet_sum else acc), out

  (h_last, s), outs = lax.scan(layer, (h, s), (kernels, biases))
  return h_last, s, outs


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def dense_relu_chain(
    h: jax.Array, s: jax.Array, kernels: jax.Array, biases: jax.Array, glonet_sum: bool,
    feature_major: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """Runs ``n`` Dense+ReLU layers; see the module docstring.

  Args:
    h: the chain's input, shape ``(batch, ..., features)``, or ``(features, batch)`` when
      ``feature_major``.
    s: the running GloNet sum to add the layer outputs to (returned unchanged without
      ``glonet_sum``).
    kernels: stacked kernels, shape ``(n, features, features)``.
    biases: stacked biases, shape ``(n, features)``.
    glonet_sum: add every layer's output to ``s``.
    feature_major: activations are ``(features, batch)``; the backward pass then computes
      each weight gradient inside the reverse loop (see the module docstring).

  Returns:
    ``(h_last, s)``: the last layer's output and the (updated) sum.
  """
  h_last, s, _ = _forward(h, s, kernels, biases, glonet_sum, feature_major)
  return h_last, s


def _chain_fwd(h, s, kernels, biases, glonet_sum, feature_major):
  h_last, s, outs = _forward(h, s, kernels, biases, glonet_sum, feature_major)
  return (h_last, s), (h, kernels, outs)


def _hoisted_bwd(h, kernels, outs, g_h, from_sum):
  """Batch-major: input gradients in the reverse loop, weight gradients after it."""
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
  return g_in, g_kernels, g_biases


def _in_loop_bwd(h, kernels, outs, g_h, from_sum):
  """Feature-major: every gradient of layer l in step l of the reverse loop."""
  def grads(g_out, w, out, x):
    dz = jnp.where(out > 0, g_out + from_sum, 0.0)  # (features, batch)
    return jnp.dot(w, dz), jnp.dot(x, dz.T), jnp.sum(dz, axis=1)

  def layer(g_out, i):
    # Layer i reads out_{i-1}, indexed in place: slicing `outs` for the scan would copy it.
    g_in, g_w, g_b = grads(g_out, kernels[i], outs[i], outs[i - 1])
    return g_in, (g_w, g_b)

  g_out, (g_ws, g_bs) = lax.scan(layer, g_h, jnp.arange(1, kernels.shape[0]), reverse=True)
  g_in, g_w0, g_b0 = grads(g_out, kernels[0], outs[0], h)
  return (g_in, jnp.concatenate([g_w0[None], g_ws], axis=0),
          jnp.concatenate([g_b0[None], g_bs], axis=0))


def _chain_bwd(glonet_sum, feature_major, residuals, cotangents):
  h, kernels, outs = residuals
  g_h, g_s = cotangents
  # The gradient reaching out_l from the sum is g_s for every layer (GloNet); from the
  # next layer it is the input gradient of layer l+1; the last output also gets g_h.
  from_sum = g_s if glonet_sum else jnp.zeros_like(g_s)
  backward = _in_loop_bwd if feature_major else _hoisted_bwd
  g_in, g_kernels, g_biases = backward(h, kernels, outs, g_h, from_sum)
  return g_in, g_s, g_kernels, g_biases


dense_relu_chain.defvjp(_chain_fwd, _chain_bwd)
