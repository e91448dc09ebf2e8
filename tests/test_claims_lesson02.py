"""Lesson 2's claims (notebooks/02_train_vs_eval.ipynb), each checked for seeds 0-4.

Every experiment runs through bnlib.experiments.lesson02, the functions the notebook calls, at the
lesson's configuration: the digits MLP pretrained for 3 epochs (one per seed: initial weights and
batch order), then §3a-§3e on it. The seed of §3e's fine-tuning batches is the model's seed. The
§2 table is float64 numpy, so its claims are exact; the others come from float32 training and are
asserted with a margin (the weakest seed is printed at the end of the pytest run).
"""

import numpy as np
import pytest
from claims import SEEDS, record

from bnlib.experiments import lesson02 as L
from bnlib.train import accuracy

PLAIN, NO_GRAD, EVAL_ONCE, FROZEN = L.WAYS


@pytest.fixture(scope="module")
def models(data):
    """The pretrained MLP of §3 for each seed (about 0.5 s each)."""
    return {seed: L.pretrained_mlp(data, seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def fine_tuned(data, models):
    """§3e for every seed: (pretrained accuracy {seed: acc}, {way: [FineTuned per seed]})."""
    return L.fine_tuning_runs(data, SEEDS, models=models)


# --- §2: the momentum table (exact: float64 numpy from seeded generators) ------------------------


def test_s2_averaging_tames_the_batch_noise():
    errors = [L.running_var_errors(seed) for seed in SEEDS]
    record(
        "lesson 2 §2",
        "N=2: rms error at momentum 1 over momentum 0.1",
        [e[1.0, 2][0] / e[0.1, 2][0] for e in errors],
        3,
    )
    record(
        "lesson 2 §2",
        "N=2: rms error at momentum 0.1 over the cumulative average",
        [e[0.1, 2][0] / e[None, 2][0] for e in errors],
        2,
    )


def test_s2_momentum_001_still_lags_at_step_300():
    lags = [L.running_var_errors(seed)[0.01, 64][1] for seed in SEEDS]
    record("lesson 2 §2", "N=64, momentum 0.01: mean error of running_var", lags, -0.1, above=False)


# --- §3: train() and eval() ---------------------------------------------------------------------


def test_s3a_forgetting_eval_makes_answers_depend_on_the_batch(data, models):
    runs = [L.forgot_eval(models[s], data.x_test, data.y_test) for s in SEEDS]
    record(
        "lesson 2 §3a", "share of digits with > 1 answer", [r.share_ambiguous for r in runs], 0.5
    )
    record(
        "lesson 2 §3a",
        "eval-mode accuracy minus train-mode accuracy (batches of 8)",
        [r.eval_acc - r.train_mode_acc for r in runs],
        0.05,
    )
    right = [(r.eval_answers == data.y_test).numpy() & (r.distinct >= 3) for r in runs]
    assert all(ok.any() for ok in right)  # the figure's digit exists


@pytest.fixture(scope="module")
def spoiled(data, models):
    return [L.spoil_and_recalibrate(models[s], data) for s in SEEDS]


def test_s3c_evaluating_in_train_mode_spoils_the_statistics(spoiled):
    record("lesson 2 §3c", "largest move of running_mean", [r["moved"] for r in spoiled], 0.1)
    record(
        "lesson 2 §3c",
        "accuracy lost by the spoiled model",
        [r["eval_acc"] - r["spoiled_acc"] for r in spoiled],
        0.04,
    )


def test_s3d_recalibration_repairs_the_spoiled_model_completely(spoiled):
    assert all(r["same_statistics"] for r in spoiled)  # exactly the healthy model's statistics
    assert all(r["repaired_acc"] == r["healthy_acc"] for r in spoiled)
    record(
        "lesson 2 §3d",
        "accuracy regained by recalibrating the spoiled model",
        [r["repaired_acc"] - r["spoiled_acc"] for r in spoiled],
        0.04,
    )


def test_s3d_recalibration_changes_the_healthy_model_little(spoiled):
    record(
        "lesson 2 §3d",
        "|healthy recalibrated - healthy| accuracy",
        [abs(r["healthy_acc"] - r["eval_acc"]) for r in spoiled],
        0.03,
        above=False,
    )


# --- §3e: fine-tuning with BN "frozen" -----------------------------------------------------------


def test_s3e_what_each_way_freezes(fine_tuned):
    _, runs = fine_tuned
    expected = {PLAIN: (True, True), NO_GRAD: (True, False), EVAL_ONCE: (True, True)}
    expected[FROZEN] = (False, True)
    for way, moved in expected.items():
        assert all((r.stats_moved, r.gamma_moved) == moved for r in runs[way]), way
    # bn.eval() before the loop is undone by the loop's model.train(): plain fine-tuning exactly
    assert [r.acc for r in runs[EVAL_ONCE]] == [r.acc for r in runs[PLAIN]]


def test_s3e_frozen_bn_beats_plain_fine_tuning(fine_tuned):
    _, runs = fine_tuned
    frozen = np.array([r.acc for r in runs[FROZEN]])
    for way in (PLAIN, NO_GRAD):
        gaps = frozen - [r.acc for r in runs[way]]
        record("lesson 2 §3e", f"freeze_batchnorm minus '{way}'", gaps, 0.05)


def test_s3e_frozen_bn_keeps_the_pretrained_accuracy(fine_tuned):
    pretrained, runs = fine_tuned
    changes = [abs(r.acc - pretrained[s]) for s, r in zip(SEEDS, runs[FROZEN], strict=True)]
    record("lesson 2 §3e", "|freeze_batchnorm - pretrained| accuracy", changes, 0.05, above=False)


def test_s3e_recalibration_does_not_rescue_plain_fine_tuning(fine_tuned):
    _, runs = fine_tuned
    gaps = [f.acc - p.recalibrated_acc for f, p in zip(runs[FROZEN], runs[PLAIN], strict=True)]
    record("lesson 2 §3e", "freeze_batchnorm minus plain, recalibrated", gaps, 0.03)


def test_s3e_frozen_bn_needs_a_small_learning_rate(data, models):
    """At lr 0.01 (20 steps: the lesson's earlier set-up) frozen BN loses > 10 points in most
    seeds: the third-largest drop over seeds 0-4 is above 0.1."""
    drops = []
    for seed in SEEDS:
        tuned = L.fine_tune(models[seed], L.WAYS[FROZEN], data, seed=seed, steps=20, lr=0.01)
        drops.append(accuracy(models[seed], data.x_test, data.y_test) - tuned.acc)
    third = sorted(drops)[-3]
    record("lesson 2 §3e", "lr 0.01, 20 steps: frozen BN's 3rd-largest accuracy drop", [third], 0.1)
