"""The runs table (``python -m common.report --table``): knobs found, nothing dropped."""

import os

import pytest

from common import fileio
from common.report.runs_table import render_table
from tests.conftest import fake_run, run_module, set_settings
from tests.helpers import error_line


def _set(path: str, **settings) -> None:
  set_settings(path, settings)


def test_table_names_the_settings_that_differ(tmp_path):
  root = str(tmp_path)
  _set(fake_run(root, "ResNet", 20, 0, 0.86), learning_rate=0.1, weight_decay=5e-4,
       epochs=30, workdir="/a")
  _set(fake_run(root, "ResNet", 20, 1, 0.87), learning_rate=0.2, weight_decay=5e-4,
       epochs=30, workdir="/b")
  os.makedirs(os.path.join(root, "broken"))
  with open(os.path.join(root, "broken", "config.json"), "w") as f:
    f.write("{not json")
  lines = render_table(root).splitlines()
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  # learning_rate differs; weight_decay and workdir (where the run lives) do not count.
  assert "learning_rate" in header and "weight_decay" not in header and "workdir" not in header
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:4]]
  assert [row[header.index("learning_rate")] for row in rows] == ["0.1", "0.2"]
  assert [row[header.index("epochs")] for row in rows] == ["2/30", "2/30"]
  assert [row[header.index("test at best val")] for row in rows] == ["86.00", "87.00"]
  assert [row[header.index("final test")] for row in rows] == ["86.00", "87.00"]
  assert lines[4].startswith("left out: ") and "broken" in lines[4]


def test_table_of_an_empty_folder_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError):
    render_table(str(tmp_path))
  result = run_module("common.report", f"--table={tmp_path}", timeout=120)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1].startswith("error: no run directories")


@pytest.mark.parametrize("args,message", [
    ((), "error: give RUN_DIR(s), --sweep=ROOT, --table=ROOT or --readmes"),
    (("--sweeep=x",), "error: Unknown command line flag 'sweeep'"),
    (("--include=x",), "error: --include adds runs to a sweep report: give --sweep=ROOT too."),
    (("--record=x.csv",), "error: --record writes the record of --table's runs: give "
                          "--table=ROOT too."),
    (("RUN",), "config.json is unreadable or not a run's config (JSONDecodeError); restore "
               "it from a copy of the run."),
])
def test_report_cli_bad_input_is_one_error_line(tmp_path, args, message):
  # Once a usage dump, absl's FATAL line (exit 1) or a JSON traceback.
  path = fake_run(str(tmp_path), "GloNet", 6, 0, 0.9)
  with open(os.path.join(path, "config.json"), "w") as f:
    f.write('{"config": {"mod')  # cut short
  proc = run_module("common.report", *(path if a == "RUN" else a for a in args), timeout=120)
  assert message in error_line(proc)


def test_table_cli_prints_markdown(tmp_path):
  fake_run(str(tmp_path), "GloNet", 6, 0, 0.9)
  result = run_module("common.report", f"--table={tmp_path}", timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.startswith("| run | model | seed | epochs | train examples | recipe |")
  assert "GloNet6" in result.stdout and "| done |" in result.stdout


def test_table_reads_settings_as_the_reports_do(tmp_path):
  # A run trained from 2 to 4 epochs once showed "2/2".
  root = str(tmp_path)
  old, new = fake_run(root, "ResNet", 20, 0, 0.86), fake_run(root, "ResNet", 20, 1, 0.87)
  config = fileio.read_json(os.path.join(old, "config.json"))
  config["resumes"] = [{"at": "t", "epochs": 4}]
  fileio.atomic_write_json(os.path.join(old, "config.json"), config)
  _set(new, epochs=4)
  lines = render_table(root).splitlines()
  header = [c.strip() for c in lines[0].strip("|").split("|")]
  assert "epochs" in header, header
  rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:4]]
  assert [row[header.index("epochs")] for row in rows] == ["2/4", "2/4"]
