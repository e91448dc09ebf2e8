"""Every markdown cell renders as its author meant: no bold (or underscore emphasis) left unclosed,
and no inline formula cut in two by a block boundary (see `broken_math`; the slides show it).

CommonMark closes `**` only where the delimiter is "right-flanking": `**方向剛好相反：**批次` stays
literal text with its asterisks on screen, because the closing `**` follows punctuation (：) and
precedes a letter (批). The same happens after `.`, `)`, `」`... followed by a letter, in English
too. JupyterLab-like renderers follow CommonMark, so each markdown cell of every notebook in
notebooks/, solutions/ and exercises/ and their zh-TW/ editions, each translation of a markdown
cell (the msgstrs of translations/zh-TW/*.po, before a build puts them in a notebook), and
README.zh-TW.md and the glossary are rendered here with markdown-it-py in "commonmark" mode and
the rendered text, outside code spans and blocks, must hold no `**` and no `__`.

Math is taken out first, as Jupyter does before rendering markdown ($...$ and $$...$$ go to
MathJax untouched), so `$x_{a}^{**}$` would not count.
"""

import re
from pathlib import Path

import nbformat
import polib
import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    p
    for d in ("notebooks", "solutions", "exercises")
    for pattern in ("*.ipynb", "zh-TW/*.ipynb")
    for p in (ROOT / d).glob(pattern)
)
CATALOGUES = sorted((ROOT / "translations" / "zh-TW").glob("*.po"))
DOCUMENTS = [ROOT / "README.zh-TW.md", ROOT / "translations" / "zh-TW" / "GLOSSARY.md"]
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


DOLLAR = re.compile(r"(?<!\\)\$")


def broken_math(source):
    """The text blocks (paragraphs, list items, table cells) holding an odd number of `$`: an
    inline formula that a block boundary cuts in two (a line of it starting with `+ `, `- ` or
    `1. ` starts a list). JupyterLab takes math out before it renders markdown, but nbconvert's
    slides (bnlib.slides) find math inside each block, so on the slide half the formula shows as
    text and the text between two formulas as math."""
    found = []
    tokens = RENDERER.parse(re.sub(r"(?<!\\)\$\$.+?(?<!\\)\$\$", "MATH", source, flags=re.DOTALL))
    for token in tokens:
        if token.type != "inline":
            continue
        text = re.sub(r"(`+).*?\1", "", token.content, flags=re.DOTALL)  # code spans aside
        if len(DOLLAR.findall(text)) % 2:
            found.append(token.content)
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


def test_the_zh_tw_edition_is_checked():
    assert any("zh-TW" in p.parts for p in NOTEBOOKS)
    assert len(CATALOGUES) >= 12


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda p: p.name)
def test_no_translated_cell_leaves_bold_unclosed(catalogue):
    bad = [
        f"cell {e.msgctxt}: {fragment.strip()[:60]!r}"
        for e in polib.pofile(str(catalogue))
        if e.msgstr and not e.obsolete
        for fragment in unclosed_emphasis(e.msgstr)
    ]
    assert not bad, (
        f"{catalogue.relative_to(ROOT)}: CommonMark leaves these `**`/`__` on screen (keep "
        "punctuation outside the bold: **粗體**。):\n  " + "\n  ".join(bad)
    )


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if d.is_file()], ids=lambda p: p.name)
def test_no_document_leaves_bold_unclosed(document):
    bad = unclosed_emphasis(document.read_text(encoding="utf-8"))
    assert not bad, f"{document.relative_to(ROOT)}: {bad}"


@pytest.mark.parametrize(
    "source",
    [
        "so $b' = s (b - m)\n+ \\beta$ per channel",  # `+ ` starts a list: the formula is cut
        "one $x$ and a half $y",
    ],
)
def test_the_check_finds_a_formula_cut_by_a_block(source):
    assert broken_math(source), source


@pytest.mark.parametrize(
    "source",
    [
        "so $b' = s (b - m) +\n\\beta$ per channel",
        "$$\na\n+ b\n$$",
        "a price of \\$5 and `$HOME`, and $x$",
        "| a | $x$ |\n|---|---|\n| $y$ | b |",
    ],
)
def test_the_check_accepts_whole_formulas(source):
    assert not broken_math(source), source


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_markdown_cell_cuts_a_formula(notebook):
    bad = [
        f"cell {i}: {b.strip()[:80]!r}"
        for i, source in _cells(notebook)
        for b in broken_math(source)
    ]
    assert not bad, f"{notebook.relative_to(ROOT)}: a `$...$` formula is cut:\n  " + "\n  ".join(
        bad
    )


@pytest.mark.parametrize("catalogue", CATALOGUES, ids=lambda p: p.name)
def test_no_translated_cell_cuts_a_formula(catalogue):
    bad = [
        f"cell {e.msgctxt}: {b.strip()[:80]!r}"
        for e in polib.pofile(str(catalogue))
        if e.msgstr and not e.obsolete
        for b in broken_math(e.msgstr)
    ]
    assert not bad, (
        f"{catalogue.relative_to(ROOT)}: a `$...$` formula is cut in two (a line inside it starts "
        "with `+ `, `- ` or `1. `, which starts a list: join the lines):\n  " + "\n  ".join(bad)
    )
