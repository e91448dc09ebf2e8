"""Lesson 3's claims (notebooks/03_why_bn_works.ipynb), each checked for every seed in SEEDS.

Every experiment is the lesson's own function in bnlib.experiments.lesson03, at the lesson's
configuration; the seed sets the initial weights and the order of the batches. One change only:
the Fig. 1 runs here keep no whole-batch snapshots (keep_every), which only the lesson's viewer
widget shows, so the training and every number the claims use are the lesson's. Each test names
the lesson section it guards and records its weakest seed (tests/claims.py).
"""

import copy
import math

import numpy as np
import pytest
import torch
from claims import SEEDS, record

from bnlib.experiments import lesson03 as L
from bnlib.train import accuracy


@pytest.fixture(scope="module")
def fig1(data):
    """§1, §5: {seed: fig1_summary} for the three sigmoid networks (no BN, BN, noisy BN)."""
    return {s: L.fig1_summary(L.fig1_runs(data, s, keep_every=10**6)) for s in SEEDS}


@pytest.fixture(scope="module")
def sweep(data):
    """§3: {seed: {(kind, lr): History}}."""
    return {s: L.sweep_runs(data, s) for s in SEEDS}


@pytest.fixture(scope="module")
def tracked(data):
    """§6-§8: {seed: {kind: (model, History, measures)}}."""
    return {s: L.track_runs(data, s) for s in SEEDS}


def _ratio(fig1, key, a="bn", b="none"):
    return [fig1[s][a][key] / fig1[s][b][key] for s in SEEDS]


def test_s1_bn_keeps_the_sigmoid_inputs_steadier(fig1):
    """Drift: the range of the 50-step average of the per-batch median and band (L.drift), so
    that batch-to-batch noise is not counted as movement."""
    record(
        "lesson 3 §1",
        "BN's median drift < 0.25x no BN's",
        _ratio(fig1, "median drift"),
        0.25,
        above=False,
    )
    record(
        "lesson 3 §1",
        "BN's band drift < 0.25x no BN's",
        _ratio(fig1, "band drift"),
        0.25,
        above=False,
    )
    record("lesson 3 §1", "BN's final band is narrower", _ratio(fig1, "final band"), 1, above=False)


def test_s1_bn_reaches_90_percent_at_least_ten_times_sooner(fig1):
    record(
        "lesson 3 §1",
        "steps to 90%: no BN / BN > 10",
        _ratio(fig1, "steps to 90%", "none", "bn"),
        10,
    )


def test_s1_without_bn_test_accuracy_stays_near_chance_for_300_steps(fig1):
    record(
        "lesson 3 §1",
        "no BN: steps to 20% test accuracy > 300",
        [fig1[s]["none"]["steps to 20%"] for s in SEEDS],
        300,
    )


def test_s3_bn_tolerates_10_times_the_learning_rate(sweep):
    """On the grid (steps of about 3x): BN's largest working rate is 1 (1 works, 3 fails), the
    plain network's 0.1 or 0.3 (0.1 works; 0.3 fails in most seeds, at an accuracy that varies
    much with the seed and the CPU)."""
    largest = {k: [L.largest_working_lr(sweep[s], k) for s in SEEDS] for k in ("none", "bn")}
    ratios = np.divide(largest["bn"], largest["none"])
    # 10 on this machine's kernels in every seed, but 3.3 for seed 1 under avx2: no BN just works
    # at 0.3 there. The text says "3 to 10 times".
    record("lesson 3 §3", "largest working lr: BN / no BN > 2.9 (3.3 on the grid)", ratios, 2.9)
    record("lesson 3 §3", "largest working lr: BN / no BN < 10.1", ratios, 10.1, above=False)
    at = {lr: [L.end_accuracy(sweep[s]["none", lr]) for s in SEEDS] for lr in (0.1, 0.3)}
    record("lesson 3 §3", "no BN: lr 0.1 works (end accuracy)", at[0.1], L.WORKS)
    fails = sum(a < L.WORKS for a in at[0.3])
    record("lesson 3 §3", "no BN: lr 0.3 fails in most seeds (seeds failing)", [fails], 2.5)
    at1 = {k: [L.end_accuracy(sweep[s][k, 1.0]) for s in SEEDS] for k in ("none", "bn")}
    record("lesson 3 §3", "lr 1: BN works (end accuracy)", at1["bn"], L.WORKS)
    record("lesson 3 §3", "lr 1: no BN fails (end accuracy < 0.5)", at1["none"], 0.5, above=False)
    at3 = [L.end_accuracy(sweep[s]["bn", 3.0]) for s in SEEDS]
    record("lesson 3 §3", "lr 3: BN fails too (end accuracy < 0.5)", at3, 0.5, above=False)


def test_s3_bn_best_run_reaches_95_percent_at_least_twice_as_fast(sweep):
    best = {
        k: [min(L.steps_to_target(sweep[s], k).values()) for s in SEEDS] for k in ("none", "bn")
    }
    record(
        "lesson 3 §3",
        "steps to 95%, best lr: no BN / BN > 2",
        np.divide(best["none"], best["bn"]),
        2,
    )


