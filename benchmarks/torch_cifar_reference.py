r"""The same ResNet20-v2 and CIFAR-10 recipe trained in PyTorch: an accuracy peer.

  python -m benchmarks.torch_cifar_reference --data_dir=/path/to/data --epochs=10
  python -m resnet_cifar10.train --model=ResNet20 --data_dir=/path/to/data --epochs=10

A researcher comparing our CIFAR-10 numbers with published ones needs to know whether a
gap comes from the implementation or from the recipe and the data. This trains the
pre-activation ResNet20-v2 of ``benchmarks.torch_models`` in PyTorch eager (CPU,
float32, channels_last) on the very arrays ``resnet_cifar10`` trains on (same loader, same
45,000 / 5,000 split, same test set), with the CPU recipe of ``resnet_cifar10.train``:
SGD with Nesterov momentum 0.9, batch 128 (the last partial batch dropped, as ours),
weight decay on conv and linear weights only, a linear warmup over ``--warmup_epochs``
then linear decay to zero per step, pad-4 random crop and horizontal flip, He-normal conv
initialisation (as ours), evaluation with running batch-norm statistics. Seeds differ
between the frameworks, so compare with the spread over seeds, not one number.

Prints one JSON line per epoch (train loss and accuracy, val and test accuracy, seconds)
and appends them to ``--out`` when given. PyTorch is an optional benchmark requirement
(``pip install torch``), never a dependency of the package. The JAX run to compare with is
``python -m resnet_cifar10.train --model=ResNet20 --epochs=N`` with the same recipe flags.
"""

import json
import math
import time

import numpy as np
from absl import app, flags

from benchmarks.torch_models import torch_resnet_v2
from resnet_cifar10.data import MEAN, STD, load_cifar10

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data root holding cifar10/.")
_EPOCHS = flags.DEFINE_integer("epochs", 30, "Epochs.")
_LR = flags.DEFINE_float("learning_rate", 0.1, "Peak learning rate.")
_WD = flags.DEFINE_float("weight_decay", 5e-4, "Weight decay of conv and linear weights.")
_WARMUP = flags.DEFINE_float("warmup_epochs", 1.0, "Linear warmup epochs.")
_BATCH = flags.DEFINE_integer("batch_size", 128, "Batch size.")
_LABEL_SMOOTHING = flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of initialisation, order and augmentation.")
_THREADS = flags.DEFINE_integer("threads", None, "torch.set_num_threads (default: torch's).")
_OUT = flags.DEFINE_string("out", None, "Append the per-epoch JSON lines to this file.")


# Standard deviation of a unit normal truncated to [-2, 2]: Flax's truncated-normal
# initialisers divide by it so that the truncated weights keep the intended variance.
_TRUNCATED_STD = 0.87962566103423978


def _truncated_normal_(weight, variance: float) -> None:
  import torch  # pylint: disable=g-import-not-at-top (optional)

  std = math.sqrt(variance) / _TRUNCATED_STD
  torch.nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _init_like_ours(model) -> None:
  """He-normal (fan-in) convs and LeCun-normal head, as the Flax models; zero head bias."""
  import torch  # pylint: disable=g-import-not-at-top (optional)

  for m in model.modules():
    if isinstance(m, torch.nn.Conv2d):
      _truncated_normal_(m.weight, 2.0 / m.weight[0].numel())
    elif isinstance(m, torch.nn.Linear):
      _truncated_normal_(m.weight, 1.0 / m.in_features)
      torch.nn.init.zeros_(m.bias)


def _augment(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
  """Pad-4 random crop and horizontal flip of uint8 NHWC images."""
  n, h, w, _ = x.shape
  padded = np.pad(x, ((0, 0), (4, 4), (4, 4), (0, 0)))
  offsets = rng.integers(0, 9, (n, 2))
  flips = rng.random(n) < 0.5
  out = np.empty_like(x)
  for i, ((dy, dx), flip) in enumerate(zip(offsets, flips, strict=True)):
    crop = padded[i, dy:dy + h, dx:dx + w]
    out[i] = crop[:, ::-1] if flip else crop
  return out


def main(argv):
  del argv
  import torch  # pylint: disable=g-import-not-at-top (optional)

  if _THREADS.value:
    torch.set_num_threads(_THREADS.value)
  torch.manual_seed(_SEED.value)
  rng = np.random.default_rng(_SEED.value)
  data = load_cifar10(_DATA_DIR.value)
  mean = torch.tensor(MEAN).view(1, 3, 1, 1)
  std = torch.tensor(STD).view(1, 3, 1, 1)

  def to_input(x: np.ndarray):
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)
    return ((t - mean) / std).contiguous(memory_format=torch.channels_last)

  model = torch_resnet_v2((3, 3, 3), (16, 32, 64), "cifar")
  _init_like_ours(model)
  decay = [p for n, p in model.named_parameters() if p.ndim > 1]
  no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
  opt = torch.optim.SGD([{"params": decay, "weight_decay": _WD.value},
                         {"params": no_decay, "weight_decay": 0.0}],
                        lr=_LR.value, momentum=0.9, nesterov=True)
  steps_per_epoch = len(data.train) // _BATCH.value
  total = steps_per_epoch * _EPOCHS.value
  warmup = int(round(_WARMUP.value * steps_per_epoch))

  def lr_at(step: int) -> float:
    if step < warmup:
      return _LR.value * step / warmup
    return _LR.value * max(0.0, 1 - (step - warmup) / max(1, total - warmup))

  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=_LABEL_SMOOTHING.value)

  def evaluate(split) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
      for i in range(0, len(split), 1000):
        logits = model(to_input(split.x[i:i + 1000]))
        correct += int((logits.argmax(1).numpy() == split.y[i:i + 1000]).sum())
    model.train()
    return correct / len(split)

  step = 0
  for epoch in range(1, _EPOCHS.value + 1):
    order = rng.permutation(len(data.train))
    t0, loss_sum, correct = time.perf_counter(), 0.0, 0
    for b in range(steps_per_epoch):
      idx = order[b * _BATCH.value:(b + 1) * _BATCH.value]
      x = to_input(_augment(rng, data.train.x[idx]))
      y = torch.from_numpy(data.train.y[idx].astype(np.int64))
      for group in opt.param_groups:
        group["lr"] = lr_at(step)
      opt.zero_grad(set_to_none=True)
      logits = model(x)
      loss = loss_fn(logits, y)
      loss.backward()
      opt.step()
      step += 1
      loss_sum += float(loss.detach())
      correct += int((logits.argmax(1) == y).sum())
    seconds = time.perf_counter() - t0
    record = {"framework": "torch", "epoch": epoch,
              "train_loss": loss_sum / steps_per_epoch,
              "train_accuracy": correct / (steps_per_epoch * _BATCH.value),
              "val_accuracy": evaluate(data.val), "test_accuracy": evaluate(data.test),
              "train_seconds": seconds, "seed": _SEED.value, "torch": torch.__version__}
    line = json.dumps(record)
    print(line, flush=True)
    if _OUT.value:
      with open(_OUT.value, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
  app.run(main)
