"""How long each lesson and solution notebook takes to run, top to bottom, in a fresh kernel.

Run: .venv/bin/python benchmarks/notebook_times.py [NOTEBOOK ...] [--timeout 300]
Default: notebooks/*.ipynb, then solutions/*.ipynb. Each notebook runs with nbclient in a new
kernel of this interpreter (as nbval does), from its own folder; the files are read, never
written. Prints each one's wall time (kernel start included) and the total; exits with 1 if a
notebook raised or timed out, naming it. COURSE.md's budget: "well under a minute" per lesson.
"""

import argparse
import sys
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

ROOT = Path(__file__).resolve().parents[1]


def run_notebook(path, timeout):
    """Execute a copy of the notebook in memory; return (seconds, error message or None)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,  # per cell
        kernel_name=NATIVE_KERNEL_NAME,  # this interpreter's ipykernel, whatever nb names
        resources={"metadata": {"path": str(path.parent)}},  # the kernel's working directory
    )
    started = time.perf_counter()
    try:
        client.execute()
        error = None
    except CellExecutionError as e:
        error = f"{e.ename}: {e.evalue}"
    except CellTimeoutError:
        error = f"a cell ran longer than {timeout:g} s"
    return time.perf_counter() - started, error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: lessons and solutions")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted(
        (ROOT / "solutions").glob("*.ipynb")
    )
    total, failed = 0.0, []
    width = max((len(str(p.relative_to(ROOT) if p.is_absolute() else p)) for p in paths), default=0)
    for path in paths:
        name = str(path.relative_to(ROOT) if path.is_absolute() else path)
        seconds, error = run_notebook(path.resolve(), args.timeout)
        total += seconds
        print(f"{name:<{width}}  {seconds:6.1f} s" + (f"  FAILED: {error}" if error else ""))
        sys.stdout.flush()
        if error:
            failed.append(name)
    print(f"{'total':<{width}}  {total:6.1f} s  ({len(paths)} notebook{'s' * (len(paths) != 1)})")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
