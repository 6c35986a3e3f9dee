r"""Runs a grid of models x depths x seeds, one run directory per point, then reports.

  python -m common.sweep --sweep=resnet_cifar10:paper
  python -m common.sweep --module=linear_mnist.train --root=sweeps/linear_mnist \
      --models="GloNet MLP ResNet" --depths="6 10 24" --seeds=0 -- --epochs=10

``--sweep=EXPERIMENT:NAME`` runs a sweep of ``EXPERIMENT/configs/sweeps.py``: its config
variant and settings for every point, its models, depths and seeds (each replaced by the
flag of its own when given), under ``sweeps/EXPERIMENT_NAME`` unless ``--root`` says; flags
after ``--`` that change what is trained (``--epochs=1``) name a folder of their own
(``sweeps/EXPERIMENT_NAME_epochs-1``), so a quick try never lands in the real grid's.

Every point's command is parsed as its program would parse it before the first point
starts: a misspelt model, an impossible depth or a bad flag is one ``error:`` line naming
the point, and nothing runs. A point that fails prints one ``error:`` line naming it, its
reason and its log.

Each point runs ``python -m MODULE --model=M --num_layers=D --seed=S
--workdir=ROOT/M/depth_D/seed_S <extra flags>`` in its own process, so one diverging or
crashing point never stops the sweep. A model entry may carry flags of its own after
colons: ``ResNet:use_batch_norm=false`` runs ResNet with ``--use_batch_norm=false`` in the
folder ``ResNet_use_batch_norm-false``.

A point is skipped when its run has an outcome (``done`` or ``diverged``, as
:func:`common.report.runs.effective_status` reads ``status.json``) *and* was made by the
identical command (recorded in ``ROOT/logs/<point>.cmd.json`` once it has run; a command
refused with exit status 2 made nothing and is not recorded); otherwise the command runs
and the training loop decides: resume an ``interrupted`` or ``failed`` run, train a
finished one further, or refuse with a message when the settings differ. Logs go to
``ROOT/logs/``. At the end the sweep report is rendered (``python -m common.report --sweep
ROOT``). Exit status: 0 when every point has an outcome (done or diverged), 1 otherwise.

On a Slurm cluster, ``--launcher=slurm`` (or ``LAUNCHER=slurm`` in the environment, as the
experiments' ``train_script.sh`` pass it) submits the grid as one job array instead, one
task per point, with plain ``sbatch``: each task runs this same command with
``--point=$SLURM_ARRAY_TASK_ID`` (so skipping and resuming work as above) and renders the
sweep report when it ends. Tasks are requeueable: a preempted task is requeued by Slurm
and resumes from its run directory; a task about to reach its time limit is sent SIGUSR1
(``--slurm_requeue_before`` seconds ahead), stops its run cleanly (SIGTERM, status
``interrupted``) and requeues itself. The script is kept as ``ROOT/logs/slurm_array.sh``;
``--slurm_wait`` waits for the array and then reports as a local sweep does.
"""

import collections
import contextlib
import dataclasses
import importlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from absl import app, flags, logging

from common import fileio, report
from common.errors import ConfigError, UserError
from common.report import runs
from common.run_config import Sweep
from common.rundir_contract import STATUS
from common.train import signals

_SWEEP = flags.DEFINE_string("sweep", None, "A sweep of an experiment's configs/sweeps.py, "
                             "EXPERIMENT:NAME (e.g. resnet_cifar10:cpu).")
_MODULE = flags.DEFINE_string("module", None, "Experiment entry point, e.g. linear_mnist.train "
                              "(with --sweep: the experiment's).")
_ROOT = flags.DEFINE_string("root", None, "Sweep root: one run directory per point below it.")
_MODELS = flags.DEFINE_string("models", "GloNet MLP ResNet",
                              "Model names (spaces or commas), optionally with flags: "
                              "ResNet:use_batch_norm=false.")
