"""The points of a sweep: the grid, each point's run directory and status, and running them.

The library under ``python -m common.sweep`` (which adds its flags, Slurm arrays and the
report) and ``python -m reproduce``. A point runs ``python -m MODULE --model=M
--num_layers=D --seed=S --workdir=ROOT/M/depth_D/seed_S <extra flags>`` in its own
process; it is skipped when its run has an outcome and was made by the identical command
(see :mod:`common.sweep`).
"""

import collections
import contextlib
import dataclasses
import importlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from absl import logging

from common import fileio
from common.errors import ConfigError, UserError
from common.report import runs
from common.run_config import Sweep
from common.rundir_contract import STATUS
from common.train import signals


def split_list(text: str) -> list[str]:
  """``"a b,c"`` -> ``["a", "b", "c"]``."""
  return [item for item in re.split(r"[\s,]+", text.strip()) if item]


def parse_model_spec(spec: str) -> tuple[str, list[str], str]:
  """Splits a model entry into name, flags and folder.

  Args:
    spec: ``"ResNet"`` or ``"ResNet:use_batch_norm=false"``.

  Returns:
    ``(name, flags, folder)``, e.g. ``("ResNet", ["--use_batch_norm=false"],
    "ResNet_use_batch_norm-false")``.
  """
  name, *options = spec.split(":")
  folder = "_".join([name, *(o.replace("=", "-") for o in options)])
  return name, [f"--{o}" for o in options], folder


def is_settled(status: str) -> bool:
  """True when a point's run needs no rerun: ``done``, or ``diverged``.

  A divergence is a result of the experiment (the loss of this model at this depth became
  non-finite), and rerunning the same command would replay it: training is deterministic
  from the seed and resumes from the last checkpoint before the divergence. ``interrupted``
  and ``failed`` runs (and ``running`` ones whose process died) are rerun, which resumes
  them.

  Args:
    status: an effective status (:func:`common.report.runs.effective_status`).
  """
  return status in runs.OUTCOMES


def count_statuses(statuses: Sequence[str]) -> str:
  """``"3 of 4 points settled (2 done, 1 diverged; 1 interrupted)"``."""
  counts = collections.Counter(statuses)
  settled = sum(n for s, n in counts.items() if is_settled(s))
  parts = "; ".join(
      ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if is_settled(s) == want)
      for want in (True, False) if any(is_settled(s) == want for s in counts))
  return f"{settled} of {len(statuses)} points settled ({parts})"


# The first signal that stopped the sweep, and the point's process running meanwhile.
_stopped: dict[str, Any] = {"signal": None, "child": None}


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
  """Within the block, SIGTERM (a scheduler), Ctrl-C or SIGHUP stop the sweep cleanly.

  The signal goes on to the running point, which stops after its last finished epoch and
  records itself ``interrupted`` (a terminal's Ctrl-C reaches the point too; it ignores
  the second copy). No further point starts, and the sweep report is still rendered. The
  handler raises nothing, so nothing can drop it. Signals the driver ignores (``nohup``,
  a script's ``&``) stay ignored, and so the point ignores them too.
  """
  def handler(signum, frame):
    del frame
    if _stopped["signal"] is None:
      _stopped["signal"] = signum
    child = _stopped["child"]
    if child is not None and child.poll() is None:
      child.send_signal(signum)

  _stopped["signal"] = None  # a new block starts unstopped (a notebook's second sweep)
  previous = {s: signal.signal(s, handler) for s in signals.SIGNALS
              if signal.getsignal(s) is not signal.SIG_IGN}
  try:
    yield
  finally:
    for s, old in previous.items():
      signal.signal(s, old)


def point_dir(root: str, model_spec: str, depth: int, seed: int) -> str:
  """The run directory of a grid point: ``ROOT/<model folder>/depth_D/seed_S``."""
  return os.path.join(root, parse_model_spec(model_spec)[2], f"depth_{depth}", f"seed_{seed}")


def point_status(root: str, model_spec: str, depth: int, seed: int) -> str:
  """The effective status of a point's run (``missing`` before it starts)."""
  path = os.path.join(point_dir(root, model_spec, depth, seed), STATUS)
  # A damaged status.json reads as unknown: not settled, so the point runs and its
  # training rewrites the record.
  if not os.path.exists(path):
    return "missing"
  return runs.effective_status(fileio.read_json_or(path, {}, kind=dict))


