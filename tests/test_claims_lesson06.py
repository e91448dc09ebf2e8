"""Lesson 6's claims (notebooks/06_exam_review.ipynb), for seeds 0-4.

Two kinds. The review's own experiments run at the lesson's configuration, through the same
functions the notebook calls (bnlib.experiments.lesson06): exam point 2 (the digits MLP with and
without BN at lr 0.1 and 1, 300 steps) and exam point 3 (that MLP's answers in train mode).
And the review restates in words results that lessons 3 and 4 measure; each wording is checked
here on a small version of that experiment, so the review never depends on one run's digits:
exam point 4 (BN against LN on the digits MLP at batch 2, lesson 4's setup: 2 epochs, linear
learning-rate scaling) and questions 2 and 3 (gradient ratios at initialization, lesson 3 §4b and
§4: one backward pass each). About 10 s of CPU in all.
"""

import numpy as np
import pytest
from claims import SEEDS, record

from bnlib.experiments.lesson06 import (
    gradient_ratio,
    lr_runs,
    small_batch_accuracies,
    train_mode_answers,
)


@pytest.fixture(scope="module")
def runs(data):
    return [lr_runs(data, seed) for seed in SEEDS]


def _acc(runs, kind, lr):
    return [r[kind, lr][1].final_test_acc for r in runs]


def test_ep2_both_learn_at_lr_0_1(runs):
    worst = np.minimum(_acc(runs, "none", 0.1), _acc(runs, "bn", 0.1))
    record("lesson 6 ep2", "MLP with and without BN above 90% at lr 0.1", worst, 0.9)


def test_ep2_at_lr_1_only_bn_learns(runs):
    record("lesson 6 ep2", "MLP with BN above 85% at lr 1", _acc(runs, "bn", 1.0), 0.85)
    record(
        "lesson 6 ep2",
        "MLP without BN below 20% at lr 1",
        _acc(runs, "none", 1.0),
        0.2,
        above=False,
    )


def test_ep3_most_digits_change_their_answer_in_train_mode(runs, data):
    shares = []
    for r in runs:
        answers = train_mode_answers(r["bn", 0.1][0], data.x_test[:100], batch_size=4)
        shares.append((answers != answers[:, :1]).any(dim=1).float().mean().item())
    record("lesson 6 ep3", "train mode: over half of 100 digits change answer", shares, 0.5)


def test_ep4_bn_ends_more_than_ten_points_below_ln_at_batch_2(data):
    gaps = []
    for seed in SEEDS:
        acc = small_batch_accuracies(data, seed, kinds=("bn", "ln"), batch_size=2)
        gaps.append(acc["ln"] - acc["bn"])
    record("lesson 6 ep4", "MLP at batch 2: LN minus BN accuracy > 0.1", gaps, 0.1)


def test_q7_bn_gradient_at_50_plain_relu_layers_is_thousands_of_times_the_last(data):
    ratios = [gradient_ratio(data, seed, depth=50, activation="relu", norm="bn") for seed in SEEDS]
    record("lesson 6 q7", "50 ReLU layers with BN: first/last gradient > 1000", ratios, 1000)


def test_q8_sigmoid_gradient_vanishes_without_bn_and_not_with_it(data):
    plain = [
        gradient_ratio(data, seed, depth=10, activation="sigmoid", norm="none") for seed in SEEDS
    ]
    with_bn = [
        gradient_ratio(data, seed, depth=10, activation="sigmoid", norm="bn") for seed in SEEDS
    ]
    record("lesson 6 q8", "10 sigmoid layers: first/last gradient < 1e-6", plain, 1e-6, above=False)
    record("lesson 6 q8", "... with BN: first/last gradient > 0.1", with_bn, 0.1)
    record("lesson 6 q8", "... with BN: first/last gradient < 10", with_bn, 10, above=False)
