"""Signals while a program starts: one line and an exit, not an import's traceback.

A program's imports (JAX, Flax, TensorFlow's data readers) take seconds, before
:func:`common.cli.run_main` installs its own signal handling. A Ctrl-C in that time raised
``KeyboardInterrupt`` inside whichever import was running: Python printed dozens of lines
of import machinery or, when it landed in a garbage-collection callback (JAX registers
one), dropped it and went on. SIGTERM killed the process without a word. Nothing has been
written yet at that point, so the handlers here print one line and exit at once. Only the
standard library runs before them.
"""

import os
import signal
import sys
import threading

# The packages whose programs (`python -m <package>.<module>`) start with `cli.run_main`.
PROGRAM_PACKAGES = ("common", "linear_mnist", "resnet_sgemm", "resnet_cifar10",
                    "resnet_imagenette", "reproduce")
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_installed: dict[int, object] = {}


def _started_as_program() -> bool:
  """Whether this process is ``python -m`` one of the project's modules (an in-process
  user, a notebook or pytest keeps Python's own handling)."""
  argv = getattr(sys, "orig_argv", [])
  if "-m" not in argv[:-1]:
    return False
  return argv[argv.index("-m") + 1].split(".")[0] in PROGRAM_PACKAGES


def _exit_at_once(signum, frame) -> None:
  del frame
  name = signal.Signals(signum).name
  os.write(2, f"interrupted by {name} while the program started: nothing was "
              f"written.\n".encode())
  os._exit(128 + signum)  # the status a shell reports for the signal


def handle_signals_while_starting() -> None:
  """In a program, until :func:`started`: a signal prints one line and exits with
  ``128 + signum``. Signals the process ignores (``nohup``, a shell's ``&``) stay ignored."""
  if (_installed or not _started_as_program()
      or threading.current_thread() is not threading.main_thread()):
    return
  for s in SIGNALS:
    if signal.getsignal(s) is not signal.SIG_IGN:
      _installed[s] = signal.signal(s, _exit_at_once)


def started() -> None:
  """The program's own handling takes over: Python's handlers come back."""
  for s, previous in _installed.items():
    if signal.getsignal(s) is _exit_at_once:
      signal.signal(s, previous)
  _installed.clear()
