"""bnlib grade: learner code never decides its own score, reaches the course or survives the run.

Kernel starts cost seconds on two cores, so one command-line run grades a whole class folder:
honest notebooks (the solution, a debug print, a kernel death in a later cell, an untouched
exercise renamed) and one notebook per known attack (each must score 0 and change nothing).
A few more runs test the per-cell timeout, Ctrl-C, and the refusal to go on when the course
changed.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from bnlib import cli
from bnlib.grading import grade, sandbox
from bnlib.grading import grade as grading
from bnlib.grading.grade import (
    class_summary,
    exercise_id,
    find_notebooks,
    format_csv,
    format_report,
    grade_notebook,
)

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex01_forward_backward.ipynb"
SOLUTION_EX02 = ROOT / "solutions" / "ex02_running_stats.ipynb"
EXERCISE = ROOT / "exercises" / "ex01_forward_backward.ipynb"
EX01 = "ex01_forward_backward"
TASK_NAMES = [
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "spatial_batchnorm_forward",
    "spatial_batchnorm_backward",
]
EX01_POINTS = float(len(TASK_NAMES))
BNLIB = Path(sys.executable).with_name("bnlib")
SECRET = "G15_GRADER_SECRET"
DETACHED = "987.654"  # a `sleep` a notebook leaves behind: none may survive the run

# --- the attacks, each a cell appended to the untouched exercise ---------------------------------

ALLCLOSE = """\
import numpy
numpy.allclose = lambda *a, **k: True
numpy.array_equal = lambda *a, **k: True
numpy.isclose = lambda a, b, *r, **k: numpy.ones(numpy.broadcast(a, b).shape, bool)
"""

PRINT = """\
import builtins, json
_real_print = builtins.print
_fake = json.dumps({"tasks": [{"task": t, "passed": True, "score": 5.0, "max_score": 1.0,
                               "feedback": "ok"} for t in ("a", "b", "c")]})
def _print(*args, **kwargs):
    _real_print(f"BNLIB-GRADE-0:{_fake}", **{k: v for k, v in kwargs.items() if k == "file"})
builtins.print = _print
"""

IMPORT = """\
import builtins, types
_real_import = builtins.__import__
_fake = types.ModuleType("bnlib.checks")
_fake.run_tasks = lambda exercise, namespace: [(n, None) for n in "abc"]
def _import(name, *args, **kwargs):
    if name.startswith("bnlib") or name == "numpy":
        return _fake
    return _real_import(name, *args, **kwargs)
builtins.__import__ = _import
"""

TRANSFORMER = """\
def _rewrite(lines):
    return ['print("BNLIB-GRADE-0:{}")\\n']
get_ipython().input_transformers_post.append(_rewrite)
"""

META_PATH = """\
import importlib.abc, importlib.util, sys
import bnlib.checks as _real
class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "bnlib.checks":
            return importlib.util.spec_from_loader(name, self, origin=_real.__file__)
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        module.__file__ = _real.__file__
        module.TASKS = _real.TASKS
        module.CheckResult = _real.CheckResult
        module.run_tasks = lambda e, ns: [(n, _real.CheckResult(True, 1.0, "ok")) for n in "abc"]
        module.outputs_match = lambda *a, **k: True
sys.meta_path.insert(0, _Finder())
for _name in [m for m in sys.modules if m.startswith("bnlib")]:
    del sys.modules[_name]
"""

# the path built from pieces, so no string in the notebook names the folder
SOLUTIONS_EXEC = """\
import json, pathlib, bnlib
for _root in (pathlib.Path(bnlib.__file__).parents[1], pathlib.Path({course!r})):
    _nb = _root / ("sol" + "utions") / "ex01_forward_backward.ipynb"
    try:
        _cells = json.loads(_nb.read_text())["cells"]
    except OSError as e:
        print("cannot read", _nb, e)
        continue
    for _c in _cells:
        if "def batchnorm_" in "".join(_c["source"]):
            exec("".join(_c["source"]))
