"""`bnlib grade` on exercise 5's RMSNorm tasks: across the process boundary (the learner's
functions called in their kernel, the diagnosis made in the grader's), a known mistake is named,
a right function next to it keeps its points, and a broken backward fails with its reason.

One command-line run (a kernel start costs seconds); the solutions' full marks and the untouched
exercise's zero are tests/test_every_exercise.py's."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat

from bnlib.grading.exercises.ex05 import RMSNORM_MISTAKES

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex05_norm_family.ipynb"

LAYER_NORM_INSTEAD = """
def rmsnorm_forward(x, gamma, eps=1e-5):
    xc = x - x.mean(axis=1, keepdims=True)  # the mistake: LN's centring
    rms = np.sqrt((xc**2).mean(axis=1, keepdims=True) + eps)
    return xc / rms * gamma, (xc / rms, gamma, rms)
"""
BROKEN_BACKWARD = """
def rmsnorm_backward(dout, cache):
    xhat, gamma, rms = cache
    return dout * gamma / rms  # no dgamma
"""


def test_grading_names_an_rmsnorm_mistake_across_the_kernel_boundary(tmp_path):
    nb = nbformat.read(SOLUTION, as_version=4)
    sources = {"rmsnorm-forward": LAYER_NORM_INSTEAD, "rmsnorm-backward": BROKEN_BACKWARD}
    for cell in nb.cells:
        if cell.get("id") in sources:
            cell.source = sources[cell.id].strip()
    nb.cells = [c for c in nb.cells if "solution-only" not in c.metadata.get("tags", [])]
    path = tmp_path / "ex05_norm_family.ipynb"
    nbformat.write(nb, path)
    done = subprocess.run(
        [sys.executable, "-m", "bnlib.cli", "grade", "--json", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.stdout, done.stderr
    (result,) = json.loads(done.stdout)["notebooks"]
    tasks = {t["task"]: t for t in result["tasks"]}
    forward, backward = tasks.pop("rmsnorm_forward"), tasks.pop("rmsnorm_backward")
    assert not forward["passed"] and forward["score"] == 0
    assert RMSNORM_MISTAKES[0].hint in forward["feedback"], forward["feedback"]
    assert not backward["passed"] and backward["score"] == 0
    assert "returned numpy.ndarray of shape" in backward["feedback"], backward["feedback"]
    assert "expected a tuple (dx, dgamma)" in backward["feedback"], backward["feedback"]
    assert all(t["passed"] for t in tasks.values()), tasks  # the other four are the solution's
