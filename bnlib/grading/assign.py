"""`bnlib assign`: write the exercises from the solutions, the single source.

For each solutions/exNN_*.ipynb, exercises/ gets the same notebook with
- every solution block (the lines from `### BEGIN SOLUTION` to `### END SOLUTION`, markers
  included) replaced by `raise NotImplementedError  # YOUR CODE HERE` at the block's indentation;
- the cells tagged `solution-only` removed;
- outputs, execution counts and execution timings cleared;
- a markdown cell after the title stating the grading policy (`bnlib.grading.grade.policy`), in
  the notebook's language: English, or Chinese when its metadata `bnlib.language` is "zh-TW"
  (the zh-TW solutions', written by bnlib.translate), from the catalogue of `bnlib.i18n`; a
  Chinese one wrapped in `<div lang="zh-Hant-TW">` as bnlib.translate wraps translated cells;
- notebook metadata `bnlib.exercise` kept, and `bnlib.cells_sha256` recording a hash of the
  generated cells' types and sources.

The hash recognizes an exercise a learner has edited (running it changes outputs, not sources),
and such an exercise is never overwritten: `assign` refuses, naming it, unless `force`, which
first saves it as `<name>.ipynb.bak-YYYYmmdd-HHMMSS` next to it. Nothing a learner wrote is lost.

The output is deterministic (cell ids are the solution's; nbformat's JSON layout), so `check`
compares bytes: exercises/ is up to date exactly when assign would write what is there.
The markers are nbgrader's.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat

from bnlib.i18n import LANGUAGES, N_, gettext
from bnlib.translate import wrap_language

__all__ = [
    "BEGIN",
    "END",
    "PLACEHOLDER",
    "POLICY_CELL",
    "SOLUTION_ONLY_TAG",
    "AssignError",
    "assign",
    "cells_hash",
    "make_exercise",
    "strip_solutions",
]

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = "raise NotImplementedError  # YOUR CODE HERE"
SOLUTION_ONLY_TAG = "solution-only"
# The cell after the title of every exercise, in the notebook's language (bnlib.i18n)
POLICY_CELL = N_("**How this exercise is graded.** {policy}")
_VOLATILE_CELL_METADATA = ("execution", "ExecuteTime")  # timings added by running a notebook


class AssignError(ValueError):
    """A solution notebook that cannot be turned into an exercise (unbalanced markers, ...)."""


def strip_solutions(source, where="cell"):
    """Replace each BEGIN/END SOLUTION block of `source` by PLACEHOLDER at the block's indentation.

    where: names the cell in error messages. Raises AssignError on unbalanced markers.
    """
    lines, out, begin = source.split("\n"), [], None
    for number, line in enumerate(lines, start=1):
        marker = line.strip()
        if marker == BEGIN:
            if begin is not None:
                raise AssignError(f"{where}, line {number}: {BEGIN} inside another solution block")
            begin = number
            out.append(line[: len(line) - len(line.lstrip())] + PLACEHOLDER)
        elif marker == END:
            if begin is None:
                raise AssignError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            begin = None
        elif begin is None:
            out.append(line)
    if begin is not None:
        raise AssignError(f"{where}, line {begin}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def cells_hash(nb):
    """sha256 of the cells' types and sources: what a learner edits, not what running changes."""
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells, ensure_ascii=False).encode("utf-8")).hexdigest()


def make_exercise(solution, name="notebook"):
    """The exercise notebook for a solution notebook (a new NotebookNode; the input is unchanged).

    name: names the notebook in error messages.
    """
    nb = copy.deepcopy(solution)
    nb.nbformat, nb.nbformat_minor = 4, max(5, nb.get("nbformat_minor", 5))
    cells = []
    for index, cell in enumerate(nb.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        where = f"{name}, cell {index}"
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source, where)
            cell.outputs, cell.execution_count = [], None
        elif BEGIN in cell.source or END in cell.source:
            raise AssignError(f"{where}: solution markers belong in code cells only")
        for key in _VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if "id" not in cell:  # a stable id, so that the output is the same on every run
            cell["id"] = hashlib.sha256(f"{name}:{index}".encode()).hexdigest()[:12]
        cells.append(cell)
    from bnlib.grading.grade import policy  # here: grade imports the exercises, assign needs none

    language = nb.metadata.get("bnlib", {}).get("language", "en")  # zh-TW's, by bnlib.translate
    if language not in LANGUAGES:
        known = ", ".join(sorted(LANGUAGES))
        raise AssignError(f"{name}: metadata bnlib.language is {language!r}, not one of {known}")
    text = gettext(POLICY_CELL, language).format(policy=policy(language))
    if language != "en":  # the language tag the edition's other markdown cells carry
        text = wrap_language(text)
    graded = nbformat.v4.new_markdown_cell(text)
    graded["id"] = "grading-policy"
    nb.cells = cells[:1] + [graded] + cells[1:]  # after the title cell, in every exercise
    nb.metadata.pop("widgets", None)  # saved widget state belongs to a run, not to the exercise
    record = dict(nb.metadata.get("bnlib", {}))
    record["cells_sha256"] = cells_hash(nb)
    nb.metadata["bnlib"] = record
    return nb


