"""MNIST, fully connected: GloNet vs plain MLP vs residual MLP across depths."""

import common  # noqa: F401  (first: signals while a program starts)
