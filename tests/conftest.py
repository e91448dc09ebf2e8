"""Hypothesis settings for the whole suite (the property tests set max_examples themselves).

- deadline=None: the first example of a test pays for torch's and numpy's warm-up, and the
  machine may be shared, so a wall-clock deadline would only produce flaky failures;
- database=None: no .hypothesis/ example database, so a run never depends on an earlier one;
- print_blob=True: a failure prints the @reproduce_failure line that replays it.
Select another registered profile with `pytest --hypothesis-profile=NAME`.
"""

from hypothesis import settings

settings.register_profile("bnlib", deadline=None, database=None, print_blob=True)
settings.load_profile("bnlib")