_DEPTHS = flags.DEFINE_string("depths", "6 10 24 50 100 200", "Depths (spaces or commas).")
_SEEDS = flags.DEFINE_string("seeds", "0", "Seeds (spaces or commas).")
_REPORT = flags.DEFINE_boolean("report", True, "Render the sweep report at the end.")
_POINT = flags.DEFINE_integer("point", None, "Run only this point of the grid (0-based, in "
                              "the order models x depths x seeds): what each Slurm array "
                              "task runs.", lower_bound=0)
_LAUNCHER = flags.DEFINE_enum("launcher", os.environ.get("LAUNCHER", "local") or "local",
                              ["local", "slurm"], "local: the points one after another here; "
                              "slurm: a job array, one task per point (default: $LAUNCHER).")
_PARTITION = flags.DEFINE_string("slurm_partition", os.environ.get("PARTITION") or None,
                                 "Slurm partition (default: $PARTITION, else the cluster's).")
_TIME = flags.DEFINE_string("slurm_time", os.environ.get("TIME_LIMIT") or None,
                            "Time limit per point, e.g. 04:00:00 (default: $TIME_LIMIT).")
_GPUS = flags.DEFINE_integer("slurm_gpus", int(os.environ.get("GPUS_PER_POINT", "0") or 0),
                             "GPUs per point (default: $GPUS_PER_POINT, else 0).",
                             lower_bound=0)
_CPUS = flags.DEFINE_integer("slurm_cpus", int(os.environ.get("CPUS_PER_POINT", "2") or 2),
                             "CPU cores per point (default: $CPUS_PER_POINT, else 2).",
                             lower_bound=1)
_SBATCH = flags.DEFINE_list("slurm_extra", [], "More sbatch options, e.g. --mem=16G,--qos=x.")
_REQUEUE_BEFORE = flags.DEFINE_integer(
    "slurm_requeue_before", 120, "Seconds before the time limit at which a point stops "
    "cleanly and requeues itself.", lower_bound=10)
_WAIT = flags.DEFINE_boolean("slurm_wait", False, "Wait for the job array to finish, then "
                             "render the report and exit as a local sweep does.")


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


def resolve_grid(user_extra: list[str]) -> Grid:
  """The grid the flags describe: ``--sweep``'s, with each flag given explicitly winning."""
  models, depths, seeds = (split_list(f.value) for f in (_MODELS, _DEPTHS, _SEEDS))
  module, root, extra = _MODULE.value, _ROOT.value, []
  if _SWEEP.value:
    experiment, name, sweep = load_sweep(_SWEEP.value)
    module = module or f"{experiment}.train"
    root = root or os.path.join("sweeps", f"{experiment}_{name}{budget_suffix(user_extra)}")
    present = flags.FLAGS
    models = models if present["models"].present else list(sweep.models)
    depths = depths if present["depths"].present else [str(d) for d in sweep.depths]
    seeds = seeds if present["seeds"].present else [str(s) for s in sweep.seeds]
    extra = sweep.config_flags(experiment)
  if not module or not root:
    raise app.UsageError("--sweep, or --module and --root, are required")
  try:
    ints = tuple(int(d) for d in depths), tuple(int(s) for s in seeds)
  except ValueError:
    raise ConfigError(f"depths and seeds are whole numbers; got --depths={' '.join(depths)} "
                      f"--seeds={' '.join(seeds)}.") from None
  return Grid(module, root, tuple(models), *ints, (*extra, *user_extra), tuple(user_extra))


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


