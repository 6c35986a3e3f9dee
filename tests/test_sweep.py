"""The sweep runner: a grid of points, skipping settled ones, never hiding a refused one."""

import importlib
import os
import signal
import subprocess
import sys
import time

import pytest

from common import fileio
from common.grid import budget_suffix, count_statuses, is_settled, point_status, run_point
from common.report.runs import effective_status
from tests.conftest import REPO, fake_run, hermetic_env, run_module
from tests.helpers import error_line

GRID = ["--module=linear_mnist.train", "--models=GloNet MLP", "--depths=3", "--seeds=0"]


@pytest.mark.slow
def test_sweep_runs_skips_and_reports(fake_mnist_root, tmp_path):
  root = tmp_path / "sweep"
  flags = [f"--data_dir={fake_mnist_root}", "--epochs=1", "--features=8", "--batch_size=1000",
           "--eval_batch_size=5000", "--tensorboard=false", "--allow_unofficial_data"]
  first = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags)
  assert first.returncode == 0, first.stderr[-3000:]
  for model in ("GloNet", "MLP"):
    status = fileio.read_json(root / model / "depth_3" / "seed_0" / "status.json")
    assert status["status"] == "done"
  assert (root / "sweep_report.pdf").stat().st_size > 10000
  metrics = root / "GloNet" / "depth_3" / "seed_0" / "metrics.jsonl"
  stamp = os.stat(metrics).st_mtime_ns

  again = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags)
  assert again.returncode == 0 and again.stderr.count("skip ") == 2
  assert os.stat(metrics).st_mtime_ns == stamp

  # Another command on the same points is not skipped: train.py refuses it (a cosine
  # schedule cannot change its length), and the sweep says so with its exit status.
  changed = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags[:1],
                       "--epochs=2", *flags[2:])
  assert changed.returncode == 1 and "exit 2" in changed.stderr
  log = (root / "logs" / "GloNet_depth3_seed0.log").read_text()
  assert "cannot be resumed with these (train.epochs: 1 -> 2)" in log
  # The console names each failing point and its reason in one line.
  errors = [line for line in changed.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 2 and errors[0].startswith("error: GloNet depth 3 seed 0: run "
                                                   "directory"), errors
  assert "cannot be resumed with these (train.epochs: 1 -> 2)" in errors[0]
  assert errors[0].endswith(f"(log: {root}/logs/GloNet_depth3_seed0.log)")


@pytest.mark.slow
def test_a_config_sweep_runs_its_variant_and_the_flags_given_win(fake_mnist_root, tmp_path):
  root = tmp_path / "sweep"
  proc = run_module("common.sweep", "--sweep=linear_mnist:paper", f"--root={root}",
                    "--models=GloNet", "--depths=3", "--seeds=1", "--report=false", "--",
                    f"--data_dir={fake_mnist_root}", "--epochs=1", "--features=8",
                    "--tensorboard=false", "--allow_unofficial_data", "--progress=false")
  assert proc.returncode == 0, proc.stderr[-3000:]
  run = root / "GloNet" / "depth_3" / "seed_1"
  config = fileio.read_json(run / "config.json")["config"]
  assert config["variant"] == "default" and config["train"]["epochs"] == 1  # --epochs won
  assert (config["model"]["depth"], config["train"]["seed"]) == (3, 1)
  log = (root / "logs" / "GloNet_depth3_seed1.log").read_text()
  assert "--config=linear_mnist/configs/default.py:default --config.train.epochs=20" in log


@pytest.mark.parametrize("experiment", ["linear_mnist", "resnet_sgemm", "resnet_cifar10",
                                        "resnet_imagenette"])
def test_every_sweep_names_a_variant_and_fields_of_its_experiment(experiment):
  default = importlib.import_module(f"{experiment}.configs.default")
  for name, sweep in importlib.import_module(f"{experiment}.configs.sweeps").SWEEPS.items():
    config = default.get_config(sweep.variant)
    for path in sweep.settings:
      section, key = path.split(".")
      assert key in config[section], (name, path)
    assert sweep.models and sweep.depths and sweep.seeds, name


def test_the_sweep_reruns_interrupted_and_failed_points_but_not_diverged_ones():
  assert is_settled("done") and is_settled("diverged")
  for status in ("interrupted", "failed", "running", "missing", "unknown", "exit 2"):
    assert not is_settled(status)
  assert count_statuses(["done", "diverged", "done", "interrupted"]) == (
      "3 of 4 points settled (1 diverged, 2 done; 1 interrupted)")


@pytest.mark.parametrize("damaged", ["status.json", "cmd.json"])
@pytest.mark.parametrize("content", ['{"status": "do', "null"])  # cut short; not a record
def test_a_done_point_with_a_damaged_record_runs_again(tmp_path, damaged, content):
  # Either once stopped the whole sweep with a JSON traceback.
  root = str(tmp_path)
  module = "tests.no_such_module"  # a rerun is visible in the log and changes nothing else
  workdir = fake_run(root, "GloNet", 6, 0, 0.9)
  cmd = ["-m", module, "--model=GloNet", "--num_layers=6", "--seed=0", f"--workdir={workdir}"]
  os.makedirs(os.path.join(root, "logs"))
  fileio.atomic_write_json(os.path.join(root, "logs", "GloNet_depth6_seed0.cmd.json"), cmd)
  with open(os.path.join(workdir, "status.json") if damaged == "status.json" else
            os.path.join(root, "logs", "GloNet_depth6_seed0.cmd.json"), "w") as f:
    f.write(content)
  if damaged == "status.json":
    assert point_status(root, "GloNet", 6, 0) == "unknown"
    assert not is_settled("unknown")
  run_point(module, root, "GloNet", 6, 0, [])
  assert os.path.exists(os.path.join(root, "logs", "GloNet_depth6_seed0.log"))


@pytest.mark.parametrize("state, message, reruns", [
    ("diverged", "non-finite training loss at epoch 1", False),
    ("interrupted", "interrupted by SIGTERM", True),
    ("failed", "ValueError: boom", True),
])
def test_run_point_skip_or_rerun(tmp_path, state, message, reruns):
  root = str(tmp_path)
  module = "tests.no_such_module"  # a rerun is visible in the log and changes nothing else
  workdir = fake_run(root, "GloNet", 6, 0, 0.9, state=state, message=message)
  cmd = ["-m", module, "--model=GloNet", "--num_layers=6", "--seed=0", f"--workdir={workdir}"]
  os.makedirs(os.path.join(root, "logs"))
  fileio.atomic_write_json(os.path.join(root, "logs", "GloNet_depth6_seed0.cmd.json"), cmd)
  result = run_point(module, root, "GloNet", 6, 0, [])
  log = os.path.join(root, "logs", "GloNet_depth6_seed0.log")
  assert os.path.exists(log) == reruns
  assert result == effective_status({"status": state, "message": message})


@pytest.mark.slow
def test_a_refused_command_is_not_recorded_so_the_point_is_never_skipped_on_it(tmp_path):
  # A refused command (exit 2) once replaced the recorded one, so rerunning it skipped the
  # point as done, on a result another command had made.
  root, module = str(tmp_path), "linear_mnist.train"
  workdir = fake_run(root, "GloNet", 6, 0, 0.9)
  made = ["-m", module, "--model=GloNet", "--num_layers=6", "--seed=0", f"--workdir={workdir}"]
  record = os.path.join(root, "logs", "GloNet_depth6_seed0.cmd.json")
  os.makedirs(os.path.dirname(record))
  fileio.atomic_write_json(record, made)
  assert run_point(module, root, "GloNet", 6, 0, []) == "done"  # the same command: skipped
  for _ in range(2):
    assert run_point(module, root, "GloNet", 6, 0, ["--no_such_flag=1"]) == "exit 2"
  assert fileio.read_json(record) == made


# Stands in for Slurm's sbatch: records its arguments and runs every task of the array
# (parsed from the script's #SBATCH --array line) one after another, as a cluster would.
_FAKE_SBATCH = r"""#!/bin/bash
script="${@: -1}"
echo "$@" > "$(dirname "$script")/sbatch_args.txt"
last=$(sed -n 's/^#SBATCH --array=0-\([0-9]*\)$/\1/p' "$script")
for i in $(seq 0 "$last"); do
  SLURM_ARRAY_JOB_ID=42 SLURM_ARRAY_TASK_ID=$i bash "$script" > /dev/null 2>&1
done
echo "42;fake"
"""


@pytest.mark.slow
def test_slurm_launcher_submits_one_requeueable_task_per_point(fake_mnist_root, tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "sbatch").write_text(_FAKE_SBATCH)
  (bin_dir / "sbatch").chmod(0o755)
  root = tmp_path / "sweep"
  flags = [f"--data_dir={fake_mnist_root}", "--epochs=1", "--features=8", "--batch_size=1000",
           "--eval_batch_size=5000", "--tensorboard=false", "--allow_unofficial_data"]
  env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "LAUNCHER": "slurm",
         "PARTITION": "gpu", "TIME_LIMIT": "01:00:00", "GPUS_PER_POINT": "1"}
  proc = run_module("common.sweep", f"--root={root}", *GRID, "--", *flags, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert proc.stdout.strip() == "42"  # the job id, and the submitter returns
  script = (root / "logs" / "slurm_array.sh").read_text()
  for option in ("--array=0-1", "--requeue", "--partition=gpu", "--time=01:00:00",
                 "--gpus-per-task=1", "--signal=B:USR1@120"):
    assert f"#SBATCH {option}\n" in script
  assert '--point="$SLURM_ARRAY_TASK_ID"' in script and "scontrol requeue" in script
  for model in ("GloNet", "MLP"):
    status = fileio.read_json(root / model / "depth_3" / "seed_0" / "status.json")
    assert status["status"] == "done", model
  assert (root / "sweep_report.pdf").exists()  # rendered by the tasks as they ended


def test_a_point_out_of_the_grid_is_a_usage_error(tmp_path):
  proc = run_module("common.sweep", f"--root={tmp_path}", *GRID, "--point=2")
  assert proc.returncode != 0 and "--point=2, but the grid has 2 points" in proc.stderr


@pytest.mark.parametrize("models,depths,message", [
    ("GloNet Glonet", "3", "Glonet depth 3 (no point was started): unknown model 'Glonet'"),
    ("ResNet", "4 7", "ResNet depth 7 (no point was started): a residual MLP"),
])
def test_a_grid_with_a_bad_point_is_refused_before_any_point_starts(tmp_path, models,
                                                                    depths, message):
  proc = subprocess.run(["bash", os.path.join(REPO, "linear_mnist", "train_script.sh")],
                        env={**hermetic_env(), "MODELS": models, "DEPTHS": depths,
                             "PYTHON": sys.executable, "SWEEP_ROOT": str(tmp_path / "s")},
                        capture_output=True, text=True, timeout=120)
  line = error_line(proc)
  assert line.startswith(f"error: {message}"), line
  assert not os.path.exists(tmp_path / "s")


@pytest.mark.parametrize("extra,suffix", [
    ([], ""), (["--progress=false", "--data_dir=/d"], ""),
    (["--epochs=1", "--progress=false"], "_epochs-1"),
    (["--config.train.epochs=2", "--train_size=500"], "_train.epochs-2_train_size-500"),
    (["--nesterov"], "_nesterov")])
def test_flags_that_change_what_is_trained_name_the_sweep_folder(extra, suffix):
  assert budget_suffix(extra) == suffix


@pytest.mark.parametrize("experiment,grids", [
    ("linear_mnist", "paper"), ("resnet_sgemm", "paper"), ("resnet_cifar10", "recipes"),
    ("resnet_imagenette", "gpu")])
def test_a_grid_the_script_does_not_have_is_refused(tmp_path, experiment, grids):
  # GRID=paper once ran Imagenette's CPU recipe silently (it has no paper grid).
  proc = subprocess.run(["bash", os.path.join(REPO, experiment, "train_script.sh")],
                        env={**hermetic_env(), "GRID": "bogus", "PYTHON": sys.executable,
                             "SWEEP_ROOT": str(tmp_path / "s")},
                        capture_output=True, text=True, timeout=60)
  line = error_line(proc)
  assert "GRID=bogus" in line and f"GRID={grids}" in line, line
  assert not os.path.exists(tmp_path / "s")


@pytest.mark.slow
def test_ctrl_c_on_a_sweep_stops_its_point_cleanly_and_renders_the_report(fake_mnist_root,
                                                                         tmp_path):
  # Once a 27-line traceback and no report. A terminal's Ctrl-C signals the whole
  # foreground process group: the driver and its running point.
  root = tmp_path / "sweep"
  proc = subprocess.Popen(
      [sys.executable, "-m", "common.sweep", f"--root={root}", *GRID, "--",
       f"--data_dir={fake_mnist_root}", "--epochs=2000", "--features=8", "--batch_size=1000",
       "--tensorboard=false", "--allow_unofficial_data", "--progress=false"],
      cwd=REPO, env=hermetic_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, start_new_session=True)
  metrics = root / "GloNet" / "depth_3" / "seed_0" / "metrics.jsonl"
  deadline = time.time() + 120
  while not (metrics.exists() and metrics.read_text().strip()) and time.time() < deadline:
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr
  assert stderr.strip().splitlines()[-1].startswith("interrupted by SIGINT: the sweep stopped")
  status = fileio.read_json(root / "GloNet" / "depth_3" / "seed_0" / "status.json")
  assert status["status"] == "interrupted"
  assert not (root / "MLP").exists()  # no further point started
  assert (root / "sweep_report.pdf").exists()
