"""The paper's SGEMM numbers beside ours: the sweep-report hook of this experiment.

Table 1 of Di Cecco et al. (arXiv 2311.15947): average epoch training time in seconds on
the SGEMM regression task, GloNet vs its equivalent ResNet-v2 baseline. The paper does not
state the hardware, framework or batch size of this measurement.

``python -m common.report --sweep ROOT`` finds this module through the experiment name the
runs recorded (``resnet_sgemm``); see :mod:`common.report.paper` for the hook functions.
"""

import os
from typing import Any

from matplotlib.figure import Figure
from reportlab.platypus import Spacer

from common.report import pdf
from common.report.sweep_report import markdown_table

TABLE1_DEPTHS = (10, 24, 50, 100, 200, 600, 1000)
TABLE1_RESNET_SECONDS = (42, 65, 96, 147, 231, 410, 675)
TABLE1_GLONET_SECONDS = (27, 39, 55, 86, 121, 175, 289)
TIMING_PNG = "sweep_seconds_per_epoch.png"
_TITLE = "Paper Table 1 analogue"


def _seconds(summary: dict[str, Any], label: str) -> dict[int, tuple[float, tuple[str, ...]]]:
  # A depth timed on several machines has no one speed (see sweep_report._seconds_text).
  return {g["depth"]: (g["seconds_per_epoch"][0], tuple(g.get("machines") or ()))
          for g in summary["groups"]
          if g["label"] == label and g["seconds_per_epoch"][0] is not None
          and len(g.get("machines") or []) <= 1}


def table1_rows(summary: dict, glonet: str = "GloNet", resnet: str = "ResNet") -> list[list]:
  """Rows of the Table 1 analogue: ours (this machine) beside the paper's.

  Args:
    summary: the aggregated sweep.
    glonet: label of the GloNet runs.
    resnet: label of the ResNet-v2 runs with batch norm.

  Returns:
    Rows, header first: depth, our seconds per epoch of each and their ratio, the paper's.
  """
  ours_g, ours_r = _seconds(summary, glonet), _seconds(summary, resnet)
  paper = {d: (r, g) for d, r, g in zip(TABLE1_DEPTHS, TABLE1_RESNET_SECONDS,
                                        TABLE1_GLONET_SECONDS, strict=True)}
  rows = [["depth", f"{resnet} s/epoch", f"{glonet} s/epoch", "ratio (ours)",
           "paper ResNetv2", "paper GloNet", "paper ratio"]]
  for d in sorted(set(ours_g) | set(ours_r) | set(paper)):
    (g, g_machine), (r, r_machine) = ours_g.get(d, (None, ())), ours_r.get(d, (None, ()))
    pr, pg = paper.get(d, (None, None))
    # A ratio of two machines' timings is a comparison of the machines, not the models.
    ratio = ("" if g is None or r is None else
             f"{g / r:.2f}" if g_machine == r_machine else "n/a (2 machines)")
    rows.append([d, "" if r is None else f"{r:.2f}", "" if g is None else f"{g:.2f}", ratio,
                 "" if pr is None else pr, "" if pg is None else pg,
                 "" if pr is None else f"{pg / pr:.2f}"])
  return rows


def table1_pairs(summary: dict) -> list[tuple[str, str]]:
  """The ``(GloNet label, ResNet label)`` pairs the Table 1 analogue compares.

  A sweep report marks runs of one model with different settings (``GloNet [epochs=200,
  learning_rate=0.1]``, see ``sweep_report.recipe_marks``), so the rows are found by
  family, not by the exact labels ``GloNet`` and ``ResNet``. Marks are set per family
  (GloNet runs of two lengths are marked while ResNet runs of one are not), so two
  configurations pair when their recipes (each group's ``recipe``) agree on every setting
  that either mark names: the same mark, or a family's only (unmarked) configuration with
  each of the other's that trained as it did. The table's title names both labels.
  ``ResNet (no BN)`` is not the paper's baseline and never pairs; with no pair, the labels
  ``GloNet`` and ``ResNet`` (the paper's columns alone).
  """
  def configurations(family: str) -> dict[str, tuple[set[str], dict[str, Any]]]:
    out = {}
    for group in summary["groups"]:
      name, _, mark = group["label"].partition(" [")
      if name == family:
        marked = {s.partition("=")[0] for s in mark.removesuffix("]").split(", ") if s}
        out[group["label"]] = (marked, group.get("recipe") or {})
    return dict(sorted(out.items()))

  glonets, resnets = configurations("GloNet"), configurations("ResNet")
  pairs = [(g, r) for g, (g_keys, g_recipe) in glonets.items()
           for r, (r_keys, r_recipe) in resnets.items()
           if all(g_recipe.get(k) == r_recipe.get(k) for k in g_keys | r_keys)]
  return pairs or [("GloNet", "ResNet")]