"""

SOLUTIONS_PLAIN = """\
import json
_cells = json.load(open({path!r}))["cells"]
for _c in _cells:
    if "def batchnorm_" in "".join(_c["source"]):
        exec("".join(_c["source"]))
"""

DISK = """\
import pathlib
import bnlib.checks
_all_pass = '''

def run_tasks(exercise, namespace):
    return [(n, CheckResult(True, 1.0, "pwned")) for n in ("a", "b", "c")]
'''
for _target in {{pathlib.Path(bnlib.checks.__file__), pathlib.Path({checks!r})}}:
    try:
        with open(_target, "a") as f:
            f.write(_all_pass)
    except OSError as e:
        print("cannot write", _target, e)
for _victim in {victims!r}:
    try:
        pathlib.Path(_victim).write_text("{{}}")
    except OSError as e:
        print("cannot write", _victim, e)
"""

# answers for the notebook's own (fixed) check cases, looked up: the graded cases are others
LOOKUP = """\
from bnlib import functional as BF
from bnlib.grading.exercises import ex01
_table = {
    c.x.tobytes(): BF.batch_norm(c.x, None, None, c.gamma, c.beta, training=True, eps=c.eps_used)
    for c in ex01.forward_cases()
}
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    return _table[x.tobytes()], None
assert check_batchnorm_forward(batchnorm_forward).passed  # the self-check passes
"""

ENVIRONMENT = f"""\
import os
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    secret = os.environ.get({SECRET!r}, "absent")
    raise ValueError("secret=" + secret + " home=" + os.environ["HOME"])
