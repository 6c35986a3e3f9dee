"""Sweep report: every run directory under a root, aggregated by model and depth.

Works for any experiment that follows the run-directory contract. Writes, in the root:

* ``sweep_metric_vs_depth.png``: test metric (at the best-validation epoch) vs depth per
  model, mean and standard deviation over seeds, with runs that gave no result marked;
* ``sweep_blocks_used.png``: GloNet's blocks used (init and final) and, when recorded,
  blocks needed vs depth;
* ``sweep_usage_curves.png``: usage per block for every depth, one panel per
  configuration (model and its marks, as in the tables);
* ``sweep_summary.json`` / ``.md``: the aggregated numbers;
* ``sweep_report.pdf``: tables (results, seconds per epoch) and the figures.

Runs of one model that differ in a training setting or data release (a longer recipe's
run gathered beside a sweep's, a learning-rate probe) are never averaged together: each
configuration is a row (and a usage-curves panel) of its own, marked with what sets it
apart (:func:`recipe_marks`).
Seconds per epoch are given only where a row's runs were timed on one machine.

Runs still ``running`` (or without a status) are listed but not aggregated. Every run that
ended is counted under its status (:func:`common.report.runs.effective_status`): only
``done`` runs enter the means; ``diverged``, ``interrupted`` and ``failed`` runs are counted
apart, marked apart in the depth plot and listed with their messages, never dropped, so an
interrupted or crashed depth cannot pass for a divergence.

Comparisons with published numbers come from the experiments' own hook modules
(``<experiment>/paper.py``, see :mod:`common.report.paper`).
"""

import collections
import glob
import itertools
import json
import os
import textwrap
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import matplotlib
import numpy as np
from absl import logging
from matplotlib import ticker
from matplotlib.figure import Figure
from reportlab.platypus import PageBreak, Spacer

from common import fileio
from common.errors import ConfigError
from common.report import paper, pdf
from common.report.run_report import needed_rule
from common.report.runs import (
    DIED,
    DIVERGED,
    DONE,
    ENDED,
    FAILED,
    INTERRUPTED,
    METRIC_LABELS,
    STATUS_LABELS,
    Run,
    data_location,
    data_text,
    find_runs,
    lower_is_better,
)

METRIC_PNG = "sweep_metric_vs_depth.png"
BLOCKS_PNG = "sweep_blocks_used.png"
CURVES_PNG = "sweep_usage_curves.png"
CURVE_PANELS = 6  # configurations per page of usage curves (two a row)
SUMMARY_JSON = "sweep_summary.json"
SUMMARY_MD = "sweep_summary.md"
REPORT_PDF = "sweep_report.pdf"
# How runs without a result are drawn on the bottom edge of the depth plot.
_NO_RESULT_MARKERS = {
    DIVERGED: {"marker": "x", "mew": 2},
    INTERRUPTED: {"marker": "s", "mfc": "none", "mew": 1.5},
    FAILED: {"marker": "D", "mfc": "none", "mew": 1.5},
    DIED: {"marker": "v", "mfc": "none", "mew": 1.5},
}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
  """Mean and population standard deviation (``np.std``, ddof 0: defined for one seed)."""
  values = [v for v in values if v is not None and np.isfinite(v)]
  if not values:
    return None, None
  return float(np.mean(values)), float(np.std(values))


def _final_usage(run: Run, key: str) -> Any:
  return (run.usage.get("final") or {}).get(key)


def recipe_marks(runs: list[Run]) -> dict[str, str]:
  """Each run's path -> the settings that set it apart from other runs of its model label.

  Runs of one model trained with different settings (another recipe, learning rate or
  number of epochs, another data release) are not seeds of one configuration: averaging
  them would give a number no configuration produced. Every setting that differs among
  the runs of a label is named on each of them (``epochs=80, learning_rate=0.1``), the
  same for every depth, so each configuration keeps one line across depths. Runs that
  differ only in their seed get no mark.
  """
  by_label: dict[str, list[Run]] = collections.defaultdict(list)
  for run in runs:
    by_label[run.label].append(run)
  marks = {}
  for members in by_label.values():
    recipes = [run.recipe for run in members]
    keys = sorted({k for r in recipes for k in r})
    differing = [k for k in keys
                 if len({json.dumps(r.get(k), sort_keys=True, default=str) for r in recipes}) > 1]
    for run, recipe in zip(members, recipes, strict=True):
      marks[run.path] = ", ".join(f"{k}={_setting_text(recipe.get(k))}" for k in differing)
  return marks


