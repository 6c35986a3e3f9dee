r"""Runs a grid of models x depths x seeds, one run directory per point, then reports.

  python -m common.sweep --module=linear_mnist.train --root=sweeps/linear_mnist \
      --models="GloNet MLP ResNet" --depths="6 10 24" --seeds=0 -- --epochs=10

Each point runs ``python -m MODULE --model=M --num_layers=D --seed=S
--workdir=ROOT/M/depth_D/seed_S <extra flags>`` in its own process, so one diverging or
crashing point never stops the sweep. A model entry may carry flags of its own after
colons: ``ResNet:use_batch_norm=false`` runs ResNet with ``--use_batch_norm=false`` in the
folder ``ResNet_use_batch_norm-false``.

A point is skipped when its run has an outcome (``done`` or ``diverged``, as
:func:`common.report.runs.effective_status` reads ``status.json``) *and* was made by the
identical command (recorded in ``ROOT/logs/<point>.cmd.json``); otherwise the command runs
and the training loop decides: resume an ``interrupted`` or ``failed`` run, train a
finished one further, or refuse with a message when the settings differ. Logs go to
``ROOT/logs/``. At the end the sweep report is rendered (``python -m common.report --sweep
ROOT``). Exit status: 0 when every point has an outcome (done or diverged), 1 otherwise.
"""

import collections
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

from absl import app, flags, logging

from common import fileio, report
from common.report import runs
from common.train.rundir import STATUS

_MODULE = flags.DEFINE_string("module", None, "Experiment entry point, e.g. linear_mnist.train.")
_ROOT = flags.DEFINE_string("root", None, "Sweep root: one run directory per point below it.")
_MODELS = flags.DEFINE_string("models", "GloNet MLP ResNet",
                              "Model names (spaces or commas), optionally with flags: "
                              "ResNet:use_batch_norm=false.")
_DEPTHS = flags.DEFINE_string("depths", "6 10 24 50 100 200", "Depths (spaces or commas).")
_SEEDS = flags.DEFINE_string("seeds", "0", "Seeds (spaces or commas).")
_REPORT = flags.DEFINE_boolean("report", True, "Render the sweep report at the end.")


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
    ``failed``, ``running``...) or ``exit N`` when the process ended otherwise (2: its
    settings were refused, so the status file is not this command's).
  """
  model, model_flags, folder = parse_model_spec(model_spec)
  workdir = os.path.join(root, folder, f"depth_{depth}", f"seed_{seed}")
  cmd = [sys.executable, "-m", module, f"--model={model}", f"--num_layers={depth}",
         f"--seed={seed}", f"--workdir={workdir}", *model_flags, *extra]
  os.makedirs(os.path.join(root, "logs"), exist_ok=True)
  stem = os.path.join(root, "logs", f"{folder}_depth{depth}_seed{seed}")
  status_path = os.path.join(workdir, STATUS)

  def status() -> str:
    return (runs.effective_status(fileio.read_json(status_path))
            if os.path.exists(status_path) else "missing")

  previous = fileio.read_json(f"{stem}.cmd.json") if os.path.exists(f"{stem}.cmd.json") else None
  before = status()
  if is_settled(before) and previous == cmd[1:]:
    logging.info("skip %s depth %d seed %d: %s", model_spec, depth, seed, before)
    return before
  fileio.atomic_write_json(f"{stem}.cmd.json", cmd[1:])
  logging.info("run  %s depth %d seed %d -> %s", model_spec, depth, seed, workdir)
  t0 = time.perf_counter()
  with open(f"{stem}.log", "a", encoding="utf-8") as log:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
  result = status() if code in (0, 1) else f"exit {code}"
  logging.info("     %s depth %d seed %d: %s in %.0fs (log: %s.log)", model_spec, depth, seed,
               result, time.perf_counter() - t0, stem)
  return result


def main(argv):
  extra = argv[1:]  # everything after `--`
  if not _MODULE.value or not _ROOT.value:
    raise app.UsageError("--module and --root are required")
  logging.set_verbosity(logging.INFO)
  statuses = [run_point(_MODULE.value, _ROOT.value, model, int(depth), int(seed), extra)
              for model in split_list(_MODELS.value)
              for depth in split_list(_DEPTHS.value)
              for seed in split_list(_SEEDS.value)]
  if _REPORT.value:
    print(report.render_sweep(_ROOT.value)["report"])
  logging.info("%s", count_statuses(statuses))
  sys.exit(0 if all(is_settled(s) for s in statuses) else 1)


if __name__ == "__main__":
  app.run(main)
