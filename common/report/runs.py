"""Reading run directories (:mod:`common.rundir_contract`) for reports and the sweep runner.

What a run's status means is interpreted here once (:func:`effective_status`), for every
report and for the sweep runner. Imports neither JAX nor the models.
"""

import dataclasses
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from common import fileio
from common.errors import RunDirError
from common.rundir_contract import (
    CONFIG,
    METRICS,
    RESULT_SECTIONS,
    STATUS,
    SUMMARY,
    USAGE,
    flat_settings,
    is_live,
    read_config,
)

# Plot labels of the metrics.
METRIC_LABELS = {
    "loss": "loss",
    "accuracy": "accuracy (%)",
    "mse": "MSE",
    "mae": "MAE",
}

# What ``status.json`` can say, and what each outcome means for a report or a sweep.
RUNNING, DONE, DIVERGED, INTERRUPTED, FAILED, DIED = (
    "running", "done", "diverged", "interrupted", "failed", "died")
# The process is over (else: running, or no status yet). ``died``: the status still says
# running but no process holds the run directory's lock (killed with SIGKILL, out of
# memory, a machine that went down): rerunning the command resumes it.
ENDED = (DONE, DIVERGED, INTERRUPTED, FAILED, DIED)
OUTCOMES = (DONE, DIVERGED)  # a result of the experiment: reported, and never rerun
STATUS_LABELS = {
    DIVERGED: "diverged (a non-finite or exploding loss)",
    INTERRUPTED: "interrupted (not a result)",
    FAILED: "failed (error)",
    DIED: "died (killed without a status)",
}


def effective_status(status: Mapping[str, Any], live: bool | None = None) -> str:
  """What a run's ``status.json`` means: ``done``, ``diverged``, ``interrupted``, ``failed``...

  The one place that reads a status, so that reports and the sweep runner agree.

  Args:
    status: the content of ``status.json`` (empty when the file is missing).
    live: whether a process holds the run directory (:func:`is_live`); None: not known.

  Returns:
    The recorded status; ``unknown`` without one; ``died`` for ``running`` or ``unknown``
    when ``live`` is False (no process holds the run directory: see :func:`is_live`).
  """
  state = str(status.get("status") or "unknown")
  if state in (RUNNING, "unknown") and live is False:
    return DIED
  return state


def lower_is_better(metric: str, mode: str | None = None) -> bool:
  """True when smaller values of ``metric`` are better: its ``mode`` is ``"min"``, or it is
  a loss (minimised by definition)."""
  return mode == "min" if mode in ("min", "max") else metric == "loss"


def _read_metrics(path: str, problems: list[str]) -> list[dict[str, Any]]:
  """``metrics.jsonl`` with damaged lines skipped and named (a torn last line is normal:
  a process killed while appending; it is skipped silently, as the loop rewrites it)."""
  if not os.path.exists(path):
    return []
  try:
    with open(path, encoding="utf-8", errors="replace") as f:
      lines = f.read().splitlines()
  except OSError as e:  # no permission, a folder in its place: named, the run still shown
    problems.append(f"{os.path.basename(path)} is unreadable ({type(e).__name__})")
    return []
  records = []
  for i, line in enumerate(lines):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      record = None
    if isinstance(record, dict) and "epoch" in record:
      records.append(record)
    elif i != len(lines) - 1:
      problems.append(f"{METRICS} line {i + 1} is damaged (skipped)")
  return records


