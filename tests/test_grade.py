"""bnlib grade: official checks in a fresh kernel, robust to tampering and to broken notebooks.

Kernel starts cost seconds on two cores, so one command-line run grades a whole class folder
(full marks, untouched, tampered, shadowed, crashing, corrupt, missing) and one more notebook
tests the per-cell timeout.
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bnlib import cli
from bnlib import grade as grading
from bnlib.grade import exercise_id, find_notebooks, format_report, grade_notebook

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex01_forward_backward.ipynb"
EXERCISE = ROOT / "exercises" / "ex01_forward_backward.ipynb"
TASK_NAMES = ["batchnorm_forward", "batchnorm_backward", "batchnorm_backward_alt"]

TAMPER = """\
import pathlib

import bnlib.checks as c

ok = c.CheckResult(True, 1.0, "ok")
c.check_batchnorm_forward = lambda f: ok
c.check_batchnorm_backward = lambda f, b, **k: ok
c.TASKS["ex01_forward_backward"] = [c.Task(n, (), lambda ns: ok) for n in "abc"]
c.run_tasks = lambda exercise, namespace: [(n, ok) for n in "abc"]
pathlib.Path("tampered.txt").write_text(str(c.check_batchnorm_forward(batchnorm_forward).passed))
"""

SHADOW_CHECKS = """\
import pathlib
from dataclasses import dataclass

pathlib.Path("shadow-imported.txt").write_text("yes")


@dataclass
class CheckResult:
    passed: bool
    score: float
    feedback: str
    max_score: float = 1.0


def check_batchnorm_forward(*args, **kwargs):
    return CheckResult(True, 1.0, "fake")


check_batchnorm_backward = check_batchnorm_forward
TASKS = {"ex01_forward_backward": []}


def run_tasks(exercise, namespace):
    return [(n, CheckResult(True, 1.0, "fake")) for n in ("a", "b", "c")]
