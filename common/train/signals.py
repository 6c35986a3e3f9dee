"""Termination signals as a clean stop: SIGTERM, SIGINT and SIGHUP raise ``Interrupted``.

A cluster scheduler sends SIGTERM before it kills a preempted job, a terminal sends SIGHUP
when it closes, Ctrl-C sends SIGINT. Python's defaults kill the process at once for the
first and third (no status, no report) and raise a bare ``KeyboardInterrupt`` for the
second. Inside :func:`interrupt_on_signals` all three raise :class:`Interrupted` in the
main thread, so the training loop records the run as ``interrupted``, renders its report
and lets the entry point exit with ``128 + signum``.

When the exception lands: Python runs signal handlers between bytecodes of the main
thread, so a signal that arrives while the host waits for the device takes effect when
that wait ends. The trainer splits every epoch into calls of about
``trainer.SECONDS_PER_CALL`` (5 s, timed on the previous epoch; 20 calls in the first) and
waits for each before queueing the one after next, so the stop comes within about two
calls (10 s), plus the evaluation or the checkpoint write in progress. Nothing of that is
lost: the last finished epoch is already checkpointed, and a rerun of the same command
resumes from it and ends equal to an uninterrupted run.

A signal that the process ignores (``nohup`` ignores SIGHUP, a shell's ``&`` ignores
SIGINT) stays ignored. Later signals while the run is already stopping are logged and
ignored, so that the status and the report are written whole.

The exception a handler raises can be lost: when the signal lands while the main thread
runs a finalizer (a ``__del__`` or a weakref callback, run whenever garbage is collected),
Python prints "Exception ignored" and goes on. So a caught signal is also remembered, and
the trainer calls :func:`check` between calls, which raises it again.
"""

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from absl import logging

from common.errors import Interrupted

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Nesting depth of `deferred()` blocks, and a signal that arrived inside one.
_deferral = {"depth": 0, "pending": None}
# The first signal caught inside `interrupt_on_signals` blocks (`depth` of them open). It
# lasts until the outermost block ends: a program stops once, it does not train on.
_caught = {"depth": 0, "signum": None}


def check() -> None:
  """Raises :class:`Interrupted` if a signal was caught and training has not stopped.

  For the places the trainer returns to between calls to the device: a signal whose
  exception a finalizer swallowed still stops the run there.
  """
  if _caught["signum"] is not None and not _deferral["depth"]:
    raise Interrupted(_caught["signum"])


@contextlib.contextmanager
def deferred() -> Iterator[None]:
  """A block that a caught signal does not cut: the signal takes effect when it ends.

  For the few writes that must be whole together (a checkpoint and its checksum record,
  the metrics log): they take about a second, and the stop waits for them.
  """
  _deferral["depth"] += 1
  try:
    yield
  except BaseException:
    _deferral["depth"] -= 1
    if not _deferral["depth"]:
      _deferral["pending"] = None
    raise
  _deferral["depth"] -= 1
  if not _deferral["depth"] and _deferral["pending"] is not None:
    signum, _deferral["pending"] = _deferral["pending"], None
    raise Interrupted(signum)


@contextlib.contextmanager
def interrupt_on_signals(signals: tuple[signal.Signals, ...] = SIGNALS) -> Iterator[None]:
  """Within the block, each of ``signals`` raises :class:`Interrupted` (once).

  Outside the main thread (where Python cannot install handlers) this does nothing. The
  previous handlers are restored on exit.

  Args:
    signals: the signals to catch.

  Yields:
    None.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  received: list[int] = []

  def handler(signum, frame):
    del frame
    if received:  # already stopping: let the status and report be written
      logging.warning("%s received while stopping after %s; ignored.",
                      signal.Signals(signum).name, signal.Signals(received[0]).name)
      return
    received.append(signum)
    if _caught["signum"] is None:
      _caught["signum"] = signum
    if _deferral["depth"]:
      _deferral["pending"] = signum  # raised when the deferred block ends
      return
    raise Interrupted(signum)

  unraisable = sys.unraisablehook

  def dropped_by_a_finalizer(info):  # one line instead of Python's "Exception ignored"
    if isinstance(info.exc_value, Interrupted):
      logging.warning("%s landed while Python ran a finalizer; training stops at its next "
                      "call.", info.exc_value.signal_name)
    else:
      unraisable(info)

  previous = {}
  _caught["depth"] += 1
  sys.unraisablehook = dropped_by_a_finalizer
  try:
    for s in signals:
      if signal.getsignal(s) is not signal.SIG_IGN:
        previous[s] = signal.signal(s, handler)
    yield
  finally:
    for s, old in previous.items():
      signal.signal(s, old)
    sys.unraisablehook = unraisable
    _caught["depth"] -= 1
    if not _caught["depth"]:
      _caught["signum"] = None
