"""Imagenette as in-memory uint8 arrays, decoded once at the requested size and cached.

Sources, looked for in ``<data_root>/imagenette/`` and then in ``<data_root>`` itself: the
official archives ``imagenette2.tgz`` (full size), ``imagenette2-320.tgz``,
``imagenette2-160.tgz``, the offline copy ``imagenette2-224.tar`` (every image 224x224:
a substitute), or any of them extracted (a folder ``imagenette2*/`` holding ``train/`` and
``val/``). When several are there, the one with the largest images is used (full, 320,
224, 160; an archive before its extracted folder) and the choice is logged and recorded.

Classes are the sorted WordNet-id folders (label 0 is ``n01440764``, tench), with the
human-readable names in reports. Checked on every load: exactly the ten official class
folders in both splits, 9,469 training and 3,925 validation images with the official
count per class, every file decodable. Greyscale (and CMYK) images are converted to RGB
(counted in ``config.json``).

Every image is resized so that its shorter side is ``stored_size(image_size)`` (=
``image_size / 0.875``, 146 px for 128) and centre-cropped to a square, once; the decoded
arrays are cached under a key holding the source's SHA-256 and that size (see
:mod:`common.data.cache`: written whole or not at all, in a user cache folder). Training
takes random-resized crops of the stored squares inside the jitted step, evaluation the
centre ``image_size`` crop: the usual resize-to-1.14x-then-centre-crop evaluation.

``validation_size`` images are held out of the training images for model selection; the
official validation images are reported as the **test set** (Imagenette has no other).
"""

import dataclasses
import math
import os
import re

import numpy as np
from absl import logging

from common.data import Dataset, Split, check_holdout_size, check_split_sizes, holdout_split
from common.data.augment import resized_crop_preprocess
from common.data.cache import checked_cached_arrays
from common.data.download import Download
from common.data.host_memory import HostMemory, host_memory
from common.data.images import SquareResize, read_class_folders, source_digest
from common.errors import ConfigError, DataError
from common.train.steps import Preprocess
from common.train.tasks import Classification

WNIDS = ("n01440764", "n02102040", "n02979186", "n03000684", "n03028079", "n03394916",
         "n03417042", "n03425413", "n03445777", "n03888257")
CLASS_NAMES = ("tench", "English springer", "cassette player", "chain saw", "church",
               "French horn", "garbage truck", "gas pump", "golf ball", "parachute")
NUM_CLASSES = 10
# Images per class of the official release (imagenette2, all sizes), in WNIDS order.
TRAIN_COUNTS = (963, 955, 993, 858, 941, 956, 961, 931, 951, 960)  # 9,469
VAL_COUNTS = (387, 395, 357, 386, 409, 394, 389, 419, 399, 390)  # 3,925
# ImageNet's channel statistics (the usual choice for Imagenette; its own differ little).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # evaluation sees the centre 87.5% (224 of 256)
MIN_IMAGE_SIZE = 16  # the smallest --image_size accepted
SPLITS = ("train", "val")

# imagenette2, imagenette2-320, -224, -160: archive (.tgz/.tar.gz/.tar) or folder.
_NAME = re.compile(r"^imagenette2(?:-(\d+))?(\.tgz|\.tar\.gz|\.tar)?$", re.IGNORECASE)
_OFFICIAL_SIZES = (None, 320, 160)  # None: the full-size release
# The 320 px release, as TensorFlow Datasets' imagenette fetches it (its SHA-256 there).
DOWNLOADS = (Download(
    "https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
    "imagenette/imagenette2-320.tgz",
    "569b4497c98db6dd29f335d1f109cf315fe127053cedf69010d047f0188e158c"),)
_COPY_NOTE = ("Imagenette re-encoded at 224x224 (aspect ratio not kept), JPEG quality 75; "
              "not the official images")
_FIX = ("Put the official imagenette2-320.tgz (or imagenette2.tgz, imagenette2-160.tgz; "
        "https://github.com/fastai/imagenette) into <data_root>/imagenette/ and pass "
        "--data_dir=<data_root> or set GLONETS_DATA_DIR.")


