"""Several processes, one run: JAX's own multi-process runtime, started before any JAX work.

A run launched as several processes (one per host, or several on one machine) calls
:func:`initialize` first; from then on ``jax.devices()`` lists every process's devices,
the training mesh spans all of them, and each process feeds the slices of every global
array that live on its own devices (:func:`put`). Process 0 alone writes the run
directory (config, metrics, status, usage, reports); every process takes part in each
checkpoint save and restore, which orbax coordinates.

How the processes find each other:

* explicit flags ``--num_processes=N --process_id=I --coordinator_address=HOST:PORT``
  (the same address for all, the port free on process 0's host), or
* a Slurm step with several tasks (``srun --ntasks=N``): JAX reads Slurm's environment.

A single process (the default) never initializes anything: the code path is unchanged.
"""

import os
from typing import Any

import jax
import numpy as np
from absl import logging

from common.errors import ConfigError

_state = {"initialized": False}


def slurm_tasks() -> int:
  """Tasks of the Slurm step this process belongs to (1 outside Slurm)."""
  if "SLURM_JOB_ID" not in os.environ or "SLURM_STEP_ID" not in os.environ:
    return 1
  return int(os.environ.get("SLURM_STEP_NUM_TASKS", os.environ.get("SLURM_NTASKS", "1")))


def initialize(num_processes: int = 1, process_id: int | None = None,
               coordinator_address: str | None = None) -> bool:
  """Starts JAX's multi-process runtime when the run has several processes.

  Args:
    num_processes: processes of the run (1: nothing to do, unless Slurm says otherwise).
    process_id: this process's index, 0..num_processes-1.
    coordinator_address: ``host:port`` of process 0's coordinator.

  Returns:
    True when the runtime was started (or already was).

  Raises:
    ConfigError: an incomplete or inconsistent set of settings.
  """
  if _state["initialized"]:
    return True
  if num_processes < 1:
    raise ConfigError(f"num_processes must be >= 1; got {num_processes}.")
  if num_processes == 1:
    if slurm_tasks() <= 1:
      return False
    kwargs: dict[str, Any] = {}  # JAX reads the coordinator, count and index from Slurm
  else:
    if process_id is None or not 0 <= process_id < num_processes or not coordinator_address:
      raise ConfigError(
          f"a run of {num_processes} processes needs --process_id (0..{num_processes - 1}) "
          f"and --coordinator_address=HOST:PORT on every process; got process_id="
          f"{process_id}, coordinator_address={coordinator_address!r}.")
    kwargs = {"coordinator_address": coordinator_address, "num_processes": num_processes,
              "process_id": process_id}
  if "cpu" in (jax.config.jax_platforms or "cpu"):
    # CPU devices of different processes talk through gloo (GPUs use NCCL by themselves).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  _state["initialized"] = True
  logging.info("Process %d of %d; %d local and %d global devices.", jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


def is_primary() -> bool:
  """True in the process that writes the run directory (process 0)."""
  return jax.process_index() == 0


def put(value: Any, sharding: jax.sharding.Sharding) -> jax.Array:
  """A host value (every process holds the same one) as a global array with
  ``sharding``: each process supplies the slices that live on its own devices."""
  host = np.asarray(value)
  if jax.process_count() == 1:
    return jax.device_put(host, sharding)
  return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def barrier(name: str) -> None:
  """Waits until every process reaches the barrier ``name`` (no-op for one process)."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # noqa: PLC0415 - only multi-process
    multihost_utils.sync_global_devices(name)