def test_s3_a_larger_learning_rate_does_not_make_bn_faster(sweep):
    ratios = []
    for s in SEEDS:
        t = L.steps_to_target(sweep[s], "bn")
        ratios.append(t[1.0] / min(v for lr, v in t.items() if lr <= 0.1))
    record("lesson 3 §3", "BN steps to 95%: lr 1 / best lr <= 0.1 > 1", ratios, 1)


def test_s4_sigmoid_gradients_vanish_without_bn_and_not_with_it(data):
    runs = [L.sigmoid_gradient_norms(data, s) for s in SEEDS]
    ratio = lambda g: g[0] / g[-1]  # noqa: E731  first layer against the output layer
    every = lambda g: np.abs(np.log10(g / g[-1])).max()  # noqa: E731  the layer furthest off
    for step in (0, 300):
        record(
            "lesson 3 §4",
            f"no BN, step {step}: first/output layer gradient < 1e-6",
            [ratio(r["none", step]) for r in runs],
            1e-6,
            above=False,
        )
        record(
            "lesson 3 §4",
            f"BN, step {step}: every layer / output layer within 10x of 1 (|log10| < 1)",
            [every(r["bn", step]) for r in runs],
            1,
            above=False,
        )


def test_s4_why_the_sigmoid_gradients_vanish_without_bn_and_not_with_it(data):
    """At initialization: the plain sigmoids are not saturated, BN lowers their slope, and BN's
    backward pass divides by a batch standard deviation below 1/4 (the 1/a of §3b)."""
    runs = [L.sigmoid_slopes(data, s) for s in SEEDS]
    record(
        "lesson 3 §4",
        "no BN: mean sigmoid slope > 0.9 x 1/4 in every layer",
        [r["slope"]["none"].min() for r in runs],
        0.9 * 0.25,
    )
    record(
        "lesson 3 §4",
        "BN's mean sigmoid slope < no BN's in every layer (largest ratio < 1)",
        [(r["slope"]["bn"] / r["slope"]["none"]).max() for r in runs],
        1,
        above=False,
    )
    record(
        "lesson 3 §4",
        "BN: batch std of every BN's input < 1/4",
        [r["bn input std"].max() for r in runs],
        0.25,
        above=False,
    )


def test_s4b_bn_makes_gradients_grow_with_depth_in_plain_relu_nets(data):
    runs = [L.relu_gradient_ratios(data, s) for s in SEEDS]
    growth = [
        min(r["bn", b] / r["bn", a] for a, b in zip(L.DEPTHS[:-1], L.DEPTHS[1:], strict=True))
        for r in runs
    ]
    record("lesson 3 §4b", "BN's ratio grows at every depth step (smallest factor > 1)", growth, 1)
    at50 = [r["bn", 50] for r in runs]
    record("lesson 3 §4b", "BN at depth 50: first/last hidden > 1e3", at50, 1e3)
    record("lesson 3 §4b", "BN at depth 50: first/last hidden < 1e5", at50, 1e5, above=False)
    record(
        "lesson 3 §4b",
        "no BN: first/last hidden within 10x of 1 at every depth",
        [max(abs(math.log10(r["none", d])) for d in L.DEPTHS) for r in runs],
        1,
        above=False,
    )


def test_s5_noisy_bn_trains_about_as_well_as_bn_and_far_better_than_none(fig1):
    end = {k: np.array([fig1[s][k]["end accuracy"] for s in SEEDS]) for k in L.FIG1_KINDS}
    record(
        "lesson 3 §5",
        "|noisy BN - BN| end accuracy < 0.02",
        abs(end["noisy BN"] - end["bn"]),
        0.02,
        above=False,
    )
    record(
        "lesson 3 §5", "noisy BN - no BN end accuracy > 0.02", end["noisy BN"] - end["none"], 0.02
    )
    record(
        "lesson 3 §5",
        "steps to 90%: no BN / noisy BN > 10",
        _ratio(fig1, "steps to 90%", "none", "noisy BN"),
        10,
    )
    record(
        "lesson 3 §5",
        "noisy BN's median jitter (batch to batch) > 3x BN's",
        _ratio(fig1, "median jitter", "noisy BN", "bn"),
        3,
    )