def config_labels(runs: list[Run]) -> dict[str, str]:
  """Each run's path -> its model label with its :func:`recipe_marks` in brackets, if any:
  the name of the configuration it is a seed of, in every table and figure alike."""
  marks = recipe_marks(runs)
  return {run.path: f"{run.label} [{marks[run.path]}]" if marks[run.path] else run.label
          for run in runs}


def _setting_text(value: Any) -> str:
  if value is None:
    return "n/a"  # not set, or not recorded
  if isinstance(value, (list, tuple)):
    return "[" + ",".join(map(str, value)) + "]"
  return str(value)


def _environments(run: Run) -> list[dict[str, Any]]:
  """Where the run trained: the machine it was created on and each one it resumed on (a
  resume records its devices; one recorded before that did not is left out)."""
  return [run.config.get("environment", {})] + [
      r for r in run.config.get("resumes") or [] if r.get("devices")]


def _device(env: dict[str, Any]) -> str:
  devices = env.get("devices") or ["?"]
  kind = env.get("device_kind", "?")
  return f"{len(devices)} x {kind}" + (f", {env['cpu']}" if env.get("cpu") else "")


def machine_name(env: dict[str, Any]) -> str:
  """A short name of a machine for a table cell: the accelerator, or the CPU model."""
  kind = env.get("device_kind", "?")
  if kind == "cpu":
    return env.get("cpu") or kind
  return kind


def _machines(runs: list[Run], name=_device) -> list[str]:
  """Every machine the runs trained on, resumes included: a run resumed elsewhere has
  epochs timed on two machines, so its seconds per epoch are the speed of neither."""
  return sorted({name(env) for r in runs for env in _environments(r)})


def aggregate(runs: list[Run]) -> dict[str, Any]:
  """Groups runs by (model label and its recipe marks, depth) and summarises each group.

  Args:
    runs: runs that ended (any status of ``runs.ENDED``).

  Returns:
    ``{"metric": name, "metric_mode": "min" | "max", "groups": [...]}`` where each group
    has the label (with :func:`recipe_marks` in brackets where runs of one model differ
    in their settings), depth, run counts by status, mean/std over ``done`` seeds of the
    test metric at the best-validation epoch, the final test metric, blocks used (and
    needed, when recorded), seconds per epoch and the machines they were measured on,
    and the status and message of every run that is not ``done``.
  """
  # The metric comes from a run that knows it: done runs first (sorted() is stable).
  reference = next((r for r in sorted(runs, key=lambda r: r.state != DONE)
                    if r.metrics or r.summary.get("selection_metric")), None)
  metric = reference.primary_metric if reference else "loss"
  mode = next((r.metric_mode(metric) for r in runs if r.metric_mode(metric)), None)
  groups: dict[tuple[str, int], list[Run]] = collections.defaultdict(list)
  labels = config_labels(runs)
  for run in runs:
    groups[(labels[run.path], run.depth or 0)].append(run)
  rows = []
  for (label, depth), members in sorted(groups.items()):
    done = [r for r in members if r.state == DONE and r.metrics]
    best = [(r.best_record() or {}).get(f"test_{metric}") for r in done]
    final = [(r.final_record() or {}).get(f"test_{metric}") for r in done]
    used_init = [(r.usage.get("init") or {}).get("blocks_used") for r in members]
    blocks = next(((r.usage.get("init") or {}).get("num_blocks") for r in members
                   if r.usage.get("init")), None)
    rows.append({
        "label": label, "depth": depth, "runs": len(members),
        # One configuration's settings (every run of a label shares those not in its mark).
        "recipe": members[0].recipe,
        "status": dict(collections.Counter(r.state for r in members)),
        "seeds": sorted(r.seed for r in done), "num_blocks": blocks,
        "epochs": sorted({len(r.metrics) for r in done}),
        "test_best_val": _mean_std(best), "test_final": _mean_std(final),
        "blocks_used": _mean_std([_final_usage(r, "blocks_used") for r in done]),
        "blocks_used_init": _mean_std([u for u in used_init if u is not None]),
        "blocks_needed": _mean_std([_final_usage(r, "blocks_needed") for r in done]),
        "blocks_needed_mean": _mean_std([_final_usage(r, "blocks_needed_mean")
                                         for r in done]),
        "blocks_needed_rule": next((needed_rule(r.usage["final"]) for r in done
                                    if _final_usage(r, "blocks_needed") is not None), None),
        "seconds_per_epoch": _mean_std([r.median_train_seconds() for r in done]),
        "machines": _machines(done),
        "machine_names": _machines(done, machine_name),
        "messages": [{"seed": r.seed, "status": r.state, "message": _message(r)}
                     for r in sorted(members, key=lambda r: r.seed)
                     if r.state != DONE or r.problems],
    })
  return {"metric": metric, "metric_mode": "min" if lower_is_better(metric, mode) else "max",
          "groups": rows}


