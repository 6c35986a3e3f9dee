"""Shared library of the GloNets replication: models, data, training, usage, reports.

Experiments (``linear_mnist``, ``resnet_sgemm``, ...) wire flags to a config and call into
this package; they never copy code from it.
"""

from common import startup as _startup

_startup.handle_signals_while_starting()
