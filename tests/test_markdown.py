"""Every markdown cell renders as its author meant: no bold (or underscore emphasis) left unclosed.

CommonMark closes `**` only where the delimiter is "right-flanking": `**方向剛好相反：**批次` stays
literal text with its asterisks on screen, because the closing `**` follows punctuation (：) and
precedes a letter (批). The same happens after `.`, `)`, `」`... followed by a letter, in English
too. JupyterLab-like renderers follow CommonMark, so each markdown cell of every notebook in
notebooks/, solutions/ and exercises/ is rendered here with markdown-it-py in "commonmark" mode
and the rendered text, outside code spans and blocks, must hold no `**` and no `__`.

Math is taken out first, as Jupyter does before rendering markdown ($...$ and $$...$$ go to
MathJax untouched), so `$x_{a}^{**}$` would not count.
"""

import re
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).glob("*.ipynb")
)
RENDERER = MarkdownIt("commonmark")
# $$...$$ first (it may span lines), then $...$ on one line; \$ is a literal dollar
MATH = re.compile(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$[^$\n]+?(?<!\\)\$", re.DOTALL)
LEFTOVER = re.compile(r"\*\*|__")


def unclosed_emphasis(source):
    """The rendered text fragments (outside code and HTML) that still show `**` or `__`."""
    found = []
    for token in RENDERER.parse(MATH.sub("MATH", source)):
        for child in token.children or ():
            # code_inline and html_inline are not text; only text shows stray delimiters
            if child.type == "text" and LEFTOVER.search(child.content):
                found.append(child.content)
    return found


def _cells(path):
    nb = nbformat.read(path, as_version=4)
    return [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "markdown"]


@pytest.mark.parametrize(
    "source",
    [
        "**方向剛好相反：**批次正規化讓訓練",  # closing ** after CJK punctuation, before a letter
        "**What is wrong.**The direction",  # the same in English
        "**RNN 中很少使用。**在 RNN 中",
        "an unclosed **bold",
        "a dunder written bare: foo__bar__",
        "| table | **cell：**text |\n|---|---|\n| a | b |",
    ],
)
def test_the_check_finds_bold_that_commonmark_leaves_open(source):
    assert unclosed_emphasis(source), source


@pytest.mark.parametrize(
    "source",
    [
        "**方向剛好相反**：批次正規化讓訓練",  # punctuation outside the bold: closed
        "**中文.** 這一課",
        "**English.** This lesson",
        "`**kwargs` and `__init__` are code",
        "```python\ndef f(**kwargs):\n    return x.__class__\n```",
        "$x^{**}$ and $$a__b$$ are math",
        "a *single* star, 2 * 3 * 4, snake_case_name",
    ],
)
def test_the_check_accepts_closed_bold_code_and_math(source):
    assert not unclosed_emphasis(source), source


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_cell_leaves_bold_unclosed(notebook):
    bad = [
        f"cell {i}: {fragment.strip()[:60]!r}"
        for i, source in _cells(notebook)
        for fragment in unclosed_emphasis(source)
    ]
    assert not bad, (
        f"{notebook.relative_to(ROOT)}: CommonMark leaves these `**`/`__` on screen (keep "
        "punctuation outside the bold, or put names in `code`):\n  " + "\n  ".join(bad)
    )
