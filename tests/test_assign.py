"""bnlib assign: exercises/ from solutions/, deterministic, never losing a learner's work."""

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from bnlib.cli import main
from bnlib.grading import grade
from bnlib.grading.assign import (
    PLACEHOLDER,
    POLICY_CELL,
    AssignError,
    assign,
    cells_hash,
    make_exercise,
    strip_solutions,
)
from bnlib.grading.grade import POLICY, TASKS

ROOT = Path(__file__).resolve().parents[1]

SOLVED = '''def f(x):
    """Double x."""
    ### BEGIN SOLUTION
    y = 2 * x
    return y
    ### END SOLUTION'''


def _solution():
    cell = new_code_cell(SOLVED, id="task", execution_count=3)
    cell.outputs = [new_output("stream", name="stdout", text="hi\n")]
    cell.metadata["execution"] = {"iopub.execute_input": "2026-01-01T00:00:00Z"}
    cell.metadata["tags"] = ["keep-me"]
    top = new_code_cell("### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION\nprint(1)", id="top")
    return new_notebook(
        cells=[
            new_markdown_cell("# Exercise", id="intro"),
            cell,
            top,
            new_markdown_cell("secret", id="notes", metadata={"tags": ["solution-only"]}),
            new_code_cell("print('secret')", id="grader", metadata={"tags": ["solution-only"]}),
        ],
        metadata={
            "bnlib": {"exercise": "ex09_demo"},
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        },
    )


@pytest.fixture
def course(tmp_path):
    (tmp_path / "solutions").mkdir()
    nbformat.write(_solution(), tmp_path / "solutions" / "ex09_demo.ipynb")
    messages = []

    def run(**kwargs):
        messages.clear()
        return assign(tmp_path / "solutions", tmp_path / "exercises", out=messages.append, **kwargs)

    run.messages = messages
    run.exercise = tmp_path / "exercises" / "ex09_demo.ipynb"
    run.solution = tmp_path / "solutions" / "ex09_demo.ipynb"
    return run


def test_strip_solutions_keeps_the_indentation_and_the_rest():
    assert strip_solutions(SOLVED) == f'def f(x):\n    """Double x."""\n    {PLACEHOLDER}'
    two = (
        "a = 1\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION\nc = 3\n"
        "  ### BEGIN SOLUTION\n  d\n  ### END SOLUTION\n"
    )
    assert strip_solutions(two) == f"a = 1\n{PLACEHOLDER}\nc = 3\n  {PLACEHOLDER}\n"
    assert strip_solutions("no markers\n") == "no markers\n"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx", "line 1: ### BEGIN SOLUTION is never closed"),
        ("x\n### END SOLUTION", "line 2: ### END SOLUTION without"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION",
            "line 2: ### BEGIN SOLUTION inside",
        ),
    ],
)
def test_unbalanced_markers_are_errors(source, message):
    with pytest.raises(AssignError, match=message):
        strip_solutions(source, "nb, cell 3")


def test_round_trip(course):
    assert course() == 0
    assert course.messages == [f"{course.exercise}: written (missing before)"]
    nb = nbformat.read(course.exercise, as_version=4)
    # solution-only cells gone; the grading policy follows the title cell in every exercise
    assert [c.id for c in nb.cells] == ["intro", "grading-policy", "task", "top"]
    assert nb.cells[1].source == f"**How this exercise is graded.** {POLICY}"
    text = course.exercise.read_text()
    assert "secret" not in text and "2 * x" not in text and "answer = 42" not in text
    assert "BEGIN SOLUTION" not in text
    task, top = nb.cells[2:]
    assert task.source.endswith(f"    {PLACEHOLDER}")
    assert top.source == f"{PLACEHOLDER}\nprint(1)"
    for cell in (task, top):
        assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata
    assert task.metadata["tags"] == ["keep-me"]
    assert nb.metadata["bnlib"]["exercise"] == "ex09_demo"
    assert nb.metadata["bnlib"]["cells_sha256"] == cells_hash(nb)
    # the solution is left as it was
    assert "2 * x" in course.solution.read_text()


def test_output_is_deterministic_and_check_passes(course):
    course()
    first = course.exercise.read_bytes()
    course.exercise.unlink()
    course()
    assert course.exercise.read_bytes() == first
    assert course(check=True) == 0
    assert course.messages == [f"{course.exercise.parent}/: up to date (1 exercise)"]
    assert course() == 0 and course.messages == []  # nothing to do


def test_check_reports_a_missing_exercise(course):
    assert course(check=True) == 1
    assert course.messages == [f"{course.exercise}: missing; regenerate it with `bnlib assign`"]
    assert not course.exercise.exists()  # --check writes nothing