def _text(nb):
    return nbformat.writes(nb) + "\n"


@dataclass
class _Status:
    state: str  # "up to date", "missing", "stale" or "edited"
    detail: str = ""


def _status(path, want):
    """How the exercise at `path` compares with the text `want` that assign would write."""
    if not path.exists():
        return _Status("missing")
    try:
        have = path.read_bytes()
    except OSError as e:
        return _Status("edited", f"cannot be read ({e.strerror})")
    if have == want.encode("utf-8"):
        return _Status("up to date")
    try:
        nb = nbformat.reads(have.decode("utf-8"), as_version=4)
        recorded = nb.metadata.get("bnlib", {}).get("cells_sha256")
        unedited = recorded is not None and recorded == cells_hash(nb)
    except Exception:  # noqa: BLE001 - not a notebook any more: a learner's file all the same
        return _Status("edited", "is not a valid notebook any more")
    if not unedited:
        return _Status("edited", "its cells differ from what bnlib assign wrote")
    return _Status("stale", "differs from what bnlib assign writes from the solution now")


def _backup_path(path):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup, n = path.with_name(f"{path.name}.bak-{stamp}"), 1
    while backup.exists():  # two backups in one second: never overwrite the first
        backup, n = path.with_name(f"{path.name}.bak-{stamp}-{n}"), n + 1
    return backup


def _write(path, text):
    """Write atomically: a learner's file is either the old one or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a notebook is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def assign(solutions="solutions", exercises="exercises", *, check=False, force=False, out=print):
    """Write (or with check=True, verify) exercises/ from solutions/. Returns an exit code.

    solutions, exercises: folders; every solutions/*.ipynb gives exercises/ the same name.
    check: write nothing; report each exercise that is missing, stale or edited; 1 if any.
    force: regenerate edited exercises too, after saving each as <name>.ipynb.bak-<time>.
    out: where the one-line messages go.
    Returns 0 when everything is (or is now) up to date, 1 otherwise.
    """
    solutions, exercises = Path(solutions), Path(exercises)
    sources = sorted(solutions.glob("*.ipynb")) if solutions.is_dir() else []
    if not sources:
        out(f"bnlib assign: no notebooks in {solutions}/ (run it from the course's folder)")
        return 1
    code, counts = 0, {}
    for source in sources:
        target = exercises / source.name
        try:
            solution = nbformat.read(source, as_version=4)
            want = _text(make_exercise(solution, str(source)))
        except AssignError as e:
            out(f"{source}: {e}")
            code = 1
            continue
        except Exception as e:  # noqa: BLE001 - a broken solution: say which, go on with the rest
            out(f"{source}: cannot be read as a notebook ({type(e).__name__}: {e})")
            code = 1
            continue
        status = _status(target, want)
        counts[status.state] = counts.get(status.state, 0) + 1
        if status.state == "up to date":
            continue
        detail = f" ({status.detail})" if status.detail else ""
        if check:
            fix = "; regenerate it with `bnlib assign`"
            if status.state == "edited":
                fix = "; exercises/ in the course must be exactly what `bnlib assign` writes"
            out(f"{target}: {status.state}{detail}{fix}")
            code = 1
        elif status.state == "edited" and not force:
            out(
                f"{target}: not overwritten: it was edited{detail}. Rerun with --force to save it "
                "as a .bak- copy next to it and regenerate it"
            )
            code = 1
        else:
            if status.state == "edited":
                backup = _backup_path(target)
                shutil.copy2(target, backup)
                out(f"{target}: edited; saved as {backup}")
            _write(target, want)
            out(f"{target}: written ({status.state} before)")
    if check and code == 0:
        out(f"{exercises}/: up to date ({len(sources)} exercise{'s' * (len(sources) != 1)})")
    return code
