"""`bnlib grade` on a generated class: 100 exercise-1 notebooks, timed end to end.

Run: .venv/bin/python benchmarks/bench_grade.py [--notebooks 100] [--jobs N] [--keep DIR]
The class: 40% the solution, 30% the untouched exercise, 20% a forward with the unbiased
variance (a diagnosed mistake), 10% the solution with debug prints. Each notebook sits in its own
folder, as learners hand them in. Runs `bnlib grade --csv --summary --jobs N` in a subprocess
(every notebook in its own jailed kernel) and prints the wall time, the time per notebook, the
CPU time it took (grader and kernels: the wall time on idle cores is about CPU / jobs), the load
average before and after (the machine's other work slows the run: report it with the figure),
and checks the grades are the expected ones. It grades with a snapshot of bnlib/ (the grader
stops when its course changes under it, and this repository may be edited meanwhile).
The target: 100 notebooks in <= 4 minutes on 2 cores.
"""

import argparse
import csv
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell

ROOT = Path(__file__).resolve().parents[1]
SOLUTION = ROOT / "solutions" / "ex01_forward_backward.ipynb"
EXERCISE = ROOT / "exercises" / "ex01_forward_backward.ipynb"

UNBIASED = """\
_right = batchnorm_forward
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    mu = x.mean(axis=0)
    var = x.var(axis=0, ddof=1)
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, _right(x, gamma, beta, eps)[1]
"""

DEBUG = """\
_forward = batchnorm_forward
def batchnorm_forward(x, gamma, beta, eps=1e-5):
    print("shapes", x.shape, gamma.shape, end="; ")
    return _forward(x, gamma, beta, eps)
"""

# (kind, share of the class, expected score out of exercise 1's five tasks; the unbiased
# forward also fails the spatial forward, which the solution builds on it)
KINDS = [
    ("solution", 0.4, 5.0),
    ("untouched", 0.3, 0.0),
    ("unbiased", 0.2, 3.0),
    ("debug", 0.1, 5.0),
]


def make_class(folder, n):
    """Write n submissions; returns {path: expected score}."""
    expected = {}
    counts = [round(share * n) for _, share, _ in KINDS]
    counts[0] += n - sum(counts)
    i = 0
    for (kind, _, score), count in zip(KINDS, counts, strict=True):
        for _ in range(count):
            base = EXERCISE if kind == "untouched" else SOLUTION
            nb = nbformat.read(base, as_version=4)
            if kind == "unbiased":
                nb.cells.append(new_code_cell(UNBIASED))
            if kind == "debug":
                nb.cells.append(new_code_cell(DEBUG))
            path = folder / f"learner{i:03d}" / "ex01_forward_backward.ipynb"
            path.parent.mkdir()
            nbformat.write(nb, path)
            expected[str(path)] = score
            i += 1
    return expected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    parser.add_argument("--keep", metavar="DIR", help="write the class here and keep it")
    args = parser.parse_args(argv)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="bench-grade-"))
    folder.mkdir(parents=True, exist_ok=True)
    expected = make_class(folder, args.notebooks)
    # NB: the grader stops when its course changes under it; grade with a snapshot, so that
    # editing the repository meanwhile does not end the benchmark
    course = Path(tempfile.mkdtemp(prefix="bench-course-"))
    shutil.copytree(ROOT / "bnlib", course / "bnlib", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, PYTHONPATH=str(course))
    bnlib = Path(sys.executable).with_name("bnlib")
    load_before = os.getloadavg()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run(
        [str(bnlib), "grade", str(folder), "--csv", "--summary", "--jobs", str(args.jobs)],
        capture_output=True,
        text=True,
        env=env,
    )
    took = time.monotonic() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(getattr(cpu_after, f) - getattr(cpu_before, f) for f in ("ru_utime", "ru_stime"))
    load_after = os.getloadavg()
    shutil.rmtree(course, ignore_errors=True)
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    wrong = [r["path"] for r in rows if float(r["score"]) != expected.get(r["path"])]
    print(done.stderr.strip())
    print(
        f"{len(rows)} notebooks, --jobs {args.jobs}, {os.cpu_count()} cores: {took:.0f} s "
        f"({took / max(1, len(rows)):.2f} s per notebook; target <= 240 s for 100 on 2 cores)"
    )
    print(
        f"CPU time (grader and kernels): {cpu:.0f} s, {cpu / max(1, len(rows)):.2f} s per "
        f"notebook: on {args.jobs} otherwise idle cores about {cpu / args.jobs:.0f} s"
    )
    print(
        "load average (1, 5, 15 min) before: "
        + ", ".join(f"{x:.1f}" for x in load_before)
        + "; after: "
        + ", ".join(f"{x:.1f}" for x in load_after)
    )
    print(f"grades as expected: {len(rows) - len(wrong)} of {len(expected)}")
    if not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0 if not wrong and len(rows) == len(expected) else 1


if __name__ == "__main__":
    sys.exit(main())
