"""One run's figures and PDF: training_metrics.png, layer_usage.png, training_report.pdf."""

import os
from typing import Any

import numpy as np
from absl import logging
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from reportlab.platypus import PageBreak, Spacer

from common.report import pdf
from common.report.runs import (
    DIED,
    METRIC_LABELS,
    STATUS_LABELS,
    Run,
    data_text,
    display_value,
    fmt,
    loss_label,
)

METRICS_PNG = "training_metrics.png"
USAGE_PNG = "layer_usage.png"
REPORT_PDF = "training_report.pdf"
_SPLIT_STYLE = {"train": ("tab:blue", "-"), "val": ("tab:orange", "--"), "test": ("tab:green", ":")}
_WHEN_STYLE = {"init": ("tab:gray", "--"), "final": ("tab:red", "-")}


def needed_rule(entry: dict[str, Any]) -> str:
  """The criterion of ``blocks_needed`` in a ``usage.json`` entry, as text.

  ``blocks_needed_rule`` when recorded (it says whether the tolerance is absolute or
  relative), else the tolerance as ``usage.json`` gives it.
  """
  if entry.get("blocks_needed_rule"):
    return str(entry["blocks_needed_rule"])
  tolerance = entry.get("blocks_needed_tolerance")
  return ("early exit close to full" if tolerance is None
          else f"early exit within {tolerance:g} of full")


def usage_sentence(run: Run) -> str:
  """One or two sentences on how many blocks the model uses (from ``usage.json``); none
  for a run that diverged or learned nothing (:meth:`Run.warning`)."""
  if run.warning():
    return "No conclusion: " + run.warning()
  final = run.usage.get("final") or {}
  init = run.usage.get("init") or {}
  blocks = final.get("num_blocks") or init.get("num_blocks")
  if final.get("blocks_used") is not None:
    k, pct = final["blocks_used"], round(100 * final.get("threshold", 0.95))
    text = (f"After training, the first {k} of its {blocks} blocks carry {pct}% of the "
            f"head's output (the logit contributions W x_i of the GloNet sum), so the model "
            f"uses {k} of {blocks} blocks")
    if init.get("blocks_used") is not None:
      text += f" (at initialisation: {init['blocks_used']})"
    text += "."
    if final.get("blocks_needed") is not None:
      text += (f" The predictions need the first {final['blocks_needed']} blocks: the "
               f"smallest k whose early exit (the output from blocks 1..k only) meets "
               f"\"{needed_rule(final)}\" on the test set.")
    if final.get("blocks_needed_mean") is not None:
      text += (f" With the blocks left out replaced by their mean output over the training "
               f"examples, it needs the first {final['blocks_needed_mean']}.")
    return text
  if final.get("l1"):
    return (f"The model has {blocks} blocks; their mean |output| is plotted in network order "
            f"(the share of the output per block is defined for GloNet only).")
  if init and run.state == "done":  # UsageHook.on_end failed; the training did not
    return (f"The model has {blocks} blocks; the usage after training was not recorded (its "
            f"pass failed at the end of the run: python -m common.recompute_usage RUN_DIR "
            f"computes it from the last checkpoint).")
  if init:
    return f"The model has {blocks} blocks; no usage after training (the run did not finish)."
  if run.nested_config.get("eval", {}).get("layer_usage") is False:
    return ("Not measured (--config.eval.layer_usage=false): python -m "
            "common.recompute_usage RUN_DIR measures it from the last checkpoint.")
  return "No layer usage was recorded for this run."


