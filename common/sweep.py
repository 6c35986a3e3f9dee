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

import os
import re
import shlex
import subprocess
import sys
import time

from absl import app, flags, logging

from common import fileio, report
from common.errors import ConfigError
from common.grid import (
    Grid,
    budget_suffix,
    check_points,
    count_statuses,
    exit_if_stopped,
    grid_points,
    is_settled,
    load_sweep,
    point_status,
    run_points,
    split_list,
    stopping_on_signals,
)

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
