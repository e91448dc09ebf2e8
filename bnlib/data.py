"""scikit-learn's bundled digits (1,797 8x8 grey images, 10 classes), with a fixed split.

The data ship inside scikit-learn's wheel: nothing is downloaded, ever.
"""

import math
from typing import NamedTuple

import numpy as np

__all__ = ["Digits", "load_digits"]

TEST_FRACTION = 0.25
SPLIT_SEED = 0


class Digits(NamedTuple):
    x_train: object
    y_train: object
    x_test: object
    y_test: object


def load_digits(images=False, tensors=False):
    """The digits, pixels scaled to [0, 1], split 75/25 by a fixed permutation (seed 0).

    images: False gives x of shape (N, 64); True gives (N, 1, 8, 8) for a CNN.
    tensors: False gives numpy arrays (float64 x, int64 y); True gives torch tensors (float32 x,
    int64 y), ready for a model.
    Returns Digits(x_train, y_train, x_test, y_test): 1,347 training and 450 test samples.
    """
    from sklearn.datasets import load_digits as _sklearn_digits

    bunch = _sklearn_digits()
    x = bunch.data.astype(np.float64) / 16.0  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_test = math.ceil(TEST_FRACTION * len(x))  # as scikit-learn's train_test_split: 450
    test, train = order[:n_test], order[n_test:]
    if images:
        x = x.reshape(-1, 1, 8, 8)  # (N, C=1, H=8, W=8)
    parts = [x[train], y[train], x[test], y[test]]
    if tensors:
        import torch

        parts = [
            torch.as_tensor(p, dtype=torch.float32 if p.dtype == np.float64 else torch.int64)
            for p in parts
        ]
    return Digits(*parts)
