"""`bnlib grade`: run learners' exercise notebooks and grade them, without trusting them.

Threat model: a notebook is untrusted code. It must not decide its own score, reach the grader's
files, the course's, or another learner's work, or outlive its grading. So:
- each notebook runs in a throwaway kernel jailed by `bnlib.grading.sandbox` (a private copy of
  its folder, a clean environment, limits, a fresh uid when the grader is root, every process
  killed at the end);
- the grader never asks the kernel for a verdict: the official checks run in the grader's own
  process and call the learner's functions through `bnlib.grading.remote`, which sends inputs to
  the kernel and reads the outputs back as plain data; references, comparisons, diagnoses and
  scores are computed here, and each task's score is clamped to [0, max];
- the graded cases come from a secret drawn for each notebook (`engine.hidden_cases`): the
  self-check cases in the notebook are not the graded ones;
- a task whose function calls a reference implementation scores 0, and says why (POLICY lists
  them; it is written from the agent's own table of what it watches, so the two agree);
- the course's own files (bnlib/) and the notebooks being graded are hashed before the run and
  checked after every notebook: on a change the run stops (see `grade_all`).
The learner's file is only read. The exercise is the notebook metadata `bnlib.exercise` (a file
name that disagrees is reported), else the file name's `exNN_` prefix.
"""

from __future__ import annotations

import ast
import collections
import csv
import hashlib
import io
import json
import math
import os
import re
import secrets
import tokenize
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import nbformat

from bnlib.grading import engine
from bnlib.grading.exercises import TASKS
from bnlib.grading.remote import GradingError, Remote
from bnlib.grading.sandbox import Limits, Sandbox, isolation
from bnlib.i18n import N_, gettext

__all__ = [
    "DEFAULT_TIMEOUT",
    "POLICY",
    "class_summary",
    "exercise_id",
    "find_notebooks",
    "format_csv",
    "format_report",
    "grade_all",
    "grade_notebook",
    "policy",
]

DEFAULT_TIMEOUT = 60  # seconds per cell; a lesson-sized notebook runs in well under that
COURSE = Path(__file__).resolve().parents[2]  # the folder holding bnlib/
_MAX_RESTARTS = 3  # kernel deaths in cells survived per notebook (each one's cell is skipped)
_AGENT_SOURCE = Path(__file__).with_name("agent.py").read_text(encoding="utf-8")
_RED_FLAGS = {  # in a notebook's code: what only serves to dodge the policy or read answers
    "setprofile": "switches off the grader's policy watch (sys.setprofile)",
    "settrace": "switches off the grader's policy watch (sys.settrace)",
}
_SOLUTIONS = "solutions"  # a string naming it in the notebook's code: reads the course's solutions


def _agent_constants(source, names):
    """The literal values the agent's source assigns to `names` (read, never imported: the agent
    runs in the learner's kernel, not here)."""
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in names:
                found[target.id] = ast.literal_eval(node.value)
    missing = set(names) - found.keys()
    if missing:
        raise RuntimeError(f"bnlib/grading/agent.py assigns no {sorted(missing)}")
    return found


# The policy's text, translatable (bnlib.i18n): a template whose fields are lists of code names,
# glued by translatable joiners ("a, b and c" in English, "a、b 和 c" in Chinese).
_POLICY = N_(
    "Write each graded function yourself: a graded function (or class) that calls or "
    "subclasses a reference implementation scores 0 for that task. The reference "
    "implementations: {references}; `torch.nn.functional`'s {torch_functions}; the "
    "norm layers of {torch_modules} (unless the task passes one in); and the course's "
    'solutions. A notebook with "{solutions}" in a string of its code, or that uses '
    "{red_flags}, scores 0 for every task."
)
_ANYTHING_IN = N_("anything in {package}")
_NEXT_ITEM = N_("{items}, {item}")
_LAST_ITEM = {"and": N_("{items} and {item}"), "or": N_("{items} or {item}")}


def _listing(items, last, language):
    """The list "a, b and c" (last="and") or "a, b or c" (last="or"), in `language`."""
    items, text = list(items), None
    follow, final = gettext(_NEXT_ITEM, language), gettext(_LAST_ITEM[last], language)
    for i, item in enumerate(items):
        glue = final if i == len(items) - 1 else follow
        text = item if text is None else glue.format(items=text, item=item)
    return text or ""


