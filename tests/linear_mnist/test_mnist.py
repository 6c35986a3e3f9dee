"""MNIST loading and ``linear_mnist/train.py`` end to end, including bad inputs and kill -9."""

import gzip
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common import fileio
from common.errors import DataError
from common.report.runs import Run
from common.train import TIMING_KEYS
from linear_mnist import data as mnist_data
from tests.conftest import REPO, hermetic_env, run_module
from tests.helpers import error_line, train_main

TINY = ["--model=GloNet", "--num_layers=3", "--features=16", "--batch_size=1000",
        "--eval_batch_size=2000", "--progress=false", "--tensorboard=false",
        "--allow_unofficial_data"]  # the fake files are not the official MNIST


def test_local_files_are_read_split_and_standardised(fake_mnist_root):
  ds = mnist_data.load_mnist(fake_mnist_root, validation_size=5000, split_seed=0,
                             allow_unofficial=True)
  assert ds.sizes() == {"train": 55000, "val": 5000, "test": 10000}
  assert ds.train.x.shape == (55000, 784) and ds.train.x.dtype == np.float32
  assert abs(float(ds.train.x.mean())) < 1e-4 and abs(float(ds.train.x.std()) - 1) < 1e-3
  assert ds.info["source"] == "local IDX files" and ds.info["official_files"] is False
  again = mnist_data.load_mnist(fake_mnist_root, validation_size=5000, split_seed=0,
                                allow_unofficial=True)
  np.testing.assert_array_equal(ds.val.y, again.val.y)  # the split is fixed by split_seed


def _copy_root(src_root, dst):
  shutil.copytree(os.path.join(src_root, "mnist"), os.path.join(dst, "mnist"))
  return str(dst)


def test_files_that_are_not_the_official_data_are_refused_unless_allowed(fake_mnist_root,
                                                                          tmp_path):
  with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz is not the official MNIST "
                     r"file: its decompressed content has SHA-256 [0-9a-f]{64}, the official "
                     r"ba891046.*pass --allow_unofficial_data"):
    mnist_data.load_mnist(fake_mnist_root)
  out = tmp_path / "out"
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}",
                    f"--result_dir={out}", *[a for a in TINY if a != "--allow_unofficial_data"])
  assert proc.returncode == 2 and "Traceback" not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1 and "--allow_unofficial_data" in errors[0]
  assert not out.exists()  # refused before anything was written
  # Allowed explicitly, the run says in config.json that the data is not the official one.
  ds = mnist_data.load_mnist(fake_mnist_root, allow_unofficial=True)
  assert ds.info["official_content"] is False and ds.info["official_files"] is False


def test_the_official_content_gzipped_again_is_accepted(fake_mnist_root, tmp_path,
                                                        monkeypatch):
  """What is checked is the decompressed content: the official data recompressed by
  another tool or level (other .gz bytes) is still the official data."""
  root = _copy_root(fake_mnist_root, tmp_path)
  contents = {}
  for key, (fname, _, _) in mnist_data.FILES.items():
    path = os.path.join(root, "mnist", fname)
    with gzip.open(path, "rb") as f:
      raw = f.read()
    with gzip.open(path, "wb", compresslevel=1) as f:
      f.write(raw)
    contents[key] = hashlib.sha256(raw).hexdigest()
  # As if the fake content were the official one.
  monkeypatch.setattr(mnist_data, "CONTENT_SHA256", contents)
  ds = mnist_data.load_mnist(root)
  assert ds.info["official_content"] is True and ds.info["official_files"] is False


@pytest.mark.slow
@pytest.mark.skipif(not (os.environ.get("GLONETS_DATA_DIR") and os.path.isdir(
    os.path.join(os.environ.get("GLONETS_DATA_DIR", ""), "mnist"))),
    reason="opt-in: set GLONETS_DATA_DIR to a data root holding mnist/")
def test_real_copy_is_the_official_data():
  ds = mnist_data.load_mnist(os.environ["GLONETS_DATA_DIR"])
  assert ds.info["official_content"] is True and ds.info["official_files"] is True


