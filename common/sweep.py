r"""Runs a grid of models x depths x seeds, one run directory per point, then reports.

  python -m common.sweep --module=linear_mnist.train --root=sweeps/linear_mnist \
      --models="GloNet MLP ResNet" --depths="6 10 24" --seeds=0 -- --epochs=10

Each point runs ``python -m MODULE --model=M --num_layers=D --seed=S
--workdir=ROOT/M/depth_D/seed_S <extra flags>`` in its own process, so one diverging or
crashing point never stops the sweep. A model entry may carry flags of its own after
colons: ``ResNet:use_batch_norm=false`` runs ResNet with ``--use_batch_norm=false`` in the
folder ``ResNet_use_batch_norm-false``.

A point is skipped when its run is ``done`` *and* was made by the identical command
(recorded in ``ROOT/logs/<point>.cmd.json``); otherwise the command runs and the training
loop decides: resume an interrupted run, train a finished one further, or refuse with a
message when the settings differ. Logs go to ``ROOT/logs/``. At the end the sweep report
is rendered (``python -m common.report --sweep ROOT``). Exit status: 0 when every point is
done, 1 otherwise.
"""

import os
import re
import subprocess
import sys
import time

from absl import app, flags, logging

from common import fileio

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
    The point's final status (``done``, ``failed``, ``running`` or ``exit N``).
  """
  model, model_flags, folder = parse_model_spec(model_spec)
  workdir = os.path.join(root, folder, f"depth_{depth}", f"seed_{seed}")
  cmd = [sys.executable, "-m", module, f"--model={model}", f"--num_layers={depth}",
         f"--seed={seed}", f"--workdir={workdir}", *model_flags, *extra]
  os.makedirs(os.path.join(root, "logs"), exist_ok=True)
  stem = os.path.join(root, "logs", f"{folder}_depth{depth}_seed{seed}")
  status_path = os.path.join(workdir, "status.json")

  def status() -> str:
    return (fileio.read_json(status_path).get("status", "unknown")
            if os.path.exists(status_path) else "missing")

  previous = fileio.read_json(f"{stem}.cmd.json") if os.path.exists(f"{stem}.cmd.json") else None
  if status() == "done" and previous == cmd[1:]:
    logging.info("skip %s depth %d seed %d: done", model_spec, depth, seed)
    return "done"
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
    from common import report  # pylint: disable=g-import-not-at-top
    print(report.render_sweep(_ROOT.value)["report"])
  not_done = sum(s != "done" for s in statuses)
  logging.info("%d of %d points done", len(statuses) - not_done, len(statuses))
  sys.exit(1 if not_done else 0)


if __name__ == "__main__":
  app.run(main)