def _message(run: Run) -> str:
  """The run's status message, with what is damaged in its directory."""
  if run.state == DIED:
    text = (f"no process holds the run (last status: {run.status.get('status', 'none')}, "
            f"{run.status.get('updated', 'never updated')}); rerun its command to resume")
  else:
    text = str(run.status.get("message", ""))
  return "; ".join([text, *run.problems]) if run.problems else text


def _by_label(summary: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
  out: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
  for g in summary["groups"]:
    out[g["label"]].append(g)
  return out


def plot_metric_vs_depth(summary: dict[str, Any]) -> Figure:
  """Test metric at the best-validation epoch vs depth, one line per model (mean ± std).

  Runs without a result are drawn on the bottom edge, one marker per status (diverged:
  non-finite loss; interrupted: not a result; failed: an error), so that a depth that was
  cut short is never read as a divergence. For error metrics, values far off the scale (a
  finished model's MSE of 1e21) are triangles on the top edge, so one such point cannot
  squash every other line.
  """
  metric = summary["metric"]
  error_metric = lower_is_better(metric, summary.get("metric_mode"))
  fig, (ax,) = pdf.new_figure(pdf.FIGURE_WIDTH, 4.4)
  means = [g["test_best_val"][0] for g in summary["groups"] if g["test_best_val"][0] is not None]
  cap = None
  if error_metric and means:
    cap = 100 * float(np.median([m for m in means if m > 0] or [1.0]))
  off_chart = []
  no_result: dict[str, list[tuple[int, Any]]] = collections.defaultdict(list)
  colors = _label_colors(summary)
  for label, groups in _by_label(summary).items():
    color = colors[label]
    pts = [(g["depth"], *g["test_best_val"]) for g in groups if g["test_best_val"][0] is not None]
    if pts:
      d, m, s = map(np.array, zip(*pts, strict=True))
      m, s = m.astype(float), s.astype(float)
      shown = m if cap is None else np.where(m > cap, np.nan, m)
      scale = 100.0 if metric == "accuracy" else 1.0  # accuracy is shown in %
      ax.errorbar(d, scale * shown, yerr=scale * s, marker="o", capsize=3, color=color,
                  label=label)
      off_chart += [(dd, color) for dd, mm in zip(d, m, strict=True) if cap and mm > cap]
    else:  # no result at any depth: still give the model its colour and legend entry
      ax.plot([], [], "o", color=color, label=label)
    for status in _NO_RESULT_MARKERS:
      no_result[status] += [(g["depth"], color) for g in groups if g["status"].get(status)]
  ax.set_xscale("log")
  if error_metric:
    ax.set_yscale("log")
  bottom, top = ax.get_ylim()
  for depth, color in off_chart:
    ax.plot([depth], [top], "^", color=color, ms=9, clip_on=False)
  for status, points in no_result.items():
    for depth, color in points:
      ax.plot([depth], [bottom], ls="none", color=color, ms=9, clip_on=False,
              **_NO_RESULT_MARKERS[status])
  ax.set_ylim(bottom, top)
  if off_chart:
    ax.plot([], [], "^", color="grey", label=f"off the chart (> {cap:.3g})")
  for status, points in no_result.items():
    if points:
      ax.plot([], [], ls="none", color="grey", label=STATUS_LABELS[status],
              **_NO_RESULT_MARKERS[status])
  return pdf.finish_depth_axes(fig, ax, f"test {METRIC_LABELS.get(metric, metric)}",
                               "Test metric at the best-validation epoch vs depth")


def _label_colors(summary: dict[str, Any]) -> dict[str, str]:
  """One colour per configuration, the same in every depth plot of the report."""
  cycle = itertools.cycle(matplotlib.rcParams["axes.prop_cycle"].by_key()["color"])
  return {label: next(cycle) for label in _by_label(summary)}


def _needed_rule(groups: list[dict[str, Any]]) -> str:
  rule = next((g["blocks_needed_rule"] for g in groups if g.get("blocks_needed_rule")), None)
  return "" if rule is None else f" ({rule})"


def plot_blocks_used(summary: dict[str, Any]) -> Figure:
  """GloNet's blocks used vs depth (after training, at init) and blocks needed if recorded.

  One colour per configuration and one line style per quantity, each named once in the
  legend: a sweep that gathers several recipes would otherwise list every pair.
  """
  fig, (ax,) = pdf.new_figure(pdf.FIGURE_WIDTH, 4.4)
  quantities = (("blocks_used", "o-", "used, after training"),
                ("blocks_used_init", "s--", "used, at init"),
                ("blocks_needed", "^-.", "needed"))
  drawn: set[str] = set()
  rules: list[str] = []
  colors = _label_colors(summary)
  for label, groups in _by_label(summary).items():
    shown = False
    for key, style, _ in quantities:
      pts = [(g["depth"], *g[key]) for g in groups
             if (g.get(key) or (None, None))[0] is not None]
      if pts:
        shown = True
        drawn.add(key)
        d, m, s = map(np.array, zip(*pts, strict=True))
        ax.errorbar(d, m, yerr=s, fmt=style, color=colors[label], capsize=3)
    if shown:
      ax.plot([], [], "-", color=colors[label], lw=4, label=label)
    rule = _needed_rule(groups)
    if rule and rule not in rules:
      rules.append(rule)
  for key, style, name in quantities:
    if key in drawn:
      # The rule that "needed" follows is said once (each GloNet run records it).
      suffix = ";".join(rules) if key == "blocks_needed" else ""
      ax.plot([], [], style, color="grey", label=name + suffix)
  with_usage = {g["depth"]: g["num_blocks"] for g in summary["groups"]
                if g["blocks_used"][0] is not None and g["num_blocks"]}
  if with_usage:
    depths = sorted(with_usage)
    ax.plot(depths, [with_usage[d] for d in depths], ":", color="grey", label="all blocks")
  # "Used" counts the blocks carrying 95% of the head's output; "needed" the blocks the
  # predictions need (its rule is in the legend).
  ylabel = "blocks" if "blocks_needed" in drawn else "blocks carrying 95% of the output"
  return pdf.finish_depth_axes(fig, ax, ylabel, "Blocks used vs depth (GloNet)")


def plot_usage_curves(runs: list[Run], names: dict[str, str] | None = None,
                      labels: Sequence[str] | None = None) -> Figure:
  """Usage per block of every depth on one axis, one panel per configuration.

  Args:
    runs: the runs to draw (those without final usage are skipped).
    names: run path -> configuration name (:func:`config_labels`, by default of ``runs``);
      the report passes the names of its tables so that panels and rows agree.
    labels: the configurations to draw (a page of them); None: every one.
  """
  names = names if names is not None else config_labels(runs)
  found = sorted({names[r.path] for r in runs if (r.usage.get("final") or {}).get("l1")})
  labels = found if labels is None else [label for label in labels if label in found]
  # Two panels a row, as wide as the page: legible when printed.
  ncols = min(2, max(1, len(labels)))
  nrows = max(1, -(-len(labels) // ncols))
  fig, axes = pdf.new_figure(pdf.FIGURE_WIDTH, 3.4 * nrows, ncols, nrows)
  for ax in axes[len(labels):] if labels else ():
    ax.set_axis_off()
  for ax, label in zip(axes, labels, strict=False):
    members = sorted((r for r in runs
                      if names[r.path] == label and (r.usage.get("final") or {})),
                     key=lambda r: (r.depth or 0, r.seed))
    depths = sorted({r.depth for r in members})
    cmap = matplotlib.colormaps["viridis"].resampled(max(2, len(depths)))
    seen = set()
    longest = 0
    for run in members:
      u = run.usage["final"]
      values = np.asarray(u.get("share") or u["l1"], dtype=float)
      if "share" not in u:
        values = values / values.sum() if values.sum() > 0 else values
      color = cmap(depths.index(run.depth))
      ax.plot(np.arange(1, len(values) + 1), values, color=color, lw=1,
              label=None if run.depth in seen else f"depth {run.depth}")
      seen.add(run.depth)
      longest = max(longest, len(values))
    if longest > 20:  # hundreds of blocks: a log axis keeps the first ones readable
      ax.set_xscale("log")
    else:
      ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    what = ("share of the head output" if any("share" in r.usage["final"] for r in members)
            else "normalised mean |block output|")
    ax.set(xlabel="block (network order)", ylabel=what)
    # Marks can be long (``GloNet [batch_size=128, epochs=80, ...]``): wrapped, not clipped.
    ax.set_title(textwrap.fill(f"{label}: usage per block", 48), fontsize=9)
    ax.grid(alpha=0.3, which="both")
  # A sweep of many depths (10 to 1000 in seven steps) would cover its curves with the legend.
  pdf.place_legends(fig, axes[:len(labels)], pdf.LEGEND_SIZE)
  if not labels:
    axes[0].text(0.5, 0.5, "no finished run with layer usage", ha="center",
                 transform=axes[0].transAxes)
  fig.tight_layout()
  return fig


def _pm(metric: str, pair, seeds: int) -> str:
  """Mean ± standard deviation; the value alone for one seed (whose spread is unknown, not
  zero)."""
  m, s = pair
  if m is None:
    return "n/a"
  if metric == "accuracy":
    m, s = 100 * m, 100 * s
    return f"{m:.2f}" if seeds < 2 else f"{m:.2f} ± {s:.2f}"
  return f"{m:.4g}" if seeds < 2 else f"{m:.4g} ± {s:.2g}"


def _blocks(pair, num_blocks) -> str:
  m = (pair or (None, None))[0]
  return "n/a" if m is None else f"{m:.1f} of {num_blocks}"


def results_table(summary: dict[str, Any]) -> list[list[str]]:
  """Rows (header first): model, depth, statuses, test metric, blocks used/needed, s/epoch."""
  metric = summary["metric"]
  rows = [["model", "depth", "runs (status)", f"test {metric} @ best val", f"final test {metric}",
           "blocks used", "blocks needed", "median s / epoch"]]
  name_machine = _several_machines(summary)
  for g in summary["groups"]:
    status = ", ".join(f"{n} {k}" for k, n in sorted(g["status"].items()))
    # A seed run twice (again on another machine, say) is two runs in the mean: said here.
    repeated = sorted((s, n) for s, n in collections.Counter(g["seeds"]).items() if n > 1)
    if repeated:
      status += " (" + ", ".join(f"seed {s} x{n}" for s, n in repeated) + ")"
    seeds = len(g["seeds"])
    rows.append([g["label"], g["depth"], status, _pm(metric, g["test_best_val"], seeds),
                 _pm(metric, g["test_final"], seeds), _blocks(g["blocks_used"], g["num_blocks"]),
                 _needed_text(g), _seconds_text(g, name_machine)])
  return rows


def _needed_text(group: dict[str, Any]) -> str:
  """Blocks needed; beside it, where recorded, with the left-out blocks at their mean."""
  text = _blocks(group.get("blocks_needed"), group["num_blocks"])
  mean = (group.get("blocks_needed_mean") or (None, None))[0]
  return text if mean is None else f"{text} ({mean:.1f} mean-filled)"


def _several_machines(summary: dict[str, Any]) -> bool:
  return len({m for g in summary["groups"] for m in g.get("machines") or ()}) > 1


def _seconds_text(group: dict[str, Any], name_machine: bool = False) -> str:
  """Seconds per epoch, or why there is none: an average over seeds timed on different
  machines (a CPU and a GPU, say) is the speed of neither. Where the sweep's runs come
  from several machines, each figure names its machine, since one table row can hold a
  CPU's depth 18 beside a GPU's depth 34."""
  machines = group.get("machines") or []
  if len(machines) > 1:
    return f"n/a ({len(machines)} machines)"
  seconds = group["seconds_per_epoch"][0]
  if seconds is None:
    return "n/a"
  names = group.get("machine_names") or ()
  return f"{seconds:.2f} ({names[0]})" if name_machine and len(names) == 1 else f"{seconds:.2f}"


def seconds_table(summary: dict[str, Any]) -> list[list[str]]:
  """Rows (header first): seconds per epoch (each run's median over its epochs, averaged
  over seeds), one row per model, one column per depth."""
  by_label = _by_label(summary)
  depths = sorted({g["depth"] for g in summary["groups"]})
  rows = [["model \\ depth", *map(str, depths)]]
  name_machine = _several_machines(summary)
  for label, groups in by_label.items():
    cell = {g["depth"]: _seconds_text(g, name_machine) for g in groups}
    rows.append([label, *[cell.get(d, "") for d in depths]])
  return rows


def messages_table(summary: dict[str, Any]) -> list[list[Any]]:
  """Rows (header first) of every ended run without a result: model, depth, seed, status."""
  rows: list[list[Any]] = [["model", "depth", "seed", "status", "message"]]
  rows += [[g["label"], g["depth"], m["seed"], m["status"], m["message"]]
           for g in summary["groups"] for m in g["messages"]]
  return rows


def markdown_table(rows: list[list[Any]]) -> str:
  """A list of rows (header first) as a Markdown table."""
  lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |",
           "|" + "---|" * len(rows[0])]
  lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows[1:]]
  return "\n".join(lines) + "\n"


def gather_runs(root: str, include: Sequence[str] = (),
                unreadable: list[str] | None = None) -> list[Run]:
  """The runs under ``root`` and every folder of ``include``, each run once.

  Args:
    root: the sweep root.
    include: more folders.
    unreadable: receives the run directories that could not be read (see
      :func:`common.report.runs.find_runs`).

  Raises:
    FileNotFoundError: no run directory under ``root`` or a folder of ``include``.
  """
  runs, seen = [], set()
  for folder in (root, *include):
    found = find_runs(folder, unreadable)
    if not found:
      raise FileNotFoundError(f"no run directories (with config.json) under {folder}")
    for run in found:
      if os.path.realpath(run.path) not in seen:
        seen.add(os.path.realpath(run.path))
        runs.append(run)
  return runs


def summarize_sweep(runs: list[Run]) -> dict[str, Any]:
  """The content of ``sweep_summary.json`` (before the paper hooks add theirs).

  Returns:
    :func:`aggregate` of the runs that ended, plus ``status_counts`` (every run, by
    effective status), ``running`` (paths of runs that have not ended), ``device``,
    ``experiments``, ``budgets`` and ``commits`` (the code versions that made the runs).
  """
  summary = aggregate([r for r in runs if r.state in ENDED])
  summary["status_counts"] = dict(sorted(collections.Counter(r.state for r in runs).items()))
  summary["running"] = [r.path for r in runs if r.state not in ENDED]
  summary["device"] = "; ".join(_machines(runs))
  summary["experiments"] = sorted({r.experiment or "?" for r in runs})
  summary["budgets"] = sorted({r.budget_text() for r in runs})
  summary["commits"] = sorted({
      ((r.config.get("environment") or {}).get("code") or {}).get("commit") or "unknown"
      for r in runs})
  # Said beside the numbers: which copy of the data they come from (a substitute or not),
  # one line per copy (by content hash where recorded) however many paths it was read from.
  copies: dict[tuple[str, str], tuple[Run, set[str]]] = {}
  for r in runs:
    where = data_location(r)
    sha = (r.config.get("data") or {}).get("sha256")  # one hash, or one per file (MNIST)
    identity = json.dumps(sha, sort_keys=True) if sha else where
    first, paths = copies.setdefault((data_text(r, locations=()), identity), (r, set()))
    paths.update([where] if where else [])
  summary["data"] = sorted(data_text(first, sorted(paths)) for first, paths in copies.values())
  return summary


def _markdown(summary: dict[str, Any], roots: Sequence[str],
              hooks: dict[str, ModuleType]) -> str:
  text = (f"Sweep {', '.join(os.path.abspath(f) for f in roots)} ({summary['device']})\n\n"
          + "".join(f"Budget: {b}\n\n" for b in summary.get("budgets", ()))
          + "".join(f"Data: {d}\n\n" for d in summary.get("data", ()))
          + markdown_table(results_table(summary))
          + "\nMedian seconds per epoch (training only)\n\n"
          + markdown_table(seconds_table(summary)))
  messages = messages_table(summary)
  if len(messages) > 1:
    text += "\nRuns without a result, or with damaged files\n\n" + markdown_table(messages)
  if summary.get("unreadable"):
    text += "\nRun directories left out (unreadable)\n\n" + "".join(
        f"- {u}\n" for u in summary["unreadable"])
  for hook in hooks.values():
    if hasattr(hook, "markdown_sections"):
      text += hook.markdown_sections(summary)
  return text


def _metric_note(summary: dict[str, Any]) -> str:
  """What the metric columns hold, from the sweep's own metric."""
  metric = summary["metric"]
  if metric == "accuracy":
    return "Accuracy in %."
  return f"{METRIC_LABELS.get(metric, metric)}: lower is better."


def _counts_text(summary: dict[str, Any]) -> str:
  counts = summary["status_counts"]
  return ", ".join(f"{n} {status}" for status, n in counts.items())


def render_sweep(root: str, include: Sequence[str] = ()) -> dict[str, str]:
  """Renders the sweep figures, summary and PDF for every run under ``root``.

  Experiments with a paper hook (``<experiment>/paper.py``, e.g. SGEMM's Table 1) add
  their sections (:mod:`common.report.paper`).

  Args:
    root: folder holding run directories at any depth; the report is written there.
    include: more folders whose runs join the report, e.g. seeds trained in another sweep
      root or on another machine. A run reached twice (one root inside another) counts once.

  Returns:
    Paths of the written files.

  Raises:
    FileNotFoundError: no run directory under ``root`` or a folder of ``include``.
  """
  unreadable: list[str] = []
  runs = gather_runs(root, include, unreadable)
  experiments = sorted({r.experiment or "?" for r in runs})
  if len(experiments) > 1:
    raise ConfigError(
        f"the runs under {', '.join([root, *include])} belong to {len(experiments)} "
        f"experiments ({', '.join(experiments)}); a sweep report compares the runs of one: "
        f"report each experiment's folder on its own.")
  summary = summarize_sweep(runs)
  summary["unreadable"] = unreadable
  hooks = paper.load_hooks(summary["experiments"])
  for experiment, hook in hooks.items():
    if hasattr(hook, "summary_extras"):
      summary.setdefault("paper", {})[experiment] = hook.summary_extras(summary)
  out = {name: os.path.join(root, f) for name, f in (
      ("metric", METRIC_PNG), ("blocks", BLOCKS_PNG), ("curves", CURVES_PNG),
      ("summary", SUMMARY_JSON), ("markdown", SUMMARY_MD), ("report", REPORT_PDF))}
  fileio.atomic_write_json(out["summary"], summary)
  fileio.atomic_write_text(out["markdown"], _markdown(summary, (root, *include), hooks))
  names = config_labels([r for r in runs if r.state in ENDED])  # as aggregate() names them
  with_usage = [r for r in runs if r.state == DONE and (r.usage.get("final") or {}).get("l1")]
  # Only figures with something to show: a sweep without GloNets has no blocks-used plot.
  figures = []
  if any(g["test_best_val"][0] is not None or set(g["status"]) - {DONE}
         for g in summary["groups"]):
    figures.append(("Test metric vs depth", "metric", plot_metric_vs_depth(summary)))
  if any(g["blocks_used"][0] is not None for g in summary["groups"]):
    figures.append(("Blocks used vs depth", "blocks", plot_blocks_used(summary)))
  labels = sorted({names[r.path] for r in with_usage})
  pages = [labels[i:i + CURVE_PANELS] for i in range(0, len(labels), CURVE_PANELS)]
  for i, page in enumerate(pages):  # a page each, at a legible size
    key = "curves" if i == 0 else f"curves_{i + 1}"
    out[key] = os.path.join(root, CURVES_PNG.replace(".png", f"_{i + 1}.png") if i else
                            CURVES_PNG)
    title = "Usage per block, every depth" + (f" ({i + 1} of {len(pages)})"
                                              if len(pages) > 1 else "")
    figures.append((title, key, plot_usage_curves(with_usage, names, page)))
  pngs = {key: pdf.save_figure(fig, out[key]) for _, key, fig in figures}
  # Figures of an earlier render that this one does not have (it had something to show).
  written = {out[k] for k in pngs}
  stale = [os.path.join(root, METRIC_PNG), os.path.join(root, BLOCKS_PNG),
           *glob.glob(os.path.join(root, CURVES_PNG.replace(".png", "*.png")))]
  for path in stale:
    if path not in written and os.path.exists(path):
      os.remove(path)
  for key in ("metric", "blocks", "curves"):
    if key not in pngs:
      del out[key]
  story = [
      pdf.para(f"<b>Root:</b> {pdf.esc(os.path.abspath(root))}"
               + "".join(f"<br/><b>Also:</b> {pdf.esc(os.path.abspath(f))}" for f in include)),
      pdf.para(f"<b>Experiment:</b> {pdf.esc(', '.join(summary['experiments']))}; {len(runs)} runs "
               f"({_counts_text(summary)})."),
      *[pdf.para(f"<b>Budget:</b> {pdf.esc(b)}") for b in summary["budgets"]],
      *[pdf.para(f"<b>Data:</b> {pdf.esc(d)}") for d in summary.get("data", ())],
      Spacer(1, 6), pdf.heading("Results by model and depth"), pdf.table(results_table(summary)),
      pdf.para("Mean ± standard deviation over the seeds of done runs (the value alone "
               "where one seed is done); diverged, interrupted and failed runs are counted, "
               f"not averaged. {_metric_note(summary)} Blocks used: the "
               "smallest k whose first k blocks carry 95% of the GloNet head's output (the "
               "sum over blocks of mean |W x_i|, the logit contributions). Blocks needed: the "
               "smallest k whose early exit (the output from blocks 1..k only) is within the "
               "recorded tolerance of the full model's test metric."),
      Spacer(1, 6),
      pdf.heading("Median seconds per epoch (training only: no compile, no evaluation)"),
      pdf.table(seconds_table(summary)),
  ]
  for hook in hooks.values():
    if hasattr(hook, "report_sections"):
      story += hook.report_sections(summary, root)
  story.append(PageBreak())
  for title, key, _ in figures:
    story.append(pdf.figure(title, pngs[key]))
  messages = messages_table(summary)
  if len(messages) > 1:
    story += [pdf.heading("Runs without a result, or with damaged files"),
              pdf.table(messages, [70, 35, 30, 60, 315])]
  if summary.get("unreadable"):
    story += [pdf.heading("Run directories left out (unreadable)"),
              *[pdf.para(pdf.esc(u)) for u in summary["unreadable"]]]
  pdf.build(out["report"], "Sweep report", story)
  logging.info("Sweep report written: %s", out["report"])
  return out
