"""Sweep report: every run directory under a root, aggregated by model and depth.

Works for any experiment that follows the run-directory contract. Writes, in the root:

* ``sweep_metric_vs_depth.png``: test metric (at the best-validation epoch) vs depth per
  model, mean and standard deviation over seeds;
* ``sweep_blocks_used.png``: GloNet's blocks used vs depth (init and final);
* ``sweep_usage_curves.png``: usage per block for every depth, one panel per model;
* ``sweep_summary.json``: the aggregated numbers;
* ``sweep_report.pdf``: tables (results, seconds per epoch) and the figures.

Runs still ``running`` are listed but not aggregated; ``failed`` runs (e.g. diverged) are
counted and shown as failed, never silently dropped.
"""

import collections
import os
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from absl import logging
from reportlab.platypus import PageBreak, Spacer

from common import fileio
from common.report import paper, pdf
from common.report.runs import METRIC_LABELS, Run, find_runs

METRIC_PNG = "sweep_metric_vs_depth.png"
BLOCKS_PNG = "sweep_blocks_used.png"
CURVES_PNG = "sweep_usage_curves.png"
SUMMARY_JSON = "sweep_summary.json"
SUMMARY_MD = "sweep_summary.md"
REPORT_PDF = "sweep_report.pdf"


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return None, None
  return float(np.mean(values)), float(np.std(values))


def aggregate(runs: list[Run]) -> dict[str, Any]:
  """Groups runs by (model label, depth) and summarises each group.

  Returns:
    ``{"metric": name, "groups": [...]}`` where each group has the label, depth, run
    counts by status, and mean/std over finished seeds of the test metric at the
    best-validation epoch, the final test metric, blocks used and seconds per epoch.
  """
  metric = next((r.primary_metric for r in runs if r.metrics), "loss")
  groups: dict[tuple[str, int], list[Run]] = collections.defaultdict(list)
  for run in runs:
    groups[(run.label, run.depth or 0)].append(run)
  rows = []
  for (label, depth), members in sorted(groups.items()):
    done = [r for r in members if r.state == "done" and r.metrics]
    counts = collections.Counter(r.state for r in members)
    best = [(r.best_record() or {}).get(f"test_{metric}") for r in done]
    final = [(r.final_record() or {}).get(f"test_{metric}") for r in done]
    used = [(r.usage.get("final") or {}).get("blocks_used") for r in done]
    used_init = [(r.usage.get("init") or {}).get("blocks_used") for r in members]
    seconds = [r.summary.get("mean_train_seconds_per_epoch") for r in done]
    blocks = next(((r.usage.get("init") or {}).get("num_blocks") for r in members
                   if r.usage.get("init")), None)
    rows.append({
        "label": label, "depth": depth, "runs": len(members), "status": dict(counts),
        "seeds": sorted(r.seed for r in done), "num_blocks": blocks,
        "epochs": sorted({len(r.metrics) for r in done}),
        "test_best_val": _mean_std(best), "test_final": _mean_std(final),
        "blocks_used": _mean_std([u for u in used if u is not None]),
        "blocks_used_init": _mean_std([u for u in used_init if u is not None]),
        "seconds_per_epoch": _mean_std(seconds),
        "failed_messages": [r.status.get("message", "") for r in members if r.state == "failed"],
    })
  return {"metric": metric, "groups": rows}


def _device(run: Run) -> str:
  env = run.config.get("environment", {})
  devices = env.get("devices") or ["?"]
  kind = env.get("device_kind", "?")
  return f"{len(devices)} x {kind}" + (f", {env['cpu']}" if env.get("cpu") else "")


