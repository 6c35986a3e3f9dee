"""Results as data: records written from run directories, README tables from records."""

import os

import pytest

from common.report import results
from tests.conftest import REPO, fake_run


def test_a_record_has_one_row_per_run_with_what_it_reached(tmp_path):
  root = str(tmp_path / "sweep")
  fake_run(root, "GloNet", 10, 0, 0.95, used=4, experiment="linear_mnist")
  fake_run(root, "MLP", 10, 1, 0.90, seconds=2.5, experiment="linear_mnist")
  fake_run(root, "MLP", 50, 0, 0.0, state="diverged", experiment="linear_mnist")
  fake_run(root, "GloNet", 100, 0, 0.9, experiment="linear_mnist")  # after depth 10
  path = str(tmp_path / "results" / "cpu.csv")
  assert results.write_record(root, path) == 4
  rows = results.read_record(path)
  assert list(rows[0]) == list(results.COLUMNS)
  glonet, glonet100, mlp, diverged = rows
  assert glonet100["model"] == "GloNet100"
  assert glonet["run"] == os.path.join("GloNet", "depth_10", "seed_0")
  assert (glonet["model"], glonet["depth"], glonet["seed"]) == ("GloNet10", "10", "0")
  assert glonet["test_at_best_val"] == "0.95" and glonet["blocks_used"] == "4"
  assert mlp["train_seconds_per_epoch"] == "2.500" and mlp["seed"] == "1"
  assert diverged["state"] == "diverged" and diverged["test_at_best_val"] == ""
  table = results.record_table(rows, ["model", "seed", "state", "test_at_best_val"])
  assert table.splitlines()[2] == "| GloNet10 | 0 | done | 95.00% |"


def _readme(tmp_path, table: str) -> str:
  readme = tmp_path / "README.md"
  readme.write_text("# x\n\n<!-- record: results/cpu.csv columns=model,test_at_best_val -->\n"
                    f"{table}<!-- /record -->\n\nMore text.\n")
  return str(readme)


def test_readme_tables_are_written_from_their_record_and_differences_found(tmp_path):
  fake_run(str(tmp_path / "runs"), "GloNet", 10, 0, 0.95, experiment="linear_mnist")
  results.write_record(str(tmp_path / "runs"), str(tmp_path / "results" / "cpu.csv"))
  readme = _readme(tmp_path, "")
  assert results.update_readme(readme, str(tmp_path)) == 1
  text = open(readme).read()
  assert "| GloNet10 | 95.00% |\n<!-- /record -->\n\nMore text.\n" in text
  assert results.update_readme(readme, str(tmp_path)) == 0  # already as the record says
  with open(readme, "w") as f:
    f.write(text.replace("95.00%", "96.00%"))  # a number typed by hand
  [block] = results.readme_blocks(readme, str(tmp_path))
  assert block.written != block.expected


def test_a_readme_naming_a_missing_record_is_an_error(tmp_path):
  readme = _readme(tmp_path, "| a |\n")
  with pytest.raises(FileNotFoundError):
    results.readme_blocks(readme, str(tmp_path))


def test_every_results_table_of_the_readmes_matches_its_record():
  blocks = [b for readme in results.readmes(REPO) for b in results.readme_blocks(readme, REPO)]
  for b in blocks:
    assert b.written == b.expected, (
        f"{b.readme}: the table of {b.record} differs from the record; run "
        f"`python -m common.report --readmes`")