@dataclasses.dataclass
class Run:
  """Everything a report needs from one run directory (missing files read as empty)."""

  path: str
  config: dict[str, Any]
  metrics: list[dict[str, Any]]
  summary: dict[str, Any]
  status: dict[str, Any]
  usage: dict[str, Any]
  problems: list[str] = dataclasses.field(default_factory=list)
  live: bool = False

  @classmethod
  def load(cls, path: str) -> "Run":
    """Reads a run directory.

    Damaged files never stop a report: a damaged line of ``metrics.jsonl`` is skipped,
    an unreadable ``summary.json``, ``status.json`` or ``usage.json`` reads as empty, and
    each is named in ``problems`` (shown in the reports).

    Raises:
      RunDirError: no ``config.json``, or a damaged one (:func:`rundir.read_config`).
    """
    path = os.path.abspath(path)  # errors and reports name the run the same way
    config = read_config(path)
    problems: list[str] = []
    metrics_path = os.path.join(path, METRICS)
    return cls(
        path=path,
        config=config,
        metrics=_read_metrics(metrics_path, problems),
        summary=fileio.read_json_or(os.path.join(path, SUMMARY), {}, problems, kind=dict),
        status=fileio.read_json_or(os.path.join(path, STATUS), {}, problems, kind=dict),
        usage=fileio.read_json_or(os.path.join(path, USAGE), {}, problems, kind=dict),
        problems=problems,
        live=is_live(path),
    )

  @property
  def nested_config(self) -> dict[str, Any]:
    """The run's nested config, as recorded."""
    return self.config.get("config", {})

  @property
  def settings(self) -> dict[str, Any]:
    """Every setting as ``section.key``."""
    return flat_settings(self.nested_config, ("model", "data", "optim", "train", "eval",
                                              "run"))

  @property
  def model_info(self) -> dict[str, Any]:
    return self.config.get("model", {})

  @property
  def experiment(self) -> str | None:
    """The experiment package that made the run (``resnet_sgemm``...)."""
    return self.nested_config.get("experiment")

  @property
  def name(self) -> str:
    return self.config.get("model_name", "?")

  @property
  def label(self) -> str:
    """The model family as shown in sweep legends (BN and GloNet variants told apart)."""
    return self.model_info.get("label") or self.model_info.get("family") or self.name

  @property
  def recipe(self) -> dict[str, Any]:
    """What the run trained with beyond its model, depth and seeds, by field name (unique
    across the result sections): the family's options, the data, optimizer and training
    settings; the epochs its last start asked for (a run trained further is one of that
    length), and the data release it read, or that its data was a substitute or not the
    official files."""
    out = {}
    for path, value in flat_settings(self.nested_config, RESULT_SECTIONS).items():
      key = path.split(".", 1)[1]
      if path not in ("model.name", "model.depth") and not key.endswith("seed"):
        out[key] = value
    resumes = self.config.get("resumes") or []
    if resumes and "epochs" in resumes[-1]:
      out["epochs"] = resumes[-1]["epochs"]
    data = self.config.get("data") or {}
    kind = (data.get("release") or ("substitute" if data.get("substitute") else None)
            or ("unofficial" if False in (data.get("official_content"),
                                          data.get("official_file")) else None))
    if kind:
      out["data"] = kind
    return out

  @property
  def depth(self) -> int | None:
    return self.model_info.get("num_layers", self.nested_config.get("model", {}).get("depth"))

  @property
  def seed(self) -> int:
    return int(self.nested_config.get("train", {}).get("seed", 0))

  @property
  def state(self) -> str:
    """The run's status as :func:`effective_status` reads it (``died`` for a run that
    says running while no process holds it)."""
    return effective_status(self.status, self.live)

  @property
  def metric_names(self) -> list[str]:
    """Task metrics present in the records, loss first (``loss``, ``accuracy`` / ``mse``...)."""
    keys = self.metrics[0].keys() if self.metrics else []
    names = [k[len("test_"):] for k in keys if k.startswith("test_")]
    return sorted(names, key=lambda n: (n != "loss", n))

  @property
  def primary_metric(self) -> str:
    """The metric that selects the best epoch (the task's, recorded in ``config.json``)."""
    return str(self.config.get("task", {}).get("selection_metric", "loss"))

  def metric_mode(self, metric: str) -> str | None:
    """``"min"``/``"max"`` for the selection metric and the loss; None for others."""
    if metric == self.primary_metric:
      return self.config.get("task", {}).get("selection_mode", "min")
    return "min" if metric == "loss" else None

  def lower_is_better(self, metric: str) -> bool:
    """:func:`lower_is_better` with this run's recorded selection mode."""
    return lower_is_better(metric, self.metric_mode(metric))

  def best_record(self) -> dict[str, Any] | None:
    return self.summary.get("best")

  def final_record(self) -> dict[str, Any] | None:
    return self.metrics[-1] if self.metrics else None

  def budget_text(self) -> str:
    """What the run was given to train: ``"1 epoch on 5,000 training examples (recipe
    smoke)"``. Said on every report, so that a quick run never reads as a result."""
    epochs = self.recipe.get("epochs", self.nested_config.get("train", {}).get("epochs"))
    train = ((self.config.get("data") or {}).get("sizes") or {}).get("train")
    if epochs is None and train is None:
      return "not recorded"
    text = "? epochs" if epochs is None else f"{epochs} epoch{'s' if epochs != 1 else ''}"
    if train is not None:
      text += f" on {train:,} training examples"
    variant = self.nested_config.get("variant")
    return text + (f" (recipe {variant})" if variant else "")

  @property
  def chance_accuracy(self) -> float | None:
    """The accuracy of guessing (1 / classes) for a classification run, else None."""
    classes = self.config.get("task", {}).get("num_classes")
    return 1.0 / classes if classes else None

  def at_chance(self) -> bool:
    """True when the final epoch's test accuracy is no better than guessing.

    Within three standard errors of 1 / classes on the test split's size (at least one
    percentage point): what a model that learned nothing scores. Such a run says nothing
    about the model, so reports draw no conclusions from it.
    """
    chance, final = self.chance_accuracy, self.final_record() or {}
    accuracy = final.get("test_accuracy")
    if chance is None or accuracy is None or not math.isfinite(accuracy):
      return False
    n = ((self.config.get("data") or {}).get("sizes") or {}).get("test") or 0
    margin = max(0.01, 3 * math.sqrt(chance * (1 - chance) / n)) if n else 0.01
    return accuracy <= chance + margin

  def warning(self) -> str | None:
    """Why the run's numbers say nothing about the model, when they do not: it diverged,
    or it ended at chance level. Reports put this first."""
    if self.state == DIVERGED:
      return ("This run diverged: its metrics and layer usage say nothing about the model "
              "(see the status).")
    if self.state == DONE and self.at_chance():
      accuracy = 100 * self.final_record()["test_accuracy"]
      return (f"This run ended at chance level (test accuracy {accuracy:.2f}%, guessing: "
              f"{100 * self.chance_accuracy:.2f}%): it learned nothing, so its layer usage "
              f"says nothing about the model.")
    return None

  def median_train_seconds(self) -> float | None:
    """Median train seconds per epoch: an epoch slowed by other work on the machine, or
    paused and resumed, moves it far less than the mean."""
    seconds = [r["train_seconds"] for r in self.metrics if "train_seconds" in r]
    return statistics.median(seconds) if seconds else None