def policy(language=None, source=None):
    """The grading policy in `language` (default: the current one), written from what the agent
    scores 0 (its constants, read from `source`, default bnlib/grading/agent.py) and the red flags
    of the notebook's code (_RED_FLAGS, _SOLUTIONS). Code names stay as they are."""
    c = _agent_constants(
        _AGENT_SOURCE if source is None else source,
        ("BNLIB_MODULES", "BNLIB_PACKAGES", "BNLIB_FUNCTIONS", "NORM_FUNCTIONS", "NORM_MODULES"),
    )
    anything_in = gettext(_ANYTHING_IN, language)
    bnlib = [f"`bnlib.{m}`" for m in c["BNLIB_MODULES"]]
    bnlib += [anything_in.format(package=f"`bnlib.{p}`") for p in c["BNLIB_PACKAGES"]]
    bnlib += [f"`bnlib.{m}.{f}`" for m, fs in c["BNLIB_FUNCTIONS"].items() for f in fs]
    return gettext(_POLICY, language).format(
        references=_listing(bnlib, "and", language),
        torch_functions=_listing((f"`{f}`" for f in c["NORM_FUNCTIONS"]), "and", language),
        torch_modules=_listing(
            (f"`torch.nn.modules.{m}`" for m in c["NORM_MODULES"]), "and", language
        ),
        solutions=_SOLUTIONS,
        red_flags=_listing((f"`sys.{name}`" for name in sorted(_RED_FLAGS)), "or", language),
    )


POLICY = policy("en")  # the grader's reports are in English


# --- finding and reading notebooks ---------------------------------------------------------------


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
    declared = _declared(nb)
    if declared in TASKS:
        return declared, None
    by_name = _by_file_name(path)
    if by_name:
        return by_name, None
    known = ", ".join(sorted(TASKS))
    said = f"metadata says {declared!r}" if declared else "no bnlib.exercise metadata"
    return None, f"unknown exercise ({said}, file name {Path(path).name!r}); known: {known}"


def _declared(nb):
    meta = nb.get("metadata", {}).get("bnlib", {})
    declared = meta.get("exercise") if isinstance(meta, dict) else None
    return declared if isinstance(declared, str) else None


def _by_file_name(path):
    match = re.match(r"(ex\d+)_", Path(path).name)
    if match:
        candidates = [e for e in TASKS if e.startswith(match.group(1) + "_")]
        if len(candidates) == 1:
            return candidates[0]
    return None


def _exercise_notes(nb, path, exercise):
    """What the report should say about how the exercise id was found."""
    notes, by_name, declared = [], _by_file_name(path), _declared(nb)
    if declared in TASKS and by_name and by_name != declared:
        notes.append(f"the file name says {by_name}, the notebook's metadata {declared}")
    elif declared is None:
        notes.append(f"no bnlib.exercise metadata: taken to be {exercise}")
    elif declared not in TASKS:
        notes.append(f"the metadata names an unknown exercise {declared!r}")
    return notes


def _points(tasks):
    """What an exercise's tasks are worth together."""
    return float(sum(getattr(t, "points", 1.0) for t in tasks))


def _error(path, message, max_score=0.0, exercise=None):
    return {
        "path": str(path),
        "exercise": exercise,
        "score": 0.0,
        "max_score": max_score,
        "tasks": [],
        "notes": [],
        "error": message,
    }


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
        return None, f"not a notebook: {type(e).__name__}: {engine.one_line(e)}"
    return nb, None


def _red_flags(sources):
    """One-line reasons the notebook's code breaks the policy on its face (names and strings)."""
    found = []
    for source in sources:
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            continue
        for tok in tokens:
            if tok.type == tokenize.NAME and tok.string in _RED_FLAGS:
                found.append(_RED_FLAGS[tok.string])
            elif tok.type == tokenize.STRING and _SOLUTIONS in tok.string:
                found.append("reads the course's solutions")
    return sorted(set(found))


# --- grading one notebook ------------------------------------------------------------------------


class _Registry(set):
    """The sandboxes alive in a run (the worker threads add and discard theirs)."""

    stopping = False


