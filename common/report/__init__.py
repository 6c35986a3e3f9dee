"""Figures and PDF reports, built from run directories alone.

``python -m common.report RUN_DIR`` re-renders one run's ``training_metrics.png``,
``layer_usage.png`` and ``training_report.pdf``; ``python -m common.report --sweep ROOT``
renders ``sweep_report.pdf`` and its figures for every run directory under ``ROOT``.
"""

import matplotlib

matplotlib.use("Agg")  # headless: never needs a display; set before pyplot is imported

from common.report.run_report import render_run  # noqa: E402
from common.report.sweep_report import render_sweep  # noqa: E402

__all__ = ["render_run", "render_sweep"]