def test_s6_ics_smaller_with_bn_mostly_because_its_gradients_are(tracked):
    summary = {s: {k: L.ics_summary(m) for k, (_, _, m) in tracked[s].items()} for s in SEEDS}
    absolute = np.array([summary[s]["bn"][0] / summary[s]["none"][0] for s in SEEDS])
    relative = np.array([summary[s]["bn"][1] / summary[s]["none"][1] for s in SEEDS])
    record("lesson 3 §6", "ICS: BN / no BN < 1", absolute, 1, above=False)
    record("lesson 3 §6", "ICS per unit of gradient: BN / no BN > 0.4", relative, 0.4)
    record("lesson 3 §6", "relative ratio > 1.5x the absolute one", relative / absolute, 1.5)
    # per unit of gradient BN does not reduce ICS in every seed: larger in some, smaller in others
    record(
        "lesson 3 §6", "ICS per unit of gradient: BN / no BN > 1 in some seed", [max(relative)], 1
    )
    record(
        "lesson 3 §6",
        "ICS per unit of gradient: BN / no BN < 1 in some seed",
        [min(relative)],
        1,
        above=False,
    )


def test_s6_at_step_25_bns_ics_is_the_larger(tracked):
    """The first measurement, while the plain network is still on its initial plateau."""
    first = {
        k: np.array([[v[0] for v in L.ics_per_step(tracked[s][k][2])] for s in SEEDS])
        for k in ("none", "bn")
    }  # (seeds, 2): ICS, ICS / ||G|| at step 25
    ratio = first["bn"] / first["none"]
    record("lesson 3 §6", "step 25: ICS, BN / no BN > 3", ratio[:, 0], 3)
    record("lesson 3 §6", "step 25: ICS per unit of gradient, BN / no BN > 3", ratio[:, 1], 3)


def _landscape_ratios(tracked, name):
    """{seed: (steps (M,), BN / no BN (M,))} for a landscape measure."""
    out = {}
    for s in SEEDS:
        none, bn = tracked[s]["none"][2], tracked[s]["bn"][2]
        out[s] = none["step"], bn[name] / np.maximum(none[name], 1e-30)
    return out


@pytest.mark.parametrize("name", ["loss_range", "grad_change"])
def test_s7_the_landscape_is_smoother_with_bn_from_step_50_to_100(tracked, name):
    """Once a window of 50-150; since the layers before BN lost their bias (bnlib.train.mlp), the
    BN network's initial weights differ, and in some seeds BN's landscape is already the rougher
    one at steps 125-150."""
    ratios = _landscape_ratios(tracked, name)
    worst = [r[(steps >= 50) & (steps <= 100)].max() for steps, r in ratios.values()]
    record(
        "lesson 3 §7",
        f"{name}, steps 50-100: BN / no BN < 1 at every measurement",
        worst,
        1,
        above=False,
    )


def test_s7_at_step_25_bn_is_the_rougher(tracked):
    for name, threshold in (("grad_change", 1.5), ("loss_range", 1)):
        ratios = _landscape_ratios(tracked, name)
        assert all(steps[0] == 25 for steps, _ in ratios.values())
        record(
            "lesson 3 §7",
            f"{name} at step 25: BN / no BN > {threshold}",
            [r[0] for _, r in ratios.values()],
            threshold,
        )


@pytest.mark.parametrize("name", ["loss_range", "grad_change"])
def test_s7_after_step_100_neither_is_consistently_smoother(tracked, name):
    late = np.concatenate(
        [r[steps > 100] for steps, r in _landscape_ratios(tracked, name).values()]
    )
    share = [np.mean(late > 1)]  # pooled over seeds and measurements
    record("lesson 3 §7", f"{name} after step 100: share with BN larger > 0.1", share, 0.1)
    record(
        "lesson 3 §7", f"{name} after step 100: share with BN larger < 0.6", share, 0.6, above=False
    )


def test_s8_batch_mates_change_a_samples_output_only_with_bn(tracked, data):
    spread = {}
    for kind in ("none", "bn"):
        values = []
        for s in SEEDS:
            model = tracked[s][kind][0]
            before = copy.deepcopy(model.state_dict())
            values.append(L.batch_mate_spread(model, data.x_test[:1], data.x_train, seed=s))
            after = model.state_dict()  # NB: the lesson once changed the running statistics here
            assert all(torch.equal(before[k], after[k]) for k in before), "the model was changed"
            assert not model.training
        spread[kind] = values
    record(
        "lesson 3 §8",
        "no BN: the logits do not vary (sd < 1e-6)",
        spread["none"],
        1e-6,
        above=False,
    )
    record(
        "lesson 3 §8",
        "BN: one digit's logits vary with its batch-mates (sd > 0.1)",
        spread["bn"],
        0.1,
    )


def test_s8_bn_generalizes_no_worse_here(tracked, data):
    def gap_and_test(model):
        test = accuracy(model, data.x_test, data.y_test)
        return accuracy(model, data.x_train, data.y_train) - test, test

    got = {k: [gap_and_test(tracked[s][k][0]) for s in SEEDS] for k in ("none", "bn")}
    gaps = [n[0] - b[0] for n, b in zip(got["none"], got["bn"], strict=True)]
    tests = [b[1] - n[1] for n, b in zip(got["none"], got["bn"], strict=True)]
    record("lesson 3 §8", "train-test gap: no BN's - BN's > -0.01", gaps, -0.01)
    record("lesson 3 §8", "test accuracy: BN - no BN > 0", tests, 0)
