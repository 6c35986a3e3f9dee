"""Reading run directories (the contract of ``common.train.rundir``) for reports.

Two facts are interpreted here once, for every report and for the sweep runner:

* what a run's status means (:func:`effective_status`: run directories written before
  ``diverged`` and ``interrupted`` existed recorded both as ``failed``);
* which way a metric is better (:func:`lower_is_better`: from ``summary.json`` when the run
  recorded its selection metric and mode, else from the metric's name).
"""

import dataclasses
import fcntl
import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from common import fileio
from common.config import TrainConfig, unread_settings
from common.errors import RunDirError
from common.models.registry import REGISTRIES, model_label
from common.train.rundir import _LOCK, CONFIG, METRICS, STATUS, SUMMARY, read_config
from common.usage import USAGE_FILE

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
    DIVERGED: "diverged (non-finite loss)",
    INTERRUPTED: "interrupted (not a result)",
    FAILED: "failed (error)",
    DIED: "died (killed without a status)",
}
# Message prefixes that older code wrote with status "failed" (common/train/loop.py before
# the statuses were split): a NonFiniteLossError, and Ctrl-C.
_OLD_DIVERGED_PREFIX = "non-finite training loss"
_OLD_INTERRUPTED_PREFIX = "interrupted"

# Settings that say where a run lives, how it reports or which seed it drew, not what it
# trains: runs that differ only in these are seeds of one configuration. The model and
# depth are the sweep's rows already.
_NOT_RECIPE = frozenset({
    "seed", "split_seed", "workdir", "data_dir", "cache_dir", "result_dir", "progress",
    "tensorboard", "eval_batch_size", "allow_unofficial_data", "model", "num_layers"})
_SETTING_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)
                     if f.default is not dataclasses.MISSING}

# Metrics that are minimised, for runs whose summary.json does not record its selection mode.
_LOWER_IS_BETTER_BY_NAME = ("loss", "mse", "mae")


def is_live(path: str) -> bool:
  """True while a process holds the run directory's lock (the OS drops it when the process
  dies, however it dies)."""
  try:
    f = open(os.path.join(path, _LOCK))  # noqa: SIM115 - closed below
  except OSError:
    return False
  with f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      return True
    fcntl.flock(f, fcntl.LOCK_UN)
    return False


def effective_status(status: Mapping[str, Any], live: bool | None = None) -> str:
  """What a run's ``status.json`` means: ``done``, ``diverged``, ``interrupted``, ``failed``...

  The one place that reads a status, so that reports and the sweep runner agree.

  Args:
    status: the content of ``status.json`` (empty when the file is missing).
    live: whether a process holds the run directory (:func:`is_live`); None: not known.

  Returns:
    The recorded status, except that an old ``failed`` whose message starts with
    "non-finite training loss" is ``diverged`` and one that starts with "interrupted" is
    ``interrupted`` (what the training loop wrote for those before they had statuses of
    their own); ``unknown`` without a status; ``died`` for ``running`` or ``unknown`` when
    ``live`` is False (no process holds the run directory: see :func:`is_live`).
  """
  state = str(status.get("status") or "unknown")
  if state in (RUNNING, "unknown") and live is False:
    return DIED
  if state == FAILED:
    message = str(status.get("message") or "")
    if message.startswith(_OLD_DIVERGED_PREFIX):
      return DIVERGED
    if message.startswith(_OLD_INTERRUPTED_PREFIX):
      return INTERRUPTED
  return state


def lower_is_better(metric: str, mode: str | None = None) -> bool:
  """True when smaller values of ``metric`` are better (an error: loss, MSE...).

  Args:
    metric: a task metric name (``accuracy``, ``mse``, ``loss``...).
    mode: ``"min"`` or ``"max"`` when known (a run's recorded ``selection_mode`` for this
      metric); otherwise the direction is guessed from the name.

  Returns:
    Whether lower is better.
  """
  if mode in ("min", "max"):
    return mode == "min"
  return metric in _LOWER_IS_BETTER_BY_NAME


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
        usage=fileio.read_json_or(os.path.join(path, USAGE_FILE), {}, problems, kind=dict),
        problems=problems,
        live=is_live(path),
    )

  @property
  def settings(self) -> dict[str, Any]:
    return self.config.get("config", {})

  @property
  def model_info(self) -> dict[str, Any]:
    return self.config.get("model", {})

  @property
  def experiment(self) -> str | None:
    """The experiment package that made the run (``resnet_sgemm``...), if recorded."""
    return self.settings.get("experiment") or self.config.get("experiment")

  @property
  def name(self) -> str:
    return self.config.get("model_name", self.settings.get("model", "?"))

  @property
  def label(self) -> str:
    """The model family as shown in sweep legends (BN and GloNet variants told apart).

    Derived again from the recorded settings where the run names its registry, so runs
    recorded before a variant mark existed are still told apart from the default model.
    """
    info = self.model_info
    family, registry = info.get("family"), REGISTRIES.get(info.get("registry"))
    if registry and family in registry and "use_batch_norm" in info:
      return model_label(family, info["use_batch_norm"], registry, self.settings)
    return info.get("label") or family or self.name

  @property
  def effective_settings(self) -> dict[str, Any]:
    """Every setting as the reports read it: :attr:`recipe` (defaults for settings recorded
    before they existed, the last ``--epochs``, the data) over the recorded settings, less
    those the run's models never read (:func:`config.unread_settings`)."""
    unread = unread_settings(self.model_info.get("registry"))
    return {k: v for k, v in {**_SETTING_DEFAULTS, **self.settings, **self.recipe}.items()
            if k not in unread}

  @property
  def recipe(self) -> dict[str, Any]:
    """What the run trained with beyond its model and depth: its settings (one recorded
    before a field existed reads that field's default, as a resumed run does), the epochs
    its last start asked for (a run trained further is one of that length), and the data
    release it read, or that its data was a substitute or not the official files."""
    settings = {**_SETTING_DEFAULTS, **self.settings}
    unread = unread_settings(self.model_info.get("registry"))
    out = {k: v for k, v in settings.items() if k not in _NOT_RECIPE | unread}
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
    return self.model_info.get("num_layers", self.settings.get("num_layers"))

  @property
  def seed(self) -> int:
    return int(self.settings.get("seed", 0))

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
    """The metric that selects the best epoch: recorded in summary.json, else guessed."""
    recorded = self.summary.get("selection_metric")
    if recorded:
      return str(recorded)
    names = self.metric_names
    for candidate in ("accuracy", "mse"):
      if candidate in names:
        return candidate
    return "loss"

  def metric_mode(self, metric: str) -> str | None:
    """``"min"``/``"max"`` for the recorded selection metric; None when not recorded."""
    if metric == self.summary.get("selection_metric"):
      return self.summary.get("selection_mode")
    return None

  def lower_is_better(self, metric: str) -> bool:
    """:func:`lower_is_better` with this run's recorded selection mode."""
    return lower_is_better(metric, self.metric_mode(metric))

  def best_record(self) -> dict[str, Any] | None:
    return self.summary.get("best")

  def final_record(self) -> dict[str, Any] | None:
    return self.metrics[-1] if self.metrics else None

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
