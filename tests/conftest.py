"""Shared fixtures: CPU only, quiet logs, fake MNIST files at the official sizes, fake runs."""

import copy
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from common import fileio
from common.config import FIELDS

os.environ.setdefault("JAX_PLATFORMS", "cpu")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The tests compile the same small programs over and over: every run of a tiny model (most
# of them in child processes) compiles its initialisation, step and evaluation afresh.
# JAX's persistent compilation cache turns the repeats into loads; the programs and their
# results are unchanged (a loaded executable is the compiled one). The folder is made for
# this test session and removed at its end (see pytest_unconfigure), so no state outlives
# it; pytest-xdist's workers and every child process inherit it through the environment.
# Set JAX_COMPILATION_CACHE_DIR to use (and keep) another. It is for the tests only: runs
# of the experiments compile, as they always did. Where XLA refuses to load the entries it
# wrote (jax-ml/jax#38445: some CPUs' tuning flags are taken for missing features) the
# tests compile as before, with an error line per refused entry in the children's logs.
_OWN_JAX_CACHE = None
if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
  _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="glonets_tests_jax_cache_")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_JAX_CACHE
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  """Removes the compilation cache this process made (the controller's, under xdist)."""
  if _OWN_JAX_CACHE is not None:
    shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


def write_idx_gz(path: str, array: np.ndarray) -> None:
  """Writes ``array`` (uint8) as a gzip-compressed IDX file like the official MNIST ones."""
  header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(
      struct.pack(">I", d) for d in array.shape)
  with gzip.open(path, "wb", compresslevel=1) as f:
    f.write(header + array.astype(np.uint8).tobytes())


def make_fake_mnist(folder: str, n_train: int = 60000, n_test: int = 10000) -> None:
  """Writes four IDX files whose images encode their label (a learnable task)."""
  os.makedirs(folder, exist_ok=True)
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for k in range(10):  # a bright bar whose row depends on the label
      images[labels == k, 2 + 2 * k, 4:24] = 255
    write_idx_gz(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"), images)
    write_idx_gz(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"), labels)


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory) -> str:
  """A data root holding ``mnist/`` with fake files of the official sizes."""
  root = str(tmp_path_factory.mktemp("data"))
  make_fake_mnist(os.path.join(root, "mnist"))
  return root


def hermetic_env() -> dict[str, str]:
  """The environment for child processes of tests.

  ``GLONETS_DATA_DIR`` is removed (tests name their data) and TensorFlow Datasets points at
  an empty folder, so no test can find, or download, a real copy of a dataset.
  """
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TQDM_DISABLE": "1",
         "TFDS_DATA_DIR": os.path.join(tempfile.gettempdir(), "glonets_tests_empty_tfds")}
  env.pop("GLONETS_DATA_DIR", None)
  env.pop("LAUNCHER", None)  # a sweep test submits nothing unless it says so
  return env


def run_module(module: str, *args: str, timeout: float = 300,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
  """Runs ``python -m module args`` from the repository root in :func:`hermetic_env`
  (plus ``env``)."""
  full_env = {**hermetic_env(), **(env or {})}
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=full_env,
                        capture_output=True, text=True, timeout=timeout)