class _Session:
    """The notebook's cells run in a fresh sandbox, skipping the cells known to kill it."""

    def __init__(self, path, sources, timeout, limits, skip, registry):
        self.path, self.sources, self.timeout = path, sources, timeout
        self.limits, self.skip, self.registry = limits, skip, registry
        self.box = None

    def start(self):
        """Run the cells; returns (the index of a cell that killed the kernel, why), or None."""
        if self.registry.stopping:
            raise RuntimeError("the run was interrupted")
        self.box = Sandbox(self.path, COURSE, self.limits).__enter__()
        self.registry.add(self.box)
        for i, source in enumerate(self.sources):
            if i in self.skip or not source.strip():
                continue
            run = self.box.run(source, self.timeout)
            if run.status == "died":
                hung = run.ename == "CellTimeoutError"
                return i, "did not stop when interrupted" if hung else "killed the kernel"
        agent = f"_bnlib_agent_{secrets.token_hex(6)}"
        dirs = [str(self.box.lib / "bnlib"), str(COURSE / "bnlib")]
        setup = (
            "import builtins as _bnlib_b, IPython as _bnlib_i\n"
            f"_bnlib_n = {{'__name__': 'bnlib_grade_agent'}}\n"
            f"_bnlib_b.exec(_bnlib_b.compile({_AGENT_SOURCE!r}, '<bnlib-agent>', 'exec'), "
            "_bnlib_n)\n"
            f"_bnlib_i.get_ipython().user_ns[{agent!r}] = _bnlib_n['Agent']("
            f"{str(self.box.req)!r}, {str(self.box.res)!r}, _bnlib_i.get_ipython().user_ns, "
            f"{dirs!r}, "
            f"{str(self.box.work)!r})\n"
            "del _bnlib_b, _bnlib_i, _bnlib_n\n"
        )
        self.box.run(setup, 60)
        self.remote = Remote(self.box, agent, self.box.req, self.box.res, engine.CALL_TIMEOUT)
        return None

    def close(self):
        if self.box is not None:
            self.box.close()
            self.registry.discard(self.box)
            self.box = None


def grade_notebook(path, timeout=DEFAULT_TIMEOUT, *, expected=None, limits=None, _registry=None):
    """Run one notebook in a jailed kernel and grade it. Never raises for a bad notebook.

    Returns {"path", "exercise", "score", "max_score", "tasks": [{"task", "passed", "score",
    "max_score", "feedback"}], "notes": [one line each]}, plus "error" (one line) when the
    notebook could not be graded. expected: the exercise id every notebook should be (a notebook
    of another exercise is then an error row, 0 out of the expected exercise's max score).
    """
    path = Path(path)
    timeout = max(1.0, float(timeout))
    limits = limits or Limits()
    nb, problem = _read(path)
    if problem:
        return _error(path, problem)
    exercise, problem = exercise_id(nb, path)
    if problem and expected is None:
        return _error(path, problem)
    exercise = exercise or expected
    notes = _exercise_notes(nb, path, exercise)
    if expected is not None and exercise != expected:
        why = f"this notebook is {exercise}, not {expected}"
        max_expected = _points(TASKS[expected])
        return dict(_error(path, why, max_expected, exercise), notes=notes)
    tasks = TASKS[exercise]
    max_score = _points(tasks)
    sources = [c.source for c in nb.cells if c.cell_type == "code"]
    flags = _red_flags(sources)
    registry = _registry if _registry is not None else _Registry()
    skip, session = set(), None
    try:
        for _attempt in range(_MAX_RESTARTS + 1):
            session = _Session(path, sources, timeout, limits, skip, registry)
            try:
                died = session.start()
            except Exception as e:  # noqa: BLE001 - a kernel that cannot start, ...
                why = f"could not run the notebook: {type(e).__name__}: {engine.one_line(e)}"
                return _error(path, why, max_score, exercise)
            if died is None:
                break
            skip.add(died[0])
            notes.append(
                f"code cell {died[0] + 1} of {len(sources)} {died[1]}: it was skipped and the "
                "others run again"
            )
            session.close()
        else:
            why = f"the kernel died {_MAX_RESTARTS + 1} times (code cells {sorted(skip)})"
            return _error(path, why, max_score, exercise)
        results = _grade_tasks(session, exercise, tasks, flags)
    finally:
        if session is not None:
            session.close()
    score = round(sum(t["score"] for t in results), 4)
    return {
        "path": str(path),
        "exercise": exercise,
        "score": score,
        "max_score": float(sum(t["max_score"] for t in results)),
        "tasks": results,
        "notes": notes,
    }


