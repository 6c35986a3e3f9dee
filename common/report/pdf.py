"""Shared reportlab and matplotlib helpers: tables, embedded figures, atomic writes.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot ones: pyplot keeps global
state and needs a backend, and choosing one at import (``matplotlib.use``) would switch the
backend of a notebook that imports the report. ``Figure.savefig`` renders with Agg anyway.
"""

import io
import textwrap
import xml.sax.saxutils
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import ticker, transforms
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import (
    Image,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from common import fileio

STYLES = getSampleStyleSheet()
_CELL = ParagraphStyle("cell", parent=STYLES["BodyText"], fontSize=8, leading=10)
PAGE_WIDTH = A4[0] - 3 * cm
# Figures are drawn as wide as the page's text and placed at that width, so their text is
# printed at the sizes set here: never below LEGEND_SIZE points.
FIGURE_WIDTH = PAGE_WIDTH / 72  # inches
LEGEND_SIZE = 8
MAX_IMAGE_HEIGHT = A4[1] - 3 * cm - 60  # the page's frame, less a heading
# Depth plots: more depths than this keep the log axis's own ticks; a legend of more
# entries than this goes below the axes.
_MAX_DEPTH_TICKS = 12
_MAX_INSIDE_LEGEND = 5
_BELOW_AXES = 0.5  # inches from the axes' bottom to a legend below them


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1
               ) -> tuple[Figure, list[Axes]]:
  """A pyplot-free figure of ``width`` x ``height`` inches with ``nrows`` rows of ``ncols``
  axes, returned row by row."""
  fig = Figure(figsize=(width, height))
  axes = fig.subplots(nrows, ncols, squeeze=False)
  return fig, [ax for row in axes for ax in row]


