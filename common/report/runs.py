"""Reading run directories (the contract of ``common.train.rundir``) for reports."""

import dataclasses
import math
import os
from typing import Any

from common import fileio
from common.usage import USAGE_FILE

# Plot labels and the direction of each metric.
METRIC_LABELS = {
    "loss": "loss",
    "accuracy": "accuracy (%)",
    "mse": "MSE",
    "mae": "MAE",
}
HIGHER_IS_BETTER = {"accuracy": True, "loss": False, "mse": False, "mae": False}


def _read(path: str, default: Any) -> Any:
  try:
    return fileio.read_json(path)
  except (FileNotFoundError, ValueError):
    return default


@dataclasses.dataclass
class Run:
  """Everything a report needs from one run directory (missing files read as empty)."""

  path: str
  config: dict[str, Any]
  metrics: list[dict[str, Any]]
  summary: dict[str, Any]
  status: dict[str, Any]
  usage: dict[str, Any]

  @classmethod
  def load(cls, path: str) -> "Run":
    """Reads a run directory; raises FileNotFoundError if it has no config.json."""
    config_path = os.path.join(path, "config.json")
    if not os.path.exists(config_path):
      raise FileNotFoundError(f"{path} is not a run directory (no config.json)")
    metrics_path = os.path.join(path, "metrics.jsonl")
    return cls(
        path=os.path.abspath(path),
        config=fileio.read_json(config_path),
        metrics=fileio.read_jsonl(metrics_path) if os.path.exists(metrics_path) else [],
        summary=_read(os.path.join(path, "summary.json"), {}),
        status=_read(os.path.join(path, "status.json"), {}),
        usage=_read(os.path.join(path, USAGE_FILE), {}),
    )

  @property
  def settings(self) -> dict[str, Any]:
    return self.config.get("config", {})

  @property
  def model_info(self) -> dict[str, Any]:
    return self.config.get("model", {})

  @property
  def name(self) -> str:
    return self.config.get("model_name", self.settings.get("model", "?"))

  @property
  def label(self) -> str:
    """The model family as shown in sweep legends (BN variants told apart)."""
    return self.model_info.get("label") or self.model_info.get("family") or self.name

  @property
  def depth(self) -> int | None:
    return self.model_info.get("num_layers", self.settings.get("num_layers"))

  @property
  def seed(self) -> int:
    return int(self.settings.get("seed", 0))

  @property
  def state(self) -> str:
    return self.status.get("status", "unknown")

  @property
  def metric_names(self) -> list[str]:
    """Task metrics present in the records, loss first (``loss``, ``accuracy`` / ``mse``...)."""
    keys = self.metrics[0].keys() if self.metrics else []
    names = [k[len("test_"):] for k in keys if k.startswith("test_")]
    return sorted(names, key=lambda n: (n != "loss", n))

  @property
  def primary_metric(self) -> str:
    names = self.metric_names
    for candidate in ("accuracy", "mse"):
      if candidate in names:
        return candidate
    return "loss"

  def best_record(self) -> dict[str, Any] | None:
    return self.summary.get("best")

  def final_record(self) -> dict[str, Any] | None:
    return self.metrics[-1] if self.metrics else None


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


def find_runs(root: str) -> list[Run]:
  """Every run directory under ``root`` (any depth), sorted by path."""
  runs = []
  for dirpath, dirnames, filenames in os.walk(root):
    if "config.json" in filenames:
      try:
        runs.append(Run.load(dirpath))
      except (OSError, ValueError):
        continue
      dirnames[:] = []  # a run directory's subfolders are checkpoints, not runs
    dirnames.sort()
  return sorted(runs, key=lambda r: r.path)