def test_check_reports_a_stale_exercise_and_assign_updates_it(course):
    course()
    nb = nbformat.read(course.solution, as_version=4)
    nb.cells[0].source = "# Exercise, revised"
    nbformat.write(nb, course.solution)
    assert course(check=True) == 1
    assert course.messages[0].startswith(f"{course.exercise}: stale")
    assert course() == 0
    assert "revised" in course.exercise.read_text()
    assert course(check=True) == 0


def test_running_an_exercise_is_not_an_edit(course):
    course()
    nb = nbformat.read(course.exercise, as_version=4)
    nb.cells[1].execution_count = 1
    nb.cells[1].outputs = [
        new_output("error", ename="NotImplementedError", evalue="", traceback=[])
    ]
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, course.exercise)
    assert course(check=True) == 1
    assert "stale" in course.messages[0]
    assert course() == 0  # overwritten without --force: only outputs were there
    assert not list(course.exercise.parent.glob("*.bak-*"))
    assert course(check=True) == 0


def _edit(path, text="def f(x):\n    return 2 * x  # mine"):
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = text
    nbformat.write(nb, path)
    return path.read_bytes()


def test_an_edited_exercise_is_never_overwritten_without_force(course):
    course()
    mine = _edit(course.exercise)
    assert course() == 1
    assert course.messages == [
        f"{course.exercise}: not overwritten: it was edited (its cells differ from what bnlib "
        "assign wrote). Rerun with --force to save it as a .bak- copy next to it and regenerate it"
    ]
    assert course.exercise.read_bytes() == mine
    assert course(check=True) == 1 and "edited" in course.messages[0]
    assert course.exercise.read_bytes() == mine


def test_force_backs_up_the_learners_text_first(course):
    course()
    mine = _edit(course.exercise)
    assert course(force=True) == 0
    (backup,) = course.exercise.parent.glob("*.bak-*")
    assert re.fullmatch(r"ex09_demo\.ipynb\.bak-\d{8}-\d{6}", backup.name)
    assert fnmatch.fnmatch(f"exercises/{backup.name}", "exercises/*.bak-*")  # .gitignore's rule
    assert backup.read_bytes() == mine
    assert "# mine" not in course.exercise.read_text()
    assert course(check=True) == 0
    # a second edit, forced within the same second, gets its own backup
    mine2 = _edit(course.exercise, "second = True")
    assert course(force=True) == 0
    backups = sorted(course.exercise.parent.glob("*.bak-*"))
    assert len(backups) == 2
    assert {b.read_bytes() for b in backups} == {mine, mine2}


def test_a_corrupt_exercise_counts_as_edited(course):
    course()
    course.exercise.write_text("{ half a notebook")
    assert course() == 1 and "not a valid notebook" in course.messages[0]
    assert course.exercise.read_text() == "{ half a notebook"
    assert course(force=True) == 0
    (backup,) = course.exercise.parent.glob("*.bak-*")
    assert backup.read_text() == "{ half a notebook"


def test_a_bad_solution_is_named_and_the_others_still_written(course):
    nb = _solution()
    nb.cells.append(new_markdown_cell("### BEGIN SOLUTION\nprose"))
    nbformat.write(nb, course.solution.with_name("ex08_bad.ipynb"))
    assert course() == 1
    assert any(
        "ex08_bad.ipynb, cell 5: solution markers belong in code cells" in m
        for m in course.messages
    )
    assert course.exercise.exists()
    assert not course.exercise.with_name("ex08_bad.ipynb").exists()


def test_no_solutions_is_an_error(tmp_path):
    messages = []
    assert assign(tmp_path / "nowhere", tmp_path / "exercises", out=messages.append) == 1
    assert "no notebooks in" in messages[0]


# --- the policy cell in the notebook's language -----------------------------------------------

# A zh-TW catalogue for the policy's templates (fake: the tests must not depend on the real PO)
FAKE_ZH = {
    POLICY_CELL: "**評分方式**：{policy}",
    grade._POLICY: "甲：{references}；乙：`torch.nn.functional` 的 {torch_functions}；"
    '丙：{torch_modules}；丁："{solutions}"；戊：{red_flags}。',
    grade._ANYTHING_IN: "整個 {package}",
    grade._NEXT_ITEM: "{items}、{item}",
    grade._LAST_ITEM["and"]: "{items} 和 {item}",
    grade._LAST_ITEM["or"]: "{items} 或 {item}",
}