def plot_training_metrics(run: Run) -> Figure:
  """Loss and the main metric per epoch for train / val / test."""
  names = [n for n in run.metric_names if n in ("loss", run.primary_metric)] or ["loss"]
  fig, axes = pdf.new_figure(pdf.FIGURE_WIDTH, 3.2, len(names))
  epochs = [r["epoch"] for r in run.metrics]
  best = run.summary.get("best_val_epoch")
  for ax, name in zip(axes, names, strict=True):
    for split, (color, style) in _SPLIT_STYLE.items():
      values = [display_value(name, r.get(f"{split}_{name}")) for r in run.metrics]
      ys = [np.nan if v is None else v for v in values]
      ax.plot(epochs, ys, style, color=color, marker="o", markersize=3, label=split)
    if best:
      ax.axvline(best, color="k", lw=0.8, alpha=0.5, label=f"best val (epoch {best})")
    drawn = [v for r in run.metrics for split in _SPLIT_STYLE
             if (v := display_value(name, r.get(f"{split}_{name}"))) is not None and v > 0]
    # A log axis where the values span decades; over a narrow range it labels only
    # minor ticks, in scientific notation.
    if run.lower_is_better(name) and drawn and max(drawn) > 10 * min(drawn):
      ax.set_yscale("log")
    ax.set_xlabel("epoch")
    if len(epochs) <= 12:  # each epoch labelled (one epoch: not 0.945, 0.96, ...)
      ax.set_xticks(epochs)
      ax.set_xlim(min(epochs, default=1) - 0.5, max(epochs, default=1) + 0.5)
    else:
      ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(loss_label(run) if name == "loss" else METRIC_LABELS.get(name, name))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=pdf.LEGEND_SIZE)
  if not epochs:
    axes[0].text(0.5, 0.5, "no finished epoch", ha="center", transform=axes[0].transAxes)
  fig.suptitle(f"{run.name}: training curves ({run.state})")
  fig.tight_layout()
  return fig


def stage_starts(usage: dict[str, Any]) -> list[int]:
  """0-based indices of the blocks that start a stage after the first (none for old files)."""
  for entry in usage.values():
    if isinstance(entry, dict) and entry.get("stage_boundaries"):
      return sorted(int(b) for b in entry["stage_boundaries"] if int(b) > 0)
  return []


def _mark_stages(ax: Axes, starts: list[int]) -> None:
  """Thin dashed lines between the last block of a stage and the first of the next.

  Block i (0-based) is plotted at x = i + 1, so a stage starting at block i is marked at
  x = i + 0.5. The same holds on the early-exit axis, where k counts blocks summed.
  """
  for i, start in enumerate(starts):
    ax.axvline(start + 0.5, color="k", lw=0.6, ls="--", alpha=0.5,
               label="stage boundary" if i == 0 else None)