def run_point(module: str, root: str, model_spec: str, depth: int, seed: int,
              extra: list[str]) -> str:
  """Runs, resumes or skips one grid point.

  Args:
    module: the experiment entry point (``linear_mnist.train``).
    root: the sweep root.
    model_spec: a model entry (see :func:`parse_model_spec`).
    depth: ``--num_layers``.
    seed: ``--seed``.
    extra: flags passed to every point.

  Returns:
    The point's effective status after the run (``done``, ``diverged``, ``interrupted``,
    ``failed``, ``running``...) or ``exit N`` when the process ended otherwise (2: bad
    input, its one ``error:`` line in the point's log: settings refused before anything
    was written, so the status file is not this command's, or too large for the device,
    and the run directory says ``failed``).
  """
  model, model_flags, folder = parse_model_spec(model_spec)
  workdir = point_dir(root, model_spec, depth, seed)
  cmd = [sys.executable, "-m", module, f"--model={model}", f"--num_layers={depth}",
         f"--seed={seed}", f"--workdir={workdir}", *model_flags, *extra]
  os.makedirs(os.path.join(root, "logs"), exist_ok=True)
  stem = os.path.join(root, "logs", f"{folder}_depth{depth}_seed{seed}")

  def status() -> str:
    return point_status(root, model_spec, depth, seed)

  # A damaged record of the last command reads as none: the point runs again.
  previous = fileio.read_json_or(f"{stem}.cmd.json", None, kind=list)
  before = status()
  if is_settled(before) and previous == cmd[1:]:
    logging.info("skip %s depth %d seed %d: %s", model_spec, depth, seed, before)
    return before
  logging.info("run  %s depth %d seed %d -> %s", model_spec, depth, seed, workdir)
  t0 = time.perf_counter()
  with open(f"{stem}.log", "a", encoding="utf-8") as log:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    _stopped["child"] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    if _stopped["signal"] is not None:  # it came while the point was starting
      _stopped["child"].send_signal(_stopped["signal"])
    try:  # a signal meanwhile goes on to the point (stopping_on_signals)
      code = _stopped["child"].wait()
    finally:
      _stopped["child"] = None
  if code in (0, 1):  # the command made the run's status; a refused one (2) made nothing
    fileio.atomic_write_json(f"{stem}.cmd.json", cmd[1:])
  result = status() if code in (0, 1) else f"exit {code}"
  logging.info("     %s depth %d seed %d: %s in %.0fs (log: %s.log)", model_spec, depth, seed,
               result, time.perf_counter() - t0, stem)
  if not is_settled(result):
    reason = _failure_reason(f"{stem}.log", workdir, result)
    sys.stderr.write(f"error: {model_spec} depth {depth} seed {seed}: {reason} (log: "
                     f"{stem}.log)\n")
  return result


def _failure_reason(log: str, workdir: str, result: str) -> str:
  """Why a point did not settle: its program's last ``error:`` line, else its status
  message, else how it ended."""
  try:
    with open(log, encoding="utf-8", errors="replace") as f:
      errors = [line.strip() for line in f if line.startswith("error:")]
  except OSError:
    errors = []
  if errors:
    return errors[-1].removeprefix("error:").strip()
  status = fileio.read_json_or(os.path.join(workdir, STATUS), {}, kind=dict)
  message = status.get("message") if isinstance(status, dict) else None
  return f"{result}: {message}" if message else result


@dataclasses.dataclass(frozen=True)
class Grid:
  """What a sweep runs: ``module`` for every model x depth x seed, with ``extra`` flags
  (the sweep's config flags, then the user's, ``user_extra``), under ``root``."""

  module: str
  root: str
  models: tuple[str, ...]
  depths: tuple[int, ...]
  seeds: tuple[int, ...]
  extra: tuple[str, ...]
  user_extra: tuple[str, ...]


