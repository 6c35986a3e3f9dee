"""The paper's claims, what the authors measured, and how our sweeps judge them.

Each claim belongs to one experiment and is judged from that experiment's sweep summary
(:func:`common.report.sweep_report.summarize_sweep`): its groups give, per model family and
depth, the mean test metric over seeds (at the epoch of best validation), the blocks a
GloNet needs and the median seconds per epoch. The authors' numbers are those we could
check in their notebooks, README figures or the paper's Table 1.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

from common.run_config import Sweep

HOLDS = "holds"
FAILS = "does not hold at this budget"
NOT_MEASURED = "not measured"

# The sweep of each experiment's configs/sweeps.py that each budget runs.
BUDGET_SWEEPS = {
    "smoke": {"linear_mnist": "smoke", "resnet_sgemm": "smoke", "resnet_cifar10": "smoke",
              "resnet_imagenette": "smoke"},
    "cpu": {"linear_mnist": "cpu", "resnet_sgemm": "cpu", "resnet_cifar10": "cpu",
            "resnet_imagenette": "cpu"},
    "gpu": {"linear_mnist": "paper", "resnet_sgemm": "paper", "resnet_cifar10": "paper",
            "resnet_imagenette": "gpu"},
}
EXPERIMENTS = tuple(BUDGET_SWEEPS["smoke"])

# A verdict function gets the sweep summary; it returns (verdict, what we measured), or
# None when the runs it needs are missing.
Judge = Callable[[dict[str, Any]], tuple[str, str] | None]


@dataclasses.dataclass(frozen=True)
class Claim:
  """One claim of the paper.

  Attributes:
    key: a short identifier (``mnist_depth``).
    experiment: the experiment package whose sweeps measure it.
    text: the claim.
    authors: what the authors measured, and where (or that they published nothing).
    judge: the verdict from a sweep summary.
    needs: what a sweep must contain to judge it (shown when it is not measured).
    grid_can: whether a sweep's grid (:class:`common.run_config.Sweep`) holds what the
      claim needs, once all its points have run.
  """

  key: str
  experiment: str
  text: str
  authors: str
  judge: Judge
  needs: str
  grid_can: Callable[[Sweep], bool]


def _has(*labels: str, depths: int = 1, depth: int | None = None) -> Callable[[Sweep], bool]:
  """A grid with every family of ``labels``, at ``depths`` depths or more (at ``depth``)."""
  def can(sweep: Sweep) -> bool:
    families = {m.split(":")[0] for m in sweep.models}
    return (set(labels) <= families and len(sweep.depths) >= depths
            and (depth is None or depth in sweep.depths))
  return can


def _groups(summary: dict[str, Any], label: str) -> dict[int, dict[str, Any]]:
  """``{depth: group}`` of family ``label`` with at least one finished run."""
  return {g["depth"]: g for g in summary.get("groups", [])
          if g["label"] == label and g["test_best_val"][0] is not None}


def _pct(value: float) -> str:
  return f"{100 * value:.1f}%"


def _seeds(group: dict[str, Any]) -> str:
  n = len(group["seeds"])
  spread = group["test_best_val"][1]
  return f" (±{100 * spread:.1f}, {n} seeds)" if n > 1 else " (1 seed)"


def _keeps_accuracy(label: str, tolerance: float) -> Judge:
  """Holds when the deepest ``label`` is at most ``tolerance`` below the shallowest."""
  def judge(summary):
    groups = _groups(summary, label)
    if len(groups) < 2:
      return None
    lo, hi = groups[min(groups)], groups[max(groups)]
    drop = lo["test_best_val"][0] - hi["test_best_val"][0]
    text = (f"{label}{min(groups)} {_pct(lo['test_best_val'][0])}{_seeds(lo)}, "
            f"{label}{max(groups)} {_pct(hi['test_best_val'][0])}{_seeds(hi)}")
    return (HOLDS if drop <= tolerance else FAILS), text
  return judge


def _mnist_plain(summary):
  glonet, mlp = _groups(summary, "GloNet"), _groups(summary, "MLP")
  if not glonet or not mlp:
    return None
  depth = max(set(glonet) & set(mlp), default=None)
  if depth is None:
    return None
  g, m = glonet[depth]["test_best_val"][0], mlp[depth]["test_best_val"][0]
  text = f"at depth {depth}: MLP {_pct(m)}, GloNet {_pct(g)}"
  return (HOLDS if m < g - 0.10 else FAILS), text


def _mnist_blocks(summary):
  groups = {d: g for d, g in _groups(summary, "GloNet").items()
            if g["blocks_needed"][0] is not None}
  if not groups:
    return None
  depth = max(groups)
  needed, blocks = groups[depth]["blocks_needed"][0], groups[depth]["num_blocks"]
  text = f"GloNet{depth}: {needed:.1f} of {blocks} blocks needed"
  return (HOLDS if needed <= blocks / 4 else FAILS), text


def _sgemm_time(summary):
  glonet, resnet = _groups(summary, "GloNet"), _groups(summary, "ResNet")
  depths = sorted(d for d in set(glonet) & set(resnet)
                  if glonet[d]["seconds_per_epoch"][0] and resnet[d]["seconds_per_epoch"][0])
  if not depths:
    return None
  ratios = {d: resnet[d]["seconds_per_epoch"][0] / glonet[d]["seconds_per_epoch"][0]
            for d in depths}
  text = "ResNet/GloNet epoch time: " + ", ".join(f"{r:.2f}x at {d}" for d, r in ratios.items())
  return (HOLDS if all(r > 1 for r in ratios.values()) else FAILS), text


def _sgemm_depth(summary):
  groups = _groups(summary, "GloNet")
  if len(groups) < 2:
    return None
  lo, hi = groups[min(groups)]["test_best_val"][0], groups[max(groups)]["test_best_val"][0]
  text = f"GloNet{min(groups)} MSE {lo:.4f}, GloNet{max(groups)} MSE {hi:.4f}"
  return (HOLDS if hi <= 1.5 * lo else FAILS), text


def _as_accurate_as_resnet(depth: int, tolerance: float = 0.01) -> Judge:
  def judge(summary):
    glonet, resnet = _groups(summary, "GloNet"), _groups(summary, "ResNet")
    if depth not in glonet or depth not in resnet:
      return None
    g, r = glonet[depth], resnet[depth]
    text = (f"GloNet{depth} {_pct(g['test_best_val'][0])}{_seeds(g)}, "
            f"ResNet{depth} {_pct(r['test_best_val'][0])}{_seeds(r)}")
    return (HOLDS if g["test_best_val"][0] >= r["test_best_val"][0] - tolerance
            else FAILS), text
  return judge


CLAIMS = (
    Claim("mnist_depth", "linear_mnist",
          "A fully connected GloNet keeps its test accuracy as depth grows.",
          "about 95-96% from 5 to 200 layers (README figure, read by eye); 92.2-94.3% to "
          "120 layers after 2 epochs (notebook)",
          _keeps_accuracy("GloNet", 0.02), "GloNet at two or more depths",
          _has("GloNet", depths=2)),
    Claim("mnist_plain", "linear_mnist",
          "Without skip connections, a deep MLP does not train where a GloNet does.",
          "MLP 18% at 80 layers (figure); 9.7% from 30 layers (notebook)",
          _mnist_plain, "GloNet and MLP at the same depth", _has("GloNet", "MLP")),
    Claim("mnist_blocks", "linear_mnist",
          "A deep GloNet relies on its first few blocks.",
          "accuracy of a 100-layer GloNet saturates by its 6th block (figure, read by eye)",
          _mnist_blocks, "a GloNet with its layer usage", _has("GloNet")),
    Claim("sgemm_time", "resnet_sgemm",
          "A GloNet epoch takes less time than a ResNet-v2 epoch of the same depth.",
          "1.56x at 10 layers to 2.34x at 1000 layers (paper, Table 1)",
          _sgemm_time, "GloNet and ResNet at the same depth", _has("GloNet", "ResNet")),
    Claim("sgemm_depth", "resnet_sgemm",
          "A GloNet's test error stays flat as depth grows (to 1000 layers).",
          "no figure we could verify",
          _sgemm_depth, "GloNet at two or more depths", _has("GloNet", depths=2)),
    Claim("cifar_glonet20", "resnet_cifar10",
          "GloNet20 (ResNet20 without skips, its stages summed) is as accurate as ResNet20.",
          "88.68% after 200 epochs (notebook; no ResNet20 run saved)",
          _as_accurate_as_resnet(20), "GloNet and ResNet at depth 20",
          _has("GloNet", "ResNet", depth=20)),
    Claim("cifar_depth", "resnet_cifar10",
          "A convolutional GloNet keeps its accuracy as depth grows.",
          "no CNN depth sweep published",
          _keeps_accuracy("GloNet", 0.01), "GloNet at two or more depths",
          _has("GloNet", depths=2)),
    Claim("imagenette_glonet18", "resnet_imagenette",
          "GloNet18 is as accurate as ResNet18 on Imagenette.",
          "no number published",
          _as_accurate_as_resnet(18), "GloNet and ResNet at depth 18",
          _has("GloNet", "ResNet", depth=18)),
)
