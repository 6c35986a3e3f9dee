"""Training hooks: what happens around the loop without living inside it.

A hook has three methods, each optional in effect (the base class does nothing):
``on_start(trainer, state, run)`` before the first epoch (also on resume),
``on_end(trainer, state, run)`` after the last one (their return values, dicts, are added
to ``summary.json``), and ``on_exit(run_path)`` when the run ends in any way (status
already written). The hooks of an experiment (layer usage, the report) are handed in by
:func:`common.experiment.run`, so training code knows neither.
"""

from typing import Any

from common.train import rundir


class Hook:
  """Base class: every method does nothing."""

  def on_start(self, trainer, state, run: rundir.RunDir) -> dict[str, Any] | None:
    """Called before the first epoch (also when resuming)."""
    del trainer, state, run

  def on_end(self, trainer, state, run: rundir.RunDir) -> dict[str, Any] | None:
    """Called after the last epoch."""
    del trainer, state, run

  def on_exit(self, run_path: str) -> None:
    """Called when the run ends, however it ends."""
    del run_path
