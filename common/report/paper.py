"""Paper comparisons in sweep reports: hooks that each experiment owns.

The published numbers of an experiment (say, SGEMM's Table 1) and how to show them beside
ours belong to that experiment, not to the shared report. An experiment that has some
provides a module ``<experiment>/paper.py`` with any of these functions, all optional:

* ``summary_extras(summary: dict) -> dict``: JSON-ready facts stored in
  ``sweep_summary.json`` under ``summary["paper"][experiment]``;
* ``markdown_sections(summary: dict) -> str``: Markdown appended to ``sweep_summary.md``;
* ``report_sections(summary: dict, root: str) -> list``: reportlab flowables for
  ``sweep_report.pdf`` (figures they need are written into ``root``).

``summary`` is the aggregated sweep of :func:`common.report.sweep_report.summarize_sweep`.
The hooks are found by the experiment names the runs recorded in ``config.json``.
"""

import importlib
import importlib.util
import os
from collections.abc import Iterable
from types import ModuleType

from absl import logging

HOOK_MODULE = "paper"


def _repository_root() -> str:
  import common  # pylint: disable=g-import-not-at-top (the package of this very module)
  return os.path.dirname(os.path.dirname(os.path.abspath(common.__file__)))


def _is_experiment_package(name: str) -> bool:
  """True for a top-level package that sits beside ``common`` (an experiment folder).

  Experiment names come from ``config.json`` files, which are data: only packages of this
  repository (or of the same installation) are imported for them, never an arbitrary
  installed module that happens to have the recorded name.
  """
  if not name.isidentifier():
    return False
  try:
    spec = importlib.util.find_spec(name)  # a top-level name: nothing is executed
  except (ImportError, ValueError):
    return False
  locations = list(spec.submodule_search_locations or []) if spec else []
  root = os.path.realpath(_repository_root())
  return any(os.path.dirname(os.path.realpath(p)) == root for p in locations)


def load_hooks(experiments: Iterable[str]) -> dict[str, ModuleType]:
  """The ``<experiment>.paper`` modules of the given experiments that have one.

  Args:
    experiments: experiment package names (``resnet_sgemm``...).

  Returns:
    ``{experiment: module}`` in sorted order. An experiment without such a module (or
    unknown here, e.g. runs made by another repository) is skipped silently; a hook module
    that exists but fails to import is skipped with a warning, so that one broken
    comparison never costs the whole sweep report.
  """
  hooks = {}
  for experiment in sorted(set(experiments)):
    if not _is_experiment_package(experiment):
      continue
    name = f"{experiment}.{HOOK_MODULE}"
    try:
      hooks[experiment] = importlib.import_module(name)
    except ModuleNotFoundError as e:
      if e.name != name:  # the hook exists but imports something missing
        logging.warning("Paper hook %s not loaded: %s", name, e)
    except Exception as e:  # noqa: BLE001 - a broken hook must not cost the whole report
      logging.warning("Paper hook %s not loaded: %s: %s", name, type(e).__name__, e)
  return hooks
