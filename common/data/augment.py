"""Image preprocessing inside the jitted step: uint8 in, normalised (augmented) floats out.

Images stay uint8 on the device (a quarter of the memory of float32); the step turns each
batch into floats. Augmentation draws from the step's key, a pure function of (seed,
step), so a resumed run sees exactly the augmentations of an uninterrupted one.
"""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

# ``preprocess(key, x, train) -> x``: stored inputs to model inputs, inside the jitted step
# (``key`` is None in evaluation, where nothing is random).
Preprocess = Callable[[jax.Array | None, jax.Array, bool], jax.Array]


def identity_preprocess(key: jax.Array | None, x: jax.Array, train: bool) -> jax.Array:
  """The default ``preprocess``: inputs are used as stored."""
  del key, train
  return x


def normalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """``(x / 255 - mean) / std`` per channel, as float32 (``x`` in 0..255, any dtype)."""
  x = x.astype(jnp.float32) / 255.0
  return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)


def pad_crop_flip(key: jax.Array, x: jax.Array, pad: int = 4) -> jax.Array:
  """Random crop of the zero-padded image and a random horizontal flip, per image.

  Args:
    key: randomness of this batch.
    x: images ``(batch, height, width, channels)``.
    pad: pixels of zero padding on each side (4 for CIFAR: RandomCrop(32, padding=4)).

  Returns:
    Images of the input shape.
  """
  n, h, w, c = x.shape
  k_crop, k_flip = jax.random.split(key)
  offsets = jax.random.randint(k_crop, (n, 2), 0, 2 * pad + 1)
  flips = jax.random.bernoulli(k_flip, 0.5, (n,))
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def one(image, offset, flip):
    crop = jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1, :], crop)

  return jax.vmap(one)(padded, offsets, flips)


def random_resized_crop_flip(key: jax.Array, x: jax.Array, size: int,
                             scale: tuple[float, float] = (0.35, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> jax.Array:
  """Inception-style random-resized crop and a random horizontal flip, per image.

  Each image gets a box of ``area_fraction * H * W`` pixels (``area_fraction`` uniform in
  ``scale``) with aspect ratio ``w / h`` log-uniform in ``ratio``, clipped to the image
  and placed uniformly; the box is resized to ``size x size`` by bilinear interpolation
  with antialiasing (one dense resampling matrix per axis, so it runs as two small
  matmuls per image inside the jitted step). The default ``scale`` starts at 0.35, as
  fast.ai's Imagenette baselines, not torchvision's 0.08: at 10 classes and 20 epochs
  the extreme crops only slow training.

  Args:
    key: randomness of this batch.
    x: images ``(batch, height, width, channels)``, uint8 or float.
    size: output height and width.
    scale: range of the box's area as a fraction of the image's.
    ratio: range of the box's aspect ratio (width / height).

  Returns:
    float32 images ``(batch, size, size, channels)`` in the input's value range.
  """
  n, h, w, c = x.shape
  k_area, k_ratio, k_y, k_x, k_flip = jax.random.split(key, 5)
  area = jax.random.uniform(k_area, (n,), minval=scale[0], maxval=scale[1]) * h * w
  log_r = jax.random.uniform(k_ratio, (n,), minval=jnp.log(ratio[0]),
                             maxval=jnp.log(ratio[1]))
  r = jnp.exp(log_r)
  box_w = jnp.clip(jnp.sqrt(area * r), 1.0, w)
  box_h = jnp.clip(jnp.sqrt(area / r), 1.0, h)
  y0 = jax.random.uniform(k_y, (n,)) * (h - box_h)
  x0 = jax.random.uniform(k_x, (n,)) * (w - box_w)
  flips = jax.random.bernoulli(k_flip, 0.5, (n,))

  def one(image, bh, bw, top, left, flip):
    sy, sx = size / bh, size / bw
    out = jax.image.scale_and_translate(
        image.astype(jnp.float32), (size, size, c), (0, 1), jnp.stack([sy, sx]),
        jnp.stack([-top * sy, -left * sx]), method="linear", antialias=True)
    return jnp.where(flip, out[:, ::-1, :], out)

  return jax.vmap(one)(x, box_h, box_w, y0, x0, flips)


def center_crop(x: jax.Array, size: int) -> jax.Array:
  """The central ``size x size`` window of images ``(batch, height, width, channels)``."""
  _, h, w, _ = x.shape
  if size > min(h, w):
    raise ValueError(f"cannot crop {size}x{size} out of {h}x{w} images")
  top, left = (h - size) // 2, (w - size) // 2
  return x[:, top:top + size, left:left + size, :]


def resized_crop_preprocess(mean: Sequence[float], std: Sequence[float], size: int,
                            augment: bool = True,
                            scale: tuple[float, float] = (0.35, 1.0)) -> Preprocess:
  """The ``preprocess`` hook of ImageNet-style training on stored uint8 images.

  Training batches get :func:`random_resized_crop_flip` to ``size`` (or, with
  ``augment=False``, the evaluation view); evaluation batches the centre ``size`` crop of
  the stored images, which are kept a little larger than ``size`` (the usual
  resize-then-centre-crop evaluation, done once when the images were cached).

  Args:
    mean: per-channel mean of the [0, 1] pixels.
    std: per-channel standard deviation.
    size: model input height and width.
    augment: augment training batches.
    scale: area range of the random crops.

  Returns:
    ``preprocess(key, x, train) -> x``.
  """
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
  scale = (float(scale[0]), float(scale[1]))

  def preprocess(key, x, train):
    if train and augment:
      x = random_resized_crop_flip(key, x, size, scale)
    else:
      x = center_crop(x, size)
    return normalize(x, mean, std)

  return preprocess


def image_preprocess(mean: Sequence[float], std: Sequence[float], augment: bool = True,
                     pad: int = 4) -> Preprocess:
  """The ``preprocess`` hook for uint8 images: pad-crop-flip when training, then normalise.

  Args:
    mean: per-channel mean of the [0, 1] pixels.
    std: per-channel standard deviation.
    augment: augment training batches (evaluation batches never are).
    pad: padding of the random crop.

  Returns:
    ``preprocess(key, x, train) -> x``.
  """
  mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

  def preprocess(key, x, train):
    if train and augment:
      x = pad_crop_flip(key, x, pad)
    return normalize(x, mean, std)

  return preprocess
