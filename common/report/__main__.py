r"""Re-renders reports from run directories alone.

  python -m common.report RUN_DIR [RUN_DIR ...]   # training_report.pdf + figures per run
  python -m common.report --sweep ROOT            # sweep_report.pdf + figures for a sweep
  python -m common.report --sweep ROOT --include OTHER_ROOT,...  # ... with runs from elsewhere
  python -m common.report --table ROOT            # a text table of the runs under ROOT
"""

import os
import sys

from absl import app, flags, logging

from common import report
from common.report.runs_table import render_table
from common.train.rundir import CONFIG

_SWEEP = flags.DEFINE_string("sweep", None, "Root of a sweep: render its sweep report.")
_TABLE = flags.DEFINE_string(
    "table", None, "Print a Markdown table of the runs under this folder: the settings "
    "that differ between them, epochs, state, best-validation and final test metrics.")
_INCLUDE = flags.DEFINE_list(
    "include", [], "With --sweep: more folders whose runs join the sweep report (seeds run "
    "in another sweep root or on another machine); the report is written to --sweep.")


def main(argv):
  paths = argv[1:]
  if not paths and not _SWEEP.value and not _TABLE.value:
    raise app.UsageError("give RUN_DIR(s), --sweep=ROOT or --table=ROOT")
  if _INCLUDE.value and not _SWEEP.value:
    raise app.UsageError("--include adds runs to a sweep report: give --sweep=ROOT too")
  logging.set_verbosity(logging.INFO)
  failed = False
  for path in paths:
    if not os.path.exists(os.path.join(path, CONFIG)):
      sys.stderr.write(f"error: {path} is not a run directory (no {CONFIG})\n")
      failed = True
      continue
    out = report.render_run(path)
    print(out["report"])
  if _SWEEP.value:
    try:
      print(report.render_sweep(_SWEEP.value, _INCLUDE.value)["report"])
    except FileNotFoundError as e:
      sys.stderr.write(f"error: {e}\n")
      failed = True
  if _TABLE.value:
    try:
      sys.stdout.write(render_table(_TABLE.value))
    except FileNotFoundError as e:
      sys.stderr.write(f"error: {e}\n")
      failed = True
  if failed:
    sys.exit(2)


if __name__ == "__main__":
  app.run(main)