@dataclasses.dataclass(frozen=True)
class _Source:
  """A local copy: ``path`` (archive or folder); ``size`` is the release's side (None:
  full size)."""

  path: str
  size: int | None

  @property
  def is_archive(self) -> bool:
    return os.path.isfile(self.path)

  @property
  def name(self) -> str:
    return os.path.basename(self.path.rstrip(os.sep))


def _rank(source: _Source) -> tuple[int, int]:
  # Largest images first (the full release before any resized one), archive before folder.
  return (-(source.size or 10**6), 0 if source.is_archive else 1)


def find_source(data_dir: str) -> _Source | None:
  """The copy of Imagenette to read under ``data_dir`` (see the module docstring).

  Args:
    data_dir: the data root, or the folder holding the files.

  Returns:
    The source, or None when there is none.

  Raises:
    DataError: no usable copy, but an ``imagenette2*/`` folder without ``train/`` or
      ``val/`` (an incomplete extraction): the message names it.
  """
  found, incomplete = [], []
  for folder in (os.path.join(data_dir, "imagenette"), data_dir):
    if not os.path.isdir(folder):
      continue
    for name in sorted(os.listdir(folder)):
      match = _NAME.match(name)
      path = os.path.join(folder, name)
      if not match:
        continue
      source = _Source(path, int(match.group(1)) if match.group(1) else None)
      if match.group(2) and os.path.isfile(path):
        found.append(source)
      elif not match.group(2) and os.path.isdir(path):
        missing = [f"{s}/" for s in SPLITS if not os.path.isdir(os.path.join(path, s))]
        if missing:
          incomplete.append(f"{path} has no {' or '.join(missing)}")
        else:
          found.append(source)
    if found:
      break
  if not found and incomplete:
    raise DataError(f"Imagenette folder incomplete: {'; '.join(incomplete)} (an extraction "
                    f"cut short?). Extract the archive again, or {_FIX[0].lower()}{_FIX[1:]}")
  if not found:
    return None
  found.sort(key=_rank)
  if len(found) > 1:
    logging.info("Imagenette: using %s (of %s).", found[0].path,
                 ", ".join(s.path for s in found))
  return found[0]


def stored_size(image_size: int) -> int:
  """The side of the cached squares for a model input of ``image_size`` pixels."""
  return int(round(image_size / EVAL_CROP_FRACTION))


def decoded_bytes(image_size: int, counts: dict[str, tuple[int, ...]] | None = None) -> int:
  """Bytes of the decoded uint8 squares of both splits for a model input of ``image_size``."""
  counts = counts or {"train": TRAIN_COUNTS, "val": VAL_COUNTS}
  images = sum(sum(counts[split]) for split in SPLITS)
  return images * stored_size(image_size) ** 2 * 3


def _check_fits_in_memory(image_size: int, counts: dict[str, tuple[int, ...]] | None,
                          available: HostMemory | None) -> None:
  """Refuses an image size whose decoded images alone exceed the ``available`` memory.

  Such a decode would run for minutes and end in the kernel's out-of-memory kill, with no
  message. A size whose images take more than half the memory is logged as a warning: a run
  needs more than its images (a 224 px run peaked at 7.2 GiB with 2.6 GB of images, README
  "Memory").
  """
  need = decoded_bytes(image_size, counts)
  memory = available.bytes if available else 0
  if not memory or need <= memory // 2:
    return
  side = stored_size(image_size)
  gib = 2.0**30
  if need > memory:
    per_pixel = need / side**2  # bytes per stored pixel position, over every image
    # The size whose images take half the memory, leaving the rest to the run.
    fits = int(math.isqrt(int(memory / 2 / per_pixel)) * EVAL_CROP_FRACTION)
    fix = (f"Pass a smaller --image_size (about {fits} at most, whose images take half of "
           f"it; the recipes use 128 and 192)" if fits >= MIN_IMAGE_SIZE else
           f"Even --image_size={MIN_IMAGE_SIZE}, the smallest, needs "
           f"{decoded_bytes(MIN_IMAGE_SIZE, counts) / gib:.2f} GiB: run on a machine with more")
    raise ConfigError(
        f"--image_size={image_size} stores every image at {side}x{side}: {need / gib:.1f} "
        f"GiB of decoded pixels, more than {available.source} ({memory / gib:.1f} GiB). "
        f"{fix}.")
  logging.warning("--image_size=%d: the decoded images take %.1f GiB of %s (%.1f GiB); "
                  "a run needs more than its images and may run out of memory.",
                  image_size, need / gib, available.source, memory / gib)


