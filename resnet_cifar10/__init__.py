"""CIFAR-10: ResNet-v2, the same network without skips, and its GloNet version."""

import common  # noqa: F401  (first: signals while a program starts)