def plot_layer_usage(run: Run) -> Figure:
  """Usage per block at init and at the end; shares and early exit for GloNet.

  Stage boundaries (``usage.json`` ``stage_boundaries``, CNN trunks) are drawn as thin
  dashed lines; ``blocks_used`` and ``blocks_needed`` as vertical lines of their own style.
  The early exit with the left-out blocks at their training mean (``early_exit_mean``) is
  drawn beside the usual one, lighter and with markers (MLPs have no stages).
  """
  usage = {k: v for k, v in run.usage.items() if isinstance(v, dict)}
  glonet = any("share" in v for v in usage.values())
  panels = ["l1", "share", "exit", "params"] if glonet else ["l1", "params"]
  # Two panels a row, as wide as the page: legible when printed.
  rows = len(panels) // 2
  fig, axes_list = pdf.new_figure(pdf.FIGURE_WIDTH, 3.3 * rows, 2, rows)
  axes = dict(zip(panels, axes_list, strict=True))
  metric = run.primary_metric
  for when, u in usage.items():
    color, style = _WHEN_STYLE.get(when, ("tab:purple", "-."))
    blocks = np.arange(1, len(u.get("l1", [])) + 1)
    axes["l1"].plot(blocks, u.get("l1", []), style, color=color, label=when)
    if glonet and "share" in u:
      axes["share"].plot(blocks, u["share"], style, color=color, label=f"share ({when})")
      axes["share"].plot(blocks, u["cumulative_share"], style, color=color, alpha=0.45,
                         lw=2.5, label=f"cumulative ({when})")
      if u.get("blocks_used"):
        axes["share"].axvline(u["blocks_used"], color=color, lw=0.8, alpha=0.6,
                              label=f"blocks used ({when}): {u['blocks_used']}")
      for key, alpha, marker, label in (
          ("early_exit", 1.0, None, when),
          ("early_exit_mean", 0.55, "^", f"{when}, rest at train mean")):
        exit_curve = u.get(key, {})
        values = [display_value(metric, v) for v in exit_curve.get(metric, [])]
        if values:
          axes["exit"].plot(exit_curve["k"], [np.nan if v is None else v for v in values],
                            style, color=color, alpha=alpha, marker=marker, markersize=4,
                            label=label)
    if u.get("blocks_needed"):
      # Beside blocks used: "used" is about the head's output, "needed" about the metric.
      axes["exit" if glonet else "l1"].axvline(
          u["blocks_needed"], color=color, lw=1.2, ls=(0, (1, 1.5)), alpha=0.8,
          label=f"blocks needed ({when}): {u['blocks_needed']} ({needed_rule(u)})")
    params = u.get("param_l1", [])
    axes["params"].plot(np.arange(1, len(params) + 1), [p["l1"] for p in params], style,
                        color=color, label=when)
  starts = stage_starts(usage)
  for name in ("l1", "share", "exit"):
    if name in axes:
      _mark_stages(axes[name], starts)
  axes["l1"].set(xlabel="block (network order)", ylabel="mean |block output|",
                 title="Output magnitude per block")
  # Rows are parameter groups (a layer, a block, a carry map, a norm), not the layers of
  # the depth convention: GloNet20 has 13 rows, its carry maps among them.
  axes["params"].set(xlabel="parameter group (network order, input layer = 1)",
                     ylabel="sum |w| of the group", title="Parameter L1 per parameter group")
  axes["params"].set_yscale("log")
  if glonet:
    threshold = next((u.get("threshold") for u in usage.values() if "threshold" in u), 0.95)
    axes["share"].axhline(threshold, color="k", lw=0.6, ls=":")
    axes["share"].set(xlabel="block (network order)", ylabel="fraction of the head's output",
                      title="Share of the output per block", ylim=(0, 1.02))
    axes["exit"].set(xlabel="k (blocks summed: head(x_1+...+x_k))",
                     ylabel=f"test {METRIC_LABELS.get(metric, metric)}",
                     title="Early exit")
    if run.lower_is_better(metric):
      axes["exit"].set_yscale("log")
  for ax in axes.values():
    ax.grid(alpha=0.3)
  pdf.place_legends(fig, list(axes.values()), pdf.LEGEND_SIZE)
  fig.suptitle(f"{run.name}: layer usage on the test set")
  fig.tight_layout()
  return fig


def _results_rows(run: Run) -> list[list[str]]:
  names = run.metric_names
  rows = [["", *[f"{split} {n}" for split in ("train", "val", "test") for n in names]]]
  for label, record in (("final epoch", run.final_record()), ("best val epoch", run.best_record())):
    if record:
      rows.append([f"{label} ({record['epoch']})",
                   *[fmt(n, record.get(f"{split}_{n}")) for split in ("train", "val", "test")
                     for n in names]])
  return rows


def _timing_rows(run: Run) -> list[list[str]]:
  s = run.summary
  seconds = [r.get("train_seconds") for r in run.metrics if r.get("train_seconds")]

  def num(v, unit="s"):
    return "n/a" if v is None else f"{v:.2f} {unit}"

  return [
      ["quantity", "value"],
      ["parameters", f"{s.get('num_params', 'n/a'):,}" if s.get("num_params") else "n/a"],
      ["compile (train step + evaluation)", num(s.get("compile_seconds"))],
      ["median train time per epoch (no compile, no evaluation)",
       num(run.median_train_seconds())],
      ["mean train time per epoch", num(s.get("mean_train_seconds_per_epoch"))],
      ["total train time", num(sum(seconds) if seconds else None)],
      ["mean evaluation time per epoch",
       num(np.mean([r["eval_seconds"] for r in run.metrics]) if run.metrics else None)],
      ["epochs finished", str(len(run.metrics))],
      ["device", ", ".join(run.config.get("environment", {}).get("devices", [])) or "n/a"],
  ]