def test_truncated_file_is_an_error_not_a_fallback(fake_mnist_root, tmp_path, monkeypatch):
  root = _copy_root(fake_mnist_root, tmp_path)
  path = os.path.join(root, "mnist", "t10k-labels-idx1-ubyte.gz")
  data = open(path, "rb").read()
  open(path, "wb").write(data[: len(data) // 2])
  monkeypatch.setattr(mnist_data, "load_tfds_arrays", lambda *a, **k: pytest.fail("fell back"))
  with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz is corrupt or truncated"):
    mnist_data.load_mnist(root)


def test_wrong_count_is_an_error(tmp_path):
  from tests.conftest import make_fake_mnist
  make_fake_mnist(str(tmp_path / "mnist"), n_train=100, n_test=10)
  with pytest.raises(DataError, match="holds 100 items, expected 60000"):
    mnist_data.load_mnist(str(tmp_path))


def test_missing_file_is_named(fake_mnist_root, tmp_path):
  root = _copy_root(fake_mnist_root, tmp_path)
  os.remove(os.path.join(root, "mnist", "train-labels-idx1-ubyte.gz"))
  with pytest.raises(DataError, match="incomplete: missing train-labels-idx1-ubyte.gz"):
    mnist_data.load_mnist(root)


def test_no_local_files_tries_tfds_and_names_what_it_looked_for(tmp_path, monkeypatch):
  def no_tfds(*args, **kwargs):
    raise DataError("TensorFlow Datasets could not provide 'mnist' (test)")

  monkeypatch.setattr(mnist_data, "load_tfds_arrays", no_tfds)
  with pytest.raises(DataError) as err:
    mnist_data.load_mnist(str(tmp_path))
  message = str(err.value)
  assert "train-images-idx3-ubyte.gz" in message and str(tmp_path / "mnist") in message
  assert "could not provide 'mnist'" in message and "GLONETS_DATA_DIR" in message


def test_tfds_records_become_arrays(monkeypatch):
  import tensorflow_datasets as tfds

  from common.data import tfds_source

  class FakeSource(list):
    def __getitems__(self, keys):
      return [self[k] for k in keys]

  class FakeBuilder:
    data_dir = "/fake"

    def is_prepared(self):
      return True

    def as_data_source(self):
      def split(n):
        return FakeSource({"image": np.full((28, 28, 1), i % 255, np.uint8), "label": i % 10}
                          for i in range(n))
      return {"train": split(60000), "test": split(10000)}

  monkeypatch.setattr(tfds, "builder", lambda name, data_dir=None: FakeBuilder())
  out = tfds_source.load_tfds_arrays("mnist", ("train", "test"), ("image", "label"),
                                     expected_sizes={"train": 60000, "test": 10000})
  assert out["train"][0].shape == (60000, 28, 28, 1) and out["test"][1][13] == 3


def test_tfds_failure_is_a_data_error(monkeypatch, tmp_path):
  from common.data import tfds_source

  monkeypatch.setattr(tfds_source, "PREPARE_CODE",
                      "raise ModuleNotFoundError(\"No module named 'tensorflow'\")")
  monkeypatch.setattr(tfds_source, "_reachable", lambda: None)  # as if online
  tfds_dir = tmp_path / "tfds"
  with pytest.raises(DataError, match=r"\(ModuleNotFoundError: No module named 'tensorflow'\)"
                     r"; preparing it needs TensorFlow and a network"):
    tfds_source.load_tfds_arrays("mnist", ("train",), ("image", "label"), str(tfds_dir))
  assert not tfds_dir.exists()


def test_a_preparation_that_stops_writing_is_stopped(monkeypatch, tmp_path):
  # A host that answers the probe while every download fails: TFDS retried for 209 s.
  import tensorflow_datasets  # noqa: F401  (seconds to import: not the bound's)

  from common.data import tfds_source

  monkeypatch.setattr(tfds_source, "PREPARE_CODE", "import time\ntime.sleep(600)\n")
  monkeypatch.setattr(tfds_source, "STALL_SECONDS", 2.0)
  monkeypatch.setattr(tfds_source, "_reachable", lambda: None)  # as if online
  tfds_dir = tmp_path / "tfds"
  start = time.time()
  with pytest.raises(DataError, match="wrote nothing for 2 s: a download that fails"):
    tfds_source.load_tfds_arrays("mnist", ("train",), ("image", "label"), str(tfds_dir))
  assert time.time() - start < 30
  assert not tfds_dir.exists()


def test_the_preparation_writes_where_tfds_data_dir_says(monkeypatch, tmp_path):
  # TFDS's own default folder is $TFDS_DATA_DIR: the child must prepare, and the
  # watchdog watch, that one, not ~/tensorflow_datasets.
  from common.data import tfds_source

  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_tfds"))
  monkeypatch.setattr(tfds_source, "PREPARE_CODE", "import sys\nsys.exit('in ' + sys.argv[2])\n")
  monkeypatch.setattr(tfds_source, "_reachable", lambda: None)  # as if online
  with pytest.raises(DataError, match=f"\\(in {tmp_path / 'env_tfds'}\\)"):
    tfds_source.load_tfds_arrays("mnist", ("train",), ("image", "label"))
  assert not (tmp_path / "env_tfds").exists()


def test_a_preparation_that_keeps_writing_is_not_stopped(tmp_path):
  from common.data import tfds_source

  grow = ("import time\n"
          "for i in range(12):\n"
          f"  open({str(tmp_path / 'f')!r}, 'a').write('x' * 1000)\n"
          "  time.sleep(0.5)\n")
  start = time.time()
  tfds_source.run_watched([sys.executable, "-c", grow], [str(tmp_path)], stall_seconds=3)
  assert time.time() - start > 5.5  # it ran past the stall bound, writing
  assert (tmp_path / "f").stat().st_size == 12000


def test_train_py_end_to_end(fake_mnist_root, tmp_path):
  workdir = tmp_path / "run"
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}",
                    f"--workdir={workdir}", "--epochs=1", *TINY)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = fileio.read_jsonl(workdir / "metrics.jsonl")
  assert len(records) == 1 and records[0]["test_accuracy"] > 0.5
  summary = fileio.read_json(workdir / "summary.json")
  assert summary["num_params"] == 784 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10
  assert fileio.read_json(workdir / "status.json")["status"] == "done"
  config = fileio.read_json(workdir / "config.json")
  assert config["config"]["model"]["depth"] == 3 and config["data"]["sizes"]["val"] == 5000