def save_figure(fig: Figure, path: str) -> bytes:
  """Writes ``fig`` as PNG to ``path`` atomically and returns the PNG bytes."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=130, bbox_inches="tight", metadata={"Software": None})
  data = buffer.getvalue()
  fileio.atomic_write_bytes(path, data)
  return data


def finish_depth_axes(fig: Figure, ax: Axes, ylabel: str, title: str,
                      log_y: bool = False, legend_size: int = LEGEND_SIZE) -> Figure:
  """Common finish of a "something vs depth" plot: log depth axis, labels, grid, legend.

  The depths drawn are the axis's ticks, written plainly (18 and 34, not the log axis's
  2x10^1 and 3x10^1), unless there are too many to label. A legend of more than a few
  entries goes below the axes, where it cannot hide the points (the saved figure grows to
  hold it).
  """
  ax.set_xscale("log")
  if log_y:
    ax.set_yscale("log")
  depths = sorted({float(x) for line in ax.get_lines()
                   for x in np.atleast_1d(line.get_xdata()) if np.isfinite(x) and x > 0})
  if 0 < len(depths) <= _MAX_DEPTH_TICKS:
    ax.set_xticks(depths, labels=[f"{d:g}" for d in depths])
    ax.xaxis.set_minor_locator(ticker.NullLocator())
  ax.set(xlabel="depth (num_layers)", ylabel=ylabel, title=title)
  ax.grid(alpha=0.3, which="both")
  place_legends(fig, [ax], legend_size)
  fig.tight_layout()
  return fig


def place_legends(fig: Figure, axes: Sequence[Axes], fontsize: int) -> None:
  """Each of ``axes``' legends inside its axes, or below them when it has more than a few
  entries, where it cannot hide the curves.

  A legend below is wrapped to about its axes' width (so that side by side panels keep
  their widths), and the figure grows by the tallest one, so that the axes keep their
  height.
  """
  lines_below = 0
  for ax in axes:
    handles, labels = ax.get_legend_handles_labels()
    if len(handles) > _MAX_INSIDE_LEGEND:
      width = ax.get_position().width * fig.get_size_inches()[0]
      chars = max(20, int(width * 72 / (0.6 * fontsize)))  # a character is ~0.6 em wide
      labels = [textwrap.fill(label, chars) for label in labels]
      # Short labels ("depth 1000") share a row: a column of them would be taller than the
      # panel. The handle and padding take about five characters' width.
      longest = max(len(line) for label in labels for line in label.split("\n"))
      ncol = max(1, min(len(labels), chars // (longest + 5)))
      # Below the tick labels and the axis label, whatever the axes' height.
      below = ax.transAxes + transforms.ScaledTranslation(0, -_BELOW_AXES, fig.dpi_scale_trans)
      ax.legend(handles, labels, fontsize=fontsize, loc="upper left", ncol=ncol,
                bbox_to_anchor=(0.0, 0.0), bbox_transform=below, borderaxespad=0.0)
      # Lines of text the legend takes, its entries split into columns as matplotlib does.
      columns = np.array_split([label.count("\n") + 1 for label in labels], ncol)
      lines = sum(max(column[r] for column in columns if r < len(column))
                  for r in range(len(columns[0])))
      lines_below = max(lines_below, lines)
    elif handles:  # an empty legend only warns
      ax.legend(fontsize=fontsize)
  if lines_below:
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + lines_below * 1.5 * fontsize / 72 + 0.3)


def image(png: bytes, width: float = PAGE_WIDTH) -> Image:
  """A flowable image scaled to ``width`` points, keeping the aspect ratio, or smaller
  where it would not fit on a page."""
  img = Image(io.BytesIO(png))
  scale = min(width / img.imageWidth, MAX_IMAGE_HEIGHT / img.imageHeight)
  img.drawWidth, img.drawHeight = width, img.imageHeight * scale
  return img


def figure(title: str, png: bytes) -> KeepTogether:
  """A heading and its image, never split over two pages."""
  return KeepTogether([heading(title), image(png)])


def esc(text: Any) -> str:
  """``text`` as literal text inside reportlab's mini-markup (``<``, ``>``, ``&`` escaped):
  paths, messages and settings come from users and must never be parsed as markup."""
  return xml.sax.saxutils.escape(str(text))


def table(rows: Sequence[Sequence[Any]], col_widths: Sequence[float] | None = None,
          wrap: bool = False) -> Table:
  """A grid table whose first row is a header repeated on every page (cells are text).

  Text longer than 40 characters wraps within its cell; with ``wrap``, all text does (for
  narrow columns of given ``col_widths``).
  """
  cells = [[Paragraph(esc(c), _CELL) if isinstance(c, str) and (wrap or len(c) > 40)
            else str(c) for c in row] for row in rows]
  t = Table(cells, colWidths=col_widths, repeatRows=1)
  t.setStyle(TableStyle([
      ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dddddd")),
      ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
      ("FONTSIZE", (0, 0), (-1, -1), 8),
      ("VALIGN", (0, 0), (-1, -1), "TOP"),
  ]))
  return t


def heading(text: str, level: int = 2) -> Paragraph:
  """A section heading (level 1 is the document title)."""
  return Paragraph(text, STYLES[f"Heading{level}"])


def para(text: str) -> Paragraph:
  """A body paragraph (reportlab mini-markup such as ``<b>`` allowed: pass anything that
  comes from a user or a file through :func:`esc`)."""
  return Paragraph(text, STYLES["BodyText"])


def build(path: str, title: str, story: list) -> None:
  """Builds the PDF in memory and writes it over ``path`` atomically.

  Args:
    path: the PDF file.
    title: document title (also the first heading).
    story: reportlab flowables.
  """
  buffer = io.BytesIO()
  # invariant: no creation date or random document id, so the same files render to the
  # same bytes (a report can be checked into a results repository and diffed).
  doc = SimpleDocTemplate(buffer, pagesize=A4, title=title, leftMargin=1.5 * cm,
                          rightMargin=1.5 * cm, topMargin=1.5 * cm, bottomMargin=1.5 * cm,
                          invariant=True)
  doc.build([heading(title, 1), Spacer(1, 6), *story])
  fileio.atomic_write_bytes(path, buffer.getvalue())
