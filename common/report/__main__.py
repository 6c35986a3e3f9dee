r"""Re-renders reports from run directories alone.

  python -m common.report RUN_DIR [RUN_DIR ...]   # training_report.pdf + figures per run
  python -m common.report --sweep ROOT            # sweep_report.pdf + figures for a sweep
  python -m common.report --sweep ROOT --include A --include B  # ... with runs from elsewhere
                                                                #     (or --include A,B)
  python -m common.report --table ROOT            # a text table of the runs under ROOT
"""

import sys

from absl import flags, logging

from common import report
from common.cli import run_main
from common.errors import ConfigError, RunDirError
from common.report.runs_table import render_table

_SWEEP = flags.DEFINE_string("sweep", None, "Root of a sweep: render its sweep report.")
_TABLE = flags.DEFINE_string(
    "table", None, "Print a Markdown table of the runs under this folder: the settings "
    "that differ between them, epochs, state, best-validation and final test metrics.")
# A multi-string, not a list flag: a list flag given twice keeps only its last value, so
# `--include A --include B` would silently drop A's runs from the report.
_INCLUDE = flags.DEFINE_multi_string(
    "include", [], "With --sweep: more folders whose runs join the sweep report (seeds run "
    "in another sweep root or on another machine), repeated or comma-separated; the report "
    "is written to --sweep.")


def _included() -> list[str]:
  return [p for value in _INCLUDE.value for p in value.split(",") if p]


def main(argv):
  paths = argv[1:]
  if _INCLUDE.value and not _SWEEP.value:
    raise ConfigError("--include adds runs to a sweep report: give --sweep=ROOT too.")
  if not paths and not _SWEEP.value and not _TABLE.value:
    raise ConfigError("give RUN_DIR(s), --sweep=ROOT or --table=ROOT: python -m "
                      "common.report RUN_DIR [RUN_DIR ...].")
  logging.set_verbosity(logging.INFO)
  failed = False
  for path in paths:
    try:
      print(report.render_run(path)["report"])
    except RunDirError as e:  # no config.json or a damaged one: name it, render the others
      sys.stderr.write(f"error: {e}\n")
      failed = True
  if _SWEEP.value:
    try:
      print(report.render_sweep(_SWEEP.value, _included())["report"])
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
  run_main(main, positional=True)