def load_sweep(spec: str) -> tuple[str, str, Sweep]:
  """``(experiment, name, sweep)`` of ``--sweep=EXPERIMENT:NAME``.

  Raises:
    ConfigError: a malformed spec, an experiment without sweeps, or an unknown name.
  """
  experiment, _, name = spec.partition(":")
  if not experiment or not name:
    raise ConfigError(f"--sweep={spec}: give EXPERIMENT:NAME, e.g. linear_mnist:cpu.")
  try:
    sweeps = importlib.import_module(f"{experiment}.configs.sweeps").SWEEPS
  except ModuleNotFoundError:
    raise ConfigError(f"--sweep={spec}: {experiment} has no configs/sweeps.py.") from None
  if name not in sweeps:
    raise ConfigError(f"GRID={name} is not a sweep of {experiment}; use one of "
                      f"{', '.join(f'GRID={n}' for n in sweeps)} (--sweep={experiment}:"
                      f"{next(iter(sweeps))}).")
  return experiment, name, sweeps[name]


# Flags that change where or how a run executes, not what it trains.
_RUN_FLAGS = ("progress", "data_dir", "cache_dir", "tensorboard", "remat", "result_dir",
              "allow_unofficial_data", "config.run.")


def budget_suffix(user_extra: Sequence[str]) -> str:
  """``"_epochs-1"`` for flags that change what every point trains (``--epochs=1``); ``""``
  for none, or flags that only change how it runs (``--progress=false``)."""
  parts = []
  for flag in user_extra:
    name, _, value = flag.lstrip("-").partition("=")
    if not name or name.startswith(_RUN_FLAGS):
      continue
    parts.append(f"{name.removeprefix('config.')}-{value}" if value else name)
  text = re.sub(r"[^A-Za-z0-9.+-]+", "_", "_".join(parts)).strip("_")
  return f"_{text[:80]}" if text else ""


def check_points(grid: Grid, points: Sequence[tuple[str, int, int]]) -> None:
  """Parses every point's command as its program would, before any point starts.

  Raises:
    ConfigError: naming the first point refused and why (a misspelt model, a depth its
      family cannot have, a bad flag).
  """
  from common import cli  # noqa: PLC0415 - the experiments import JAX; reports need not
  from common import experiment as experiment_lib  # noqa: PLC0415

  experiment = grid.module.rpartition(".")[0] or grid.module
  checked = set()
  for model, depth, seed in points:
    if (model, depth) in checked:  # the seed changes nothing that could be refused
      continue
    checked.add((model, depth))
    name, model_flags, _ = parse_model_spec(model)
    argv = [grid.module, f"--model={name}", f"--num_layers={depth}", f"--seed={seed}",
            *model_flags, *grid.extra]
    try:
      experiment_lib.check(cli.parse_config(experiment, argv))
    except UserError as e:
      raise ConfigError(f"{model} depth {depth} (no point was started): {e}") from None


def sweep_grid(spec: str, root: str, user_extra: Sequence[str] = ()) -> Grid:
  """The whole grid of ``--sweep=EXPERIMENT:NAME`` under ``root``, ``user_extra`` flags
  given to every point."""
  experiment, _, sweep = load_sweep(spec)
  return Grid(f"{experiment}.train", root, tuple(sweep.models), tuple(sweep.depths),
              tuple(sweep.seeds), (*sweep.config_flags(experiment), *user_extra),
              tuple(user_extra))


def run_points(grid: Grid, points: Sequence[tuple[str, int, int]]) -> list[str]:
  """Runs (or skips, when settled) each point here, one after another; their statuses.

  Inside :func:`stopping_on_signals`, a signal stops the point running and marks the rest
  ``not started``.
  """
  statuses = []
  for model, depth, seed in points:
    if _stopped["signal"] is not None:
      statuses.append("not started")
      continue
    statuses.append(run_point(grid.module, grid.root, model, depth, seed, list(grid.extra)))
  return statuses


def exit_if_stopped(what: str) -> None:
  """After :func:`stopping_on_signals`: one line and exit ``128 + signum`` if a signal
  stopped the work (``what`` says what was still done)."""
  signum = _stopped["signal"]
  if signum is not None:
    sys.stderr.write(f"interrupted by {signal.Signals(signum).name}: {what}; rerun the same "
                     f"command to go on.\n")
    sys.exit(128 + signum)


def grid_points(grid: Grid) -> list[tuple[str, int, int]]:
  """``(model entry, depth, seed)`` of every point, in the order ``--point`` counts."""
  return [(model, depth, seed) for model in grid.models for depth in grid.depths
          for seed in grid.seeds]
