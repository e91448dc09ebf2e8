"""The course as a whole: the map lists every lesson, every local link resolves, and the committed
notebooks carry no run-specific metadata.

A newcomer finds the lessons through the start page and the README; a link to a file that was
renamed, or a lesson missing from the map, is a broken course even when every notebook runs.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
NOTEBOOKS = sorted(
    p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).glob("*.ipynb")
)
# [text](target) in Markdown; targets with a scheme (https:, mailto:) or only an anchor are skipped
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _markdown(path):
    if path.suffix == ".md":
        return path.read_text()
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _local_links(text):
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        yield target.split("#")[0]


def test_there_are_lessons():
    assert len(LESSONS) >= 2, "notebooks/ holds the start page and the lessons"
    assert LESSONS[0].name == "00_start_here.ipynb"


@pytest.mark.parametrize("lesson", [p.stem for p in LESSONS[1:]])
def test_every_lesson_is_on_the_start_page_and_in_the_readme(lesson):
    start = _markdown(ROOT / "notebooks" / "00_start_here.ipynb")
    assert f"({lesson}.ipynb)" in start, f"the start page does not link {lesson}.ipynb"
    assert f"notebooks/{lesson}.ipynb" in (ROOT / "README.md").read_text(), (
        f"the README's course map does not name notebooks/{lesson}.ipynb"
    )


@pytest.mark.parametrize(
    "document",
    [ROOT / "README.md"] + NOTEBOOKS,
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_local_links_resolve(document):
    broken = [t for t in _local_links(_markdown(document)) if not (document.parent / t).exists()]
    assert not broken, f"{document.relative_to(ROOT)} links to missing files: {broken}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_run_specific_metadata(notebook):
    """Cell timings change every run: they make diffs noisy and tell a learner nothing."""
    nb = nbformat.read(notebook, as_version=4)
    timed = [i for i, c in enumerate(nb.cells) if "execution" in c.metadata]
    assert not timed, f"cells {timed} carry execution timings: run `make notebooks`"


def test_start_page_says_how_to_install_where_the_chinese_is_and_how_to_see_it():
    """One install line, one Traditional Chinese line for Chinese-speaking learners pointing to
    the zh-TW edition, and the CJK font hint, the same as the README's."""
    start = _markdown(ROOT / "notebooks" / "00_start_here.ipynb")
    assert "`make lab`" in start, "the start page does not say how to install and open"
    chinese = [line for line in start.splitlines() if re.search(r"[\u4e00-\u9fff]{10}", line)]
    assert any("(zh-TW/00_start_here.ipynb)" in line for line in chinese), (
        "no Chinese line pointing Chinese-speaking learners to the zh-TW edition"
    )
    font = "apt install fonts-noto-cjk"
    assert font in start, "the start page gives no CJK font hint"
    readme_rows = [row for row in (ROOT / "README.md").read_text().splitlines() if font in row]
    assert readme_rows and readme_rows[0].startswith("| "), "README: no troubleshooting row"
