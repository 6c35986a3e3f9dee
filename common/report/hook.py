"""The report hook: renders a run's figures and PDF when it ends."""

from absl import logging

from common.train import distributed
from common.train.hooks import Hook


class ReportHook(Hook):
  """Renders the run's figures and PDF when the run ends (also when it fails)."""

  def on_exit(self, run_path: str) -> None:
    if not distributed.is_primary():
      return
    from common import report  # pylint: disable=g-import-not-at-top (matplotlib is heavy)
    try:
      report.render_run(run_path)
    except Exception as e:  # noqa: BLE001 - the training result must survive a report bug
      logging.warning("Could not render the report of %s: %s: %s (rerun `python -m "
                      "common.report %s`)", run_path, type(e).__name__, e, run_path)
