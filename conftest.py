"""pytest set-up for the whole repository (the options themselves are in pyproject.toml).

`pytest` also replays notebooks/ and solutions/ with nbval (addopts: --nbval ...). This file
keeps that working from any directory and keeps exercises/ out of it.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent

# The exercises raise NotImplementedError by design (`bnlib assign --check` checks them instead):
# `pytest .` must not replay them (naming them, `pytest exercises/x.ipynb`, still does).
collect_ignore = ["exercises"]


def pytest_configure(config):
    # addopts names the sanitize file relative to the repository; pytest may run from elsewhere.
    option = config.option
    sanitize = getattr(option, "nbval_sanitize_with", None)
    if sanitize and not Path(sanitize).is_absolute():
        option.nbval_sanitize_with = str(ROOT / sanitize)
