"""`bnlib grade`: run learners' exercise notebooks and grade them with the official checks.

Each notebook runs on an in-memory copy (the learner's file is only read) in a fresh kernel, in
the notebook's folder, with a per-cell timeout; errors in cells do not stop the run. A grading
cell appended by the grader then, in the same kernel,
- drops every `bnlib*` module from sys.modules and imports `bnlib.checks` afresh from the
  grader's own copy on disk (so a notebook that deleted, edited or monkeypatched check code, or
  shadowed `bnlib` with a folder of its own, changes nothing);
- runs `TASKS[exercise]` against the kernel's globals;
- prints one JSON line behind a random marker; only that cell's output is parsed.

NB: this protects the grade against tampering with the check code, not against a determined
adversary: learner code runs in the same process and could patch numpy itself.

The exercise id is the notebook metadata `bnlib.exercise`, else the file name's `exNN_` prefix
matched against TASKS (so `ex01_forward_backward-alice.ipynb` is graded as exercise 1).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import secrets
import subprocess
from pathlib import Path

import nbformat

from bnlib import checks

__all__ = ["DEFAULT_TIMEOUT", "exercise_id", "find_notebooks", "format_report", "grade_notebook"]

DEFAULT_TIMEOUT = 60  # seconds per cell; a lesson-sized notebook runs in well under that
_QUIET = logging.getLogger("bnlib.grade")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

# Runs in the learner's kernel, in a namespace of its own with the real builtins, so that a
# notebook's globals (a variable named `print` or `dict`, say) cannot get in its way.
_GRADER = """\
import importlib, json, os, sys

for name in [m for m in sys.modules if m == "bnlib" or m.startswith("bnlib.")]:
    del sys.modules[name]
sys.path.insert(0, {root!r})
try:
    checks = importlib.import_module("bnlib.checks")
finally:
    sys.path.remove({root!r})
if os.path.realpath(checks.__file__) != {checks_file!r}:
    report = {{"error": "bnlib.checks was imported from " + str(checks.__file__)}}
else:
    report = {{"tasks": [
        {{"task": name, "passed": bool(r.passed), "score": float(r.score),
          "max_score": float(r.max_score), "feedback": str(r.feedback)}}
        for name, r in checks.run_tasks({exercise!r}, namespace)
    ]}}
