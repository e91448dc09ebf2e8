"""Hypothesis settings for the whole suite (the property tests set max_examples themselves), and
the claims suites' margin table.

- deadline=None: the first example of a test pays for torch's and numpy's warm-up, and the
  machine may be shared, so a wall-clock deadline would only produce flaky failures;
- database=None: no .hypothesis/ example database, so a run never depends on an earlier one;
- print_blob=True: a failure prints the @reproduce_failure line that replays it.
Select another registered profile with `pytest --hypothesis-profile=NAME`.
"""

import sys
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("bnlib", deadline=None, database=None, print_blob=True)
settings.load_profile("bnlib")

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `from claims import ...` in tests


@pytest.fixture(scope="module")
def data():
    """The digits as tensors, for the claims suites, on one torch thread as the lessons run."""
    import torch

    from bnlib.data import load_digits

    torch.set_num_threads(1)
    return load_digits(tensors=True)


def pytest_terminal_summary(terminalreporter):
    """Print every claim's weakest margin over the seeds (see tests/claims.py)."""
    from claims import RECORDS, SEEDS

    if not RECORDS:
        return
    tr = terminalreporter
    tr.section(f"claims: weakest value over seeds {SEEDS[0]}-{SEEDS[-1]}")
    for where, claim, weakest, threshold, op in sorted(RECORDS):
        tr.write_line(f"{where:14s} {claim}: weakest {weakest:.4g} (needs {op} {threshold:g})")
