"""The notebook replay itself: `pytest` runs nbval strictly, and the sanitize file is not too lax.

The replay (configured in pyproject.toml) runs notebooks/ and solutions/ cell by cell and compares
every output with the stored one. These tests check that configuration: strict mode on the right
folders, and, on a throwaway notebook, that volatile text (addresses, timings, progress bars)
compares equal after sanitizing while a changed number still fails.
"""

import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]


def _pytest_config():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["pytest"]["ini_options"]


def test_pytest_replays_lessons_and_solutions_strictly():
    config = _pytest_config()
    opts = shlex.split(config["addopts"])
    assert "--nbval" in opts and "--nbval-lax" not in opts, "nbval must run in strict mode"
    assert "--nbval-current-env" in opts, "the kernel must be this environment's interpreter"
    assert any(o.startswith("--nbval-cell-timeout=") for o in opts), "no per-cell timeout"
    sanitize = [o.split("=", 1)[1] for o in opts if o.startswith("--nbval-sanitize-with=")]
    assert sanitize and (ROOT / sanitize[0]).is_file()
    assert {"tests", "notebooks", "solutions"} <= set(config["testpaths"])
    assert "exercises" not in config["testpaths"], "exercises raise NotImplementedError by design"


def _stream(text):
    return new_output("stream", name="stdout", text=text)


def _notebook(path, cells):
    """cells: (source, stored stdout) pairs."""
    nb = new_notebook(
        cells=[
            new_code_cell(src, outputs=[_stream(out)], execution_count=i)
            for i, (src, out) in enumerate(cells, start=1)
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


def _replay(notebook):
    """Run the repository's pytest configuration on one notebook; return {cell: passed}."""
    done = subprocess.run(
        # -c: the repository's options, although the notebook lies outside it
        [sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml")]
        + ["-p", "no:cacheprovider", "-v", str(notebook)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    results = {}
    for line in done.stdout.splitlines():
        if "::Cell " in line and (" PASSED" in line or " FAILED" in line):
            cell = int(line.split("::Cell ")[1].split()[0])
            results[cell] = " PASSED" in line
    assert results, done.stdout + done.stderr
    return results


def test_sanitize_hides_volatile_text_but_not_changed_numbers(tmp_path):
    volatile = [
        ("print(object())", "<object object at 0x7f2a1c3b9e40>\n"),
        (
            "print(f'one step took {0.123456:.4f} s, or 12.3 ms')",
            "one step took 9.9999 s, or 87.1 ms\n",
        ),
        ("print('took 850 µs per call')", "took 3 µs per call\n"),
        (
            "print(' 45%|████▌     | 45/100 [00:01<00:01, 40.10it/s]')",
            " 12%|█▏        | 12/100 [00:00<00:07, 11.52it/s]\n",
        ),
        (
            "print(' 45%|████▌     | 45/100 [00:01<00:01, 40.10it/s]')",
            "four norms: 30 of 30 done\n",
        ),
        (
            "print('model', 'cfe60d382808484c8a6e34ebc777ee43')",
            "model 92fb7c2f8af6418cbaa5d84e76580283\n",
        ),
    ]
    changed = [
        ("print('hello', 3 * 7)", "hello 22\n"),
        ("print('mean', 0.5)", "mean 0.6\n"),
        ("print('4 of the 64 pixels')", "5 of the 64 pixels\n"),
    ]
    results = _replay(_notebook(tmp_path / "volatile.ipynb", volatile + changed))
    n = len(volatile)
    assert all(results[i] for i in range(n)), f"volatile output failed to compare: {results}"
    assert not any(results[i] for i in range(n, n + len(changed))), f"a change passed: {results}"
