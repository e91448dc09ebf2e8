"""Lesson 1's claims (notebooks/01_bn_formulas.ipynb), each checked for seeds 0-4.

Every experiment runs through bnlib.experiments.lesson01, the functions the notebook calls, at the
lesson's configuration (the notebook shows seed 0 for §0, seeds 0-2 for §5c, seeds 0-4 for §5d; the
tests run seeds 0-4 everywhere). The seed sets the initial weights and the batch order. All three
come from float32 training, so they are asserted with a margin; the weakest seed is printed at the
end of the pytest run.
"""

import numpy as np
import pytest
from claims import SEEDS, record

from bnlib.experiments import lesson01 as L


@pytest.fixture(scope="module")
def deep_runs(data):
    """§0 for every seed: {bn: [DeepRun per seed]} (about 1 s per seed)."""
    return {bn: [L.deep_sigmoid(data, bn, seed) for seed in SEEDS] for bn in (False, True)}


# --- §0: why normalize? -------------------------------------------------------------------------


def test_s0_without_bn_the_spread_shrinks_with_depth(deep_runs):
    """The last hidden layer's pre-activation spread is below 1% of the first layer's, at init and
    after training (the text: "a hundredth of the first layer's or less, before and after")."""
    ratios = [
        max(r.spread_init[-1] / r.spread_init[0], r.spread_trained[-1] / r.spread_trained[0])
        for r in deep_runs[False]
    ]
    record("lesson 1 §0", "no BN: last/first layer spread < 0.01", ratios, 0.01, above=False)


def test_s0_without_bn_the_gradient_fades_towards_the_input(deep_runs):
    """At init, the gradient reaching the first hidden layer's weights is below 1% of the one
    reaching the last hidden layer's without BN, and within a factor 2 of it with BN (the text:
    "the backward signal fades too", and the third panel)."""
    plain = [r.grad_init[0] / r.grad_init[-1] for r in deep_runs[False]]
    normed = [r.grad_init[0] / r.grad_init[-1] for r in deep_runs[True]]
    record("lesson 1 §0", "no BN: first/last layer gradient < 0.01", plain, 0.01, above=False)
    record("lesson 1 §0", "BN: first/last layer gradient > 0.5", normed, 0.5)
    record("lesson 1 §0", "BN: first/last layer gradient < 2", normed, 2.0, above=False)


def test_s0_with_bn_every_layer_keeps_a_spread_near_one(deep_runs):
    """With BN every layer's pre-activations have spread between 0.5 and 2, at init and after."""
    lows = [min(r.spread_init.min(), r.spread_trained.min()) for r in deep_runs[True]]
    highs = [max(r.spread_init.max(), r.spread_trained.max()) for r in deep_runs[True]]
    record("lesson 1 §0", "BN: every layer's spread > 0.5", lows, 0.5)
    record("lesson 1 §0", "BN: every layer's spread < 2", highs, 2.0, above=False)


def test_s0_with_bn_the_deep_sigmoid_net_trains_without_it_does_not(deep_runs):
    """Final test accuracy: with BN above 0.8; without BN below 0.2 (chance is 0.1)."""
    record("lesson 1 §0", "BN: test accuracy > 0.8", [r.final_acc for r in deep_runs[True]], 0.8)
    record(
        "lesson 1 §0",
        "no BN: test accuracy < 0.2",
        [r.final_acc for r in deep_runs[False]],
        0.2,
        above=False,
    )


# --- §5c: the scale of the initial weights --------------------------------------------------------


@pytest.fixture(scope="module")
def sweeps(data):
    """§5c for every seed: [{bn: (S,) accuracies}] (14 short runs per seed, about 3 s)."""
    return [L.init_scale_sweep(data, seed) for seed in SEEDS]


def test_s5c_with_bn_every_init_scale_trains(sweeps):
    """With BN the test accuracy is above 0.85 at every weight std from 0.001 to 1."""
    record(
        "lesson 1 §5c", "BN: accuracy > 0.85 at every std", [s[True].min() for s in sweeps], 0.85
    )


def test_s5c_without_bn_only_a_narrow_window_trains(sweeps):
    """Without BN the net stays at chance (< 0.2) at the smallest std (0.001 to 0.01) and at
    std = 1, and trains (> 0.7) somewhere in between."""
    stds = np.array(L.INIT_SCALE["stds"])
    small, large = stds <= 0.01 + 1e-12, stds >= 1 - 1e-12
    record(
        "lesson 1 §5c",
        "no BN: accuracy < 0.2 at std <= 0.01 and std = 1",
        [s[False][small | large].max() for s in sweeps],
        0.2,
        above=False,
    )
    record("lesson 1 §5c", "no BN: best accuracy > 0.7", [s[False].max() for s in sweeps], 0.7)


# --- §5d: before or after the nonlinearity --------------------------------------------------------


@pytest.fixture(scope="module")
def placements(data):
    return [L.placement_runs(data, seed) for seed in SEEDS]


def test_s5d_bn_before_and_after_the_relu_both_train(placements):
    """Both placements reach a test accuracy above 0.85, and differ by less than 0.1."""
    record(
        "lesson 1 §5d",
        "before and after: accuracy > 0.85",
        [min(p.values()) for p in placements],
        0.85,
    )
    record(
        "lesson 1 §5d",
        "|before - after| < 0.1",
        [abs(p["before"] - p["after"]) for p in placements],
        0.1,
        above=False,
    )
