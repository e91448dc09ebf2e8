"""Lesson 4's claims (notebooks/04_small_batches.ipynb), each checked for seeds 0-4.

Every experiment runs through bnlib.experiments.lesson04, the functions the notebook calls, at the
lesson's configuration: the notebook shows seeds 0-2 (§4-§6) or seed 0 (frozen fine-tuning, §7);
here every claim is checked for all five. A seed sets the initial weights and the batch order.
The accuracies come from float32 training (§7: float64) and are asserted with a margin; the
weakest seed of each is printed at the end of the pytest run. Structural facts (LN's train and
eval modes agree, SyncBN's statistics are identical on both processes) are asserted exactly.

Quotable (lesson 6): at batch 2, BN's test accuracy is 12-40 points below LN's and GN's in every
run, and 20-35 points below their average on the mean over seeds 0-4.
"""

import numpy as np
import pytest
from claims import SEEDS, record

from bnlib.experiments import lesson04 as L
from bnlib.plots import WU_HE_IMAGENET


@pytest.fixture(scope="module")
def sweep(data):
    """§4's sweep for seeds 0-4: 3 norms x 4 batch sizes x 5 seeds."""
    return L.sweep(data, SEEDS)


# --- §4: accuracy against batch size --------------------------------------------------------------


def test_s4_bn_fails_at_batch_2_where_ln_and_gn_do_not(sweep):
    a = sweep.acc
    lost = {k: a(k, 2) - a("bn", 2) for k in ("ln", "gn")}  # accuracy BN loses, per seed
    record(
        "lesson 4 §4",
        "batch 2: min(LN, GN) - BN accuracy",
        np.minimum(lost["ln"], lost["gn"]),
        0.12,
    )
    record(
        "lesson 4 §4",
        "batch 2: max(LN, GN) - BN accuracy",
        np.maximum(lost["ln"], lost["gn"]),
        0.40,
        above=False,
    )
    mean_lost = np.mean((lost["ln"] + lost["gn"]) / 2)  # over the seeds
    record("lesson 4 §4", "batch 2: (LN + GN)/2 - BN, mean over seeds", [mean_lost], 0.20)
    record(
        "lesson 4 §4", "batch 2: (LN + GN)/2 - BN, mean over seeds", [mean_lost], 0.35, above=False
    )


def test_s4_bn_holds_at_batch_8_and_collapses_at_2(sweep):
    a = sweep.acc
    record("lesson 4 §4", "BN accuracy at batch 8", a("bn", 8), 0.9)
    record("lesson 4 §4", "BN accuracy at batch 2", a("bn", 2), 0.8, above=False)
    imagenet = (WU_HE_IMAGENET["BN"][-1] - WU_HE_IMAGENET["BN"][0]) / 100  # 0.111
    record(
        "lesson 4 §4",
        "BN's error rise 32 -> 2, minus ImageNet's (far more on the digits)",
        a("bn", 32) - a("bn", 2) - imagenet,
        0.05,
    )


def test_s4_ln_and_gn_do_not_fall_at_batch_2(sweep):
    a = sweep.acc
    for k in ("ln", "gn"):
        record("lesson 4 §4", f"{k.upper()}: accuracy at batch 2 - at 32", a(k, 2) - a(k, 32), -0.1)


def test_s4_bn_level_with_or_ahead_of_ln_and_gn_from_batch_8(sweep):
    large = [sweep.batch_sizes.index(n) for n in (8, 16, 32)]
    bn, ln, gn = (sweep.eval_acc[sweep.norms.index(k), large].mean(0) for k in ("bn", "ln", "gn"))
    record(
        "lesson 4 §4",
        "batches 8-32: BN - max(LN, GN), mean accuracy",
        bn - np.maximum(ln, gn),
        -0.02,
    )


def test_s4_every_norm_is_above_90_percent_at_batch_32_on_the_mean(sweep):
    means = [sweep.acc(k, 32).mean() for k in sweep.norms]  # one mean over the seeds per norm
    record("lesson 4 §4", "batch 32: mean accuracy over seeds, worst norm", [min(means)], 0.9)


def test_s4_ln_is_not_worse_at_batch_2_and_gn_ends_where_it_started(sweep):
    """The means over seeds: LN's at batch 2 is not below its batch-32 one (higher by a few points
    on this machine); GN's at batch 2 is within 3 points of its batch-32 one."""
    ln = sweep.acc("ln", 2).mean() - sweep.acc("ln", 32).mean()
    record("lesson 4 §4", "LN: mean accuracy at batch 2 - at 32", [ln], -0.01)
    gn = sweep.acc("gn", 2).mean() - sweep.acc("gn", 32).mean()
    record("lesson 4 §4", "GN: |mean accuracy at batch 2 - at 32|", [abs(gn)], 0.03, above=False)


