"""Errors that mean "the user asked for something we cannot do", not a bug.

Entry points catch :class:`UserError` and print its message alone (no traceback), then exit
with status 2. Every message names the problem and the fix.
"""

import signal


class UserError(Exception):
  """Base class: bad input that the user can fix."""


class ConfigError(UserError):
  """An invalid setting: unknown model, impossible depth, bad flag combination."""


class DataError(UserError):
  """Missing, corrupt or malformed dataset files."""


class RunDirError(UserError):
  """A run directory that cannot be used: locked, or made by an incompatible config."""


class StorageError(UserError):
  """A file could not be written: a full disk, a quota, a read-only file system."""


class DeviceMemoryError(UserError):
  """The model, its batch or its data does not fit in the devices' memory: settings too
  large for this machine, fixed by smaller ones (or a larger device)."""


class DivergedError(RuntimeError):
  """Training diverged: an experimental outcome, not a bug.

  Not a :class:`UserError` (no input was wrong): the run is recorded as ``diverged`` with the
  epoch and what happened in the message, and entry points exit with status 1. It lives
  here, not in the training loop, so entry points can catch it without importing the loop.
  """


class NonFiniteLossError(DivergedError):
  """The training loss became NaN or infinite (the epoch and step are in the message)."""


class LossExplodedError(DivergedError):
  """An epoch's loss stayed finite but grew past the divergence bound (a multiple of the
  initial loss): the weights or activations blew up, and the metrics mean nothing."""


class Interrupted(KeyboardInterrupt):
  """A termination signal (SIGTERM from a scheduler, SIGINT from Ctrl-C, SIGHUP) stopped a
  run: recorded as ``interrupted``, never as a crash. A ``KeyboardInterrupt``, so code that
  lets Ctrl-C through lets every such signal through.

  Attributes:
    signum: the signal's number; entry points exit with ``128 + signum`` (the shell's
      convention: 143 for SIGTERM, 130 for SIGINT).
  """

  def __init__(self, signum: int):
    self.signum = int(signum)
    super().__init__(signal.Signals(self.signum).name)

  @property
  def signal_name(self) -> str:
    return str(self.args[0])
