"""Which stored outputs the notebook replay compares, and why (issue: results hold on any machine).

Two kinds of output. Exact ones (formulas, float64 comparisons, shapes, counts) are replayed
digit by digit by nbval. Experimental ones (anything from a float32 training run or a timing)
differ with the CPU's kernels, the thread count and the seed, so their cells are tagged
`nbval-ignore-output`. Such a cell is not a blind spot: it still runs, and it must carry its
claim as an `assert` (backed over seeds by tests/test_claims_lessonNN.py), unless it only shows a
widget or a quiz (whose views are not compared anyway) or times something (no claim to assert).
"""

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
    (ROOT / "solutions").glob("*.ipynb")
)
# A cell that builds one of these and ends in an expression shows a widget or a quiz.
DISPLAYS = re.compile(r"(Quiz|Explorer|Viewer|Selector|_explorer|SELF_CHECK)\b")
# A cell that measures time: its numbers are the machine's, and it claims nothing.
TIMINGS = re.compile(r"(_times\(|perf_counter|timeit)")


def _ignored_cells():
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and "nbval-ignore-output" in cell.metadata.get("tags", []):
                yield pytest.param(path, i, cell.source, id=f"{path.stem}-cell{i}")


def _shows_a_display(source):
    body = ast.parse(source).body
    return bool(body) and isinstance(body[-1], ast.Expr) and bool(DISPLAYS.search(source))


def _has_assert(source):
    return any(isinstance(node, ast.Assert) for node in ast.walk(ast.parse(source)))


@pytest.mark.parametrize("path, index, source", list(_ignored_cells()))
def test_an_unreplayed_cell_states_its_claim_or_only_shows_or_times(path, index, source):
    if _shows_a_display(source) or TIMINGS.search(source):
        return
    assert _has_assert(source), (
        f"{path.name} cell {index} is tagged nbval-ignore-output but asserts nothing: state the "
        "qualitative claim its output supports as an assert (and back it in the claims suite), "
        "or remove the tag so the replay compares its output"
    )


def test_the_policy_sees_an_unasserted_experiment():
    """The rule above can fail: a training cell without an assert is caught."""
    src = "acc = train(model)\nprint(acc)"
    assert not _shows_a_display(src) and not TIMINGS.search(src)
    assert _shows_a_display("viewer = LayerDistributionViewer(traces)\nviewer")
    assert not _has_assert(src)
    assert _has_assert("acc = train(model)\nassert acc > 0.9")