def _check(arrays: dict[str, np.ndarray], counts: dict[str, tuple[int, ...]], side: int,
           where: str, fix: str) -> None:
  """Verifies shapes, dtypes, labels and the official count per split and class."""
  for split in SPLITS:
    x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
    if x.dtype != np.uint8 or x.shape[1:] != (side, side, 3) or y.shape != (len(x),):
      raise DataError(f"{where}: {split} images are {x.dtype} {x.shape} with labels "
                      f"{y.shape}, expected uint8 (N, {side}, {side}, 3) and N labels. {fix}")
    found = np.bincount(y, minlength=NUM_CLASSES) if len(y) else np.zeros(NUM_CLASSES, int)
    expected = np.asarray(counts[split])
    if len(found) != NUM_CLASSES or np.any(found != expected):
      off = ", ".join(f"{w} {n:,} (expected {e:,})"
                      for w, n, e in zip(WNIDS, found, expected, strict=False) if n != e)
      raise DataError(
          f"{where} holds {len(x):,} {split} images, expected {expected.sum():,} "
          f"({off}); the archive may be truncated, or this is not imagenette2. {fix}")


def _load_arrays(data_dir: str | None, image_size: int, cache_dir: str | None = None,
                 counts: dict[str, tuple[int, ...]] | None = None
                 ) -> tuple[dict[str, np.ndarray], dict]:
  """Train and val arrays of the source found, verified, and their provenance.

  Args:
    data_dir: the data root (or the folder holding the files).
    image_size: the model's input side; images are stored at ``stored_size(image_size)``.
    cache_dir: folder of the decoded-array cache (None: the default).
    counts: expected images per class and split (None: the official ones; tests pass
      their own).

  Returns:
    ``({"train_x", "train_y", "val_x", "val_y"}, info)``.

  Raises:
    DataError: no copy, or a missing, truncated or corrupt one; the message names the
      file and the fix.
  """
  counts = counts or {"train": TRAIN_COUNTS, "val": VAL_COUNTS}
  if not data_dir:
    raise DataError(f"no data root given (--data_dir or GLONETS_DATA_DIR). {_FIX}")
  source = find_source(data_dir)
  if source is None:
    raise DataError(
        f"Imagenette not found: looked for imagenette2*.tgz / imagenette2*.tar or an "
        f"extracted imagenette2*/ folder with train/ and val/ in "
        f"{os.path.join(data_dir, 'imagenette')} and {data_dir}. {_FIX}")
  side = stored_size(image_size)
  digest = source_digest(source.path, source.is_archive, _FIX)

  def build() -> dict[str, np.ndarray]:
    logging.info("Imagenette: decoding %s at %dx%d (done once, then cached).", source.path,
                 side, side)
    out = read_class_folders(source.path, SPLITS, WNIDS, None,
                             modes=("RGB", "L", "CMYK"), fix_hint=_FIX,
                             transform=SquareResize(side))
    arrays = {"train_x": out["train"][0], "train_y": out["train"][1],
              "val_x": out["val"][0], "val_y": out["val"][1],
              # Kept with the arrays so that a cache hit still knows what was decoded.
              "modes": np.asarray([f"{m}={n}" for m, n in out["modes"].items()], dtype=str)}
    return arrays

  arrays, cache_file, hit = checked_cached_arrays(
      f"imagenette-{digest}-{side}px", build,
      lambda a, where, fix: _check(a, counts, side, where, fix), source.path, _FIX, cache_dir)
  modes = {m.split("=")[0]: int(m.split("=")[1]) for m in arrays.pop("modes", ())}
  info = {"source": os.path.abspath(source.path),
          "format": f"class folders ({'archive' if source.is_archive else 'folder'})",
          "release": f"imagenette2-{source.size}" if source.size else "imagenette2",
          "sha256": digest, "cache": cache_file, "cache_hit": hit,
          "stored_size": side, "image_modes": modes,
          "converted_to_rgb": sum(n for m, n in modes.items() if m != "RGB")}
  if source.size is not None and source.size not in _OFFICIAL_SIZES:
    info["substitute"] = (_COPY_NOTE if source.size == 224 else
                          f"Imagenette at {source.size} px: not an official release")
    logging.warning("Imagenette source %s: %s.", source.path, info["substitute"])
  return arrays, info


