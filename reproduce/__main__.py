r"""One command that says, claim by claim, whether the paper reproduces.

  python -m reproduce                          # the smoke budget: minutes on 2 cores
  python -m reproduce --budget=cpu             # the CPU sweeps: a day or more on 2 cores
  python -m reproduce --budget=gpu             # the paper-sized sweeps, for a GPU
  python -m reproduce --collect                # the report of the runs that exist, no training
  python -m reproduce --experiments=linear_mnist -- --config.train.epochs=2

Each experiment's sweep for the budget (its ``configs/sweeps.py``) runs under
``ROOT/<experiment>``; finished points are skipped and interrupted ones resume, so the same
command goes on after a stop. Flags after ``--`` go to every run. The report is
``ROOT/reproduction.pdf`` (and ``.md``, ``claims.json``).
"""

import os

from absl import flags, logging

from common import grid as grids
from common.cli import run_main
from common.errors import ConfigError
from reproduce import report
from reproduce.claims import BUDGET_SWEEPS, EXPERIMENTS

_BUDGET = flags.DEFINE_enum("budget", "smoke", list(BUDGET_SWEEPS),
                            "How much to train: smoke (minutes), cpu or gpu (the paper's).")
_COLLECT = flags.DEFINE_boolean("collect", False, "Render the report from the run "
                                "directories that exist, without training.")
_ROOT = flags.DEFINE_string("root", None, "Where the runs and the report go (default: "
                            "reproduction/BUDGET in the current folder).")
_EXPERIMENTS = flags.DEFINE_list("experiments", list(EXPERIMENTS), "Experiments to run.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "The data root of every run (default: "
                                "$GLONETS_DATA_DIR).")


def main(argv):
  budget = _BUDGET.value
  root = os.path.abspath(_ROOT.value or os.path.join("reproduction", budget))
  unknown = sorted(set(_EXPERIMENTS.value) - set(EXPERIMENTS))
  if unknown:
    raise ConfigError(f"--experiments: unknown {', '.join(unknown)}; choose from "
                      f"{','.join(EXPERIMENTS)}.")
  extra = [*([f"--data_dir={_DATA_DIR.value}"] if _DATA_DIR.value else []), *argv[1:]]
  todo = [grids.sweep_grid(f"{e}:{BUDGET_SWEEPS[budget][e]}", os.path.join(root, e), extra)
          for e in EXPERIMENTS if e in _EXPERIMENTS.value]
  with grids.stopping_on_signals():
    if not _COLLECT.value:
      for grid in todo:  # every point of every experiment, before any trains
        grids.check_points(grid, grids.grid_points(grid))
      for grid in todo:
        logging.info("%s: %d runs under %s", grid.module.partition(".")[0],
                     len(grids.grid_points(grid)), grid.root)
        grids.run_points(grid, grids.grid_points(grid))
    os.makedirs(root, exist_ok=True)
    paths = report.render(root, budget)
  print(paths["pdf"])
  grids.exit_if_stopped("the report covers the runs that finished")


if __name__ == "__main__":
  run_main(main, positional=True)