@pytest.fixture
def fake_zh(monkeypatch):
    from bnlib import i18n

    monkeypatch.setattr(i18n, "_translations", lambda lang: FAKE_ZH if lang == "zh-TW" else {})


def _code_names(text):
    return re.findall(r"`([^`]+)`", text)


def test_a_zh_tw_exercise_states_the_policy_in_chinese(course, fake_zh):
    nb = nbformat.read(course.solution, as_version=4)
    nb.metadata["bnlib"]["language"] = "zh-TW"
    cell = make_exercise(nb, "zh").cells[1]
    assert cell.id == "grading-policy"
    # wrapped as bnlib.translate wraps the edition's translated cells, so it carries its language
    assert cell.source.startswith('<div lang="zh-Hant-TW">\n\n**評分方式**：甲：`bnlib.')
    assert cell.source.endswith("\n\n</div>") and "How" not in cell.source
    assert (
        " and " not in cell.source and " or " not in cell.source and "anything" not in cell.source
    )
    # the lists are the English ones, item for item, code names as they are
    assert _code_names(cell.source) == _code_names(POLICY)
    assert (
        "整個 `bnlib.grading`" in cell.source
        and "`sys.setprofile` 或 `sys.settrace`" in cell.source
    )
    assert '丁："solutions"' in cell.source
    # an English solution (no bnlib.language, or "en") keeps the English policy, catalogue or not
    for language in (None, "en"):
        if language:
            nb.metadata["bnlib"]["language"] = language
        else:
            nb.metadata["bnlib"].pop("language")
        assert (
            make_exercise(nb, "en").cells[1].source == f"**How this exercise is graded.** {POLICY}"
        )


def test_the_policy_does_not_follow_the_language_assign_runs_in(course, fake_zh):
    from bnlib import i18n

    i18n.set_language("zh-TW")  # e.g. a notebook that switched to Chinese, then calls assign
    try:
        english = make_exercise(nbformat.read(course.solution, as_version=4), "en")
    finally:
        i18n.set_language("en")
    assert english.cells[1].source == f"**How this exercise is graded.** {POLICY}"
    assert grade.POLICY == grade.policy("en") and grade.policy("zh-TW").startswith("甲：")


def test_an_untranslated_policy_falls_back_to_english(course, monkeypatch):
    from bnlib import i18n

    monkeypatch.setattr(i18n, "_translations", lambda lang: {})
    nb = nbformat.read(course.solution, as_version=4)
    nb.metadata["bnlib"]["language"] = "zh-TW"
    assert make_exercise(nb).cells[1].source == f"**How this exercise is graded.** {POLICY}"


def test_an_unknown_language_in_the_metadata_is_an_error(course):
    nb = nbformat.read(course.solution, as_version=4)
    nb.metadata["bnlib"]["language"] = "fr"
    with pytest.raises(AssignError, match=r"bnlib\.language is 'fr', not one of en, zh-TW"):
        make_exercise(nb, "demo")


def test_the_zh_tw_solutions_say_they_are_chinese(fake_zh):
    """translate.py marks its notebooks bnlib.language = "zh-TW": what assign reads."""
    paths = sorted((ROOT / "solutions" / "zh-TW").glob("*.ipynb"))
    assert paths, "no solutions/zh-TW/*.ipynb"
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["bnlib"]["language"] == "zh-TW", path.name
        source = make_exercise(nb, path.name).cells[1].source
        assert source.startswith('<div lang="zh-Hant-TW">\n\n**評分方式**：'), path.name


# --- the real course -----------------------------------------------------------------------------


def test_the_repository_exercises_are_up_to_date(capsys):
    code = main(
        [
            "assign",
            "--check",
            "--solutions",
            str(ROOT / "solutions"),
            "--exercises",
            str(ROOT / "exercises"),
        ]
    )
    assert code == 0, capsys.readouterr().out


def test_the_console_script_exits_non_zero_when_out_of_date(tmp_path):
    bnlib = Path(sys.executable).with_name("bnlib")
    args = [str(bnlib), "assign", "--check", "--solutions", str(ROOT / "solutions")]
    done = subprocess.run([*args, "--exercises", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 1
    assert f"{tmp_path}/ex01_forward_backward.ipynb: missing" in done.stdout


def test_the_solutions_are_committed_executed_and_known_to_the_grader():
    for path in sorted((ROOT / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["bnlib"]["exercise"] in TASKS, path.name
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.execution_count is not None, (path.name, cell.id)
                assert not [o for o in cell.outputs if o.output_type == "error"], (
                    path.name,
                    cell.id,
                )
                assert "execution" not in cell.metadata  # no run timestamps: same file every run
