"""The `bnlib` command: `bnlib assign` writes the exercises, `bnlib grade` grades notebooks.

    bnlib assign [--check] [--force] [--solutions DIR] [--exercises DIR]
    bnlib grade PATH... [--json | --csv] [--summary] [--exercise ID] [--jobs N] [--timeout S]

Both exit 0 on success and non-zero otherwise; neither prints a traceback for a bad notebook.
`bnlib grade` exits 1 when a notebook could not be graded, 3 when the course's files changed
during the run (it stops at once), 130 on Ctrl-C (after printing what was graded).
"""

from __future__ import annotations

import argparse
import json
import sys

from bnlib.grading.grade import DEFAULT_TIMEOUT

__all__ = ["main"]


def _parser():
    parser = argparse.ArgumentParser(
        prog="bnlib", description="Tools of the course 'Batch Normalization, hands-on'."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    assign = commands.add_parser(
        "assign",
        help="write exercises/ from solutions/",
        description="Write each solutions/*.ipynb to exercises/ with its solutions cut out. "
        "An exercise a learner has edited is never overwritten without --force.",
    )
    assign.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming each exercise that is missing, stale or edited",
    )
    assign.add_argument(
        "--force",
        action="store_true",
        help="regenerate edited exercises too, after saving each as <name>.ipynb.bak-<time>",
    )
    assign.add_argument(
        "--solutions", default="solutions", metavar="DIR", help="(default: %(default)s)"
    )
    assign.add_argument(
        "--exercises", default="exercises", metavar="DIR", help="(default: %(default)s)"
    )

    grade = commands.add_parser(
        "grade",
        help="run notebooks and grade them with the official checks",
        description="Run each notebook in a throwaway, jailed kernel (on a private copy: the "
        "learner's files are only read) and grade its functions with bnlib's own checks, in "
        "this process, on hidden cases. A folder means every .ipynb inside it, recursively.",
    )
    grade.add_argument("paths", nargs="+", metavar="PATH", help="notebooks or folders")
    output = grade.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the results as JSON")
    output.add_argument(
        "--csv", action="store_true", help="print a gradebook: one CSV row per notebook"
    )
    grade.add_argument(
        "--summary",
        action="store_true",
        help="add a class summary: pass rate per task, the most common diagnosed mistakes",
    )
    grade.add_argument(
        "--exercise",
        default=None,
        metavar="ID",
        help="the exercise every notebook must be (e.g. ex01_forward_backward): a notebook of "
        "another exercise scores 0 out of this one's max",
    )
    grade.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="notebooks graded at once (default: the number of CPU cores)",
    )
    grade.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"time limit per cell (default: {DEFAULT_TIMEOUT})",
    )
    return parser


def main(argv=None):
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "assign":
        from bnlib.grading.assign import assign

        return assign(args.solutions, args.exercises, check=args.check, force=args.force)

    from bnlib.grading.grade import (
        TASKS,
        class_summary,
        find_notebooks,
        format_csv,
        format_report,
        grade_all,
    )

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if timeout <= 0:
        print("bnlib grade: --timeout must be positive", file=sys.stderr)
        return 2
    if args.jobs is not None and args.jobs < 1:
        print("bnlib grade: --jobs must be at least 1", file=sys.stderr)
        return 2
    if args.exercise is not None and args.exercise not in TASKS:
        known = ", ".join(sorted(TASKS))
        print(f"bnlib grade: unknown --exercise {args.exercise!r}; known: {known}", file=sys.stderr)
        return 2
    notebooks = find_notebooks(args.paths)

    def progress(path, done, total):
        if sys.stderr.isatty():
            print(f"graded {path} ({done}/{total})", file=sys.stderr, flush=True)

    try:
        results, stop = grade_all(
            notebooks, timeout=timeout, jobs=args.jobs, progress=progress, expected=args.exercise
        )
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        results, stop = [], "interrupted"
    if args.json:
        report = {"notebooks": results}
        if stop:
            report["stopped"] = stop
        print(json.dumps(report, indent=1, ensure_ascii=False))
    elif args.csv:
        print(format_csv(results), end="")
    else:
        print(format_report(results))
    if args.summary and not args.json:
        print(class_summary(results), file=sys.stderr if args.csv else sys.stdout)
    if stop == "interrupted":
        print(
            f"bnlib grade: interrupted; {len(results)} of {len(notebooks)} notebooks graded "
            "(the report above has those)",
            file=sys.stderr,
        )
        return 130
    if stop:
        print(f"bnlib grade: STOPPED: {stop}", file=sys.stderr)
        return 3
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
