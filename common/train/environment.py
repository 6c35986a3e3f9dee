"""What ran a job: package versions, devices, host. Recorded in ``config.json``."""

import importlib.metadata
import os
import platform
import socket
import sys
from typing import Any

import jax

_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy",
             "tensorflow-datasets", "matplotlib", "reportlab", "absl-py", "tensorboardX")


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def describe_environment() -> dict[str, Any]:
  """Returns versions, devices and host facts as a JSON-ready dict."""
  versions = {}
  for name in _PACKAGES:
    try:
      versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      versions[name] = None
  return {
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
