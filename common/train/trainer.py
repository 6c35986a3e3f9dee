"""The Trainer: what a run builds and compiles once, shared by training and benchmarks.

:meth:`Trainer.build` puts the data on the devices, makes the optimizer, initialises the
state and compiles (ahead of time, so compile cost is measured exactly and never lands in
an epoch) the train-chunk runner and the evaluator. :meth:`Trainer.train_epoch` runs one
epoch in a few device calls and :meth:`Trainer.evaluate` one split, so a benchmark times
exactly what training runs.
"""

import dataclasses
import math
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from common.config import TrainConfig
from common.data.arrays import Dataset, Split, pad_to_batches
from common.errors import ConfigError
from common.train import distributed, parallel, signals, steps
from common.train.optimizers import optimizer_from_config, plateau_scale
from common.train.state import TrainState, count_params, create_train_state
from common.train.tasks import Task

# With a progress bar, an epoch runs in about this many device calls: enough for a live
# bar, few enough to cost little. Each call copies the train state into the step loop's
# buffers and out again, even with donation (about 21 ms for 78 MB of state, measured in
# benchmarks/README.md), so calls are kept long.
CALLS_PER_EPOCH = 20
# Without a bar, an epoch runs in calls of about this many seconds (timed on the previous
# epoch; the first epoch uses CALLS_PER_EPOCH calls): Python runs a signal handler only
# between device calls, so this bounds how long a SIGTERM waits for the run to stop (about
# twice this: the call that is running and the one queued behind it), well inside the 30 s
# a Slurm job gets between SIGTERM and SIGKILL by default. An epoch shorter than this is one
# call; a longer one pays one state copy per call (under 1% at 5 s per call).
SECONDS_PER_CALL = 5.0
# The initialisation runs once, so how fast XLA's code for it runs hardly matters; but at
# the CPU backend's default optimisation level (3) compiling its random draws takes
# seconds (11 s for ResNet20 or ResNet18 on a 2-core CPU, most of a small run's start).
# Level 1 compiles it 1.6-3 times faster and gives the same parameters to the bit
# (`python -m benchmarks.init_compile`; tests/models/test_init.py checks the bits). Not on other
# backends, where this was not measured.
CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def init_state_fn(model: nn.Module, tx: optax.GradientTransformation,
                  preprocess: steps.Preprocess = steps.identity_preprocess):
  """The function :meth:`Trainer.build` compiles for the initial state, ``(key, one stored
  input example) -> TrainState`` (also what ``benchmarks/init_compile.py`` times)."""
  return lambda k, sample: create_train_state(model, tx, preprocess(None, sample, False), k)


@dataclasses.dataclass
class EvalSplit:
  """A split padded to whole batches and resident on device."""

  x: jax.Array
  y: jax.Array
  mask: jax.Array
  size: int


def pad_split(split: Split, batch_size: int, mesh: jax.sharding.Mesh | None) -> EvalSplit:
  """Pads ``split`` to whole batches (see ``pad_to_batches``) and puts it on the devices,
  each batch split over ``mesh``'s ``data`` axis (the batch rounded up to a multiple of
  the device count)."""
  x, y, mask = pad_to_batches(split, batch_size, mesh.size if mesh is not None else 1)
  sharding = parallel.batched_split_sharding(mesh)
  put = lambda a: distributed.put(a, sharding)
  return EvalSplit(put(x), put(y), put(mask), len(split))


def chunk_sizes(steps_per_epoch: int, calls: int = CALLS_PER_EPOCH) -> list[int]:
  """Splits an epoch into at most ``calls`` near-equal chunk lengths."""
  size = max(1, math.ceil(steps_per_epoch / max(1, calls)))
  full, rest = divmod(steps_per_epoch, size)
  return [size] * full + ([rest] if rest else [])


