"""Imagenette: ImageNet-shaped ResNet-v2, the same network without skips, and its GloNet."""
