"""Results as data: one record row per run, and README tables generated from records.

``python -m common.report --table ROOT --record FILE.csv`` writes the record of the runs
under ``ROOT``: one row per run (what it trained, what it reached, the commit, the machine
and the date), the numbers as measured. A README shows a record between two markers,

    <!-- record: resnet_cifar10/results/cpu.csv columns=model,seed,test_at_best_val -->
    ...the table...
    <!-- /record -->

(the path relative to the repository root; ``columns`` optional). ``python -m
common.report --readmes`` writes every such table from its record, and a test checks that
none differs, so no number in a results table is typed by hand.
"""

import csv
import dataclasses
import io
import os
import re
from collections.abc import Sequence
from typing import Any

from common import fileio
from common.report.runs import Run, find_runs, fmt
from common.report.sweep_report import machine_name, markdown_table

COLUMNS = ("run", "experiment", "model", "depth", "seed", "recipe", "epochs", "train_examples",
           "state", "metric", "best_val_epoch", "val", "test_at_best_val", "final_test",
           "train_seconds_per_epoch", "blocks_used", "blocks_needed", "commit", "machine",
           "date")
# Columns holding the run's metric: shown as the metric is (accuracy in percent).
_METRIC_COLUMNS = ("val", "test_at_best_val", "final_test")
_BLOCK = re.compile(r"(<!-- record: (?P<path>\S+)(?: columns=(?P<columns>\S+))? -->\n)"
                    r"(?P<table>.*?)(<!-- /record -->)", re.S)


def record_row(run: Run, root: str) -> dict[str, str]:
  """The record of one run (every value as text; empty where not measured). Blocks used
  and needed are the trained GloNet's (docs/layer_usage.md)."""
  best: dict[str, Any] = run.best_record() or {}
  final: dict[str, Any] = run.final_record() or {}
  metric = run.primary_metric
  env = run.config.get("environment") or {}
  seconds = run.median_train_seconds()
  train = ((run.config.get("data") or {}).get("sizes") or {}).get("train")
  usage = run.usage.get("final") or {}

  def text(value: Any) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)

  return {
      "run": os.path.relpath(run.path, root), "experiment": run.experiment or "",
      "model": run.name, "depth": text(run.depth), "seed": text(run.seed),
      "recipe": str(run.nested_config.get("variant", "")),
      "epochs": f"{final.get('epoch', 0)}/{run.recipe.get('epochs', '?')}",
      "train_examples": text(train), "state": run.state, "metric": metric,
      "best_val_epoch": text(best.get("epoch")), "val": text(best.get(f"val_{metric}")),
      "test_at_best_val": text(best.get(f"test_{metric}")),
      "final_test": text(final.get(f"test_{metric}")),
      "train_seconds_per_epoch": "" if seconds is None else f"{seconds:.3f}",
      "blocks_used": text(usage.get("blocks_used")),
      "blocks_needed": text(usage.get("blocks_needed")),
      "commit": ((env.get("code") or {}).get("commit") or "")[:12],
      "machine": machine_name(env), "date": str(run.status.get("updated", ""))[:10],
  }


def write_record(root: str, path: str) -> int:
  """Writes the record of every run under ``root`` to the CSV file ``path`` (by family,
  depth and seed); the row count.

  Raises:
    FileNotFoundError: no run directory under ``root``.
  """
  runs = find_runs(root)
  if not runs:
    raise FileNotFoundError(f"no run directories (with config.json) under {root}")
  # Family, then depth as a number (paths sort depth_100 before depth_24), then seed.
  runs.sort(key=lambda r: (r.label, r.depth or 0, r.seed, r.path))
  out = io.StringIO()
  writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
  writer.writeheader()
  writer.writerows(record_row(run, root) for run in runs)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fileio.atomic_write_text(path, out.getvalue())
  return len(runs)


def read_record(path: str) -> list[dict[str, str]]:
  """The rows of a record file."""
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def _cell(row: dict[str, str], column: str) -> str:
  value = row.get(column, "")
  if column in _METRIC_COLUMNS and value:
    return fmt(row["metric"], float(value)) + ("%" if row["metric"] == "accuracy" else "")
  return value


def record_table(rows: Sequence[dict[str, str]], columns: Sequence[str] | None = None) -> str:
  """A Markdown table of record rows (by default every column but the run's path)."""
  columns = list(columns or [c for c in COLUMNS if c != "run"])
  return markdown_table([columns] + [[_cell(r, c) for c in columns] for r in rows])


@dataclasses.dataclass
class Block:
  """A record's table in a README: where it is and what it should say."""

  readme: str
  record: str
  columns: list[str] | None
  written: str
  expected: str


def readme_blocks(readme: str, repo: str) -> list[Block]:
  """Every record table of ``readme``, with the table its record gives.

  Raises:
    FileNotFoundError: a block names a record that does not exist.
  """
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  blocks = []
  for m in _BLOCK.finditer(text):
    columns = m["columns"].split(",") if m["columns"] else None
    rows = read_record(os.path.join(repo, m["path"]))
    blocks.append(Block(readme, m["path"], columns, m["table"],
                        record_table(rows, columns)))
  return blocks


def update_readme(readme: str, repo: str) -> int:
  """Writes each record table of ``readme`` from its record; the number changed."""
  with open(readme, encoding="utf-8") as f:
    text = f.read()
  blocks = readme_blocks(readme, repo)
  changed = sum(b.written != b.expected for b in blocks)
  if changed:
    tables = iter(b.expected for b in blocks)
    fileio.atomic_write_text(readme, _BLOCK.sub(
        lambda m: m.group(1) + next(tables) + m.group(5), text))
  return changed


def readmes(repo: str) -> list[str]:
  """The repository's README files (the top one and each package's)."""
  found = [os.path.join(repo, "README.md")]
  for entry in sorted(os.listdir(repo)):
    path = os.path.join(repo, entry, "README.md")
    if not entry.startswith(".") and os.path.isfile(path):
      found.append(path)
  return [p for p in found if os.path.isfile(p)]