def test_s4_ln_at_batch_32_is_under_trained_in_2_epochs(data, sweep):
    """LN at batch 32 for LONGER_EPOCHS (8) epochs instead of the sweep's 2: the notebook's cell,
    seeds 0-4."""
    longer = L.longer_training(data, SEEDS, "ln", batch_size=32)
    gain = longer - sweep.acc("ln", 32)
    record("lesson 4 §4", f"LN batch 32: {L.LONGER_EPOCHS} - {L.EPOCHS} epochs accuracy", gain, 0.0)
    record(
        "lesson 4 §4",
        f"LN batch 32: {L.LONGER_EPOCHS} - {L.EPOCHS} epochs accuracy, mean over seeds",
        [gain.mean()],
        0.02,
    )
    record(
        "lesson 4 §4",
        f"LN: batch 32 for {L.LONGER_EPOCHS} epochs - batch 2 for {L.EPOCHS} accuracy",
        longer - sweep.acc("ln", 2),
        -0.02,
    )


# --- §5: train mode against eval mode -------------------------------------------------------------


def test_s5_train_mode_is_far_worse_at_batch_2_and_agrees_at_32(sweep):
    a = sweep.acc
    record(
        "lesson 4 §5", "BN batch 2: eval - train mode accuracy", a("bn", 2) - a("bn", 2, True), 0.15
    )
    record(
        "lesson 4 §5",
        "BN batch 32: |eval - train mode| accuracy",
        np.abs(a("bn", 32) - a("bn", 32, True)),
        0.05,
        above=False,
    )
    others = [sweep.norms.index(k) for k in ("ln", "gn")]
    np.testing.assert_array_equal(sweep.train_acc[others], sweep.eval_acc[others])


# --- §6: remedies ---------------------------------------------------------------------------------


def test_s6_batch_renorm_recovers_part_of_the_loss(data, sweep):
    brn = L.batch_renorm(data, SEEDS)
    bn2 = sweep.acc("bn", 2)
    # How much it recovers swings with the seed and the CPU (2 to over 20 points, seeds 0-4 on
    # three capability levels): every seed gains, and the mean gain is several points.
    record("lesson 4 §6", "batch 2: Batch Renorm - BN accuracy", brn - bn2, 0.0)
    record("lesson 4 §6", "batch 2: Batch Renorm - BN accuracy, mean", [np.mean(brn - bn2)], 0.05)
    free = np.minimum(sweep.acc("ln", 2), sweep.acc("gn", 2))
    record("lesson 4 §6", "batch 2: min(LN, GN) - Batch Renorm accuracy", free - brn, 0.0)
    record("lesson 4 §6", "batch 2: min(LN, GN) - Batch Renorm, mean", [np.mean(free - brn)], 0.05)


def test_s6_ghost_bn_the_statistics_batch_is_what_matters(data, sweep):
    ghost = L.ghost_bn(data, SEEDS, virtual_sizes=(8, 2), batch_size=32)
    bn32 = sweep.acc("bn", 32)
    record(
        "lesson 4 §6",
        "batch 32: |ghost BN over 8 - BN| accuracy",
        np.abs(ghost[8] - bn32),
        0.04,
        above=False,
    )
    record("lesson 4 §6", "batch 32: BN - ghost BN over 2 accuracy", bn32 - ghost[2], 0.15)


def test_s6_frozen_bn_beats_plain_fine_tuning(data):
    runs = np.array([L.frozen_fine_tuning(data, seed) for seed in SEEDS])  # (S, 3)
    before, tuned_bn, tuned_frozen = runs.T
    record("lesson 4 §6", "fine-tuning at batch 2: frozen - plain BN", tuned_frozen - tuned_bn, 0.1)
    record(
        "lesson 4 §6", "fine-tuning at batch 2: frozen - pretrained", tuned_frozen - before, -0.03
    )


# --- §7: synchronized BN --------------------------------------------------------------------------


def test_s7_sync_bn_trains_the_one_process_model_and_local_bn_fails(data):
    """One launch of 2 gloo processes for all five seeds (float64, 100 steps each)."""
    runs = L.sync_vs_local(data, SEEDS)
    assert [r.seed for r in runs] == list(SEEDS)
    assert all(r.same_stats for r in runs)  # bit-identical running statistics on both processes
    record(
        "lesson 4 §7",
        "SyncBN vs one process: largest relative weight difference (float64, 100 steps)",
        [r.rel_gap for r in runs],
        L.FLOAT32_EPS,
        above=False,
    )
    assert all(r.sync_acc == r.single_acc for r in runs)  # hence the same predictions
    record(
        "lesson 4 §7",
        "2 processes x batch 2: SyncBN - local BN accuracy",
        [r.sync_acc - r.local_acc for r in runs],
        0.1,
    )