def data_location(run: "Run") -> str | None:
  """Where the run read its data from (a folder or an archive), if recorded."""
  data = run.config.get("data") or {}
  return data.get("folder") or (data.get("source") if data.get("release") else None)


def data_text(run: "Run", locations: Sequence[str] | None = None) -> str:
  """What the run's numbers were measured on: the copy, whether it is a substitute for the
  official data (said next to the numbers it produced), and what the test split is.

  Args:
    run: the run.
    locations: where the copy was read from, in place of the run's own record (a report
      over runs that read one copy from several paths names them all; empty: none).
  """
  data = run.config.get("data") or {}
  if not data:
    return "not recorded"
  text = str(data.get("release") or data.get("source") or "unnamed")
  where = ", ".join(locations) if locations is not None else data_location(run)
  if where:
    text += f" ({where})"
  if data.get("substitute"):
    text += f"; a substitute: {data['substitute']}"
  elif False in (data.get("official_content"), data.get("official_file")):
    text += "; not the official files (allowed by --allow_unofficial_data)" if (
        data.get("official_content") is False) else "; not the official file"
  elif data.get("official_files") or data.get("official_file"):
    text += "; the official files"
  elif data.get("official_content"):
    text += "; the official content (in files compressed otherwise)"
  if data.get("test_split"):
    text += f"; test split: {data['test_split']}"
  return text + "."


def loss_label(run: "Run") -> str:
  """Axis label of the loss, with its units."""
  return "cross-entropy loss (nats)" if run.primary_metric == "accuracy" else "loss (MSE)"


def display_value(metric: str, value: float | None) -> float | None:
  """Accuracy as a percentage; other metrics unchanged; None for missing/non-finite."""
  if value is None or (isinstance(value, float) and not math.isfinite(value)):
    return None
  return 100.0 * value if metric == "accuracy" else value


def fmt(metric: str, value: float | None) -> str:
  """A metric value as text for tables."""
  shown = display_value(metric, value)
  if shown is None:
    return "n/a"
  return f"{shown:.2f}" if metric == "accuracy" else f"{shown:.4g}"


def find_runs(root: str, unreadable: list[str] | None = None) -> list[Run]:
  """Every run directory under ``root`` (any depth), sorted by path.

  Args:
    root: the folder to search.
    unreadable: when given, receives the one-line error (naming the file and the fix)
      for every run directory whose ``config.json`` cannot be read (each is also logged:
      never dropped silently).
  """
  runs = []
  for dirpath, dirnames, filenames in os.walk(root):
    if CONFIG in filenames:
      try:
        runs.append(Run.load(dirpath))
      except RunDirError as e:
        reason = str(e)
        logging.warning("Left out of the report: %s", reason)
        if unreadable is not None:
          unreadable.append(reason)
      dirnames[:] = []  # a run directory's subfolders are checkpoints, not runs
    dirnames.sort()
  return sorted(runs, key=lambda r: r.path)
