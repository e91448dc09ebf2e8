"""The `bnlib` command: `bnlib assign` writes the exercises, `bnlib grade` grades notebooks.

    bnlib assign [--check] [--force] [--solutions DIR] [--exercises DIR]
    bnlib grade PATH... [--json] [--timeout SECONDS]

Both exit 0 on success and non-zero otherwise; neither prints a traceback for a bad notebook.
"""

from __future__ import annotations

import argparse
import json
import sys

from bnlib.grade import DEFAULT_TIMEOUT

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
        description="Run each notebook in a fresh kernel (on a copy: files are only read) and "
        "grade it with bnlib's own checks. A folder means every .ipynb inside it, recursively.",
    )
    grade.add_argument("paths", nargs="+", metavar="PATH", help="notebooks or folders")
    grade.add_argument("--json", action="store_true", help="print the results as JSON")
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
        from bnlib.assign import assign

        return assign(args.solutions, args.exercises, check=args.check, force=args.force)

    from bnlib.grade import find_notebooks, format_report, grade_notebook

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if timeout <= 0:
        print("bnlib grade: --timeout must be positive", file=sys.stderr)
        return 2
    notebooks = find_notebooks(args.paths)
    results = []
    for i, path in enumerate(notebooks, start=1):
        if sys.stderr.isatty():
            print(f"grading {path} ({i}/{len(notebooks)})", file=sys.stderr, flush=True)
        results.append(grade_notebook(path, timeout=timeout))
    if args.json:
        print(json.dumps({"notebooks": results}, indent=1, ensure_ascii=False))
    else:
        print(format_report(results))
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
