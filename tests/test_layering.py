"""The package's layers import only downwards, and reports read runs without JAX."""

import ast
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, hermetic_env

COMMON = os.path.join(REPO, "common")

# Folder or module under common/ -> module prefixes it must never import.
RULES = {
    "train": ("common.usage", "common.usage_hook", "common.report", "common.experiment",
              "common.cli"),
    "data": ("common.train", "common.models", "common.usage", "common.report",
             "common.experiment"),
    "models": ("common.train", "common.data", "common.usage", "common.report"),
    "ops": ("common.train", "common.data", "common.models", "common.report"),
    "rundir_contract.py": ("jax", "flax", "common.train", "common.models"),
    "config.py": ("jax", "flax", "common.train", "common.models"),
    "run_config.py": ("jax", "flax", "common.train", "common.models"),
}


def _imports(path: str) -> set[str]:
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.add(node.module)
      names.update(f"{node.module}.{alias.name}" for alias in node.names)
  return names


def _files(part: str) -> list[str]:
  path = os.path.join(COMMON, part)
  if path.endswith(".py"):
    return [path]
  return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files
          if f.endswith(".py")]


@pytest.mark.parametrize("part", sorted(RULES))
def test_a_layer_never_imports_the_layers_above_it(part):
  bad = [(os.path.relpath(f, REPO), name) for f in _files(part) for name in sorted(_imports(f))
         if any(name == p or name.startswith(p + ".") for p in RULES[part])]
  assert not bad, bad


def test_reports_render_without_jax_or_the_models():
  script = ("import sys\nimport common.report.__main__\nfrom common.report import runs, "
            "runs_table, sweep_report, run_report\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax') or "
            "m.startswith(('common.train', 'common.models', 'common.usage'))))")
  proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=hermetic_env(),
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert proc.stdout.strip() == "[]"
