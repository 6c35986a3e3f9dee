r"""Re-renders reports from run directories alone.

  python -m common.report RUN_DIR [RUN_DIR ...]   # training_report.pdf + figures per run
  python -m common.report --sweep ROOT            # sweep_report.pdf + figures for a sweep
  python -m common.report --sweep ROOT --include A --include B  # ... with runs from elsewhere
                                                                #     (or --include A,B)
  python -m common.report --table ROOT            # a text table of the runs under ROOT
  python -m common.report --table ROOT --record linear_mnist/results/cpu.csv
                                                  # ... and their record (one row per run)
  python -m common.report --readmes               # README results tables from their records
"""

import os
import sys

from absl import flags, logging

from common import report
from common.cli import run_main
from common.errors import ConfigError, RunDirError
from common.report import results
from common.report.runs_table import render_table

_SWEEP = flags.DEFINE_string("sweep", None, "Root of a sweep: render its sweep report.")
_TABLE = flags.DEFINE_string(
    "table", None, "Print a Markdown table of the runs under this folder: the settings "
    "that differ between them, epochs, state, best-validation and final test metrics.")
_RECORD = flags.DEFINE_string(
    "record", None, "With --table: also write the runs' record, one CSV row per run (what "
    "it trained and reached, commit, machine, date), for README tables (--readmes).")
_READMES = flags.DEFINE_boolean(
    "readmes", False, "Write every results table of the repository's READMEs from the "
    "record it names (<!-- record: PATH --> blocks).")
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
  if _RECORD.value and not _TABLE.value:
    raise ConfigError("--record writes the record of --table's runs: give --table=ROOT too.")
  if not paths and not _SWEEP.value and not _TABLE.value and not _READMES.value:
    raise ConfigError("give RUN_DIR(s), --sweep=ROOT, --table=ROOT or --readmes: python -m "
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
  if _RECORD.value and not failed:
    rows = results.write_record(_TABLE.value, _RECORD.value)
    logging.info("Record of %d runs written: %s", rows, _RECORD.value)
  if _READMES.value:
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for readme in results.readmes(repo):
      try:
        changed = results.update_readme(readme, repo)
      except FileNotFoundError as e:
        sys.stderr.write(f"error: {readme}: {e}\n")
        failed = True
        continue
      if changed:
        logging.info("%s: %d results table(s) written from their records", readme, changed)
  if failed:
    sys.exit(2)


if __name__ == "__main__":
  run_main(main, positional=True)
