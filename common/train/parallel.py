"""Data parallelism over every local device, the same code on 1 CPU, 1 GPU or N devices.

Parameters, optimizer state and the (small) in-memory training set are replicated; each
gathered batch is sharded along a ``data`` mesh axis and XLA inserts the gradient
all-reduce (and the cross-device batch-norm statistics). Evaluation and the layer-usage
pass split their batches the same way: each device holds and evaluates its slice of every
padded batch, and the masked sums are all-reduced. With one device nothing is sharded and
the code path is the plain single-device one.
"""

import jax
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec, SingleDeviceSharding

from common.errors import ConfigError


def check_batch(batch_size: int) -> None:
  """Raises ConfigError when the batch does not split evenly over the devices."""
  n = jax.device_count()
  if batch_size % n:
    raise ConfigError(f"batch_size {batch_size} does not split over {n} devices; use a "
                      f"multiple of {n}.")


def device_mesh() -> jax.sharding.Mesh | None:
  """A 1-D ``data`` mesh over all devices, or None on a single device."""
  n = jax.device_count()
  if n == 1:
    return None
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))


def data_mesh(batch_size: int) -> jax.sharding.Mesh | None:
  """:func:`device_mesh`, for training with global batches of ``batch_size``.

  Raises:
    ConfigError: the batch does not split evenly over the devices.
  """
  mesh = device_mesh()
  if mesh is not None:
    check_batch(batch_size)
    logging.info("Data parallel over %d devices.", mesh.size)
  return mesh


Sharding = jax.sharding.Sharding


def shardings(mesh: jax.sharding.Mesh | None) -> tuple[Sharding, Sharding | None]:
  """Returns ``(replicated, batch)`` shardings; ``batch`` is None on one device."""
  if mesh is None:
    return SingleDeviceSharding(jax.devices()[0]), None
  return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def batched_split_sharding(mesh: jax.sharding.Mesh | None) -> Sharding:
  """Sharding of a padded split shaped ``(num_batches, batch, ...)``: every batch split over
  the ``data`` axis (pad the batch to a multiple of the device count first)."""
  if mesh is None:
    return SingleDeviceSharding(jax.devices()[0])
  return NamedSharding(mesh, PartitionSpec(None, "data"))