def test_the_smoke_variant_trains_in_one_short_epoch(fake_mnist_root, tmp_path):
  workdir = tmp_path / "run"
  proc = train_main("linear_mnist.train", "--config=linear_mnist/configs/default.py:smoke",
                    f"--data_dir={fake_mnist_root}", f"--workdir={workdir}",
                    "--allow_unofficial_data", "--progress=false")
  assert proc.returncode == 0, proc.stderr[-3000:]
  run = Run.load(str(workdir))
  assert run.state == "done" and not run.warning()  # it learns: above chance level
  assert run.settings["train.epochs"] == 1 and run.config["data"]["sizes"]["train"] == 10000
  assert run.usage["final"]["blocks_used"] and os.path.exists(workdir / "training_report.pdf")


@pytest.mark.slow
def test_train_py_as_a_script_from_its_folder(fake_mnist_root, tmp_path):
  proc = subprocess.run(
      [sys.executable, "train.py", f"--data_dir={fake_mnist_root}", "--epochs=1",
       f"--result_dir={tmp_path}", *TINY],
      cwd=os.path.join(REPO, "linear_mnist"), capture_output=True, text=True, timeout=300,
      env=hermetic_env())
  assert proc.returncode == 0, proc.stderr[-3000:]
  sessions = os.listdir(tmp_path / "GloNet3")
  assert len(sessions) == 1 and sessions[0].startswith("session_")


@pytest.mark.parametrize("args,message", [
    (["--model=Transformer"], "unknown model 'Transformer'; valid models are GloNet, MLP, ResNet"),
    (["--model=ResNet", "--num_layers=7"], "even number >= 4"),
    (["--data_dir=/nonexistent/data"], "MNIST not found: looked for train-images-idx3-ubyte.gz"),
])
def test_bad_input_gives_one_clear_message(args, message, tmp_path):
  proc = train_main("linear_mnist.train", f"--result_dir={tmp_path}", "--epochs=1",
                    *[a for a in TINY if not a.startswith("--model")], *args)
  assert proc.returncode == 2
  assert message in proc.stderr and "Traceback" not in proc.stderr
  assert not os.listdir(tmp_path)  # nothing was created


def test_negative_depth_is_one_error_line(tmp_path):
  proc = train_main("linear_mnist.train", "--num_layers=-3", f"--result_dir={tmp_path}")
  assert "--num_layers" in error_line(proc)


def test_a_model_too_large_for_the_device_is_one_error_line(fake_mnist_root, tmp_path):
  # 2**28-wide hidden layers: 256 PiB of parameters, more than any address space holds.
  workdir = tmp_path / "run"
  proc = train_main("linear_mnist.train", f"--data_dir={fake_mnist_root}",
                    f"--workdir={workdir}", *[a for a in TINY if not a.startswith("--feat")],
                    f"--features={2**28}")
  line = error_line(proc)
  assert ("GloNet3's data, parameters and optimizer state do not fit in the memory of the CPU: "
          "RESOURCE_EXHAUSTED") in line
  assert "new --workdir" in line
  status = fileio.read_json(workdir / "status.json")
  assert status["status"] == "failed" and status["message"] == line[len("error: "):]