def fake_run(root: str, label: str, depth: int, seed: int, acc: float, state: str = "done",
             seconds: float = 1.0, used: int = 3, *, message: str | None = None,
             experiment: str = "fake", usage_extra: dict | None = None,
             summary_extra: dict | None = None,
             task: tuple[str, str] = ("accuracy", "max")) -> str:
  """Writes a run directory by hand, as another experiment following the contract would.

  Args:
    root: the sweep root; the run goes to ``root/label/depth_D/seed_S``.
    label: the model label (``GloNet`` runs get shares, blocks used and early exit).
    depth: ``num_layers`` (``depth - 1`` blocks).
    seed: the seed.
    acc: the validation accuracy of both epochs.
    state: the recorded status. ``failed`` and ``diverged`` runs have no finished epoch.
    seconds: train seconds per epoch.
    used: blocks used (GloNet).
    message: the status message.
    experiment: the experiment recorded in ``config.json``.
    usage_extra: more keys for both entries of ``usage.json``.
    summary_extra: more keys for ``summary.json``.
    task: the selection metric and its mode, as ``config.json`` records them.

  Returns:
    The run directory.
  """
  path = os.path.join(root, label, f"depth_{depth}", f"seed_{seed}")
  os.makedirs(path)
  fileio.atomic_write_json(os.path.join(path, "config.json"), {
      "schema_version": 3,
      "config": {"experiment": experiment, "model": {"name": label, "depth": depth},
                 "train": {"seed": seed}},
      "model_name": f"{label}{depth}",
      "model": {"family": label, "num_layers": depth, "label": label},
      "task": {"selection_metric": task[0], "selection_mode": task[1]}})
  records = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.1 / e, "test_loss": 1.2 / e,
              "train_accuracy": acc, "val_accuracy": acc, "test_accuracy": acc - 0.01 * (2 - e),
              "learning_rate": 0.1, "train_seconds": seconds, "eval_seconds": 0.1}
             for e in (1, 2)] if state not in ("failed", "diverged") else []
  with open(os.path.join(path, "metrics.jsonl"), "w") as f:
    f.writelines(f"{json.dumps(r)}\n" for r in records)
  fileio.atomic_write_json(os.path.join(path, "summary.json"), {
      "best": records[-1] if records else None, "best_val_epoch": 2 if records else None,
      "mean_train_seconds_per_epoch": seconds if records else None, "num_params": 10,
      **(summary_extra or {})})
  if message is None:
    message = "an error" if state == "failed" else ""
  fileio.atomic_write_json(os.path.join(path, "status.json"),
                           {"status": state, "message": message})
  usage = {"num_blocks": depth - 1, "l1": list(np.linspace(1, 0.1, depth - 1)),
           "param_l1": [{"layer": str(i), "l1": 1.0} for i in range(depth)]}
  if label == "GloNet":
    share = np.full(depth - 1, 1.0 / (depth - 1))
    usage.update(share=share.tolist(), cumulative_share=np.cumsum(share).tolist(),
                 blocks_used=used, threshold=0.95,
                 early_exit={"k": list(range(1, depth)), "accuracy": [acc] * (depth - 1)})
  usage.update(usage_extra or {})
  fileio.atomic_write_json(os.path.join(path, "usage.json"),
                           {"init": copy.deepcopy(usage), "final": usage})
  return path


def write_fake_cifar10_binary(root: str) -> str:
  """Writes ``<root>/cifar10/cifar-10-binary.tar.gz`` at the official sizes (50,000 /
  10,000, 5,000 / 1,000 per class) with learnable images: the class sets one channel of
  the top or bottom half. Returns the data root."""
  import io  # pylint: disable=g-import-not-at-top
  import tarfile  # pylint: disable=g-import-not-at-top

  folder = os.path.join(root, "cifar10")
  os.makedirs(folder, exist_ok=True)
  members = {}
  for name, n, seed in [*((f"data_batch_{i}.bin", 10000, i) for i in range(1, 6)),
                        ("test_batch.bin", 10000, 0)]:
    rng = np.random.default_rng(seed)
    y = np.tile(np.arange(10, dtype=np.uint8), n // 10)
    x = rng.integers(0, 96, (n, 3, 32, 32), dtype=np.uint8)  # CHW, as the official files
    for k in range(10):
      rows = slice(0, 16) if k < 5 else slice(16, 32)
      x[y == k, k % 3, rows, :] = 255
    members[f"cifar-10-batches-bin/{name}"] = np.concatenate(
        [y[:, None], x.reshape(n, -1)], axis=1).tobytes()
  members["cifar-10-batches-bin/batches.meta.txt"] = (
      b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n")
  with tarfile.open(os.path.join(folder, "cifar-10-binary.tar.gz"), "w:gz",
                    compresslevel=1) as tar:
    for name, data in members.items():
      info = tarfile.TarInfo(name)
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  return root


def set_settings(path: str, settings: dict | None = None, **top) -> None:
  """Sets settings, by their flat names (``epochs``, ``learning_rate``...), in a run
  directory's nested ``config.json``, and top-level keys (``resumes``, ``data``...)."""
  config_path = os.path.join(path, "config.json")
  record = fileio.read_json(config_path)
  for name, value in (settings or {}).items():
    *sections, key = FIELDS[name].split(".")
    node = record["config"]
    for section in sections:
      node = node.setdefault(section, {})
    node[key] = value
  record.update(top)
  fileio.atomic_write_json(config_path, record)
