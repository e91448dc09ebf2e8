"""Exercise 3's claims (solutions/ex03_inside_training.ipynb, "what the last sigmoid layer sees"),
each checked for seeds 0-4.

The solution shows one run (seed 0) of the lesson's sigmoid network, 500 steps, with and without
BN, and the text draws from it: without BN the last layer's input starts almost constant over the
batch and barely spreads out in training; with BN its spread starts near 2 (the 15th-85th
percentile range of a standard normal, about 2.07) and grows. Here the seed sets both the initial
weights and the batch order. bnlib.hooks.layer_percentiles is the course's version of task 1 (it
does not restore BN's buffers, which changes nothing here: the probes run in train mode, where BN
uses the batch's statistics).
"""

import numpy as np
import pytest
import torch
from claims import SEEDS, record

from bnlib.hooks import layer_percentiles
from bnlib.train import mlp, train


def last_layer_spreads(data, kind, seed):
    """(spread before, spread after 500 steps) of the last sigmoid layer's input: the mean over
    units of its 85th minus 15th percentile over 200 test digits, in train mode."""
    torch.manual_seed(seed)
    model = mlp((64, 100, 100, 100, 10), norm=kind, activation="sigmoid")
    probe = data.x_test[:200]
    before = layer_percentiles(model, probe)
    train(model, data, steps=500, batch_size=60, lr=0.2, seed=seed)
    model.train()
    after = layer_percentiles(model, probe)
    last = list(after)[-1]
    return tuple(float(np.mean(p[last][-1] - p[last][0])) for p in (before, after))


@pytest.fixture(scope="module")
def spreads(data):
    return {k: [last_layer_spreads(data, k, s) for s in SEEDS] for k in ("none", "bn")}


def test_without_bn_the_last_layer_input_is_nearly_constant_and_stays_so(spreads):
    record(
        "ex03 use 2", "no BN: spread at init", [b for b, _ in spreads["none"]], 0.05, above=False
    )
    record(
        "ex03 use 2",
        "no BN: spread after 500 steps",
        [a for _, a in spreads["none"]],
        0.2,
        above=False,
    )


def test_with_bn_the_spread_starts_near_2_and_grows(spreads):
    before = [b for b, _ in spreads["bn"]]
    record("ex03 use 2", "BN: spread at init", before, 1.8)
    record("ex03 use 2", "BN: spread at init", before, 2.4, above=False)
    record(
        "ex03 use 2",
        "BN: growth of the spread in 500 steps",
        [a - b for b, a in spreads["bn"]],
        0.5,
    )