def test_truncated_gz_exits_with_a_message(fake_mnist_root, tmp_path):
  root = _copy_root(fake_mnist_root, tmp_path / "data")
  path = os.path.join(root, "mnist", "train-images-idx3-ubyte.gz")
  with gzip.open(path, "rb") as f:
    head = f.read(1000)
  with gzip.open(path, "wb") as f:
    f.write(head)
  proc = train_main("linear_mnist.train", f"--data_dir={root}",
                    f"--result_dir={tmp_path / 'out'}", *TINY)
  assert proc.returncode == 2 and "train-images-idx3-ubyte.gz declares shape" in proc.stderr
  assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_uninterrupted_run(fake_mnist_root, tmp_path):
  args = [f"--data_dir={fake_mnist_root}", "--epochs=4", "--model=GloNet", "--num_layers=12",
          "--features=64", "--batch_size=250", "--progress=false", "--tensorboard=false",
          "--allow_unofficial_data"]
  straight = tmp_path / "straight"
  proc = run_module("linear_mnist.train", f"--workdir={straight}", *args)
  assert proc.returncode == 0, proc.stderr[-2000:]

  killed = tmp_path / "killed"
  child = subprocess.Popen([sys.executable, "-m", "linear_mnist.train", f"--workdir={killed}",
                            *args], cwd=REPO, env=hermetic_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
  deadline = time.time() + 240
  while not (killed / "checkpoints" / "1").exists():  # epoch 1 is durable; kill in epoch 2
    assert child.poll() is None and time.time() < deadline, "run ended before it was killed"
    time.sleep(0.01)
  child.send_signal(signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  assert not (killed / "checkpoints" / "4").exists()  # killed before the end
  assert fileio.read_json(killed / "status.json")["status"] == "running"  # stale, as after a crash

  proc = run_module("linear_mnist.train", f"--workdir={killed}", *args)
  assert proc.returncode == 0, proc.stderr[-2000:]
  strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rs]  # noqa: E731
  a = fileio.read_jsonl(straight / "metrics.jsonl")
  b = fileio.read_jsonl(killed / "metrics.jsonl")
  assert len(a) == 4 and strip(a) == strip(b)
  assert fileio.read_json(killed / "status.json")["status"] == "done"


def test_no_local_files_and_no_network_fail_within_seconds_and_leave_nothing(
    tmp_path, monkeypatch):
  """Issue 13.7: the TFDS fallback probes the download host before TFDS would retry for
  minutes, and removes what the attempt created."""
  from common.data import tfds_source  # noqa: PLC0415
  from common.errors import DataError  # noqa: PLC0415
  from linear_mnist.data import load_mnist  # noqa: PLC0415
  monkeypatch.setenv(tfds_source.PROBE_ENV, "127.0.0.1:9")  # a closed port: refused at once
  tfds_dir = tmp_path / "tfds"
  start = time.time()
  with pytest.raises(DataError, match=r"MNIST not found: .*cannot be reached.*mnist/"):
    load_mnist(str(tmp_path / "empty_root"), tfds_dir=str(tfds_dir))
  assert time.time() - start < 30
  assert not tfds_dir.exists()


def test_a_host_that_accepts_connections_but_never_answers_fails_within_seconds(
    tmp_path, monkeypatch):
  # A firewall that lets the connection through and answers nothing: the TCP probe passed,
  # and a forgotten --data_dir then waited 209 s for TFDS's retries.
  from common.data import tfds_source  # noqa: PLC0415
  from common.errors import DataError  # noqa: PLC0415
  from linear_mnist.data import load_mnist  # noqa: PLC0415
  with socket.create_server(("127.0.0.1", 0)) as silent:  # listens, never accepts
    monkeypatch.setenv(tfds_source.PROBE_ENV, f"127.0.0.1:{silent.getsockname()[1]}")
    start = time.time()
    with pytest.raises(DataError, match=r"cannot be reached \(timed out\)"):
      load_mnist(str(tmp_path / "empty_root"), tfds_dir=str(tmp_path / "tfds"))
    assert time.time() - start < 15
  assert not (tmp_path / "tfds").exists()
