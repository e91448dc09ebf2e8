"""Lesson 5's claims from its experiments (notebooks/05_norm_family.ipynb §5), for seeds 0-4.

The runs are the lesson's own, at the lesson's configurations (bnlib.experiments.lesson05):
§5a trains the digits CNN for 2 epochs with BN, LN, IN and GN at batch 32; §5b trains
`pooled_cnn` (its last normalization sees 1x1 maps) with BN and GN at batch 32 and at batch 2
(together about 15-20 s of CPU for the 40 runs). The notebook asserts the same thresholds for the
same seeds; here each claim is asserted for every seed and its weakest margin recorded
(tests/claims.py). The structural claims of §1-§3 (which values share statistics, GN spanning LN
to IN, batch independence) are exact and tested in tests/test_norm_family.py.
"""

import numpy as np
import pytest
import torch
from claims import SEEDS, record

from bnlib.data import load_digits
from bnlib.experiments.lesson05 import CONFIGS, KINDS, POOLED_CONFIGS, cnn_runs, final_accuracies


@pytest.fixture(scope="module")
def images():
    torch.set_num_threads(1)
    return load_digits(images=True, tensors=True)


@pytest.fixture(scope="module")
def acc(images):
    return final_accuracies(cnn_runs(images, SEEDS, CONFIGS))  # {(kind, 32): (seeds,)}


@pytest.fixture(scope="module")
def pooled(images):
    return final_accuracies(cnn_runs(images, SEEDS, POOLED_CONFIGS, net="pooled"))


def test_s5a_every_norm_learns_the_digits_at_batch_32(acc):
    worst = np.min([acc[k, 32] for k in KINDS], axis=0)  # per seed, the lowest of the four
    record("lesson 5 §5a", "all four norms above 90% test accuracy at batch 32", worst, 0.9)


def test_s5a_the_four_norms_are_within_10_points_at_batch_32(acc):
    spread = np.ptp([acc[k, 32] for k in KINDS], axis=0)  # per seed, best minus worst
    record("lesson 5 §5a", "at batch 32, best minus worst norm < 0.1", spread, 0.1, above=False)


def test_s5b_bn_learns_at_batch_32_in_the_pooled_cnn(pooled):
    record("lesson 5 §5b", "pooled CNN: BN at batch 32 above 90%", pooled["bn", 32], 0.9)


def test_s5b_bn_fails_at_batch_2_in_the_pooled_cnn(pooled):
    drop = pooled["bn", 32] - pooled["bn", 2]
    record("lesson 5 §5b", "pooled CNN: BN loses > 0.2 from batch 32 to batch 2", drop, 0.2)


def test_s5b_gn_does_not_fail_at_batch_2_in_the_pooled_cnn(pooled):
    drop = pooled["gn", 32] - pooled["gn", 2]
    record(
        "lesson 5 §5b", "pooled CNN: GN loses < 0.05 from batch 32 to 2", drop, 0.05, above=False
    )
    record("lesson 5 §5b", "pooled CNN: GN at batch 2 above 80%", pooled["gn", 2], 0.8)


def test_s5b_gn_beats_bn_at_batch_2_in_the_pooled_cnn(pooled):
    gap = pooled["gn", 2] - pooled["bn", 2]
    record("lesson 5 §5b", "pooled CNN, batch 2: GN beats BN by > 0.15", gap, 0.15)
