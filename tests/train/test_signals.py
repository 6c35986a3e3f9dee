"""Signals as a clean stop (common.train.signals), in process."""

import os
import signal

import pytest

from common import fileio
from common.errors import Interrupted
from common.train import loop, signals
from tests.helpers import run_tiny, tiny_config


class _SignalledWhileFinalized:
  """Sends ``signum`` to this process from its finalizer, as a signal that happens to land
  while the garbage collector runs one: the handler's exception is printed as "Exception
  ignored" and dropped."""

  def __init__(self, signum: int):
    self.signum = signum

  def __del__(self):
    os.kill(os.getpid(), self.signum)
    for _ in range(1000):  # bytecodes, so that the handler runs inside this finalizer
      pass


def test_a_signal_inside_a_deferred_block_takes_effect_when_it_ends():
  done = []
  with pytest.raises(Interrupted) as stopped, signals.interrupt_on_signals():
    with signals.deferred():
      os.kill(os.getpid(), signal.SIGTERM)
      done.append("the whole block ran")
    done.append("not reached")
  assert done == ["the whole block ran"] and stopped.value.signum == signal.SIGTERM


def test_a_signal_whose_exception_a_finalizer_swallowed_is_raised_by_check():
  with pytest.raises(Interrupted) as stopped, signals.interrupt_on_signals():
    _SignalledWhileFinalized(signal.SIGINT)  # dropped at once: the finalizer runs here
    signals.check()
  assert stopped.value.signum == signal.SIGINT
  signals.check()  # outside the block, nothing is pending


def test_a_run_stops_even_when_a_finalizer_swallowed_the_signal(tmp_path, monkeypatch):
  # A sweep's point once trained on to `done` after Ctrl-C: the signal had landed in a
  # finalizer, and the second one (the sweep driver's) was ignored as "already stopping".
  epoch_record = loop._epoch_record

  def record_then_signal(trainer, state, epoch, *args):
    record = epoch_record(trainer, state, epoch, *args)
    if epoch == 1:
      _SignalledWhileFinalized(signal.SIGINT)
      _SignalledWhileFinalized(signal.SIGINT)  # the driver's copy: ignored while stopping
    return record

  monkeypatch.setattr(loop, "_epoch_record", record_then_signal)
  config = tiny_config(tmp_path, epochs=4, tensorboard=False)
  with pytest.raises(Interrupted):
    run_tiny(config)
  run = tmp_path / "run"
  assert fileio.read_json(run / "status.json")["status"] == "interrupted"
  assert len(fileio.read_jsonl(run / "metrics.jsonl")) == 1  # epoch 1 kept; 2 not finished