def _by_label(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
  for g in summary["groups"]:
    out[g["label"]].append(g)
  return out


def plot_metric_vs_depth(summary: dict[str, Any]) -> plt.Figure:
  """Test metric at the best-validation epoch vs depth, one line per model (mean ± std).

  Failed runs are drawn as crosses on the bottom edge; for error metrics, values far off
  the scale (a diverged model's MSE of 1e21) as triangles on the top edge, so one diverged
  point cannot squash every other line.
  """
  metric = summary["metric"]
  error_metric = metric in ("mse", "mae", "loss")
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  means = [g["test_best_val"][0] for g in summary["groups"] if g["test_best_val"][0] is not None]
  cap = None
  if error_metric and means:
    cap = 100 * float(np.median([m for m in means if m > 0] or [1.0]))
  off_chart, failed = [], []
  for label, groups in _by_label(summary).items():
    pts = [(g["depth"], *g["test_best_val"]) for g in groups if g["test_best_val"][0] is not None]
    color = None
    if pts:
      d, m, s = map(np.array, zip(*pts, strict=True))
      m, s = m.astype(float), s.astype(float)
      shown = m if cap is None else np.where(m > cap, np.nan, m)
      scale = 100.0 if metric == "accuracy" else 1.0  # accuracy is shown in %
      line = ax.errorbar(d, scale * shown, yerr=scale * s, marker="o", capsize=3, label=label)
      color = line[0].get_color()
      off_chart += [(dd, color) for dd, mm in zip(d, m, strict=True) if cap and mm > cap]
    failed += [(g["depth"], color or "k") for g in groups if g["status"].get("failed")]
  ax.set_xscale("log")
  if error_metric:
    ax.set_yscale("log")
  bottom, top = ax.get_ylim()
  for depth, color in off_chart:
    ax.plot([depth], [top], "^", color=color, ms=9, clip_on=False)
  for depth, color in failed:
    ax.plot([depth], [bottom], "x", color=color, ms=9, mew=2, clip_on=False)
  ax.set_ylim(bottom, top)
  if off_chart:
    ax.plot([], [], "^", color="grey", label=f"off the chart (> {cap:.3g}: diverged)")
  if failed:
    ax.plot([], [], "x", color="grey", mew=2, label="failed (non-finite loss)")
  return pdf.finish_depth_axes(fig, ax, f"test {METRIC_LABELS.get(metric, metric)}",
                               "Test metric at the best-validation epoch vs depth")


def plot_blocks_used(summary: dict[str, Any]) -> plt.Figure:
  """GloNet's blocks used vs depth, after training and at initialisation."""
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  for label, groups in _by_label(summary).items():
    for key, style, suffix in (("blocks_used", "o-", "after training"),
                               ("blocks_used_init", "s--", "at init")):
      pts = [(g["depth"], g[key][0], g[key][1]) for g in groups if g[key][0] is not None]
      if pts:
        d, m, s = map(np.array, zip(*pts, strict=True))
        ax.errorbar(d, m, yerr=s, fmt=style, capsize=3, label=f"{label} {suffix}")
  with_usage = {g["depth"]: g["num_blocks"] for g in summary["groups"]
                if g["blocks_used"][0] is not None and g["num_blocks"]}
  if with_usage:
    depths = sorted(with_usage)
    ax.plot(depths, [with_usage[d] for d in depths], ":", color="grey", label="all blocks")
  return pdf.finish_depth_axes(fig, ax, "blocks carrying 95% of the output",
                               "Blocks used vs depth (GloNet)")


def plot_usage_curves(runs: list[Run]) -> plt.Figure:
  """Usage per block of every depth on one axis, one panel per model."""
  labels = sorted({r.label for r in runs if (r.usage.get("final") or {}).get("l1")})
  fig, axes = plt.subplots(1, max(1, len(labels)), figsize=(5 * max(1, len(labels)), 3.8),
                           squeeze=False)
  for ax, label in zip(axes[0], labels, strict=False):
    members = sorted((r for r in runs if r.label == label and (r.usage.get("final") or {})),
                     key=lambda r: (r.depth or 0, r.seed))
    depths = sorted({r.depth for r in members})
    cmap = plt.get_cmap("viridis", max(2, len(depths)))
    seen = set()
    for run in members:
      u = run.usage["final"]
      values = np.asarray(u.get("share") or u["l1"], dtype=float)
      if "share" not in u:
        values = values / values.sum() if values.sum() > 0 else values
      color = cmap(depths.index(run.depth))
      ax.plot(np.arange(1, len(values) + 1), values, color=color, lw=1,
              label=None if run.depth in seen else f"depth {run.depth}")
      seen.add(run.depth)
    ax.set_xscale("log")
    what = ("share of the head output" if any("share" in r.usage["final"] for r in members)
            else "normalised mean |block output|")
    ax.set(xlabel="block (network order)", ylabel=what, title=f"{label}: usage per block")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
  if not labels:
    axes[0][0].text(0.5, 0.5, "no finished run with layer usage", ha="center",
                    transform=axes[0][0].transAxes)
  fig.tight_layout()
  return fig


def _pm(metric: str, pair) -> str:
  m, s = pair
  if m is None:
    return "n/a"
  if metric == "accuracy":
    return f"{100 * m:.2f} ± {100 * s:.2f}"
  return f"{m:.4g} ± {s:.2g}"


def results_table(summary: dict[str, Any]) -> list[list[str]]:
  """Rows (header first): model, depth, statuses, test metric, blocks used, s/epoch."""
  metric = summary["metric"]
  rows = [["model", "depth", "runs (status)", f"test {metric} @ best val", f"final test {metric}",
           "blocks used", "s / epoch"]]
  for g in summary["groups"]:
    status = ", ".join(f"{n} {k}" for k, n in sorted(g["status"].items()))
    used = g["blocks_used"]
    rows.append([g["label"], g["depth"], status, _pm(metric, g["test_best_val"]),
                 _pm(metric, g["test_final"]),
                 "n/a" if used[0] is None else f"{used[0]:.1f} of {g['num_blocks']}",
                 "n/a" if g["seconds_per_epoch"][0] is None else
                 f"{g['seconds_per_epoch'][0]:.2f}"])
  return rows


def seconds_table(summary: dict[str, Any]) -> list[list[str]]:
  """Rows (header first): mean seconds per epoch, one row per model, one column per depth."""
  by_label = _by_label(summary)
  depths = sorted({g["depth"] for g in summary["groups"]})
  rows = [["model \\ depth", *map(str, depths)]]
  for label, groups in by_label.items():
    cell = {g["depth"]: g["seconds_per_epoch"][0] for g in groups}
    rows.append([label, *["" if cell.get(d) is None else f"{cell[d]:.2f}" for d in depths]])
  return rows


def markdown_table(rows: list[list[Any]]) -> str:
  """A list of rows (header first) as a Markdown table."""
  lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |",
           "|" + "---|" * len(rows[0])]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]]
  return "\n".join(lines) + "\n"


