"""Quiz answers stay hidden until asked for, course-wide.

A cell whose source holds answers (a Quiz(...) with answer=..., or the self-check's answer table)
must be collapsed in JupyterLab: `"jupyter": {"source_hidden": true}` in its metadata (JupyterLab
ignores the `hide-input` tag, which only the slides read).
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HOLDS_ANSWERS = re.compile(r"\banswer\s*=|\bANSWERS\b")


def _answer_cells(path):
    nb = nbformat.read(path, as_version=4)
    return [
        (i, c)
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and HOLDS_ANSWERS.search(c.source)
    ]


def _hidden(cell):
    return bool(cell.metadata.get("jupyter", {}).get("source_hidden"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_holding_answers_is_collapsed(path):
    shown = [i for i, cell in _answer_cells(path) if not _hidden(cell)]
    assert not shown, (
        f"{path.name}: cells {shown} hold quiz answers but show their source in JupyterLab; "
        'add "jupyter": {"source_hidden": true} to their metadata'
    )


def test_every_lesson_with_a_quiz_is_checked():
    """The pattern finds the quizzes: lessons 1-6 each hold answers somewhere."""
    with_answers = {p.stem[:2] for p in NOTEBOOKS if _answer_cells(p)}
    assert {"01", "02", "03", "04", "05", "06"} <= with_answers


def test_an_open_quiz_cell_is_caught():
    cell = nbformat.v4.new_code_cell('Quiz("q", [Numeric("2+2?", answer=4)])')
    assert HOLDS_ANSWERS.search(cell.source) and not _hidden(cell)
    cell.metadata["jupyter"] = {"source_hidden": True}
    assert _hidden(cell)
