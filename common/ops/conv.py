"""2-D convolution that runs on oneDNN on the CPU backend and on XLA everywhere else.

:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature, so a Flax
``nn.Conv(..., conv_general_dilated=conv_general_dilated)`` uses it with unchanged
parameters. It takes the native path (``common/ops/onednn_conv.cc``, with a custom VJP
whose input and weight gradients are oneDNN's backward primitives) when all of these hold:

* :func:`common.ops.native.cpu_ops_path` is ``onednn`` (the CPU backend with one device,
  the native library built, ``$GLONETS_CPU_OPS`` not ``xla``);
* float32 operands in NHWC / HWIO / NHWC layout, no dilation, one feature group,
  non-negative padding.

Everything else goes to ``lax.conv_general_dilated`` unchanged. The native op has first
derivatives only (reverse mode), which is all training and layer usage need.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common.ops import native

_NHWC = ("NHWC", "HWIO", "NHWC")


# (stride_h, stride_w, pad_top, pad_bottom, pad_left, pad_right)
Geometry = tuple[int, int, int, int, int, int]


def _call(target: str, out_shape, a, b, geometry: Geometry):
  status = native.load()  # registers the FFI targets before the first call is traced
  if not status.available:
    raise RuntimeError(f"the oneDNN convolution is unavailable: {status.reason}")
  sh, sw, pt, pb, pl, pr = geometry
  return jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, jnp.float32),
                          vmap_method="sequential")(
      a, b, stride_h=np.int64(sh), stride_w=np.int64(sw), pad_top=np.int64(pt),
      pad_bottom=np.int64(pb), pad_left=np.int64(pl), pad_right=np.int64(pr))


def _out_shape(x_shape, w_shape, geometry: Geometry) -> tuple[int, int, int, int]:
  sh, sw, pt, pb, pl, pr = geometry
  n, h, w, _ = x_shape
  kh, kw, _, o = w_shape
  return (n, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1, o)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def onednn_conv(x: jax.Array, w: jax.Array, geometry: Geometry) -> jax.Array:
  """NHWC x HWIO -> NHWC convolution on oneDNN (the native library must be loaded)."""
  return _call("glonets_conv_fwd", _out_shape(x.shape, w.shape, geometry), x, w, geometry)


def _onednn_conv_fwd(x, w, geometry):
  return onednn_conv(x, w, geometry), (x, w)


def _onednn_conv_bwd(geometry, residuals, dy):
  x, w = residuals
  dx = _call("glonets_conv_bwd_data", x.shape, dy, w, geometry)
  dw = _call("glonets_conv_bwd_weights", w.shape, x, dy, geometry)
  return dx, dw


onednn_conv.defvjp(_onednn_conv_fwd, _onednn_conv_bwd)


def _native_geometry(lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation,
                     dimension_numbers, feature_group_count, batch_group_count,
                     preferred_element_type) -> Geometry | None:
  """The native op's geometry, or None where the call must stay on XLA."""
  if lhs.ndim != 4 or rhs.ndim != 4 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32:
    return None
  if preferred_element_type not in (None, jnp.float32):
    return None
  if feature_group_count != 1 or batch_group_count != 1:
    return None
  if any(d != 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ()))):
    return None
  if dimension_numbers is None:
    return None
  expected = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) != expected:
    return None
  if lhs.shape[3] != rhs.shape[2]:
    return None
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    pads = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  else:
    pads = [tuple(int(p) for p in pair) for pair in padding]
  if len(strides) != 2 or len(pads) != 2 or min(min(p) for p in pads) < 0 or min(strides) < 1:
    return None
  geometry = (strides[0], strides[1], pads[0][0], pads[0][1], pads[1][0], pads[1][1])
  if min(_out_shape(lhs.shape, rhs.shape, geometry)) < 1:
    return None
  return geometry


def conv_general_dilated(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int],
                         padding: str | Sequence[tuple[int, int]],
                         lhs_dilation: Sequence[int] | None = None,
                         rhs_dilation: Sequence[int] | None = None,
                         dimension_numbers=None, feature_group_count: int = 1,
                         batch_group_count: int = 1, precision=None,
                         preferred_element_type=None) -> jax.Array:
  """``lax.conv_general_dilated``, on oneDNN where the CPU path applies (module doc)."""
  if native.cpu_ops_path() == "onednn":
    geometry = _native_geometry(lhs, rhs, window_strides, padding, lhs_dilation,
                                rhs_dilation, dimension_numbers, feature_group_count,
                                batch_group_count, preferred_element_type)
    if geometry is not None:
      return onednn_conv(lhs, rhs, geometry)
  return lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
