"""What ran a job: code version, package versions, devices, host. Recorded in ``config.json``."""

import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from typing import Any

import jax
from absl import logging

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
             "tensorflow-datasets", "matplotlib", "reportlab", "absl-py", "tensorboardX")
_GIT_TIMEOUT_S = 10.0
# Variables that would make git look at another repository than the one under ``-C``.
_GIT_ENV_OVERRIDES = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                      "GIT_COMMON_DIR")
UNKNOWN_CODE_VERSION = {"commit": "unknown", "dirty": None, "describe": None}


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _package_root() -> str:
  """The folder that holds the imported ``common`` package (a checkout's root, or site-packages)."""
  import common  # pylint: disable=g-import-not-at-top (the package of this very module)
  return os.path.dirname(os.path.dirname(os.path.abspath(common.__file__)))


def _git(root: str, *args: str) -> str:
  """Output of ``git -C root args`` (stripped); raises on any failure or timeout."""
  env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_OVERRIDES}
  # --no-optional-locks: `git status` may otherwise refresh and rewrite the index, which can
  # collide with a commit being made in the same checkout while a run starts.
  out = subprocess.run(["git", "--no-optional-locks", "-C", root, *args], capture_output=True,
                       text=True, timeout=_GIT_TIMEOUT_S, check=True, env=env)
  return out.stdout.strip()


def code_version(root: str | None = None) -> dict[str, Any]:
  """The git commit of the code that runs, so every result can be traced to its code.

  Never raises: without git, outside a checkout (the package installed as a wheel), or on
  any git error it returns ``{"commit": "unknown", "dirty": None, "describe": None}``.

  Args:
    root: the folder to describe; default: the one holding the imported ``common`` package.
      It must be the top level of its checkout, so that a wheel installed into a virtual
      environment that happens to sit inside some checkout is not given that checkout's
      commit.

  Returns:
    ``{"commit": 40 hex digits, "dirty": True when tracked files differ from the commit
    (untracked files are ignored), "describe": ``git describe --always --dirty``}``.
  """
  root = os.path.abspath(root or _package_root())
  try:
    top = _git(root, "rev-parse", "--show-toplevel")
    if os.path.realpath(top) != os.path.realpath(root):
      return dict(UNKNOWN_CODE_VERSION)
    commit = _git(root, "rev-parse", "--verify", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
  except (OSError, subprocess.SubprocessError) as e:
    logging.info("Code version unknown (%s: %s)", type(e).__name__, e)
    return dict(UNKNOWN_CODE_VERSION)
  try:  # only a convenience for readers: its failure must not lose the commit
    describe = _git(root, "describe", "--always", "--dirty", "--abbrev=12")
  except (OSError, subprocess.SubprocessError):
    describe = None
  return {"commit": commit, "dirty": dirty, "describe": describe}


def describe_environment() -> dict[str, Any]:
  """Returns the code version, package versions, devices and host facts as a JSON-ready dict."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
      "code": code_version(),
      "python": sys.version.split()[0],
      "platform": platform.platform(),
      "hostname": socket.gethostname(),
      "cpu": f"{_cpu_model()} ({os.cpu_count()} logical cores)",
      "packages": versions,
      "backend": jax.default_backend(),
      "devices": [str(d) for d in jax.devices()],
      "device_kind": jax.devices()[0].device_kind,
      "process_count": jax.process_count(),
  }
