"""One text table of every run under a folder: what each run changed and what it reached.

``python -m common.report --table ROOT`` prints it. Made for recipe grids (the same model
under several settings) and for checking on a sweep while it runs: the settings columns are
exactly the training settings whose values differ between the runs found, so a grid's table
names its own knobs.
"""

import os
from collections.abc import Sequence
from typing import Any

from common.report.runs import Run, find_runs, fmt
from common.report.sweep_report import markdown_table


def varying_settings(runs: Sequence[Run]) -> list[str]:
  """Training settings (:attr:`Run.recipe`) whose values are not the same in every run,
  sorted by name."""
  settings = [run.recipe for run in runs]
  keys = sorted({k for s in settings for k in s})
  return [k for k in keys if len({repr(s.get(k)) for s in settings}) > 1]


def table_rows(runs: Sequence[Run], root: str) -> list[list[str]]:
  """Header and one row per run: name, model, seed, varying settings, the budget (epochs
  done of those asked, training examples, recipe), state, the best-validation epoch with
  its validation and test metric, the final test metric and the median train seconds per
  epoch."""
  knobs = varying_settings(runs)
  header = (["run", "model", "seed"] + knobs +
            ["epochs", "train examples", "recipe", "state", "best-val epoch", "val",
             "test at best val", "final test", "train s/epoch"])
  rows = [header]
  for run in runs:
    recipe = run.recipe
    metric = run.primary_metric
    best: dict[str, Any] = run.best_record() or {}
    final: dict[str, Any] = run.final_record() or {}
    total = recipe.get("epochs")
    seconds = run.median_train_seconds()
    train = ((run.config.get("data") or {}).get("sizes") or {}).get("train")
    rows.append(
        [os.path.relpath(run.path, root), run.name, str(run.seed)] +
        [str(recipe.get(k)) for k in knobs] +
        [f"{final.get('epoch', 0)}/{total if total is not None else '?'}",
         "?" if train is None else str(train), str(run.nested_config.get("variant", "?")),
         run.state,
         str(best.get("epoch", "n/a")), fmt(metric, best.get(f"val_{metric}")),
         fmt(metric, best.get(f"test_{metric}")), fmt(metric, final.get(f"test_{metric}")),
         f"{seconds:.1f}" if seconds is not None else "n/a"])
  return rows


def render_table(root: str) -> str:
  """The runs under ``root`` as a Markdown table (accuracies in percent), then one line
  per run directory that could not be read; raises FileNotFoundError when there is none."""
  unreadable: list[str] = []
  runs = find_runs(root, unreadable)
  if not runs and not unreadable:
    raise FileNotFoundError(f"no run directories under {root}")
  text = markdown_table(table_rows(runs, root)) if runs else ""
  return text + "".join(f"left out: {reason}\n" for reason in unreadable)