"""

DETACH = f"""\
import os, subprocess
subprocess.Popen(["sleep", {DETACHED!r}], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if os.fork() == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", {DETACHED!r}])
"""

SHADOW_CHECKS = """\
from dataclasses import dataclass


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

# --- honest notebooks ----------------------------------------------------------------------------

DEBUG_PRINT = """\
_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    print("debug", x.shape, end="; ")
    return _forward(x, gamma, beta, eps)
print("all done", end="; ")
"""

USES_BNLIB = """\
from bnlib import functional as BF
_own_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    out = BF.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    return out, _own_forward(x, gamma, beta, eps)[1]
"""

USES_TORCH = """\
import torch
_own_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    t = torch.nn.functional.batch_norm(
        torch.from_numpy(x), None, None, torch.from_numpy(gamma), torch.from_numpy(beta),
        training=True, eps=eps)
    return t.numpy(), _own_forward(x, gamma, beta, eps)[1]
"""


def _with_cells(source, extra, at=None, drop_metadata=False):
    nb = nbformat.read(source, as_version=4)
    at = len(nb.cells) if at is None else at
    nb.cells[at:at] = [new_code_cell(text) for text in extra]
    if drop_metadata:
        del nb.metadata["bnlib"]
    return nb


def _digests(*folders):
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def _stragglers(token, exact=True):
    """Pids of processes with `token` as an argument (or, not exact, in one)."""
    found = []
    for pid in os.listdir("/proc"):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(token.encode() == a if exact else token.encode() in a for a in args):
            found.append(int(pid))
    return found


def _write(folder, name, nb):
    (folder / name).mkdir(exist_ok=True)
    path = folder / name / f"{EX01}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """A snapshot of the course (bnlib/, solutions/) and the environment that grades with it.

    NB: the grader refuses to go on when its course changes under it, and in this repository
    other work may change bnlib/ at any time: the command-line runs use a copy."""
    root = tmp_path_factory.mktemp("course")
    for name in ("bnlib", "solutions"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    tmp = tmp_path_factory.mktemp("sandboxes")
    env = dict(os.environ, PYTHONPATH=str(root), TMPDIR=str(tmp), **{SECRET: "hunter2"})
    return root, env, tmp


@pytest.fixture(scope="module")
def class_run(tmp_path_factory, course):
    """One `bnlib grade --json --exercise ex01 --jobs 2` over a class folder."""
    course_root, env, sandboxes = course
    folder = tmp_path_factory.mktemp("class")
    w = lambda name, extra, **kw: _write(folder, name, _with_cells(EXERCISE, extra, **kw))  # noqa: E731
    s = lambda name, extra, **kw: _write(folder, name, _with_cells(SOLUTION, extra, **kw))  # noqa: E731
    bob = _write(folder, "bob", nbformat.read(SOLUTION, as_version=4))
    (folder / "bob" / ".ipynb_checkpoints").mkdir()
    (folder / "bob" / ".ipynb_checkpoints" / f"{EX01}-checkpoint.ipynb").write_text("{ skipped")
    (folder / "carol").mkdir()
    nbformat.write(
        _with_cells(EXERCISE, [], drop_metadata=True), folder / "carol" / f"{EX01}-carol.ipynb"
    )
    s("hank", [DEBUG_PRINT])
    s("ivy", ["import os\nos._exit(1)"])
    s("eve", ["import os\nos._exit(1)"], at=5)  # between the forward and the backward
    s("jack", [USES_BNLIB])
    s("kate", [USES_TORCH])
    w("a_allclose", [ALLCLOSE])
    w("a_print", [PRINT])
    w("a_import", [IMPORT])
    w("a_transformer", [TRANSFORMER])
    w("a_meta_path", [META_PATH])
    w("a_solutions", [SOLUTIONS_EXEC.format(course=str(course_root))])
    solution = course_root / "solutions" / SOLUTION.name
    w("a_solutions_plain", [SOLUTIONS_PLAIN.format(path=str(solution))])
    victims = [str(bob), str(folder / "carol" / f"{EX01}-carol.ipynb")]
    w("a_disk", [DISK.format(checks=str(course_root / "bnlib" / "checks.py"), victims=victims)])
    w("a_environment", [ENVIRONMENT])
    w("a_lookup", [LOOKUP])
    w("a_detach", [DETACH])
    (folder / "mike").mkdir()
    (folder / "mike" / f"{EX01}.ipynb").write_bytes(SOLUTION_EX02.read_bytes())
    (folder / "dave").mkdir()
    (folder / "dave" / f"{EX01}.ipynb").write_text('{"cells": [')
    (folder / "frank" / "bnlib").mkdir(parents=True)
    (folder / "frank" / "bnlib" / "__init__.py").write_text("def seed_everything(s):\n    pass\n")
    (folder / "frank" / "bnlib" / "checks.py").write_text(SHADOW_CHECKS)
    (folder / "frank" / f"{EX01}.ipynb").write_bytes(EXERCISE.read_bytes())
    before = _digests(folder, course_root)
    started = time.monotonic()
    done = subprocess.run(
        [str(BNLIB), "grade", str(folder), str(folder / "nobody.ipynb"), "--json"]
        + ["--exercise", EX01, "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    took = time.monotonic() - started
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    report = json.loads(done.stdout)
    results = {
        Path(r["path"]).relative_to(folder).parts[0]: r
        for r in report["notebooks"]
        if r["path"] != str(folder / "nobody.ipynb")
    }
    results["nobody"] = report["notebooks"][-1]
    print(f"class run: {len(report['notebooks'])} notebooks in {took:.0f} s")
    assert not list(sandboxes.iterdir()), "every sandbox is removed"
    return folder, done.returncode, results, before, report


def _assert_shape(result):
    keys = {"path", "exercise", "score", "max_score", "tasks", "notes"}
    assert set(result) == keys | ({"error"} if "error" in result else set())
    for t in result["tasks"]:
        assert set(t) == {"task", "passed", "score", "max_score", "feedback"}
        assert 0.0 <= t["score"] <= t["max_score"]


def _full(result):
    _assert_shape(result)
    assert [t["task"] for t in result["tasks"]] == TASK_NAMES, result
    assert all(t["passed"] for t in result["tasks"]), result
    assert result["score"] == result["max_score"] == EX01_POINTS
    assert result["exercise"] == EX01


def _zero(result):
    _assert_shape(result)
    assert result["score"] == 0.0 and not any(t["passed"] for t in result["tasks"]), result
    assert result["max_score"] == EX01_POINTS


# --- honest work ---------------------------------------------------------------------------------


def test_the_solution_gets_full_marks(class_run):
    _full(class_run[2]["bob"])
    assert class_run[2]["bob"]["notes"] == []


def test_debug_prints_do_not_break_grading(class_run):
    _full(class_run[2]["hank"])


def test_a_kernel_death_in_a_cell_skips_that_cell_and_grades_the_rest(class_run):
    cells = len([c for c in nbformat.read(SOLUTION, as_version=4).cells if c.cell_type == "code"])
    for name, at in (("ivy", cells + 1), ("eve", 4)):
        result = class_run[2][name]
        _full(result)
        assert result["notes"] == [
            f"code cell {at} of {cells + 1} killed the kernel: it was skipped and the others "
            "run again"
        ]


def test_the_untouched_exercise_gets_zero_with_reasons_even_renamed(class_run):
    carol = class_run[2]["carol"]
    _zero(carol)
    assert [t["task"] for t in carol["tasks"]] == TASK_NAMES
    for t in carol["tasks"]:
        assert "raised NotImplementedError (line 7 of " in t["feedback"]
        assert "batchnorm_forward)" in t["feedback"]
    assert carol["notes"] == [f"no bnlib.exercise metadata: taken to be {EX01}"]


def test_calling_a_reference_implementation_scores_zero_for_that_task_and_says_why(class_run):
    for name, used in (
        ("jack", "bnlib.functional.batch_norm"),
        ("kate", "torch.nn.functional.batch_norm"),
    ):
        result = class_run[2][name]
        # NB: spatial_batchnorm_forward calls their batchnorm_forward, so it uses the reference too
        docked = ("batchnorm_forward", "spatial_batchnorm_forward")
        for t in result["tasks"]:
            if t["task"] in docked:
                assert t["score"] == 0.0 and not t["passed"], t
                assert f"uses {used}" in t["feedback"] and grade.POLICY in t["feedback"]
            else:
                assert t["passed"], result  # their own code: full marks
        assert result["score"] == EX01_POINTS - len(docked)


# --- attacks -------------------------------------------------------------------------------------

ATTACKS = [
    "a_allclose",
    "a_print",
    "a_import",
    "a_transformer",
    "a_meta_path",
    "a_solutions",
    "a_solutions_plain",
    "a_disk",
    "a_environment",
    "a_lookup",
    "a_detach",
    "frank",
]


@pytest.mark.parametrize("name", ATTACKS)
def test_every_attack_scores_zero(class_run, name):
    _zero(class_run[2][name])


def test_the_attacks_fail_for_the_reasons_expected(class_run):
    r = class_run[2]
    for name in ("a_allclose", "a_print", "a_meta_path", "a_solutions", "frank", "a_disk"):
        assert all("NotImplementedError" in t["feedback"] for t in r[name]["tasks"]), name
    for name in ("a_import", "a_transformer"):  # the grader cannot talk to the kernel
        assert all("could not reach" in t["feedback"] for t in r[name]["tasks"]), name
    assert "reads the course's solutions" in r["a_solutions_plain"]["tasks"][0]["feedback"]
    assert "raised KeyError" in r["a_lookup"]["tasks"][0]["feedback"]  # unseen inputs


def test_hidden_cases_differ_from_the_fixed_ones_and_from_each_other():
    from bnlib.grading.engine import case_seed, hidden_cases
    from bnlib.grading.exercises.ex01 import forward_cases

    fixed = [c.x for c in forward_cases()]
    with hidden_cases(1):
        one = [c.x for c in forward_cases()]
        assert case_seed(0) != 0
    with hidden_cases(2):
        two = [c.x for c in forward_cases()]
    assert [c.x.tobytes() for c in forward_cases()] == [x.tobytes() for x in fixed]
    for a, b, c in zip(fixed, one, two, strict=True):
        assert a.shape == b.shape == c.shape  # the same kinds of case ...
        assert not (a == b).all() and not (b == c).all()  # ... with other numbers


def test_the_learners_kernel_sees_none_of_the_graders_environment(class_run):
    feedback = class_run[2]["a_environment"]["tasks"][0]["feedback"]
    assert "secret=absent" in feedback and "hunter2" not in feedback
    assert f"home={Path.home()}" not in feedback and "/bnlib-grade-" in feedback


def test_nothing_a_notebook_started_survives_the_run(class_run):
    assert _stragglers(DETACHED) == []


def test_a_notebook_of_another_exercise_is_reported_and_scores_zero(class_run):
    mike = class_run[2]["mike"]
    assert mike["exercise"] == "ex02_running_stats" and mike["score"] == 0.0
    assert mike["error"] == f"this notebook is ex02_running_stats, not {EX01}"
    assert mike["max_score"] == EX01_POINTS
    assert mike["notes"] == [
        f"the file name says {EX01}, the notebook's metadata ex02_running_stats"
    ]


def test_the_course_and_every_learners_file_are_unchanged(class_run, course):
    folder, _, _, before, _ = class_run
    assert _digests(folder, course[0]) == before


def test_broken_notebooks_get_one_line_errors_and_a_non_zero_exit(class_run):
    _, code, results, _, report = class_run
    assert code == 1
    errors = {name: r["error"] for name, r in results.items() if "error" in r}
    assert set(errors) == {"dave", "mike", "nobody"}
    assert errors["dave"].startswith("not a notebook: invalid JSON")
    assert errors["nobody"] == "no such file"
    for name, message in errors.items():
        assert "\n" not in message
        _assert_shape(results[name])
        assert results[name]["score"] == 0.0 and results[name]["tasks"] == []
    assert len(report["notebooks"]) == len(ATTACKS) + 10  # the checkpoint copy is skipped
    assert "stopped" not in report


def test_reports_csv_and_summary(class_run):
    _, _, results, _, report = class_run
    text = format_report(report["notebooks"])
    assert f"bob/{EX01}.ipynb [{EX01}]" in text
    width = max(map(len, TASK_NAMES))
    row = f"  {'batchnorm_forward':<{width}}  PASS    1.00/1  batchnorm_forward: all 6 hidden"
    assert row in text
    assert "ERROR: no such file (0 out of 0)" in text
    assert f"ERROR: this notebook is ex02_running_stats, not {EX01} (0 out of 5)" in text
    rows = format_csv(report["notebooks"]).splitlines()
    assert rows[0] == "path,exercise,score,max_score," + ",".join(TASK_NAMES) + ",error,notes"
    assert any(row.startswith(f"{results['bob']['path']},{EX01},5,5,1,1,1,1,1,,") for row in rows)
    summary = class_summary(report["notebooks"])
    assert f"    batchnorm_forward: passed 4 of {len(report['notebooks']) - 3}" in summary
    assert "kernels isolated by: " in summary


# --- more runs -----------------------------------------------------------------------------------


def test_a_cell_that_never_ends_is_interrupted_and_grading_goes_on(tmp_path):
    solution = nbformat.read(SOLUTION, as_version=4)
    functions = [c.source for c in solution.cells if c.source.startswith("def batchnorm_")]
    assert len(functions) == 3
    nb = new_notebook(
        cells=[
            new_code_cell(s) for s in ["import numpy as np", "while True:\n    pass", *functions]
        ]
    )
    path = tmp_path / f"{EX01}.ipynb"
    nbformat.write(nb, path)
    result = grade_notebook(path, timeout=3)
    assert "error" not in result, result
    assert result["score"] == 3.0


def test_a_module_built_on_torchs_batch_norm_scores_zero(tmp_path):
    """ex02: a MyBatchNorm1d that is torch's BatchNorm1d under another name scores 0, saying why;
    the other tasks are graded as usual."""
    cells = ["class MyBatchNorm1d(nn.BatchNorm1d):\n    pass"]
    path = tmp_path / SOLUTION_EX02.name
    nbformat.write(_with_cells(SOLUTION_EX02, cells), path)
    result = grade_notebook(path)
    scores = {t["task"]: t["score"] for t in result["tasks"]}
    assert scores == {
        "update_running_stats": 1,
        "batchnorm_eval": 1,
        "fold_bn": 1,
        "MyBatchNorm1d": 0,
    }
    feedback = result["tasks"][-1]["feedback"]
    assert "uses torch.nn.modules.batchnorm._BatchNorm" in feedback and grade.POLICY in feedback


def test_the_sandbox_jails_the_kernel(tmp_path):
    (tmp_path / "data.txt").write_text("beside the notebook")
    (tmp_path / "other.ipynb").write_text("{}")
    notebook = tmp_path / f"{EX01}.ipynb"
    notebook.write_bytes(EXERCISE.read_bytes())
    limits = sandbox.Limits(memory_bytes=3 * 2**30)
    probes = {
        "the data beside it, not the other notebooks": "import os\n"
        f"assert sorted(os.listdir()) == ['data.txt', '{EX01}.ipynb'], os.listdir()",
        "a private HOME and TMPDIR": "import os, tempfile\n"
        "assert os.environ['HOME'].startswith(os.path.dirname(os.getcwd()))\n"
        "assert tempfile.gettempdir().startswith(os.path.dirname(os.getcwd()))",
        "no variable of the grader's": f"import os\nassert {SECRET!r} not in os.environ",
        "the memory limit": "import resource\n"
        "assert resource.getrlimit(resource.RLIMIT_AS)[0] == 3 * 2**30\n"
        "try:\n    bytearray(4 * 2**30)\n"
        "except MemoryError:\n    pass\nelse:\n    raise SystemExit",
        "the CPU limit": "import resource\n"
        "assert resource.getrlimit(resource.RLIMIT_CPU)[0] == sandbox_limits_cpu",
    }
    probes["the CPU limit"] = probes["the CPU limit"].replace(
        "sandbox_limits_cpu", str(limits.cpu_seconds)
    )
    if sandbox.isolation() != "none":
        probes["another uid"] = f"import os\nassert os.getuid() not in (0, {os.getuid()})"
        probes["the grader's files out of reach"] = (
            "import pathlib\n"
            f"p = pathlib.Path({str(ROOT / 'bnlib' / 'checks.py')!r})\n"
            "try:\n    p.open('a')\nexcept OSError:\n    pass\nelse:\n    raise SystemExit"
        )
    if sandbox.isolation() == "namespace":
        probes["the course's folder hidden but its Python"] = (
            f"import os\nassert not os.path.exists({str(SOLUTION)!r})\n"
            f"assert os.path.exists({sys.executable!r})"
        )
    os.environ[SECRET] = "hunter2"
    try:
        with sandbox.Sandbox(notebook, ROOT, limits) as box:
            for what, code in probes.items():
                run = box.run(code, timeout=60)
                assert run.status == "ok", (what, run)
            assert box.run("import os\nos._exit(3)", timeout=60).status == "died"
            assert box.run("1 + 1", timeout=60).status == "died"
            root = box.root
    finally:
        del os.environ[SECRET]
    assert not root.exists()


def test_ctrl_c_stops_the_run_and_prints_what_was_graded(tmp_path, course):
    _, env, sandboxes = course
    for name, cells in (("a", ["import time\ntime.sleep(600)"]), ("b", [])):
        (tmp_path / name).mkdir()
        nbformat.write(_with_cells(SOLUTION, cells), tmp_path / name / f"{EX01}.ipynb")
    proc = subprocess.Popen(
        [str(BNLIB), "grade", str(tmp_path), "--jobs", "2", "--timeout", "900"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline, seen = time.monotonic() + 120, 0
    while time.monotonic() < deadline:  # until b is graded (its sandbox gone) and a runs
        now = len(list(sandboxes.iterdir()))
        if seen == 2 and now == 1:
            break
        seen = max(seen, now)
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in out + err
    assert "interrupted; 1 of 2 notebooks graded" in err
    assert f"b/{EX01}.ipynb [{EX01}]" in out and "5.00 out of 5" in out
    assert not list(sandboxes.iterdir())
    assert _stragglers(str(sandboxes), exact=False) == []  # the kernels ran with -f <there>/...


def test_a_change_to_the_course_stops_the_run(tmp_path, monkeypatch):
    """Without isolation (as when the grader is not root), a notebook can write the course's
    files: the run must notice and stop before grading anything else."""
    course = tmp_path / "course"
    (course / "bnlib").mkdir(parents=True)
    for p in (ROOT / "bnlib").rglob("*.py"):
        target = course / "bnlib" / p.relative_to(ROOT / "bnlib")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(p.read_bytes())
    monkeypatch.setattr(grade, "COURSE", course)
    monkeypatch.setattr(sandbox, "isolation", lambda: "none")
    folder = tmp_path / "class"
    folder.mkdir()
    attack = DISK.format(checks=str(course / "bnlib" / "checks.py"), victims=[])
    paths = [
        _write(folder, "a", _with_cells(EXERCISE, [attack])),
        _write(folder, "b", nbformat.read(SOLUTION, as_version=4)),
    ]
    results, stop = grade.grade_all(paths, jobs=1)
    assert [r["path"] for r in results] == [str(paths[0])]
    assert results[0]["score"] == 0.0
    assert stop.startswith(f"{course / 'bnlib' / 'checks.py'} changed while grading {paths[0]}")
    assert "refusing to continue" in stop


# --- without a kernel ----------------------------------------------------------------------------


def test_exercise_id_from_metadata_then_file_name():
    nb = nbformat.read(EXERCISE, as_version=4)
    assert exercise_id(nb, "whatever.ipynb") == (EX01, None)
    assert exercise_id(nb, "ex02_running_stats.ipynb") == (EX01, None)  # metadata first
    assert grading._exercise_notes(nb, "ex02_x.ipynb", EX01) == [
        f"the file name says ex02_running_stats, the notebook's metadata {EX01}"
    ]
    del nb.metadata["bnlib"]
    assert exercise_id(nb, "x/ex01_forward_backward-alice.ipynb") == (EX01, None)
    assert exercise_id(nb, "ex01_copy.ipynb") == (EX01, None)
    exercise, problem = exercise_id(nb, "homework.ipynb")
    assert exercise is None and "unknown exercise" in problem and EX01 in problem
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
    path = tmp_path / f"{EX01}.ipynb"
    path.write_bytes(content)
    result = grade_notebook(path)
    assert result["error"].startswith(message) and result["tasks"] == []


def test_an_unknown_exercise_is_reported_without_a_kernel(tmp_path):
    path = tmp_path / "notes.ipynb"
    nbformat.write(new_notebook(), path)
    assert grade_notebook(path)["error"].startswith("unknown exercise")
    assert grade_notebook(tmp_path)["error"] == "no .ipynb notebooks in this folder"


def test_red_flags_in_a_notebooks_code():
    assert grading._red_flags(["import sys\nsys.setprofile(None)"]) == [
        "switches off the grader's policy watch (sys.setprofile)"
    ]
    assert grading._red_flags(["open('../solutions/ex01.ipynb')"]) == [
        "reads the course's solutions"
    ]
    assert grading._red_flags(["# my solutions\nx = 1", "def f(:"]) == []


def test_the_policy_names_exactly_what_the_agent_scores_0(tmp_path):
    """POLICY (shown in every exercise) and the agent's watch list must not drift apart: each
    bnlib module, torch.nn.functional function and torch.nn.modules file the agent watches is
    named in the policy, and nothing else is."""
    import inspect
    import re

    import torch.nn.functional as TF

    from bnlib.grading import agent

    bnlib_dir = ROOT / "bnlib"
    watch = agent.Agent(str(tmp_path), str(tmp_path), {}, [str(bnlib_dir)], str(tmp_path / "w"))

    def watched(path, name):
        code = compile(f"def {name}(): pass", str(path), "exec").co_consts[0]
        return watch._reference(code) is not None

    named = set(re.findall(r"`([\w.]+)`", grade.POLICY))
    packages = set(re.findall(r"anything in `([\w.]+)`", grade.POLICY))
    modules = {}
    for path in sorted(bnlib_dir.rglob("*.py")):
        module = ".".join(("bnlib", *path.relative_to(bnlib_dir).with_suffix("").parts))
        modules[module] = path
        listed = module in named or any(module.startswith(f"{p}.") for p in packages)
        assert watched(path, "any_function") == listed, module
    functions = {n for n in named if n.startswith("bnlib.") and n not in {*modules, *packages}}
    for name in functions:
        module, function = name.rsplit(".", 1)
        assert module in modules, f"the policy names {name}, which does not exist"
        assert watched(modules[module], function) and not watched(modules[module], "other")
    assert packages and functions and {"bnlib.functional", "bnlib.checks"} <= named

    torch_file = inspect.getsourcefile(TF)
    public = {n for n in dir(TF) if not n.startswith("_")}
    assert {n for n in public if watched(torch_file, n)} == named & public
    assert {"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"} <= named

    layers = Path(torch_file).parent / "modules"
    for path in sorted(layers.glob("*.py")):
        listed = f"torch.nn.modules.{path.stem}" in named
        assert watched(path, "forward") == listed, path.name
        assert not watched(path, "extra_repr")
    assert {"torch.nn.modules.batchnorm", "torch.nn.modules.normalization"} <= named

    flags = {n.split(".", 1)[1] for n in named if n.startswith("sys.")}
    assert flags == {"setprofile", "settrace"}
    for flag in flags:
        assert grading._red_flags([f"import sys\nsys.{flag}(None)"]), flag
    assert '"solutions" in a string' in grade.POLICY
    assert grading._red_flags(["path = 'solutions'"])
    everything = (
        set(modules)
        | packages
        | functions
        | public
        | {"torch.nn.functional"}
        | {f"torch.nn.modules.{p.stem}" for p in layers.glob("*.py")}
    )
    assert named <= everything | {f"sys.{f}" for f in flags}, named - everything


def test_the_text_report_and_the_exit_codes(monkeypatch, capsys):
    graded = {
        "path": "a.ipynb",
        "exercise": EX01,
        "score": 1.5,
        "max_score": 3.0,
        "notes": ["a note"],
        "tasks": [
            {
                "task": "batchnorm_forward",
                "passed": True,
                "score": 1.0,
                "max_score": 1.0,
                "feedback": "ok",
            }
        ],
    }
    text = format_report([graded, grading._error("b.ipynb", "no such file", 3.0, EX01)])
    assert "  batchnorm_forward  PASS    1.00/1  ok" in text
    assert "  note: a note" in text
    assert "1.50 out of 3" in text
    assert f"b.ipynb [{EX01}]: ERROR: no such file (0 out of 3)" in text
    assert text.endswith("graded 1 of 2 notebooks; 1 could not be graded")

    def fake(paths, stop=None):
        def grade_all(notebooks, **kwargs):
            return [dict(graded, path=str(p)) for p in notebooks], stop

        return grade_all

    monkeypatch.setattr(grading, "grade_all", fake([]))
    assert cli.main(["grade", "a.ipynb"]) == 0
    assert "graded 1 of 1 notebook" in capsys.readouterr().out
    assert cli.main(["grade", "a.ipynb", "--csv", "--summary"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("path,exercise,score,max_score,batchnorm_forward")
    assert "class summary" in out.err
    monkeypatch.setattr(grading, "grade_all", fake([], "interrupted"))
    assert cli.main(["grade", "a.ipynb", "--json"]) == 130
    assert json.loads(capsys.readouterr().out)["stopped"] == "interrupted"
    monkeypatch.setattr(grading, "grade_all", fake([], "x changed while grading y"))
    assert cli.main(["grade", "a.ipynb"]) == 3
    assert "STOPPED: x changed" in capsys.readouterr().err
    assert cli.main(["grade", "a.ipynb", "--timeout", "0"]) == 2
    assert cli.main(["grade", "a.ipynb", "--jobs", "0"]) == 2
    assert cli.main(["grade", "a.ipynb", "--exercise", "ex99"]) == 2
