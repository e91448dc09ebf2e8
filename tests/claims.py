"""Shared by the claims suites (tests/test_claims_lessonNN.py): seeds and margin records.

A claim the lessons draw from an experiment must hold for every seed in SEEDS (model init and
data order), not for the one run a notebook stores. Each claims test measures the quantity the
prose relies on for every seed, asserts the claim for each, and records its *weakest margin* (how
far the worst seed is from failing) with `record`. pytest prints all records at the end of the
run (conftest.py: pytest_terminal_summary), so a margin that shrinks toward zero is seen before a
machine turns it red.

    from claims import SEEDS, record

    def test_s3e_frozen_bn_beats_plain_fine_tuning():
        gaps = [frozen(s) - plain(s) for s in SEEDS]
        record("lesson 2 §3e", "frozen BN beats plain fine-tuning by > 0.05", gaps, 0.05)
"""

from __future__ import annotations

SEEDS = tuple(range(5))

# (where, claim, weakest value, threshold, direction); filled by record(), printed by conftest.py
RECORDS: list[tuple[str, str, float, float, str]] = []


def record(where, claim, values, threshold, *, above=True):
    """Assert that every value is above (or, above=False, below) threshold; record the weakest.

    where: the lesson section the claim guards ("lesson 2 §3e"); claim: what it says, in words;
    values: one number per seed. Returns the weakest value. The assertion names the seeds that
    fail, so a red run says which runs broke the claim.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("record: no values (one per seed expected)")
    weakest = min(values) if above else max(values)
    RECORDS.append((where, claim, weakest, float(threshold), ">" if above else "<"))
    bad = [(i, v) for i, v in enumerate(values) if not (v > threshold if above else v < threshold)]
    assert not bad, (
        f"{where}: '{claim}' fails for {len(bad)} of {len(values)} runs: "
        + ", ".join(f"run {i}: {v:.4g}" for i, v in bad)
        + f" (needs {'>' if above else '<'} {threshold:g})"
    )
    return weakest
