"""UCI SGEMM GPU-kernel runtimes: GloNet vs ResNet-v2 (BN on/off) from 10 to 1000 layers."""

import common  # noqa: F401  (first: signals while a program starts)
