r"""Train-step images per second of the CIFAR families in JAX, and of ResNet20 in PyTorch.

  python -m benchmarks.cnn_throughput                   # ResNet20, Plain20, GloNet20, BN on/off
  python -m benchmarks.cnn_throughput --models=GloNet20 --batch_size=256 --steps=20

The JAX side is the production ``Trainer`` (uint8 images on the device, pad-crop-flip and
normalisation inside the jitted step, SGD with Nesterov and weight decay): the median over
``--repeats`` epochs of ``--steps`` steps, compile excluded. When PyTorch is installed
(an optional benchmark requirement: ``pip install torch``, never a dependency of the
package), the same ResNet20-v2 (pre-activation basic blocks, 16/32/64 channels, 1x1
projection shortcuts, BN) is timed in PyTorch eager on the CPU in float32 with the
``channels_last`` memory format, and the ratio JAX / PyTorch is printed. Nothing is
asserted; compare numbers only within one run, and name the machine beside them.
"""

import time

import jax
import numpy as np
from absl import app, flags

from benchmarks.harness import EpochTimer, bench_config, synthetic_dataset
from common.data.augment import image_preprocess
from common.models import CIFAR_MODELS, build_from_config, canonical_config
from common.train.tasks import Classification
from common.train.trainer import Trainer

_MODELS = flags.DEFINE_list("models", ["ResNet20", "Plain20", "GloNet20"], "CIFAR models.")
_BN = flags.DEFINE_list("batch_norm", ["true", "false"], "Batch-norm settings to time.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_STEPS = flags.DEFINE_integer("steps", 10, "Train steps per timed epoch.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed epochs (the median is kept).")
_TORCH = flags.DEFINE_boolean("torch", True, "Also time PyTorch's ResNet20 when installed.")


def jax_images_per_second(name: str, use_bn: bool) -> tuple[float, float]:
  """(images/s, compile seconds) of the production train epoch for ``name``."""
  config = canonical_config(bench_config(
      model=name, num_layers=None, use_batch_norm=use_bn, batch_size=_BATCH.value,
      learning_rate=0.05, optimizer="SGD", nesterov=True, weight_decay=5e-4), CIFAR_MODELS)
  model, _, _ = build_from_config(config, 10, CIFAR_MODELS)
  rng = np.random.default_rng(0)
  n = _BATCH.value * _STEPS.value
  x = rng.integers(0, 256, (n, 32, 32, 3)).astype(np.uint8)
  y = rng.integers(0, 10, n).astype(np.int32)
  trainer = Trainer.build(config, model, synthetic_dataset(x, y), Classification(10),
                          preprocess=image_preprocess((0.49, 0.48, 0.45), (0.25,) * 3),
                          eval_splits=())
  timer = EpochTimer(trainer)
  timer.run()  # warm-up
  seconds = float(np.median([timer.run() for _ in range(_REPEATS.value)]))
  return n / seconds, trainer.timings["compile_seconds_train"]


def torch_images_per_second() -> float | None:
  """images/s of ResNet20-v2 in PyTorch eager (float32, channels_last); None without torch."""
  try:
    import torch  # pylint: disable=g-import-not-at-top (optional)
    from torch import nn  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.bn0, self.bn1 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
      self.conv0 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.proj = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                   if stride != 1 or cin != cout else None)

    def forward(self, x):
      pre = torch.relu(self.bn0(x))
      y = self.conv1(torch.relu(self.bn1(self.conv0(pre))))
      return y + (self.proj(pre) if self.proj is not None else x)

  layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
  cin = 16
  for i, cout in enumerate((16, 32, 64)):
    for j in range(3):
      layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
      cin = cout
  model = nn.Sequential(*layers, nn.BatchNorm2d(64), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(64, 10)).to(memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                        weight_decay=5e-4)
  x = torch.randn(_BATCH.value, 3, 32, 32).to(memory_format=torch.channels_last)
  y = torch.randint(0, 10, (_BATCH.value,))
  loss_fn = nn.CrossEntropyLoss()

  def step():
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()

  for _ in range(3):
    step()
  times = []
  for _ in range(_REPEATS.value):
    t0 = time.perf_counter()
    for _ in range(_STEPS.value):
      step()
    times.append(time.perf_counter() - t0)
  return _BATCH.value * _STEPS.value / float(np.median(times))


def main(argv):
  del argv
  print(f"devices: {jax.devices()}  jax {jax.__version__}; batch {_BATCH.value}, "
        f"{_STEPS.value} steps per epoch, median of {_REPEATS.value}")
  torch_ips = torch_images_per_second() if _TORCH.value else None
  if torch_ips is None:
    print("PyTorch: not installed (pip install torch to compare)")
  else:
    import torch  # pylint: disable=g-import-not-at-top
    print(f"PyTorch {torch.__version__} ResNet20 (eager, float32, channels_last, "
          f"{torch.get_num_threads()} threads): {torch_ips:.1f} images/s")
  print(f"{'model':>10} {'BN':>5} {'images/s':>9} {'vs torch':>9} {'compile s':>10}")
  for name in _MODELS.value:
    for bn in _BN.value:
      use_bn = bn.lower() in ("1", "true", "yes")
      ips, compile_s = jax_images_per_second(name, use_bn)
      ratio = f"{ips / torch_ips:.2f}" if torch_ips else "n/a"
      print(f"{name:>10} {str(use_bn):>5} {ips:>9.1f} {ratio:>9} {compile_s:>10.2f}",
            flush=True)


if __name__ == "__main__":
  app.run(main)