def seed_keys(seed: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``(init, data order, augmentation)`` keys: every stream of randomness is a fixed
  function of the one seed (so a run's initial state can be rebuilt from it)."""
  key = jax.random.key(seed)
  init_key, data_key, aug_key = (jax.random.fold_in(key, i) for i in range(3))
  return init_key, data_key, aug_key


def check_inputs(config: TrainConfig, dataset: Dataset) -> None:
  """Rejects settings that cannot work with this data on these devices.

  Raises:
    ConfigError: an empty split, a batch larger than the training split, or a batch that
      does not split over the devices.
  """
  for name, size in dataset.sizes().items():
    if size == 0:
      raise ConfigError(f"the {name} split is empty; check the data and the split settings.")
  if len(dataset.train) < config.batch_size:
    raise ConfigError(f"batch_size {config.batch_size} is larger than the training split "
                      f"({len(dataset.train)} examples); lower --batch_size.")
  parallel.check_batch(config.batch_size)


@dataclasses.dataclass
class Trainer:
  """A built run: device data, initial state, compiled train and eval executables.

  Build it with :meth:`build`. Attributes are read-only by convention.
  """

  config: TrainConfig
  model: nn.Module
  task: Task
  preprocess: steps.Preprocess
  state: TrainState  # the initial state (a pure function of the seed)
  schedule: optax.Schedule
  steps_per_epoch: int
  num_params: int
  timings: dict[str, float]
  _x: jax.Array
  _y: jax.Array
  _eval: dict[str, EvalSplit]
  _data_key: jax.Array
  _aug_key: jax.Array
  _train_exe: Any
  _eval_exes: dict[tuple, Any]
  _permute: Any
  _chunks: list[int]
  _chunk_args: dict[int, jax.Array]
  _loop_free: bool = False
  _seconds_per_step: float | None = None  # of the last epoch: sizes the calls without a bar
  _new_accumulator: Any = None
  _replicated: Any = None

  @classmethod
  def build(cls, config: TrainConfig, model: nn.Module, dataset: Dataset, task: Task, *,
            preprocess: steps.Preprocess | None = None,
            eval_splits: tuple[str, ...] = ("val", "test")) -> "Trainer":
    """Places the data, initialises the state and compiles the steps.

    Args:
      config: the run configuration.
      model: an unbound Flax module, ``model(x, train=...)``.
      dataset: train/val/test arrays (host memory; moved to device here).
      task: loss and metrics.
      preprocess: stored inputs to model inputs, inside the jitted steps (default: as
        stored).
      eval_splits: the splits to pad, place and compile an evaluator for.

    Returns:
      The trainer; ``timings`` holds ``init_seconds``, ``compile_seconds_train`` and
      ``compile_seconds_eval``.
    """
    check_inputs(config, dataset)
    preprocess = preprocess or steps.identity_preprocess
    n_train = len(dataset.train)
    steps_per_epoch = n_train // config.batch_size
    mesh = parallel.data_mesh(config.batch_size)
    replicated, batch_sharding = parallel.shardings(mesh)

    # Data on device, once. Evaluation splits are padded to whole batches and masked.
    # Every value a device call takes is a global array placed here (in a run of several
    # processes each supplies its own devices' slices), never a host value or a constant.
    x_train = distributed.put(dataset.train.x, replicated)
    y_train = distributed.put(dataset.train.y, replicated)
    evals = {name: pad_split(getattr(dataset, name), config.eval_batch_size, mesh)
             for name in eval_splits}

    init_key, data_key, aug_key = jax.jit(lambda: seed_keys(config.seed),
                                          out_shardings=replicated)()
    tx, schedule = optimizer_from_config(config, steps_per_epoch)

    t0 = time.perf_counter()
    init_args = (init_key, distributed.put(dataset.train.x[:1], replicated))
    init = jax.jit(init_state_fn(model, tx, preprocess),
                   out_shardings=replicated).lower(*init_args)
    on_cpu = jax.default_backend() == "cpu"
    state = init.compile(CPU_INIT_COMPILER_OPTIONS if on_cpu else None)(*init_args)
    jax.block_until_ready(state)
    timings = {"init_seconds": time.perf_counter() - t0}

    train_step = steps.make_train_step(task, config.l2_reg_alpha, preprocess,
                                       monitor_objective=config.lr_schedule == "plateau")
    step_args = (config.batch_size, steps_per_epoch, batch_sharding)
    # Convolutional models on the CPU: one device call per step (see `loop_free_steps`).
    loop_free = bool(getattr(model, "loop_free_steps", False))
    chunks = chunk_sizes(steps_per_epoch)
    chunk_args = {n: distributed.put(np.int32(n), replicated)
                  for n in {*chunks, steps_per_epoch}}
    permute = jax.jit(
        lambda k, epoch: jax.random.permutation(jax.random.fold_in(k, epoch),
                                                n_train).astype(jnp.int32),
        out_shardings=replicated)
    new_accumulator = jax.jit(lambda: steps.init_accumulator(task), out_shardings=replicated)
    evaluate = jax.jit(steps.make_evaluator(task, preprocess), out_shardings=replicated)
    t0 = time.perf_counter()
    args = (state, new_accumulator(), x_train, y_train,
            permute(data_key, distributed.put(np.int32(1), replicated)), aug_key)
    if loop_free:
      train_exe = jax.jit(steps.make_single_step(train_step, *step_args),
                          donate_argnums=(0, 1), out_shardings=replicated
                          ).lower(*args).compile()
    else:
      train_exe = jax.jit(steps.make_step_runner(train_step, *step_args),
                          donate_argnums=(0, 1), out_shardings=replicated
                          ).lower(*args, chunk_args[chunks[0]]).compile()
    timings["compile_seconds_train"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    eval_exes = {}
    for split in evals.values():
      if split.x.shape not in eval_exes:
        eval_exes[split.x.shape] = evaluate.lower(state, split.x, split.y,
                                                  split.mask).compile()
    timings["compile_seconds_eval"] = time.perf_counter() - t0
    return cls(config=config, model=model, task=task, preprocess=preprocess, state=state,
               schedule=schedule, steps_per_epoch=steps_per_epoch,
               num_params=count_params(state.params), timings=timings, _x=x_train,
               _y=y_train, _eval=evals, _data_key=data_key, _aug_key=aug_key,
               _train_exe=train_exe, _eval_exes=eval_exes, _permute=permute,
               _chunks=chunks, _chunk_args=chunk_args, _loop_free=loop_free,
               _new_accumulator=new_accumulator, _replicated=replicated)

  @property
  def train_inputs(self) -> jax.Array:
    """The training inputs on device (as stored)."""
    return self._x

  def eval_split(self, name: str) -> EvalSplit | None:
    """Split ``name`` as evaluation holds it (padded to whole batches of
    ``config.eval_batch_size``, on device); None if it is not evaluated."""
    return self._eval.get(name)

  def learning_rate(self, epoch: int, state: TrainState | None = None) -> float:
    """The learning rate at the first step of ``epoch`` (1-based), from ``state`` (the
    state before that epoch) where reduce-on-plateau scales it."""
    rate = float(self.schedule((epoch - 1) * self.steps_per_epoch))
    scale = plateau_scale(state.opt_state) if state is not None else None
    return rate if scale is None else rate * float(scale)

  def train_epoch(self, state: TrainState, epoch: int, progress: bool | None = None
                  ) -> tuple[TrainState, dict[str, Any], float]:
    """Runs epoch ``epoch`` (1-based) from ``state``, which it donates.

    Args:
      state: the state after epoch ``epoch - 1``.
      epoch: the epoch number; it fixes the data order (``fold_in(data_key, epoch)``).
      progress: show a progress bar (None: only on a terminal).

    Returns:
      ``(state, sums, seconds)``: the new state, the epoch's metric sums on the host
      (see ``steps.init_accumulator``) and the training seconds (no compile, no eval).
    """
    perm = self._permute(self._data_key, distributed.put(np.int32(epoch), self._replicated))
    acc = self._new_accumulator()
    jax.block_until_ready((perm, acc, state))
    bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{self.config.epochs}",
               disable=None if progress is None else not progress, leave=False)
    chunks = self._chunks if not bar.disable else self._timed_chunks()
    t0 = time.perf_counter()
    pending = None
    try:
      for n in chunks:
        signals.check()  # a signal whose exception a finalizer swallowed stops here
        if self._loop_free:  # one call per step; the chunk only paces the waits below
          for _ in range(n):  # dispatched asynchronously: no host sync between steps
            state, acc = self._train_exe(state, acc, self._x, self._y, perm, self._aug_key)
        else:
          state, acc = self._train_exe(state, acc, self._x, self._y, perm, self._aug_key,
                                       self._steps_arg(n))
        if len(chunks) > 1:
          # Wait for the *previous* chunk only, so the device always has work queued while
          # the host returns to Python between chunks (a bar advances; a signal takes
          # effect). The step count is copied because `acc` is donated to the next call.
          done = acc["steps"] + 0
          if pending is not None:
            jax.block_until_ready(pending[0])
            bar.update(pending[1])
          pending = (done, n)
    except BaseException:
      # A signal (or an error) abandons the epoch: let the chunk still queued finish
      # before the run records its status and the process exits, so nothing is left
      # running on buffers that are about to be freed.
      try:
        jax.block_until_ready((state, acc))
      except Exception:  # noqa: BLE001 - the original exception is the one to report
        pass
      raise
    jax.block_until_ready((state, acc))
    seconds = time.perf_counter() - t0
    if pending is not None:
      bar.update(pending[1])
    bar.close()
    self._seconds_per_step = seconds / self.steps_per_epoch
    return state, jax.device_get(acc), seconds

  def _timed_chunks(self) -> list[int]:
    """Chunks of about ``SECONDS_PER_CALL`` at the last epoch's speed (``CALLS_PER_EPOCH``
    near-equal chunks before any epoch was timed, and always in a run of several
    processes: each times itself, and every process must make the same calls)."""
    if self._seconds_per_step is None or jax.process_count() > 1:
      return self._chunks
    calls = math.ceil(self.steps_per_epoch * self._seconds_per_step / SECONDS_PER_CALL)
    return chunk_sizes(self.steps_per_epoch, calls)

  def _steps_arg(self, n: int) -> jax.Array:
    """The step count of a chunk of ``n`` steps, as the device scalar the loop takes."""
    if n not in self._chunk_args:
      self._chunk_args[n] = distributed.put(np.int32(n), self._replicated)
    return self._chunk_args[n]

  def evaluate(self, state: TrainState, name: str) -> dict[str, float]:
    """Mean metrics of split ``name``, keyed ``<name>_<metric>``."""
    split = self._eval[name]
    sums = jax.device_get(self._eval_exes[split.x.shape](state, split.x, split.y,
                                                         split.mask))
    count = float(sums["count"])
    return {f"{name}_{k}": float(sums[k]) / count for k in self.task.metric_names}
