r"""CNN train-step images per second in JAX (oneDNN and XLA convolutions) and PyTorch.

  python -m benchmarks.cnn_throughput                   # the full table (about 10 minutes)
  python -m benchmarks.cnn_throughput --models=GloNet20 --batch_norm=true --imagenet_models=
  python -m benchmarks.cnn_throughput --models= --shapes=false --conv_paths=onednn \
      --imagenet_models=ResNet18,Plain18,GloNet18,ResNet34,Plain34,GloNet34   # Imagenette
  python -m benchmarks.cnn_throughput --models= --shapes=false --conv_paths=xla --imagenet_xla \
      --imagenet_models=ResNet18,GloNet18 --imagenet_image_size=192 --imagenet_batch_size=128
      # on a GPU: the GPU recipe's images and batch; PyTorch runs on the same GPU

Two tables, one run, one machine:

1. Train-step images/s of ResNet20, Plain20 and GloNet20 (CIFAR, batch norm on and off)
   and of the Imagenette models (``--imagenet_models``, ResNet18 by default; batch norm
   on) at ``--imagenet_image_size`` (128 px), with the CPU convolutions on oneDNN
   (``common/ops``, the default) and on XLA (``GLONETS_CPU_OPS=xla``), and the ratio to
   the same ResNet20 / ResNet18 in PyTorch eager (float32, ``channels_last``; on the GPU
   when JAX runs on one).
   Each model's train-step GFLOP/s (three forward passes' convolutions and matrix
   products, counted from its jaxpr: ``benchmarks/flops.py``) is printed beside it, with
   its fraction of the device's float32 matmul rate measured in the same run.
2. GFLOP/s of each convolution shape of those networks, for the forward pass, the input
   gradient and the weight gradient, in the same three implementations.

The JAX side is the production ``Trainer`` (uint8 images on the device, augmentation and
normalisation inside the jitted step, SGD with Nesterov and weight decay): the median over
``--repeats`` epochs of ``--steps`` steps, compile excluded. PyTorch is an optional
benchmark requirement (``pip install torch``), never a dependency of the package; its
networks are timed in the same interleaved rounds as the JAX ones (one epoch of every
entry per round, medians over rounds), so the drift of a shared machine lands on all
of them alike. Nothing is asserted;
compare numbers only within one run, and name the machine beside them.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from jax import lax

from benchmarks.flops import matmul_gflops, resnet_gflop, train_gflop_per_image
from benchmarks.harness import (
    EpochTimer,
    bench_config,
    conv_path,
    median_seconds,
    synthetic_dataset,
)
from benchmarks.torch_models import torch_resnet_v2
from common.data.augment import image_preprocess
from common.models import (
  CIFAR_MODELS,
  IMAGENET_MODELS,
  build_from_config,
  canonical_config,
  resnet_v2,
)
from common.ops import conv as conv_ops
from common.ops import native
from common.train.tasks import Classification
from common.train.trainer import Trainer

_MODELS = flags.DEFINE_list("models", ["ResNet20", "Plain20", "GloNet20"], "CIFAR models.")
_BN = flags.DEFINE_list("batch_norm", ["true", "false"], "Batch-norm settings to time.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size of the CIFAR models.")
_IMAGENET = flags.DEFINE_list("imagenet_models", ["ResNet18"],
                              "Imagenette models to time at 128 px with batch norm "
                              "(ResNet18, Plain34, GloNet18...; empty: none).")
_IMAGENET_BATCH = flags.DEFINE_integer("imagenet_batch_size", 64, "Batch size of the "
                                       "Imagenette models (their CPU recipe's).")
_IMAGENET_SIZE = flags.DEFINE_integer("imagenet_image_size", 128, "Image side of the "
                                      "Imagenette models (128: the CPU recipe; 192: the GPU's).")
_STEPS = flags.DEFINE_integer("steps", 10, "Train steps per timed epoch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs (the median is kept).")
_PATHS = flags.DEFINE_list("conv_paths", ["onednn", "xla"],
                           "CPU paths to time (GLONETS_CPU_OPS values).")
_IMAGENET_XLA = flags.DEFINE_boolean(
    "imagenet_xla", False, "Also time the Imagenette models on XLA's CPU convolutions "
    "(ResNet18: about 1 image/s on a 2-core machine, minutes per epoch).")
_SHAPES = flags.DEFINE_boolean("shapes", True, "Also time each convolution shape.")
_TORCH = flags.DEFINE_boolean("torch", True, "Also time PyTorch when installed.")

# (name, batch, size, in, out, kernel, stride): every distinct conv of ResNet20 and of
# ResNet18-v2 at 128 px that carries real work.
CONV_SHAPES = [
    ("R20 stage1 3x3", 128, 32, 16, 16, 3, 1),
    ("R20 stage2 3x3", 128, 16, 32, 32, 3, 1),
    ("R20 stage3 3x3", 128, 8, 64, 64, 3, 1),
    ("R20 3x3/2 16-32", 128, 32, 16, 32, 3, 2),
    ("R18 stem 7x7/2", 64, 128, 3, 64, 7, 2),
    ("R18 stage1 3x3", 64, 32, 64, 64, 3, 1),
    ("R18 stage2 3x3", 64, 16, 128, 128, 3, 1),
    ("R18 stage3 3x3", 64, 8, 256, 256, 3, 1),
    ("R18 stage4 3x3", 64, 4, 512, 512, 3, 1),
]


def _epoch_timer(config, model, batch: int, size: int) -> EpochTimer:
  """A built (compiled, warmed-up) production trainer over ``--steps`` synthetic batches."""
  rng = np.random.default_rng(0)
  n = batch * _STEPS.value
  x = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
  y = rng.integers(0, 10, n).astype(np.int32)
  trainer = Trainer.build(config, model, synthetic_dataset(x, y), Classification(10),
                          preprocess=image_preprocess((0.49, 0.48, 0.45), (0.25,) * 3),
                          eval_splits=())
  timer = EpochTimer(trainer)
  timer.run()  # warm-up
  return timer


def _sgd(**overrides):
  return bench_config(learning_rate=0.05, optimizer="SGD", nesterov=True, weight_decay=5e-4,
                      **overrides)


def cifar_timer(name: str, use_bn: bool) -> tuple[EpochTimer, float]:
  """The production train epoch of the CIFAR model ``name``, and its GFLOP per image."""
  config = canonical_config(_sgd(model=name, num_layers=None, use_batch_norm=use_bn,
                                 batch_size=_BATCH.value), CIFAR_MODELS)
  model, _, _ = build_from_config(config, 10, CIFAR_MODELS)
  return _epoch_timer(config, model, _BATCH.value, 32), train_gflop_per_image(model, 32)


def imagenet_timer(name: str) -> tuple[EpochTimer, float]:
  """The production train epoch of the Imagenette model ``name`` (BN) at
  ``--imagenet_image_size``, and its GFLOP per image."""
  config = canonical_config(_sgd(model=name, num_layers=None, use_batch_norm=True,
                                 batch_size=_IMAGENET_BATCH.value), IMAGENET_MODELS)
  model, _, _ = build_from_config(config, 10, IMAGENET_MODELS)
  size = _IMAGENET_SIZE.value
  return (_epoch_timer(config, model, _IMAGENET_BATCH.value, size),
          train_gflop_per_image(model, size))


# --- PyTorch ------------------------------------------------------------------------------


def torch_device() -> str:
  """Where the PyTorch peer runs: on the GPU when JAX runs on one and PyTorch sees it, so
  the peer always shares the device of the JAX numbers beside it."""
  import torch  # pylint: disable=g-import-not-at-top (optional)

  return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def _torch_sync(device: str) -> None:
  import torch  # pylint: disable=g-import-not-at-top (optional)

  if device == "cuda":
    torch.cuda.synchronize()  # CUDA kernels run asynchronously: time them finished


def torch_epoch(stage_sizes, widths, stem: str, batch: int, size: int):
  """A function timing ``--steps`` PyTorch ResNet-v2 train steps (eager, float32,
  channels_last, on :func:`torch_device`), warmed up; it returns seconds."""
  import torch  # pylint: disable=g-import-not-at-top (optional)

  device = torch_device()
  model = torch_resnet_v2(stage_sizes, widths, stem).to(device)
  opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)
  x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (batch,), device=device)
  loss_fn = torch.nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()

  def epoch() -> float:
    _torch_sync(device)
    t0 = time.perf_counter()
    for _ in range(_STEPS.value):
      step()
    _torch_sync(device)
    return time.perf_counter() - t0

  for _ in range(3):
    step()
  return epoch


def torch_available() -> bool:
  try:
    import torch  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    return False
  return True


# --- one convolution at a time -------------------------------------------------------------


def _median_ms(fn, *args) -> float:
  jax.block_until_ready(fn(*args))  # compile and warm up outside the timing
  return median_seconds(lambda: fn(*args), 20) * 1e3


def jax_conv_ms(path: str, batch, size, cin, cout, k, stride) -> tuple[float, float, float]:
  """Forward, input-gradient and weight-gradient milliseconds of one conv in JAX."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, size, size, cin)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, cin, cout)) * 0.05, jnp.float32)
  dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
  with conv_path(path):
    fwd = jax.jit(lambda x, w: conv_ops.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=dn))
    y = fwd(x, w)
    dy = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    dx = jax.jit(lambda x, w, dy: jax.vjp(lambda x: fwd(x, w), x)[1](dy)[0])
    dw = jax.jit(lambda x, w, dy: jax.vjp(lambda w: fwd(x, w), w)[1](dy)[0])
    return _median_ms(fwd, x, w), _median_ms(dx, x, w, dy), _median_ms(dw, x, w, dy)