def load_imagenette(data_dir: str | None, image_size: int = 128, validation_size: int = 500,
                    split_seed: int = 0, cache_dir: str | None = None,
                    counts: dict[str, tuple[int, ...]] | None = None) -> Dataset:
  """Loads Imagenette; holds out a validation split of the training images.

  Args:
    data_dir: the data root (holding ``imagenette/``) or the folder holding the files.
    image_size: the model's input side (images are stored a little larger, see
      :func:`stored_size`).
    validation_size: training images held out for model selection.
    split_seed: seed of the held-out selection (recorded).
    cache_dir: folder of the decoded-array cache (None: ``$GLONETS_CACHE_DIR``, else the
      user cache folder); never the data root.
    counts: expected images per class and split (tests only).

  Returns:
    The dataset: uint8 ``(N, S, S, 3)`` squares, int32 labels; train 8,969 / val 500 /
    test 3,925 (the official validation images) with the defaults.

  Raises:
    DataError: missing, truncated or corrupt files, or no copy at all.
    ConfigError: a bad image size (under 16 px, or too large for this machine's memory),
      or a validation size that leaves no training data.
  """
  if image_size < MIN_IMAGE_SIZE:
    raise ConfigError(f"--image_size must be at least {MIN_IMAGE_SIZE} pixels; got "
                      f"{image_size}.")
  check_holdout_size(validation_size, sum((counts or {"train": TRAIN_COUNTS})["train"]))
  _check_fits_in_memory(image_size, counts, host_memory())
  arrays, info = _load_arrays(data_dir, image_size, cache_dir, counts)
  train = Split(arrays["train_x"], arrays["train_y"].astype(np.int32))
  test = Split(arrays["val_x"], arrays["val_y"].astype(np.int32))
  train, val = holdout_split(train, validation_size, split_seed)
  return Dataset(train, val, test, info={
      **info, "classes": list(CLASS_NAMES), "wnids": list(WNIDS),
      "test_split": "the official val images (Imagenette has no test set)",
      "image_size": image_size, "validation_size": validation_size,
      "split_seed": split_seed, "mean": list(MEAN), "std": list(STD)})


def load_for_config(config) -> tuple[Dataset, Classification]:
  """The dataset and task of a ``resnet_imagenette`` run config (training and analysis)."""
  check_split_sizes(sum(TRAIN_COUNTS), config.validation_size, config.train_size, config.batch_size)
  dataset = load_imagenette(config.data_dir, config.image_size, config.validation_size,
                            config.split_seed, config.cache_dir)
  return dataset, Classification(NUM_CLASSES, label_smoothing=config.label_smoothing)


def preprocess_for(config) -> Preprocess:
  """Random-resized crop (area ``config.min_crop_area``..1) and horizontal flip of training
  batches when ``config.augment``; the centre crop for evaluation; then normalisation."""
  return resized_crop_preprocess(MEAN, STD, config.image_size, augment=config.augment,
                                 scale=(config.min_crop_area, 1.0))
