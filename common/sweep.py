r"""Runs a grid of models x depths x seeds, one run directory per point, then reports.

  python -m common.sweep --module=linear_mnist.train --root=sweeps/linear_mnist \
      --models=GloNet,MLP,ResNet --depths=6,10,24 --seeds=0 -- --epochs=10

Each point runs ``python -m MODULE --model=M --num_layers=D --seed=S
--workdir=ROOT/M/depth_D/seed_S <extra flags>`` in its own process, so one diverging or
crashing point never stops the sweep. A model entry may carry flags of its own after
colons: ``ResNet:use_batch_norm=false`` runs ResNet with ``--use_batch_norm=false`` in the
folder ``ResNet_use_batch_norm-false``. Points whose ``status.json`` says ``done`` are
skipped; any other existing point is resumed (the training loop resumes by default).
Logs go to ``ROOT/logs/``. At the end, ``python -m common.report --sweep ROOT`` is
rendered. The exit status is 0 when every point is done, 1 otherwise.
"""

import os
import subprocess
import sys
import time

from absl import app, flags, logging

from common import fileio

_MODULE = flags.DEFINE_string("module", None, "Experiment entry point, e.g. linear_mnist.train.")
_ROOT = flags.DEFINE_string("root", None, "Sweep root: one run directory per point below it.")
_MODELS = flags.DEFINE_list("models", ["GloNet", "MLP", "ResNet"],
                            "Model names, optionally with flags: ResNet:use_batch_norm=false.")
_DEPTHS = flags.DEFINE_list("depths", ["6", "10", "24", "50", "100", "200"], "Depths.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds.")
_REPORT = flags.DEFINE_boolean("report", True, "Render the sweep report at the end.")


def parse_model_spec(spec: str) -> tuple[str, list[str], str]:
  """``"ResNet:use_batch_norm=false"`` -> ``("ResNet", ["--use_batch_norm=false"], folder)``."""
  name, *options = spec.split(":")
  folder = "_".join([name, *(o.replace("=", "-") for o in options)])
  return name, [f"--{o}" for o in options], folder


def point_dir(root: str, model_spec: str, depth: int, seed: int) -> str:
  """The run directory of one grid point."""
  return os.path.join(root, parse_model_spec(model_spec)[2], f"depth_{depth}", f"seed_{seed}")


def run_point(module: str, root: str, model_spec: str, depth: int, seed: int,
              extra: list[str]) -> str:
  """Runs (or resumes, or skips) one point; returns its final status."""
  model, model_flags, folder = parse_model_spec(model_spec)
  workdir = point_dir(root, model_spec, depth, seed)
  status_path = os.path.join(workdir, "status.json")
  if os.path.exists(status_path) and fileio.read_json(status_path).get("status") == "done":
    logging.info("skip %s depth %d seed %d: done", model_spec, depth, seed)
    return "done"
  os.makedirs(os.path.join(root, "logs"), exist_ok=True)
  log_path = os.path.join(root, "logs", f"{folder}_depth{depth}_seed{seed}.log")
  cmd = [sys.executable, "-m", module, f"--model={model}", f"--num_layers={depth}",
         f"--seed={seed}", f"--workdir={workdir}", *model_flags, *extra]
  logging.info("run  %s depth %d seed %d -> %s", model_spec, depth, seed, workdir)
  t0 = time.perf_counter()
  with open(log_path, "a") as log:
    log.write(f"$ {' '.join(cmd)}\n")
    log.flush()
    code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
  status = (fileio.read_json(status_path).get("status", "unknown")
            if os.path.exists(status_path) else f"exit {code}")
  logging.info("     %s depth %d seed %d: %s in %.0fs (log: %s)", model_spec, depth, seed, status,
               time.perf_counter() - t0, log_path)
  return status


def main(argv):
  extra = argv[1:]  # everything after `--`
  if not _MODULE.value or not _ROOT.value:
    raise app.UsageError("--module and --root are required")
  logging.set_verbosity(logging.INFO)
  statuses = []
  for model in _MODELS.value:
    for depth in map(int, _DEPTHS.value):
      for seed in map(int, _SEEDS.value):
        statuses.append(run_point(_MODULE.value, _ROOT.value, model, depth, seed, extra))
  if _REPORT.value:
    from common import report  # pylint: disable=g-import-not-at-top
    print(report.render_sweep(_ROOT.value, report.sections_for(_ROOT.value))["report"])
  not_done = sum(s != "done" for s in statuses)
  logging.info("%d of %d points done", len(statuses) - not_done, len(statuses))
  sys.exit(1 if not_done else 0)


if __name__ == "__main__":
  app.run(main)
