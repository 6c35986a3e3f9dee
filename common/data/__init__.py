"""Datasets as in-memory arrays: containers, raw-file readers, fake data."""

from common.data.arrays import (
    Dataset,
    Split,
    check_holdout_size,
    check_split_sizes,
    holdout_split,
    pad_to_batches,
    standardize,
)
from common.data.fake import fake_classification, fake_images, fake_regression
from common.data.idx import read_idx_gz, read_idx_gz_hashed

__all__ = ["Dataset", "Split", "check_holdout_size", "check_split_sizes", "fake_classification",
           "fake_images", "fake_regression", "holdout_split", "pad_to_batches", "read_idx_gz",
           "read_idx_gz_hashed", "standardize"]
