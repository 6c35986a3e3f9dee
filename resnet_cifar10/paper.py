"""The authors' CIFAR-10 numbers beside ours: the sweep-report hook of this experiment.

The authors' notebook (``Code/PyTorch/GloNet+CNN.ipynb`` of AntonioDiCecco/GloNet) trains
a ResNet20-v2 with its skip connections removed and a GloNet sum of the stem and the three
stage outputs (our ``GloNet20 --glonet_sum=stage``, with untrained random projections and
centre crops where we have learnable carry maps), with SGD 0.1, momentum 0.9, weight decay
1e-4, batch 128, x0.1 every 50 epochs, 200 epochs: 88.68% test accuracy at the end, 89.44%
at its best epoch (the test set was also augmented there). No ResNet baseline is saved.

``python -m common.report --sweep ROOT`` finds this module through the experiment name the
runs recorded (``resnet_cifar10``); see :mod:`common.report.paper` for the hook functions.
"""

from typing import Any

from reportlab.platypus import Spacer

from common.report import pdf
from common.report.sweep_report import markdown_table

AUTHORS = {"model": "GloNet20 (stage sums, no skips, BN)", "epochs": 200,
           "test_accuracy_final": 0.8868, "test_accuracy_best": 0.8944}
_TITLE = "The authors' GloNet ResNet20 (their notebook)"


def comparison_rows(summary: dict[str, Any]) -> list[list]:
  """Rows, header first: the authors' GloNet20 beside every depth-20 model of the sweep."""
  rows = [["model", "epochs", "test accuracy (best val epoch)", "final test accuracy"]]
  rows.append([f"authors: {AUTHORS['model']}", AUTHORS["epochs"],
               f"{100 * AUTHORS['test_accuracy_best']:.2f}% (best test epoch)",
               f"{100 * AUTHORS['test_accuracy_final']:.2f}%"])
  for g in summary["groups"]:
    if g["depth"] != 20 or g["test_best_val"][0] is None:
      continue
    best, final = g["test_best_val"], g["test_final"]
    spread = f" ± {100 * best[1]:.2f}" if len(g["seeds"]) > 1 else ""  # none for one seed
    epochs = "/".join(str(e) for e in g.get("epochs", []))
    rows.append([f"ours: {g['label']}20 ({g['runs']} run(s))", epochs,
                 f"{100 * best[0]:.2f}%{spread}",
                 "" if final[0] is None else f"{100 * final[0]:.2f}%"])
  return rows


def summary_extras(summary: dict) -> dict:
  """``sweep_summary.json["paper"]["resnet_cifar10"]``: the comparison rows."""
  return {"authors": AUTHORS, "comparison": comparison_rows(summary)}


def markdown_sections(summary: dict) -> str:
  """The comparison for ``sweep_summary.md``."""
  return f"\n{_TITLE}\n\n" + markdown_table(comparison_rows(summary))


def report_sections(summary: dict, root: str) -> list:
  """Flowables of the comparison section of ``sweep_report.pdf``."""
  del root
  return [Spacer(1, 6), pdf.heading(_TITLE), pdf.table(comparison_rows(summary)),
          pdf.para("The authors selected by test accuracy and augmented the test set; we "
                   "select the epoch by validation accuracy and never augment evaluation. "
                   "Their budget is 200 epochs; ours is the sweep's.")]