def render_sweep(root: str, include: Sequence[str] = ()) -> dict[str, str]:
  """Renders the sweep figures, summary and PDF for every run under ``root``.

  For SGEMM sweeps (experiment ``resnet_sgemm``) the report also holds the paper's Table 1
  beside ours (:mod:`common.report.paper`).

  Args:
    root: folder holding run directories at any depth; the report is written there.
    include: more folders whose runs join the report, e.g. seeds trained in another sweep
      root or on another machine. A run reached twice (one root inside another) counts once.

  Returns:
    Paths of the written files.

  Raises:
    FileNotFoundError: no run directory under ``root`` or a folder of ``include``.
  """
  runs, seen = [], set()
  for folder in (root, *include):
    found = find_runs(folder)
    if not found:
      raise FileNotFoundError(f"no run directories (with config.json) under {folder}")
    for run in found:
      if os.path.realpath(run.path) not in seen:
        seen.add(os.path.realpath(run.path))
        runs.append(run)
  finished = [r for r in runs if r.state in ("done", "failed")]
  summary = aggregate(finished)
  summary["running"] = [r.path for r in runs if r.state not in ("done", "failed")]
  summary["device"] = "; ".join(sorted({_device(r) for r in runs}))
  out = {name: os.path.join(root, f) for name, f in (
      ("metric", METRIC_PNG), ("blocks", BLOCKS_PNG), ("curves", CURVES_PNG),
      ("summary", SUMMARY_JSON), ("markdown", SUMMARY_MD), ("report", REPORT_PDF))}
  experiments = sorted({r.settings.get("experiment", "?") for r in runs})
  table1 = "resnet_sgemm" in experiments
  fileio.atomic_write_json(out["summary"], summary)
  fileio.atomic_write_text(out["markdown"], (
      f"Sweep {', '.join(os.path.abspath(f) for f in (root, *include))} "
      f"({summary['device']})\n\n"
      + markdown_table(results_table(summary)) + "\nSeconds per epoch (training only)\n\n"
      + markdown_table(seconds_table(summary))
      + ("\nPaper Table 1 analogue\n\n" + markdown_table(paper.table1_rows(summary))
         if table1 else "")))
  metric_png = pdf.save_figure(plot_metric_vs_depth(summary), out["metric"])
  blocks_png = pdf.save_figure(plot_blocks_used(summary), out["blocks"])
  curves_png = pdf.save_figure(plot_usage_curves(finished), out["curves"])
  story = [
      pdf.para(f"<b>Root:</b> {os.path.abspath(root)}"
               + "".join(f"<br/><b>Also:</b> {os.path.abspath(f)}" for f in include)),
      pdf.para(f"<b>Experiment:</b> {', '.join(experiments)}; {len(runs)} runs "
               f"({len(finished)} finished, {len(summary['running'])} still running)."),
      Spacer(1, 6), pdf.heading("Results by model and depth"), pdf.table(results_table(summary)),
      pdf.para("Mean ± standard deviation over seeds of finished runs. Accuracy in %. "
               "Blocks used: the smallest k whose first k blocks carry 95% of the GloNet "
               "head's output (the sum over blocks of mean |W x_i|, the logit contributions)."),
      Spacer(1, 6), pdf.heading("Seconds per epoch (training only: no compile, no evaluation)"),
      pdf.table(seconds_table(summary)),
  ]
  if table1:
    story += paper.table1_story(root, summary)
  story += [PageBreak(), pdf.heading("Test metric vs depth"), pdf.image(metric_png, 400),
            pdf.heading("Blocks used vs depth"), pdf.image(blocks_png, 400),
            PageBreak(), pdf.heading("Usage per block, every depth"), pdf.image(curves_png)]
  failed = [(g["label"], g["depth"], m) for g in summary["groups"] for m in g["failed_messages"]]
  if failed:
    story += [pdf.heading("Failed runs"),
              pdf.table([["model", "depth", "message"], *[[a, b, c] for a, b, c in failed]],
                        [80, 40, 390])]
  pdf.build(out["report"], "Sweep report", story)
  logging.info("Sweep report written: %s", out["report"])
  return out
