"""MNIST, fully connected: GloNet vs plain MLP vs residual MLP across depths."""
