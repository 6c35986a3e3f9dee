"""Figures and PDF reports, built from run directories alone.

``python -m common.report RUN_DIR`` re-renders one run's ``training_metrics.png``,
``layer_usage.png`` and ``training_report.pdf``; ``python -m common.report --sweep ROOT``
renders ``sweep_report.pdf`` and its figures for every run directory under ``ROOT``.

Importing this package has no side effect on matplotlib: figures are built as
``matplotlib.figure.Figure`` objects (no pyplot, no backend switch), so a notebook that
imports it keeps its own backend.
"""

from common.report.run_report import render_run
from common.report.sweep_report import render_sweep

__all__ = ["render_run", "render_sweep"]
