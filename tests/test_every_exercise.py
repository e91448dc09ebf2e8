"""Every exercise, graded as an instructor would: solutions get full marks, untouched exercises
get zero with a reason per task, and nothing crashes. New exercises are picked up automatically."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bnlib.grading.grade import TASKS

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("ex*.ipynb"))


def _points(name):
    return sum(getattr(t, "points", 1.0) for t in TASKS[Path(name).stem])


@pytest.fixture(scope="module")
def graded():
    """One `bnlib grade --json` run over solutions/ and exercises/: {relative path: result}."""
    done = subprocess.run(
        [sys.executable, "-m", "bnlib.cli", "grade", "--json", "solutions", "exercises"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.stdout, done.stderr
    results = json.loads(done.stdout)["notebooks"]
    return {str(Path(r["path"]).resolve().relative_to(ROOT)): r for r in results}


def test_every_solution_has_an_exercise_and_tasks():
    assert SOLUTIONS, "no solutions/ex*.ipynb"
    for path in SOLUTIONS:
        assert (ROOT / "exercises" / path.name).exists(), f"{path.name}: run bnlib assign"
        assert TASKS.get(path.stem), f"{path.stem}: no tasks in bnlib.TASKS"


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS])
def test_the_solution_gets_full_marks(graded, name):
    result = graded[f"solutions/{name}"]
    assert "error" not in result, result
    failed = [t for t in result["tasks"] if not t["passed"]]
    assert not failed, failed
    assert result["score"] == result["max_score"] == _points(name)


@pytest.mark.parametrize("name", [p.name for p in SOLUTIONS])
def test_the_untouched_exercise_gets_zero_with_a_reason_per_task(graded, name):
    result = graded[f"exercises/{name}"]
    assert "error" not in result, result
    assert result["score"] == 0 and result["max_score"] == _points(name)
    for t in result["tasks"]:
        assert not t["passed"] and t["feedback"].strip(), t