print({marker!r} + json.dumps(report))
"""
_GRADING_CELL = """\
_bnlib = __import__("builtins")
_bnlib.exec({code!r}, {{"__builtins__": _bnlib, "namespace": _bnlib.dict(_bnlib.globals())}})
"""


def find_notebooks(paths):
    """Expand files and folders into a sorted list of notebook paths (as given, not resolved).

    Folders are searched recursively for *.ipynb, skipping .ipynb_checkpoints. A folder with no
    notebook, or a path that does not exist, is returned as is: grading it reports the problem.
    """
    found = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            inside = sorted(
                p
                for p in path.rglob("*.ipynb")
                if ".ipynb_checkpoints" not in p.parts and p.is_file()
            )
            found.extend(inside or [path])
        else:
            found.append(path)
    return found


def exercise_id(nb, path):
    """The exercise a notebook is: its metadata bnlib.exercise, else its file name's exNN_ prefix.

    Returns (id, None), or (None, a one-line reason) when neither names an exercise in TASKS.
    """
    meta = nb.get("metadata", {}).get("bnlib", {})
    declared = meta.get("exercise") if isinstance(meta, dict) else None
    if declared in checks.TASKS:
        return declared, None
    match = re.match(r"(ex\d+)_", Path(path).name)
    if match:
        candidates = [e for e in checks.TASKS if e.startswith(match.group(1) + "_")]
        if len(candidates) == 1:
            return candidates[0], None
    known = ", ".join(sorted(checks.TASKS))
    said = f"metadata says {declared!r}" if declared else "no bnlib.exercise metadata"
    return None, f"unknown exercise ({said}, file name {Path(path).name!r}); known: {known}"


def _error(path, message, max_score=0.0):
    return {"path": str(path), "score": 0.0, "max_score": max_score, "tasks": [], "error": message}


def _read(path):
    """(notebook, None) or (None, a one-line reason)."""
    if not path.exists():
        return None, "no such file"
    if path.is_dir():
        return None, "no .ipynb notebooks in this folder"
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cannot be read: {e}"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"not a notebook: invalid JSON ({e})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "not a notebook: the JSON has no list of cells"
    if not all(isinstance(c, dict) and {"cell_type", "source"} <= c.keys() for c in raw["cells"]):
        return None, "not a notebook: a cell without a cell_type or a source"
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # noqa: BLE001 - whatever nbformat makes of it, it is not gradable
        return None, f"not a notebook: {type(e).__name__}: {checks._one_line(e)}"
    return nb, None


def grade_notebook(path, timeout=DEFAULT_TIMEOUT):
    """Run one notebook in a fresh kernel and grade it. Never raises for a bad notebook.

    Returns {"path", "score", "max_score", "tasks": [{"task", "passed", "score", "feedback"}]},
    plus "error" (one line) when the notebook could not be graded.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    path = Path(path)
    timeout = max(1, math.ceil(timeout))  # nbclient counts whole seconds
    nb, problem = _read(path)
    if problem:
        return _error(path, problem)
    exercise, problem = exercise_id(nb, path)
    if problem:
        return _error(path, problem)
    tasks = checks.TASKS[exercise]
    max_score = float(len(tasks))  # until graded: every check so far scores out of 1
    marker = f"BNLIB-GRADE-{secrets.token_hex(16)}:"
    checks_file = os.path.realpath(checks.__file__)
    code = _GRADER.format(
        root=str(Path(checks_file).parents[1]),
        checks_file=checks_file,
        exercise=exercise,
        marker=marker,
    )
    source = _GRADING_CELL.format(code=code)
    nb.cells = [c for c in nb.cells if c.cell_type in ("code", "markdown", "raw")]
    nb.cells.append(nbformat.v4.new_code_cell(source, id=f"bnlib-grade-{secrets.token_hex(4)}"))
    grading_cell = nb.cells[-1]
    # The grading cell may call learner code that hangs: each check is bounded by CHECK_TIMEOUT.
    grading_timeout = max(timeout, int(len(tasks) * checks.CHECK_TIMEOUT) + 30)
    current = {"index": None}

    def on_cell_start(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        kernel_name="python3",  # the grader's own Python, whatever kernel the notebook names
        timeout=timeout,
        timeout_func=lambda cell: grading_timeout if cell is grading_cell else timeout,
        startup_timeout=60,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "CellTimeoutError",
            "evalue": f"the cell ran for more than {timeout} s and was interrupted",
            "traceback": [],
        },
        record_timing=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_start=on_cell_start,
        log=_QUIET,
    )
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    try:
        client.execute(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    except DeadKernelError:
        where = current["index"]
        if where is None or where == len(nb.cells) - 1:
            return _error(path, "the kernel died while grading", max_score)
        cell = f"cell {where + 1} of {len(nb.cells) - 1}"  # counted from 1, as people count
        return _error(path, f"the kernel died while running {cell}", max_score)
    except Exception as e:  # noqa: BLE001 - a kernel that cannot start, a lost connection, ...
        return _error(path, f"could not run the notebook: {type(e).__name__}: {e}", max_score)
    report = _parse(grading_cell, marker)
    if "error" in report:
        return _error(path, report["error"], max_score)
    results = [
        {
            "task": t["task"],
            "passed": t["passed"],
            "score": round(t["score"], 4),
            "feedback": t["feedback"],
        }
        for t in report["tasks"]
    ]
    score = round(sum(t["score"] for t in results), 4)
    max_score = float(sum(t["max_score"] for t in report["tasks"]))
    return {"path": str(path), "score": score, "max_score": max_score, "tasks": results}


def _parse(cell, marker):
    """The grading cell's report, from the one stdout line behind the marker."""
    text = "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
    for line in text.splitlines():
        if line.startswith(marker):
            try:
                return json.loads(line[len(marker) :])
            except json.JSONDecodeError:
                break
    errors = [o for o in cell.outputs if o.get("output_type") == "error"]
    if errors:
        e = errors[0]
        why = f"{e.get('ename')}: {checks._one_line(e.get('evalue', ''))}"
        return {"error": f"the grading cell failed ({why})"}
    return {"error": "the grading cell printed no result"}


def format_report(results):
    """The text report: per notebook a table (task, result, score, feedback) and its total."""
    lines = []
    for r in results:
        if "error" in r:
            lines.append(f"{r['path']}: ERROR: {r['error']}")
            lines.append("")
            continue
        lines.append(f"{r['path']}")
        width = max([len("task")] + [len(t["task"]) for t in r["tasks"]])
        lines.append(f"  {'task':<{width}}  result  score  feedback")
        for t in r["tasks"]:
            verdict = "PASS" if t["passed"] else "FAIL"
            lines.append(
                f"  {t['task']:<{width}}  {verdict:<6}  {t['score']:5.2f}  {t['feedback']}"
            )
        lines.append(f"  {'total':<{width}}          {r['score']:5.2f}  out of {r['max_score']:g}")
        lines.append("")
    errors = sum("error" in r for r in results)
    graded = len(results) - errors
    summary = f"graded {graded} of {len(results)} notebook{'s' * (len(results) != 1)}"
    lines.append(summary + (f"; {errors} could not be graded" if errors else ""))
    return "\n".join(lines)