"""


def _with_cells(source, extra, at=None, drop_metadata=False):
    nb = nbformat.read(source, as_version=4)
    at = len(nb.cells) if at is None else at
    nb.cells[at:at] = [new_code_cell(text) for text in extra]
    if drop_metadata:
        del nb.metadata["bnlib"]
    return nb


def _digests(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*.ipynb")}


@pytest.fixture(scope="module")
def class_run(tmp_path_factory):
    """One `bnlib grade --json` over a class folder: (folder, exit code, results, digests)."""
    folder = tmp_path_factory.mktemp("class")
    for name in ("alice", "bob", "carol", "dave", "eve", "frank"):
        (folder / name).mkdir()
    (folder / "bob" / ".ipynb_checkpoints").mkdir()
    (folder / "bob" / "ex01_forward_backward.ipynb").write_bytes(SOLUTION.read_bytes())
    (folder / "bob" / ".ipynb_checkpoints" / "ex01_forward_backward-checkpoint.ipynb").write_text(
        "{ skipped, or grading would report it"
    )
    nbformat.write(
        _with_cells(EXERCISE, [], drop_metadata=True),
        folder / "carol" / "ex01_forward_backward-carol.ipynb",
    )
    shadow_builtins = "print = dict = str = float = bool = json = sys = os = None"
    nbformat.write(
        _with_cells(EXERCISE, [TAMPER, shadow_builtins]),
        folder / "alice" / "ex01_forward_backward.ipynb",
    )
    (folder / "dave" / "ex01_forward_backward.ipynb").write_text('{"cells": [')
    nbformat.write(
        _with_cells(EXERCISE, ["import os\nos._exit(1)"], at=3),
        folder / "eve" / "ex01_forward_backward.ipynb",
    )
    (folder / "frank" / "bnlib").mkdir()
    (folder / "frank" / "bnlib" / "__init__.py").write_text(
        "def seed_everything(seed):\n    pass\n"
    )
    (folder / "frank" / "bnlib" / "checks.py").write_text(SHADOW_CHECKS)
    (folder / "frank" / "ex01_forward_backward.ipynb").write_bytes(EXERCISE.read_bytes())
    before = _digests(folder)
    bnlib = Path(sys.executable).with_name("bnlib")
    done = subprocess.run(
        [str(bnlib), "grade", str(folder), str(folder / "nobody.ipynb"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stdout + done.stderr
    results = {
        Path(r["path"]).relative_to(folder).as_posix(): r
        for r in json.loads(done.stdout)["notebooks"]
    }
    return folder, done.returncode, results, before


def _assert_shape(result):
    keys = {"path", "score", "max_score", "tasks"} | ({"error"} if "error" in result else set())
    assert set(result) == keys
    for t in result["tasks"]:
        assert set(t) == {"task", "passed", "score", "feedback"}


def test_the_solution_gets_full_marks(class_run):
    _, _, results, _ = class_run
    bob = results["bob/ex01_forward_backward.ipynb"]
    _assert_shape(bob)
    assert [t["task"] for t in bob["tasks"]] == TASK_NAMES
    assert all(t["passed"] for t in bob["tasks"]), bob
    assert bob["score"] == bob["max_score"] == 3.0


def test_the_untouched_exercise_gets_zero_with_reasons_even_renamed(class_run):
    _, _, results, _ = class_run
    carol = results["carol/ex01_forward_backward-carol.ipynb"]  # no metadata: the file name says
    _assert_shape(carol)
    assert [t["task"] for t in carol["tasks"]] == TASK_NAMES
    assert carol["score"] == 0.0 and carol["max_score"] == 3.0
    for t in carol["tasks"]:
        assert not t["passed"] and t["score"] == 0.0
        assert "raised NotImplementedError" in t["feedback"]


def test_monkeypatching_the_checks_in_the_notebook_changes_nothing(class_run):
    folder, _, results, _ = class_run
    # the tampering ran, and fooled the checks inside the learner's kernel ...
    assert (folder / "alice" / "tampered.txt").read_text() == "True"
    alice = results["alice/ex01_forward_backward.ipynb"]
    # ... but not the grade (nor did shadowing print, dict, ... in the last cell get in its way)
    assert [t["task"] for t in alice["tasks"]] == TASK_NAMES
    assert alice["score"] == 0.0 and not any(t["passed"] for t in alice["tasks"])


def test_a_bnlib_folder_next_to_the_notebook_does_not_replace_the_checks(class_run):
    folder, _, results, _ = class_run
    assert (folder / "frank" / "shadow-imported.txt").exists()  # the learner's kernel used it
    frank = results["frank/ex01_forward_backward.ipynb"]
    assert frank["score"] == 0.0 and [t["task"] for t in frank["tasks"]] == TASK_NAMES
    assert all("NotImplementedError" in t["feedback"] for t in frank["tasks"])


def test_broken_notebooks_get_one_line_errors_and_a_non_zero_exit(class_run):
    _, code, results, _ = class_run
    assert code == 1
    errors = {path: r["error"] for path, r in results.items() if "error" in r}
    assert set(errors) == {
        "dave/ex01_forward_backward.ipynb",
        "eve/ex01_forward_backward.ipynb",
        "nobody.ipynb",
    }
    assert errors["dave/ex01_forward_backward.ipynb"].startswith("not a notebook: invalid JSON")
    cells = len(nbformat.read(EXERCISE, as_version=4).cells) + 1
    assert errors["eve/ex01_forward_backward.ipynb"] == (
        f"the kernel died while running cell 4 of {cells}"
    )
    assert errors["nobody.ipynb"] == "no such file"
    for path, message in errors.items():
        assert "\n" not in message
        _assert_shape(results[path])
        assert results[path]["score"] == 0.0 and results[path]["tasks"] == []
    assert len(results) == 7  # the checkpoint copy is skipped


def test_grading_never_writes_to_the_learners_files(class_run):
    folder, _, _, before = class_run
    assert _digests(folder) == before


def test_a_cell_that_never_ends_is_interrupted_and_grading_goes_on(tmp_path):
    solution = nbformat.read(SOLUTION, as_version=4)
    functions = [c.source for c in solution.cells if c.source.startswith("def batchnorm_")]
    assert len(functions) == 3
    nb = new_notebook(
        cells=[
            new_code_cell(s) for s in ["import numpy as np", "while True:\n    pass", *functions]
        ]
    )
    path = tmp_path / "ex01_forward_backward.ipynb"
    nbformat.write(nb, path)
    result = grade_notebook(path, timeout=3)
    assert "error" not in result, result
    assert result["score"] == 3.0


# --- without a kernel ----------------------------------------------------------------------------


def test_exercise_id_from_metadata_then_file_name():
    nb = nbformat.read(EXERCISE, as_version=4)
    assert exercise_id(nb, "whatever.ipynb") == ("ex01_forward_backward", None)
    del nb.metadata["bnlib"]
    assert exercise_id(nb, "x/ex01_forward_backward-alice.ipynb") == ("ex01_forward_backward", None)
    assert exercise_id(nb, "ex01_copy.ipynb") == ("ex01_forward_backward", None)
    exercise, problem = exercise_id(nb, "homework.ipynb")
    assert exercise is None and "unknown exercise" in problem and "ex01_forward_backward" in problem
    nb.metadata["bnlib"] = {"exercise": "ex99_future"}
    exercise, problem = exercise_id(nb, "ex99_future.ipynb")
    assert exercise is None and "'ex99_future'" in problem


def test_find_notebooks(tmp_path):
    (tmp_path / "a" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "a" / "b").mkdir()
    for p in ["a/x.ipynb", "a/b/y.ipynb", "a/.ipynb_checkpoints/x-checkpoint.ipynb", "a/z.txt"]:
        (tmp_path / p).write_text("{}")
    (tmp_path / "empty").mkdir()
    found = find_notebooks([tmp_path / "a", tmp_path / "empty", tmp_path / "gone.ipynb"])
    assert found == [
        tmp_path / "a" / "b" / "y.ipynb",
        tmp_path / "a" / "x.ipynb",
        tmp_path / "empty",
        tmp_path / "gone.ipynb",
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a notebook: invalid JSON"),
        (b"[1, 2]", "not a notebook: the JSON has no list of cells"),
        (b'{"cells": [{"cell_type": "code"}]}', "not a notebook: a cell without"),
        (b"\xff\xfe", "cannot be read"),
    ],
)
def test_unreadable_notebooks_are_reported_without_a_kernel(tmp_path, content, message):
    path = tmp_path / "ex01_forward_backward.ipynb"
    path.write_bytes(content)
    result = grade_notebook(path)
    assert result["error"].startswith(message) and result["tasks"] == []


def test_an_unknown_exercise_is_reported_without_a_kernel(tmp_path):
    path = tmp_path / "notes.ipynb"
    nbformat.write(new_notebook(), path)
    assert grade_notebook(path)["error"].startswith("unknown exercise")
    assert grade_notebook(tmp_path)["error"] == "no .ipynb notebooks in this folder"


def test_the_text_report_and_the_exit_code(monkeypatch, capsys):
    graded = {
        "path": "a.ipynb",
        "score": 1.5,
        "max_score": 3.0,
        "tasks": [{"task": "batchnorm_forward", "passed": True, "score": 1.0, "feedback": "ok"}],
    }
    text = format_report([graded, {**grading._error("b.ipynb", "no such file")}])
    assert "  batchnorm_forward  PASS     1.00  ok" in text
    assert "1.50  out of 3" in text
    assert "b.ipynb: ERROR: no such file" in text
    assert text.endswith("graded 1 of 2 notebooks; 1 could not be graded")

    monkeypatch.setattr(
        grading, "grade_notebook", lambda path, timeout: dict(graded, path=str(path))
    )
    assert cli.main(["grade", "a.ipynb"]) == 0
    assert "graded 1 of 1 notebook" in capsys.readouterr().out
    monkeypatch.setattr(grading, "grade_notebook", lambda path, timeout: grading._error(path, "x"))
    assert cli.main(["grade", "a.ipynb", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["notebooks"][0]["error"] == "x"
    assert cli.main(["grade", "a.ipynb", "--timeout", "0"]) == 2
