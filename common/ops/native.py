"""Builds and loads the native CPU operations (``onednn_*.cc``) on first use.

The library is compiled once per (source, jaxlib, oneDNN, compiler) into the user cache
folder (``$GLONETS_CACHE_DIR/ops``, see :mod:`common.data.cache`), written whole or not at
all, and its XLA FFI handlers (convolution, batch norm + ReLU) are registered for the CPU
platform. It needs a C++17
compiler (``$CXX``, else ``c++``/``g++``) and oneDNN 3.x headers and library: by default
from this Python environment (the ``onednn-cpu-gomp`` and ``onednn-devel-cpu-gomp`` wheels
that ``requirements.txt`` installs on Linux x86-64), or from ``$GLONETS_ONEDNN_ROOT``
(a folder with ``include/oneapi/dnnl/dnnl.hpp`` and ``lib/libdnnl.so``).

Where any of that is missing or the build fails, :func:`load` says why once (a warning)
and the convolutions stay XLA's: nothing else changes.
"""

import ctypes
import dataclasses
import functools
import glob
import hashlib
import importlib.metadata
import os
import shutil
import site
import subprocess
import sys
import tempfile

import jax
from absl import logging

from common.fileio import default_cache_dir

_HERE = os.path.dirname(os.path.abspath(__file__))
SOURCES = tuple(os.path.join(_HERE, name) for name in ("onednn_conv.cc", "onednn_batch_norm.cc"))
HEADERS = (os.path.join(_HERE, "onednn_common.h"),)
ONEDNN_ROOT_ENV = "GLONETS_ONEDNN_ROOT"
CPU_OPS_ENV = "GLONETS_CPU_OPS"
TARGETS = {"glonets_conv_fwd": "GlonetsConvForward",
           "glonets_conv_bwd_data": "GlonetsConvBackwardData",
           "glonets_conv_bwd_weights": "GlonetsConvBackwardWeights",
           "glonets_bn_relu_fwd": "GlonetsBatchNormReluForward",
           "glonets_bn_relu_bwd": "GlonetsBatchNormReluBackward"}
_LIBRARY: ctypes.CDLL | None = None
_FLAGS = ("-O2", "-std=c++17", "-shared", "-fPIC", "-w")


@dataclasses.dataclass(frozen=True)
class Native:
  """What :func:`load` found: the library path, or why there is none."""
  available: bool
  reason: str = ""
  path: str = ""
  onednn_root: str = ""


def _onednn_root() -> str | None:
  # The wheels put lib/ and include/ under the environment's prefix (or the user base
  # for ``pip install --user``).
  candidates = [os.environ.get(ONEDNN_ROOT_ENV), sys.prefix, site.USER_BASE, sys.base_prefix]
  for root in filter(None, candidates):
    if (os.path.exists(os.path.join(root, "include", "oneapi", "dnnl", "dnnl.hpp"))
        and glob.glob(os.path.join(root, "lib", "libdnnl.so*"))):
      return os.path.abspath(root)
  return None


def _compiler() -> str | None:
  for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
    path = shutil.which(name)
    if path:
      return path
  return None


def _build_key(compiler: str, root: str) -> str:
  h = hashlib.sha256()
  for path in (*SOURCES, *HEADERS):
    with open(path, "rb") as f:
      h.update(f.read())
  libs = sorted(glob.glob(os.path.join(root, "lib", "libdnnl.so*")))
  for part in (jax.__version__, importlib.metadata.version("jaxlib"), compiler, root,
               *(os.path.realpath(p) for p in libs), *_FLAGS):
    h.update(part.encode())
    h.update(b"\0")
  return h.hexdigest()[:20]


def _compile(compiler: str, root: str, out: str) -> None:
  folder = os.path.dirname(out)
  os.makedirs(folder, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=folder)
  os.close(fd)
  lib_dir = os.path.join(root, "lib")
  cmd = [compiler, *_FLAGS, f"-I{jax.ffi.include_dir()}", f"-I{os.path.join(root, 'include')}",
         *SOURCES, "-o", tmp, f"-L{lib_dir}", "-ldnnl", f"-Wl,-rpath,{lib_dir}"]
  try:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
      raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr.strip()[-2000:]}")
    os.replace(tmp, out)  # concurrent builders write identical files; the rename is atomic
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def _register(path: str) -> None:
  global _LIBRARY
  lib = ctypes.CDLL(path)
  for target, symbol in TARGETS.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                platform="cpu")
  lib.GlonetsBatchNormWorkspaceBytes.restype = ctypes.c_int64
  lib.GlonetsBatchNormWorkspaceBytes.argtypes = [ctypes.c_int64] * 4 + [ctypes.c_float]
  _LIBRARY = lib


def batch_norm_workspace_bytes(n: int, h: int, w: int, c: int, epsilon: float) -> int:
  """Bytes of oneDNN's ReLU mask for a fused batch norm of ``(n, h, w, c)`` (-1: rejected).

  Raises:
    RuntimeError: the native library is not loaded.
  """
  if _LIBRARY is None:
    raise RuntimeError("the native library is not loaded (common.ops.native.load())")
  return int(_LIBRARY.GlonetsBatchNormWorkspaceBytes(n, h, w, c, epsilon))


@functools.cache
def load() -> Native:
  """Builds (once per machine) and registers the oneDNN operations; never raises."""
  root = _onednn_root()
  compiler = _compiler()
  if root is None:
    status = Native(False, f"oneDNN 3.x not found (install the onednn-cpu-gomp and "
                           f"onednn-devel-cpu-gomp wheels, or set ${ONEDNN_ROOT_ENV})")
  elif compiler is None:
    status = Native(False, "no C++ compiler (set $CXX or install g++)", onednn_root=root)
  else:
    out = os.path.join(default_cache_dir(), "ops", _build_key(compiler, root),
                       "libglonets_onednn.so")
    try:
      if not os.path.exists(out):
        logging.info("Building the oneDNN operations into %s", out)
        _compile(compiler, root, out)
      _register(out)
      status = Native(True, path=out, onednn_root=root)
    except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError,
            importlib.metadata.PackageNotFoundError) as e:
      status = Native(False, f"building the oneDNN operations failed: {e}", onednn_root=root)
  if not status.available:
    logging.warning("CPU convolutions and batch norms use XLA's kernels (slower): %s",
                    status.reason)
  return status


def cpu_ops_path() -> str:
  """``"onednn"`` or ``"xla"``: the path CPU convolutions and batch norms take in this
  process (recorded in ``config.json``). On other backends it is always ``"xla"``, and so
  it is with several CPU devices: XLA cannot split a custom call over a sharded batch (it
  would gather the batch and repeat the work on every device), and one CPU device already
  uses every core.
  """
  if jax.default_backend() != "cpu" or jax.device_count() > 1:
    return "xla"
  choice = os.environ.get(CPU_OPS_ENV, "onednn").lower()
  if choice == "xla":
    return "xla"
  if choice != "onednn":
    raise ValueError(f"${CPU_OPS_ENV} must be 'onednn' or 'xla', got {choice!r}")
  return "onednn" if load().available else "xla"