def _grade_tasks(session, exercise, tasks, flags):
    needs = sorted({n for t in tasks for n in t.needs})
    try:
        found = session.remote.describe(needs)
    except GradingError as e:
        why = f"the grader could not reach the notebook's functions ({e}): is a cell of it "
        why += "changing how IPython runs code?"
        return [
            {
                "task": t.name,
                "passed": False,
                "score": 0.0,
                "max_score": float(getattr(t, "points", 1.0)),
                "feedback": why,
            }
            for t in tasks
        ]
    namespace = {name: value for name, (value, _) in found.items()}
    results = []
    for t in tasks:
        session.remote.violations = []
        with engine.hidden_cases(secrets.randbits(63)):
            result = engine.run_task(t, namespace)
        # NB: only the task's own function counts (a backward task is not docked for the
        # forward it calls to make its cache: the forward's task is)
        used = {found[t.name][1]} if found.get(t.name, (None, None))[1] else set()
        own, others = namespace.get(t.name), [v for n, v in namespace.items() if n != t.name]
        used |= {
            why
            for who, why in session.remote.violations
            if who is own or not any(who is v for v in others)
        }
        used = sorted(used)
        max_score = float(getattr(t, "points", 1.0))  # the task's, never the result's
        score = result.score if math.isfinite(result.score) else 0.0
        score = min(max(float(score), 0.0), max_score)
        feedback = result.feedback
        passed = bool(result.passed) and score == max_score
        if used or flags:
            why = f"uses {', '.join(used)}" if used else "; ".join(flags)
            feedback = f"0 by the course's policy: the notebook {why}. {POLICY}"
            score, passed = 0.0, False
        results.append(
            {
                "task": t.name,
                "passed": passed,
                "score": round(score, 4),
                "max_score": max_score,
                "feedback": feedback,
            }
        )
    return results


# --- a class -------------------------------------------------------------------------------------


def _digest(paths):
    """{path: sha256} of the course's bnlib/ files and the given notebooks."""
    out = {}
    files = sorted(p for p in (COURSE / "bnlib").rglob("*") if "__pycache__" not in p.parts)
    for p in [*files, *paths]:
        try:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        except OSError:
            out[str(p)] = "unreadable"
    return out


def _changed(before, paths, finished, running):
    """None, or why the run must stop: a file of the course or a notebook changed."""
    after = _digest([p for p in paths if p.is_file()])
    changed = sorted(k for k in before if after.get(k) != before[k])
    if not changed:
        return None
    more = f" and {len(changed) - 1} more" if len(changed) > 1 else ""
    who = ", ".join(finished + running)
    return (
        f"{changed[0]}{more} changed while grading {who}: refusing to continue (restore the "
        "course, e.g. `git status`, and look at those notebooks)"
    )


def grade_all(paths, timeout=DEFAULT_TIMEOUT, jobs=None, progress=None, limits=None, expected=None):
    """Grade notebooks, `jobs` at a time. Returns (results in the order given, stop reason).

    The stop reason is None, "interrupted" (Ctrl-C: what was graded is returned) or why the
    course changed (the run stops at once: the grader's files are no longer to be trusted).
    """
    paths = [Path(p) for p in paths]
    jobs = max(1, jobs or os.cpu_count() or 1)
    results = [None] * len(paths)
    registry = _Registry()
    before = _digest([p for p in paths if p.is_file()])
    stop = None
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="bnlib-grade")
    running = {}
    queue_ = list(enumerate(paths))
    try:
        while (queue_ or running) and stop is None:
            while queue_ and len(running) < jobs:
                i, p = queue_.pop(0)
                running[
                    pool.submit(
                        grade_notebook,
                        p,
                        timeout,
                        expected=expected,
                        limits=limits,
                        _registry=registry,
                    )
                ] = i
            done, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
            finished = []
            for future in done:
                i = running.pop(future)
                results[i] = future.result()
                finished.append(str(paths[i]))
                if progress:
                    progress(paths[i], sum(r is not None for r in results), len(paths))
            if finished:
                stop = _changed(before, paths, finished, [str(paths[j]) for j in running.values()])
    except KeyboardInterrupt:
        stop = "interrupted"
    finally:
        registry.stopping = True  # no new kernel starts
        for box in list(registry):
            box.kill()
        pool.shutdown(wait=stop is None, cancel_futures=True)
        for box in list(registry):
            box.close()
    return [r for r in results if r is not None], stop


