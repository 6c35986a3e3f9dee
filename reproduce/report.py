"""The reproduction report: every claim with the authors' number, ours and a verdict.

Written from run directories alone (``python -m reproduce --collect`` renders it again),
into the reproduction root: ``claims.json``, ``reproduction.md`` and ``reproduction.pdf``.
"""

import datetime
import os
from typing import Any

from common import fileio
from common.errors import ConfigError
from common.grid import load_sweep
from common.report import pdf
from common.report.sweep_report import METRIC_PNG, REPORT_PDF, render_sweep
from reproduce.claims import BUDGET_SWEEPS, CLAIMS, EXPERIMENTS, NOT_MEASURED, Claim

CLAIMS_JSON = "claims.json"
REPORT_MD = "reproduction.md"
REPORT_PDF_NAME = "reproduction.pdf"


def _grid_can(claim: Claim, budget: str) -> bool:
  """Whether the sweep ``budget`` runs for the claim's experiment can measure it."""
  _, _, sweep = load_sweep(f"{claim.experiment}:{BUDGET_SWEEPS[budget][claim.experiment]}")
  return claim.grid_can(sweep)


def _bigger(claim: Claim, budget: str) -> str:
  """The first budget after ``budget`` whose grid can measure ``claim`` (else the last)."""
  budgets = list(BUDGET_SWEEPS)
  return next((b for b in budgets[budgets.index(budget) + 1:] if _grid_can(claim, b)),
              budgets[-1])


def _experiment(root: str, experiment: str) -> dict[str, Any]:
  """What the reproduction root holds for ``experiment``: its sweep summary (None without
  runs of it) and the problems met while reading them."""
  folder = os.path.join(root, experiment)
  out = {"folder": folder, "summary": None, "problems": []}
  if not os.path.isdir(folder):
    return out
  try:
    render_sweep(folder)  # also refreshes the experiment's own sweep report
  except FileNotFoundError:  # no run directory yet
    return out
  except ConfigError as e:  # runs of several experiments were put here
    out["problems"].append(str(e))
    return out
  summary = fileio.read_json(os.path.join(folder, "sweep_summary.json"))
  out["problems"] += summary["unreadable"]
  if summary["experiments"] != [experiment]:
    out["problems"].append(f"{folder}: holds runs of {', '.join(summary['experiments'])}, "
                           f"not of {experiment}; left out")
  else:
    out["summary"] = summary
  return out


def _verdicts(root: str, budget: str, found: dict[str, dict[str, Any]]
              ) -> list[dict[str, str]]:
  rows = []
  for claim in CLAIMS:
    summary = found[claim.experiment]["summary"]
    judged = claim.judge(summary) if summary else None
    if judged:
      verdict, ours = judged
    else:
      verdict = NOT_MEASURED
      if _grid_can(claim, budget):  # this budget's grid measures it once its runs are done
        command = (f"python -m reproduce --budget={budget} --experiments={claim.experiment} "
                   f"--root={root}")
      else:  # a bigger budget's grid, in its own folder
        command = (f"python -m reproduce --budget={_bigger(claim, budget)} "
                   f"--experiments={claim.experiment}")
      ours = f"needs {claim.needs}: {command}"
    rows.append({"key": claim.key, "experiment": claim.experiment, "claim": claim.text,
                 "authors": claim.authors, "ours": ours, "verdict": verdict})
  return rows


def _provenance(budget: str, found: dict[str, dict[str, Any]]) -> list[list[str]]:
  rows = [["experiment", "sweep", "runs", "budget", "commit", "machine"]]
  for experiment in EXPERIMENTS:
    summary = found[experiment]["summary"]
    if not summary:
      rows.append([experiment, BUDGET_SWEEPS[budget][experiment], "0", "", "", ""])
      continue
    machines = sorted({m for g in summary["groups"] for m in g["machine_names"]})
    runs = sum(summary["status_counts"].values())
    rows.append([experiment, BUDGET_SWEEPS[budget][experiment], str(runs),
                 "; ".join(summary["budgets"]), ", ".join(c[:12] for c in summary["commits"]),
                 ", ".join(machines)])
  return rows


def _markdown_table(rows: list[list[str]]) -> str:
  cells = [[str(c).replace("|", "\\|") for c in row] for row in rows]
  lines = ["| " + " | ".join(cells[0]) + " |", "|" + "---|" * len(cells[0])]
  return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in cells[1:]]) + "\n"


def render(root: str, budget: str) -> dict[str, str]:
  """Writes the reproduction report of the runs under ``root``; the written paths."""
  found = {e: _experiment(root, e) for e in EXPERIMENTS}
  verdicts = _verdicts(root, budget, found)
  provenance = _provenance(budget, found)
  problems = [p for e in EXPERIMENTS for p in found[e]["problems"]]
  date = datetime.date.today().isoformat()
  out = {"json": os.path.join(root, CLAIMS_JSON), "markdown": os.path.join(root, REPORT_MD),
         "pdf": os.path.join(root, REPORT_PDF_NAME)}
  fileio.atomic_write_json(out["json"], {"budget": budget, "date": date, "claims": verdicts,
                                         "provenance": provenance, "problems": problems})
  claim_rows = [["claim", "the authors", "ours", "verdict"]] + [
      [v["claim"], v["authors"], v["ours"], v["verdict"]] for v in verdicts]
  text = [f"# GloNets: the paper's claims at budget `{budget}`\n",
          f"Rendered {date} from the run directories under `{root}`.\n",
          _markdown_table(claim_rows), "## Where the numbers come from\n",
          _markdown_table(provenance)]
  if problems:
    text += ["## Left out\n", *(f"- {p}" for p in problems), ""]
  fileio.atomic_write_text(out["markdown"], "\n".join(text))
  story = [pdf.para(f"Budget <b>{pdf.esc(budget)}</b>, rendered {date} from the run "
                    f"directories under {pdf.esc(root)}. A verdict holds at this budget "
                    f"only: a small budget trains briefly, at few depths and seeds."),
           pdf.heading("Claim by claim"),
           pdf.table(claim_rows, [0.27 * pdf.PAGE_WIDTH, 0.22 * pdf.PAGE_WIDTH,
                                  0.29 * pdf.PAGE_WIDTH, 0.22 * pdf.PAGE_WIDTH], wrap=True),
           pdf.heading("Where the numbers come from"), pdf.table(provenance, wrap=True)]
  if problems:
    story += [pdf.heading("Left out"), *(pdf.para(pdf.esc(p)) for p in problems)]
  for experiment in EXPERIMENTS:
    png = os.path.join(found[experiment]["folder"], METRIC_PNG)
    if found[experiment]["summary"] and os.path.exists(png):
      with open(png, "rb") as f:
        story.append(pdf.figure(f"{experiment}: test metric vs depth", f.read()))
      story.append(pdf.para(f"Layer usage and every run: "
                            f"{pdf.esc(os.path.join(experiment, REPORT_PDF))}."))
  pdf.build(out["pdf"], f"GloNets: the paper's claims at budget {budget}", story)
  return out
