"""Imagenette: ImageNet-shaped ResNet-v2, the same network without skips, and its GloNet."""

import common  # noqa: F401  (first: signals while a program starts)