# --- reports -------------------------------------------------------------------------------------


def format_report(results):
    """The text report: per notebook its exercise, a table (task, result, score, feedback), its
    notes and its total; errors in one line with the exercise's max score."""
    lines = []
    for r in results:
        exercise = r.get("exercise") or "?"
        if "error" in r:
            lines.append(
                f"{r['path']} [{exercise}]: ERROR: {r['error']} (0 out of {r['max_score']:g})"
            )
            lines.extend(f"  note: {n}" for n in r.get("notes", []))
            lines.append("")
            continue
        lines.append(f"{r['path']} [{exercise}]")
        width = max([len("task")] + [len(t["task"]) for t in r["tasks"]])
        lines.append(f"  {'task':<{width}}  result  score  feedback")
        for t in r["tasks"]:
            verdict = "PASS" if t["passed"] else "FAIL"
            score = f"{t['score']:.2f}/{t['max_score']:g}"
            lines.append(f"  {t['task']:<{width}}  {verdict:<6}  {score:>5}  {t['feedback']}")
        lines.extend(f"  note: {n}" for n in r.get("notes", []))
        lines.append(f"  {'total':<{width}}          {r['score']:.2f} out of {r['max_score']:g}")
        lines.append("")
    errors = sum("error" in r for r in results)
    graded = len(results) - errors
    summary = f"graded {graded} of {len(results)} notebook{'s' * (len(results) != 1)}"
    lines.append(summary + (f"; {errors} could not be graded" if errors else ""))
    return "\n".join(lines)


def format_csv(results):
    """A gradebook: one row per notebook (path, exercise, score, max_score, one column per task
    graded in any of them, error, notes)."""
    task_names = []
    for r in results:
        for t in r["tasks"]:
            if t["task"] not in task_names:
                task_names.append(t["task"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["path", "exercise", "score", "max_score", *task_names, "error", "notes"])
    for r in results:
        scores = {t["task"]: t["score"] for t in r["tasks"]}
        writer.writerow(
            [
                r["path"],
                r.get("exercise") or "",
                f"{r['score']:g}",
                f"{r['max_score']:g}",
                *[f"{scores[n]:g}" if n in scores else "" for n in task_names],
                r.get("error", ""),
                " | ".join(r.get("notes", [])),
            ]
        )
    return out.getvalue()


_LIKELY = re.compile(r"Likely mistakes?: (.*?)(?:\. First failing case|\. Note:|\. Hint:|$)")


def class_summary(results):
    """Per exercise and task: how many passed; and the most common diagnosed mistakes."""
    lines = ["class summary"]
    by_exercise = collections.defaultdict(list)
    for r in results:
        by_exercise[r.get("exercise") or "?"].append(r)
    for exercise, rs in sorted(by_exercise.items()):
        graded = [r for r in rs if "error" not in r]
        lines.append(
            f"  {exercise}: {len(rs)} notebook{'s' * (len(rs) != 1)}, {len(rs) - len(graded)} "
            "could not be graded"
        )
        for t in TASKS.get(exercise, []):
            rows = [x for r in graded for x in r["tasks"] if x["task"] == t.name]
            passed = sum(x["passed"] for x in rows)
            mean = sum(x["score"] for x in rows) / len(rows) if rows else 0.0
            rate = f"{100 * passed / len(rs):.0f}%" if rs else "-"
            lines.append(
                f"    {t.name}: passed {passed} of {len(rs)} ({rate}), mean score {mean:.2f}"
            )
        mistakes = collections.Counter()
        for r in graded:
            for x in r["tasks"]:
                match = _LIKELY.search(x["feedback"])
                if match:
                    for hint in match.group(1).split("; "):
                        mistakes[f"{x['task']}: {hint.rstrip('.')}"] += 1
        if mistakes:
            lines.append("    most common diagnosed mistakes:")
            for hint, count in mistakes.most_common(5):
                lines.append(f"      {count} x {hint}")
    lines.append(f"  kernels isolated by: {isolation()}")
    return "\n".join(lines)