def slurm_array_script(grid: Grid, num_points: int) -> str:
  """The ``sbatch`` script of the grid's job array (one task per point)."""
  root = os.path.abspath(grid.root)
  name = "glonets-" + re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(root.rstrip("/")))
  options = [f"--job-name={name}", f"--array=0-{num_points - 1}", "--ntasks=1",
             f"--cpus-per-task={_CPUS.value}", "--requeue", "--open-mode=append",
             f"--output={root}/logs/slurm_%A_%a.out",
             f"--signal=B:USR1@{_REQUEUE_BEFORE.value}"]
  if _PARTITION.value:
    options.append(f"--partition={_PARTITION.value}")
  if _TIME.value:
    options.append(f"--time={_TIME.value}")
  if _GPUS.value:
    options.append(f"--gpus-per-task={_GPUS.value}")
  options += _SBATCH.value
  point_cmd = [sys.executable, "-m", "common.sweep",
               *([f"--sweep={_SWEEP.value}"] if _SWEEP.value else []),
               f"--module={grid.module}", f"--root={root}",
               f"--models={' '.join(grid.models)}", f"--depths={' '.join(map(str, grid.depths))}",
               f"--seeds={' '.join(map(str, grid.seeds))}", "--launcher=local",
               f"--report={_REPORT.value}"]
  command = " ".join(shlex.quote(c) for c in point_cmd)
  user_extra = list(grid.user_extra)
  extra_text = " ".join(shlex.quote(c) for c in ["--", *user_extra]) if user_extra else ""
  header = "\n".join(f"#SBATCH {o}" for o in options)
  return f"""#!/bin/bash
{header}
# Written by common.sweep: one task per grid point; rerun the sweep command to resubmit.
cd {shlex.quote(os.getcwd())}
{command} --point="$SLURM_ARRAY_TASK_ID" {extra_text} &
child=$!
# Near the time limit Slurm sends USR1 to this script: stop the point cleanly (SIGTERM:
# status interrupted, checkpoint kept) and requeue this task, which resumes it.
task="${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
trap 'kill -TERM "$child"; wait "$child"; scontrol requeue "$task"; exit 0' USR1
# Preemption and scancel send SIGTERM to every process of the task: the point stops cleanly.
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child"; code=$?
while kill -0 "$child" 2>/dev/null; do wait "$child"; code=$?; done
exit $code
"""


def submit_slurm(grid: Grid, points: list[tuple[str, int, int]]) -> str:
  """Writes and submits the job array; returns its job id."""
  os.makedirs(os.path.join(grid.root, "logs"), exist_ok=True)
  script = os.path.join(grid.root, "logs", "slurm_array.sh")
  fileio.atomic_write_text(script, slurm_array_script(grid, len(points)))
  try:
    out = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True,
                         check=False)
  except FileNotFoundError:
    raise app.UsageError("--launcher=slurm needs sbatch on the PATH (run it on a Slurm "
                         "login node)") from None
  if out.returncode != 0:
    raise app.UsageError(f"sbatch refused {script}: {out.stderr.strip()}")
  job = out.stdout.strip().split(";")[0]
  logging.info("Submitted %d points as Slurm job array %s (script %s); watch with `squeue "
               "-j %s`, report any time with `python -m common.report --sweep %s`.",
               len(points), job, script, job, grid.root)
  return job


def wait_for_slurm(job: str, poll_seconds: float = 5.0) -> None:
  """Returns when no task of ``job`` is pending or running (requeued ones included)."""
  while True:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%i %T"], capture_output=True,
                         text=True, check=False)
    if out.returncode == 0 and not out.stdout.strip():
      return
    time.sleep(poll_seconds)




def main(argv):
  grid = resolve_grid(argv[1:])  # everything after `--` goes to every point
  logging.set_verbosity(logging.INFO)
  points = grid_points(grid)
  if _POINT.value is None:  # a Slurm task's grid was checked when it was submitted
    check_points(grid, points)
  if _POINT.value is not None:
    if _POINT.value >= len(points):
      raise app.UsageError(f"--point={_POINT.value}, but the grid has {len(points)} points")
    points = [points[_POINT.value]]
  elif _LAUNCHER.value == "slurm":
    job = submit_slurm(grid, points)
    if not _WAIT.value:
      print(job)
      return
    wait_for_slurm(job)
    statuses = [point_status(grid.root, *p) for p in points]
    print(report.render_sweep(grid.root)["report"])
    logging.info("%s", count_statuses(statuses))
    sys.exit(0 if all(is_settled(s) for s in statuses) else 1)
  with stopping_on_signals():
    statuses = run_points(grid, points)
    if _REPORT.value:
      print(report.render_sweep(grid.root)["report"])
  logging.info("%s", count_statuses(statuses))
  exit_if_stopped("the sweep stopped after its report")
  sys.exit(0 if all(is_settled(s) for s in statuses) else 1)


if __name__ == "__main__":
  from common.cli import run_main  # noqa: PLC0415

  run_main(main, positional=True)