def torch_conv_ms(batch, size, cin, cout, k, stride) -> tuple[float, float, float]:
  """The same three in PyTorch (aten.convolution_backward with one output at a time)."""
  import torch  # pylint: disable=g-import-not-at-top (optional)

  pad = k // 2
  device = torch_device()
  x = torch.randn(batch, cin, size, size, device=device).to(memory_format=torch.channels_last)
  w = (torch.randn(cout, cin, k, k, device=device) * 0.05).to(
      memory_format=torch.channels_last)
  y = torch.nn.functional.conv2d(x, w, None, stride, pad)
  dy = torch.randn_like(y).to(memory_format=torch.channels_last)

  def timed(fn):
    with torch.no_grad():
      for _ in range(3):
        fn()
      times = []
      for _ in range(20):
        _torch_sync(device)
        t0 = time.perf_counter()
        fn()
        _torch_sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3

  def backward(mask):
    return torch.ops.aten.convolution_backward(dy, x, w, None, [stride] * 2, [pad] * 2,
                                               [1, 1], False, [0, 0], 1, mask)

  return (timed(lambda: torch.nn.functional.conv2d(x, w, None, stride, pad)),
          timed(lambda: backward([True, False, False])),
          timed(lambda: backward([False, True, False])))


def _gflops(batch, size, cin, cout, k, stride) -> float:
  out = -(-size // stride)
  return 2.0 * batch * out * out * cout * cin * k * k / 1e9


# --- main ----------------------------------------------------------------------------------


def main(argv):
  del argv
  has_torch = _TORCH.value and torch_available()
  print(f"devices: {jax.devices()}  jax {jax.__version__}; CIFAR batch {_BATCH.value}, "
        f"Imagenette batch {_IMAGENET_BATCH.value} at {_IMAGENET_SIZE.value} px; "
        f"{_STEPS.value} steps per epoch, "
        f"median of {_REPEATS.value} interleaved rounds")
  print(f"oneDNN operations: {native.load()}")
  # Everything is built first, then timed in interleaved rounds (one epoch of each per
  # round), so a shared machine's drift lands on every entry alike, PyTorch's included.
  entries = []  # (label, BN, path, images per epoch, epoch fn, compile s, peer, GFLOP/image)
  for name in _MODELS.value:
    for bn in _BN.value:
      use_bn = bn.lower() in ("1", "true", "yes")
      for path in _PATHS.value:
        with conv_path(path):
          timer, gflop = cifar_timer(name, use_bn)
        entries.append((name, use_bn, path, _BATCH.value * _STEPS.value, timer.run,
                        timer.trainer.timings["compile_seconds_train"], "ResNet20", gflop))
  imagenet_depths = set()
  for name in _IMAGENET.value:
    for path in _PATHS.value:
      if path == "xla" and not _IMAGENET_XLA.value:
        continue
      with conv_path(path):
        timer, gflop = imagenet_timer(name)
      depth = timer.trainer.config.num_layers
      imagenet_depths.add(depth)
      entries.append((name, True, path, _IMAGENET_BATCH.value * _STEPS.value, timer.run,
                      timer.trainer.timings["compile_seconds_train"], f"ResNet{depth}", gflop))
  # The peers are the same ResNet-v2 networks, so they do the JAX ResNet's work.
  if has_torch and _MODELS.value:
    entries.append(("ResNet20", True, "torch", _BATCH.value * _STEPS.value, torch_epoch(
        (3, 3, 3), (16, 32, 64), "cifar", _BATCH.value, 32), None, None,
        resnet_gflop("ResNet20", CIFAR_MODELS, 32)))
  if has_torch:
    for depth in sorted(imagenet_depths):  # each depth's peer: the same ResNet-v2
      entries.append((f"ResNet{depth}", True, "torch", _IMAGENET_BATCH.value * _STEPS.value,
                      torch_epoch(resnet_v2.imagenet_stage_sizes(depth),
                                  resnet_v2.IMAGENET_WIDTHS, "imagenet", _IMAGENET_BATCH.value,
                                  _IMAGENET_SIZE.value), None, None,
                      resnet_gflop(f"ResNet{depth}", IMAGENET_MODELS, _IMAGENET_SIZE.value)))
  seconds = [[] for _ in entries]
  for _ in range(_REPEATS.value):
    for i, entry in enumerate(entries):
      seconds[i].append(entry[4]())
  ips = {(e[0], e[1], e[2]): e[3] / float(np.median(t)) for e, t in zip(entries, seconds,
                                                                      strict=True)}
  peak = matmul_gflops()
  print(f"float32 matmul at default precision on {jax.devices()[0].device_kind}: "
        f"{peak:.0f} GFLOP/s (the peak below)")
  if has_torch:
    import torch  # pylint: disable=g-import-not-at-top
    where = (f"on {torch.cuda.get_device_name()} (cuDNN TF32 convolutions: "
             f"{torch.backends.cudnn.allow_tf32})" if torch_device() == "cuda"
             else f"{torch.get_num_threads()} threads")
    print(f"PyTorch {torch.__version__}: eager, float32, channels_last, {where}")
  else:
    print("PyTorch: not timed" + ("" if _TORCH.value else " (--torch=false)")
          + ("" if torch_available() else " (not installed: pip install torch)"))
  print(f"{'model':>12} {'BN':>5} {'path':>7} {'images/s':>9} {'(min-max)':>11} "
        f"{'vs torch':>9} {'compile s':>10} {'GFLOP/s':>8} {'of peak':>8}")
  for (name, use_bn, path, n, _, compile_s, peer, gflop), t in zip(entries, seconds,
                                                                   strict=True):
    ref = ips.get((peer, True, "torch")) if peer else None
    ratio = f"{ips[(name, use_bn, path)] / ref:.2f}" if ref else "n/a"
    compile_text = f"{compile_s:>10.2f}" if compile_s is not None else f"{'':>10}"
    spread = f"{n / max(t):.0f}-{n / min(t):.0f}"
    achieved = ips[(name, use_bn, path)] * gflop
    rate = f"{achieved:>8.1f} {achieved / peak:>8.1%}"
    print(f"{name:>12} {str(use_bn):>5} {path:>7} {ips[(name, use_bn, path)]:>9.1f} "
          f"{spread:>11} {ratio:>9} {compile_text} {rate}")

  if _SHAPES.value:
    impls = list(_PATHS.value) + (["torch"] if has_torch else [])
    print("\nGFLOP/s per convolution (forward / input gradient / weight gradient)")
    print(f"{'shape':>18} {'N':>4} {'HxW':>4} {'in':>4} {'out':>4}  "
          + "  ".join(f"{impl:>17}" for impl in impls))
    for label, batch, size, cin, cout, k, stride in CONV_SHAPES:
      flop = _gflops(batch, size, cin, cout, k, stride)
      cells = []
      for impl in impls:
        ms = (torch_conv_ms(batch, size, cin, cout, k, stride) if impl == "torch"
              else jax_conv_ms(impl, batch, size, cin, cout, k, stride))
        cells.append("/".join(f"{flop / t * 1e3:.0f}" for t in ms))
      print(f"{label:>18} {batch:>4} {size:>4} {cin:>4} {cout:>4}  "
            + "  ".join(f"{c:>17}" for c in cells), flush=True)


if __name__ == "__main__":
  app.run(main)
