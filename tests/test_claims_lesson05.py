"""Lesson 5's claims from its experiment (notebooks/05_norm_family.ipynb §5), for seeds 0-4.

The runs are the lesson's own, at the lesson's configuration: bnlib.experiments.lesson05.cnn_runs
trains the digits CNN for 2 epochs with BN, LN, IN and GN at batch 32 and with BN and GN at batch
2 (about 15-20 s of CPU for the 30 runs). The notebook asserts the same thresholds for the same
seeds; here each claim is asserted for every seed and its weakest margin recorded (tests/claims.py).
The structural claims of §1-§3 (which values share statistics, GN spanning LN to IN, batch
independence) are exact and tested in tests/test_norm_family.py.
"""

import numpy as np
import pytest
import torch
from claims import SEEDS, record

from bnlib.data import load_digits
from bnlib.experiments.lesson05 import CONFIGS, KINDS, cnn_runs, final_accuracies


@pytest.fixture(scope="module")
def acc():
    torch.set_num_threads(1)
    images = load_digits(images=True, tensors=True)
    return final_accuracies(cnn_runs(images, SEEDS, CONFIGS))  # {(kind, N): (seeds,)}


def test_s5_every_norm_learns_the_digits_at_batch_32(acc):
    worst = np.min([acc[k, 32] for k in KINDS], axis=0)  # per seed, the lowest of the four
    record("lesson 5 §5", "all four norms above 90% test accuracy at batch 32", worst, 0.9)


def test_s5_the_four_norms_are_within_10_points_at_batch_32(acc):
    spread = np.ptp([acc[k, 32] for k in KINDS], axis=0)  # per seed, best minus worst
    record("lesson 5 §5", "at batch 32, best minus worst norm < 0.1", spread, 0.1, above=False)


def test_s5_bn_does_not_fail_at_batch_2_in_the_cnn(acc):
    drop = acc["bn", 32] - acc["bn", 2]
    record(
        "lesson 5 §5", "CNN: BN at batch 2 loses < 0.05 against batch 32", drop, 0.05, above=False
    )


def test_s5_gn_learns_the_digits_at_batch_2(acc):
    record("lesson 5 §5", "CNN: GN at batch 2 above 90% test accuracy", acc["gn", 2], 0.9)


def test_s5_every_run_in_the_figure_ends_above_85_percent(acc):
    """The figure's assert: each curve's last evaluation, BN at batch 2 included."""
    worst = np.min([acc[key] for key in acc], axis=0)  # per seed, the lowest configuration
    record("lesson 5 §5", "figure: every configuration ends above 85%", worst, 0.85)
