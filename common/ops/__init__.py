"""Native operations: the CPU convolution on oneDNN (see :mod:`common.ops.conv`)."""