def _config_rows(run: Run) -> list[list[str]]:
  rows = [["setting", "value"]]
  rows += [[k, str(v)] for k, v in run.settings.items()]
  data = run.config.get("data", {})
  rows += [[f"data: {k}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)]
           for k, v in data.items()
           if k in ("source", "folder", "release", "sizes", "split_seed", "preprocessing",
                    "official_files", "classes")]
  env = run.config.get("environment", {})
  rows += [["jax / flax / optax",
            " / ".join(str(env.get("packages", {}).get(p)) for p in ("jax", "flax", "optax"))]]
  return rows


def status_text(run: Run) -> str:
  """The run's status with its message."""
  recorded = run.status.get("status", "unknown")
  text = STATUS_LABELS.get(run.state, run.state)
  if run.state == DIED:
    text += (f" (status.json says {recorded!r}, but no process holds the run directory; "
             f"rerun its command to resume)")
  message = run.status.get("message", "")
  text = f"{text}: {message}" if message else text
  if run.problems:
    text += ". Damaged: " + "; ".join(run.problems)
  return text


def code_text(run: Run) -> str:
  """The git commit the run was made with (``config.json`` ``environment.code``)."""
  code = run.config.get("environment", {}).get("code") or {}
  if not code:
    return "not recorded"
  if code.get("commit") in (None, "unknown"):
    return "unknown (not run from a git checkout)"
  return code["commit"] + (", with uncommitted changes" if code.get("dirty") else "")


def metric_note(run: Run) -> str:
  """What the numbers of the results table are, from the run's own metric."""
  if run.primary_metric == "accuracy":
    return "Accuracy in %; loss: cross-entropy in nats."
  return f"{METRIC_LABELS.get(run.primary_metric, run.primary_metric)}: lower is better."


def header(run: Run) -> list[tuple[str, str]]:
  """The report's opening lines as ``(label, text)``: a warning first when the run's
  numbers say nothing about the model (:meth:`Run.warning`), then the facts."""
  warning = run.warning()
  return [*([("Warning", warning)] if warning else []),
          ("Run directory", run.path), ("Status", status_text(run)),
          ("Budget", run.budget_text()),
          ("Code", code_text(run)), ("Data", data_text(run)),
          ("Layer usage", usage_sentence(run))]


def render_run(path: str) -> dict[str, str]:
  """Renders a run directory's figures and PDF from its files alone.

  Args:
    path: the run directory.

  Returns:
    ``{"metrics": png, "usage": png, "report": pdf}`` paths.
  """
  run = Run.load(path)
  out = {"metrics": os.path.join(path, METRICS_PNG), "usage": os.path.join(path, USAGE_PNG),
         "report": os.path.join(path, REPORT_PDF)}
  metrics_png = pdf.save_figure(plot_training_metrics(run), out["metrics"])
  usage_png = pdf.save_figure(plot_layer_usage(run), out["usage"])
  story: list[Any] = [
      *(pdf.para(f"<b>{label}:</b> {pdf.esc(text)}") for label, text in header(run)),
      Spacer(1, 6), pdf.heading("Results"),
      pdf.table(_results_rows(run)) if run.metrics else pdf.para("No epoch finished."),
      pdf.para(f"{metric_note(run)} The best epoch is chosen on the validation split; the "
               f"test split is only reported."),
      Spacer(1, 6), pdf.heading("Timing"), pdf.table(_timing_rows(run)),
      Spacer(1, 6), pdf.figure("Training curves", metrics_png),
      PageBreak(), pdf.figure("Layer usage", usage_png),
      pdf.para("Blocks are in network order. Output magnitude: mean over test examples of "
               "mean |x_i| of the term the model uses (GloNet: the summed term; ResNet: the "
               "residual branch; MLP: the activation). Share: mean |W x_i|, block i's "
               "contribution to the head's output, normalised to sum to 1. Early exit: the "
               "trained head applied to the sum of the first k blocks."),
      PageBreak(), pdf.heading("Configuration"), pdf.table(_config_rows(run), [180, 330]),
  ]
  pdf.build(out["report"], f"Training report: {run.name}", story)
  logging.info("Report written: %s", out["report"])
  return out
