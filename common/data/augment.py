"""Image preprocessing inside the jitted step: uint8 in, normalised (augmented) floats out.

Images stay uint8 on the device (a quarter of the memory of float32); the step turns each
batch into floats. Augmentation draws from the step's key, a pure function of (seed,
step), so a resumed run sees exactly the augmentations of an uninterrupted one.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from common.train.steps import Preprocess


def normalize(x: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
  """``(x / 255 - mean) / std`` per channel, as float32."""
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