def plot_seconds(summary: dict) -> Figure:
  """Seconds per epoch vs depth for every model, with the paper's numbers dashed."""
  fig, (ax,) = pdf.new_figure(6.5, 4.2)
  labels = sorted({g["label"] for g in summary["groups"]})
  for label in labels:
    sec = _seconds(summary, label)
    if sec:
      ax.plot(sorted(sec), [sec[d][0] for d in sorted(sec)], "o-", label=f"{label} (ours)")
  ax.plot(TABLE1_DEPTHS, TABLE1_RESNET_SECONDS, "k--", alpha=0.5, label="paper ResNetv2")
  ax.plot(TABLE1_DEPTHS, TABLE1_GLONET_SECONDS, "k:", alpha=0.7, label="paper GloNet")
  return pdf.finish_depth_axes(fig, ax, "seconds per epoch (training only)",
                               "Time per epoch vs depth", log_y=True, legend_size=7)


def summary_extras(summary: dict) -> dict:
  """``sweep_summary.json["paper"]["resnet_sgemm"]``: the Table 1 rows, header first, of
  the first pair of :func:`table1_pairs`; with several pairs, every pair's under
  ``table1_pairs``."""
  pairs = table1_pairs(summary)
  extras: dict[str, Any] = {"table1": table1_rows(summary, *pairs[0])}
  if len(pairs) > 1:
    extras["table1_pairs"] = [{"glonet": g, "resnet": r, "rows": table1_rows(summary, g, r)}
                              for g, r in pairs]
  return extras


def markdown_sections(summary: dict) -> str:
  """The Table 1 analogue for ``sweep_summary.md``."""
  return "".join(f"\n{_TITLE}{_which(g, r)}\n\n" + markdown_table(table1_rows(summary, g, r))
                 for g, r in table1_pairs(summary))


def _which(glonet: str, resnet: str) -> str:
  return "" if (glonet, resnet) == ("GloNet", "ResNet") else f": {glonet} vs {resnet}"


def report_sections(summary: dict, root: str) -> list:
  """Flowables of the Table 1 section (and its figure, written into ``root``).

  Args:
    summary: the aggregated sweep (``sweep_report.summarize_sweep``).
    root: the sweep root, where ``sweep_seconds_per_epoch.png`` is written.

  Returns:
    The section's reportlab flowables.
  """
  png = pdf.save_figure(plot_seconds(summary), os.path.join(root, TIMING_PNG))
  flowables = [Spacer(1, 6), pdf.heading(f"{_TITLE}: GloNet vs ResNet-v2 time")]
  for glonet, resnet in table1_pairs(summary):
    rows = table1_rows(summary, glonet, resnet)
    names = pdf.esc(glonet), pdf.esc(resnet)  # labels come from the runs' files
    ratios = [float(r[3]) for r in rows[1:] if r[3] and not r[3].startswith("n/a")]
    note = (f"Ours: each run's median seconds per epoch, averaged over seeds; training steps "
            f"only (no compile, no evaluation), on {summary.get('device', 'this machine')}. "
            f"Ratio = {names[0]} / {names[1]} (with batch norm) at the same depth; ours range "
            f"{min(ratios):.2f}-{max(ratios):.2f}."
            if ratios else f"No finished {names[0]}/{names[1]} pair timed on one machine yet.")
    if _which(glonet, resnet):
      flowables.append(pdf.para(f"<b>{names[0]} vs {names[1]}</b>"))
    flowables += [pdf.table(rows), pdf.para(note)]
  return flowables + [
      pdf.para("Paper: Di Cecco et al., Table 1 (hardware and framework not stated)."),
      pdf.image(png, 400)]
