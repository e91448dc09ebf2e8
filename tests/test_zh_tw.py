"""The Traditional Chinese (Taiwan) edition is complete and in step with the English one.

bnlib.translate makes it: translations/zh-TW/<notebook>.po (one entry per markdown cell, keyed by
the cell id) and bnlib/locale/zh-TW.po (bnlib's messages and the quizzes' texts) hold the
translations; notebooks/zh-TW/ and solutions/zh-TW/ are the English notebooks with the markdown
translated and one language-switch cell; exercises/zh-TW/ is `bnlib assign`'s from solutions/zh-TW/.

The first part runs the machinery on a two-notebook course in a temporary folder and shows that
each check can fail. The second part checks the course itself. Its completeness tests (every
markdown cell and every message translated, nothing fuzzy) fail for as long as translations are
missing: that is the state of the edition, not a flaky test. Fix the others with
`make zh-TW` (extract, build, execute, assign), or `python -m bnlib.translate check` to list.
"""

import json
import re
from pathlib import Path

import nbformat
import polib
import pytest
from markdown_it import MarkdownIt
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from test_chinese import table_rows, terms

from bnlib import cli, i18n
from bnlib import translate as tr

ROOT = Path(__file__).resolve().parents[1]
SOURCES = tr.sources(ROOT)
NAMES = [str(p.relative_to(ROOT)) for p in SOURCES]
LINK = re.compile(r"\]\(\s*<?([^\s)>]+)|\b(?:href|src)\s*=\s*[\"']([^\"']+)")
ANCHOR = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")
FIELD = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


# --- the machinery, on a tiny course -----------------------------------------------------------

QUIZ_CELL = """from bnlib.quiz import MultipleChoice, Numeric, Quiz

QUIZ = Quiz(
    "Check yourself",
    [
        MultipleChoice(
            "Which axes?",
            ["(N,)", "(C, H, W)"],
            answer=0,
            explanation="Per feature " "over the batch.",
            hints={1: "That is layer norm."},
        ),
        Numeric("1/2?", answer=0.5, tol=0.01, explanation="Half.", unit="units"),
    ],
)
"""


def _write(path, cells, **metadata):
    nb = new_notebook(cells=cells)
    nb.metadata.update(metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _cell(kind, source, cid):
    cell = (new_markdown_cell if kind == "md" else new_code_cell)(source)
    cell["id"] = cid
    return cell


@pytest.fixture
def course(tmp_path):
    """A course: one lesson (title, prose with links, code, a quiz), one solution, bnlib code."""
    lesson = _write(
        tmp_path / "notebooks" / "01_tiny.ipynb",
        [
            _cell("md", "# Lesson 1: tiny", "title"),
            _cell(
                "md",
                "## The mean\n\nSee [the exercise](../exercises/ex01_tiny.ipynb), "
                "[lesson 1](01_tiny.ipynb#top), [README](../README.md) and "
                "[a paper](https://arxiv.org/abs/1502.03167). 中文版："
                "[第一課](zh-TW/01_tiny.ipynb)、[說明](../README.zh-TW.md)。",
                "prose",
            ),
            _cell("code", "x = 1\nprint(x)", "code1"),
            _cell("md", "Gone soon.", "doomed"),
            _cell("code", QUIZ_CELL, "quiz"),
        ],
    )
    solution = _write(
        tmp_path / "solutions" / "ex01_tiny.ipynb",
        [_cell("md", "# Exercise 1", "t"), _cell("code", "y = 2", "c")],
        bnlib={"exercise": "ex01_tiny"},
    )
    (tmp_path / "bnlib").mkdir()
    (tmp_path / "bnlib" / "mod.py").write_text(
        'from bnlib.i18n import N_, _\n\nBYE = N_("Bye")\n\n\n'
        'def hello(name):\n    return _("Hello {name}").format(name=name)\n'
    )
    (tmp_path / "README.md").write_text("# Course\n")
    (tmp_path / "README.zh-TW.md").write_text("# 課程\n")
    return tmp_path, lesson, solution


def _po(root, stem):
    return polib.pofile(str(root / "translations" / "zh-TW" / f"{stem}.po"))


def _translate(root, stem, texts):
    """Fill in msgstrs, as a translator does: {msgctxt or msgid: msgstr}."""
    path = root / "translations" / "zh-TW" / f"{stem}.po"
    po = polib.pofile(str(path), wrapwidth=0)
    for e in po:
        key = e.msgctxt or e.msgid
        if key in texts:
            e.msgstr = texts[key]
            if "fuzzy" in e.flags:
                e.flags.remove("fuzzy")
            e.previous_msgid = None
    path.write_text(tr.po_text(po), encoding="utf-8")


def _edit(path, cid, source):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if c.id != cid] if source is None else nb.cells
    for cell in cells:
        if cell.id == cid:
            cell.source = source
    nb.cells = cells
    nbformat.write(nb, path)


def test_extract_writes_one_entry_per_markdown_cell_keyed_by_its_id(course):
    root, lesson, _ = course
    written = tr.extract(root, out=lambda _: None)
    assert {p.name for p in written} == {"01_tiny.po", "ex01_tiny.po", "zh-TW.po"}
    po = _po(root, "01_tiny")
    assert [(e.msgctxt, e.msgstr) for e in po] == [("title", ""), ("prose", ""), ("doomed", "")]
    assert po[0].msgid == "# Lesson 1: tiny"
    assert po.metadata["Language"] == "zh_TW"
    assert tr.extract(root, out=lambda _: None) == [], "a second extract changed something"


def test_reextract_keeps_translations_marks_changed_cells_fuzzy_and_keeps_gone_ones(course):
    root, lesson, _ = course
    tr.extract(root, out=lambda _: None)
    _translate(root, "01_tiny", {"title": "# 第一課：小課", "doomed": "即將刪除。"})
    _edit(lesson, "title", "# Lesson 1: a tiny lesson")
    _edit(lesson, "doomed", None)
    tr.extract(root, out=lambda _: None)
    po = _po(root, "01_tiny")
    title = next(e for e in po if e.msgctxt == "title")
    assert title.msgid == "# Lesson 1: a tiny lesson" and title.msgstr == "# 第一課：小課"
    assert "fuzzy" in title.flags and title.previous_msgid == "# Lesson 1: tiny"
    (doomed,) = [e for e in po if e.msgctxt == "doomed"]
    assert doomed.obsolete and doomed.msgstr == "即將刪除。"
    # the English changes back: the translation is right again
    _edit(lesson, "title", "# Lesson 1: tiny")
    tr.extract(root, out=lambda _: None)
    title = next(e for e in _po(root, "01_tiny") if e.msgctxt == "title")
    assert "fuzzy" not in title.flags and title.previous_msgid is None
    # a cell re-created with a new id and the English of the gone one gets its translation back
    nb = nbformat.read(lesson, as_version=4)
    nb.cells.append(_cell("md", "Gone soon.", "reborn"))
    nbformat.write(nb, lesson)
    tr.extract(root, out=lambda _: None)
    reborn = next(e for e in _po(root, "01_tiny") if e.msgctxt == "reborn")
    assert reborn.msgstr == "即將刪除。" and "fuzzy" not in reborn.flags


def test_bilingual_lessons_translate_to_themselves_and_follow_their_english(course, monkeypatch):
    root, lesson, _ = course
    monkeypatch.setattr(tr, "BILINGUAL", {"01_tiny"})
    tr.extract(root, out=lambda _: None)
    po = _po(root, "01_tiny")
    assert all(e.msgstr == e.msgid for e in po)
    _translate(root, "01_tiny", {"prose": "## 平均值"})  # a translator keeps only the Chinese
    _edit(lesson, "title", "# Lesson 1 · 第一課")
    _edit(lesson, "prose", "## The mean, again")
    tr.extract(root, out=lambda _: None)
    po = {e.msgctxt: e for e in _po(root, "01_tiny")}
    assert po["title"].msgstr == "# Lesson 1 · 第一課" and "fuzzy" not in po["title"].flags
    assert po["prose"].msgstr == "## 平均值" and "fuzzy" in po["prose"].flags


def test_runtime_catalogue_holds_bnlib_messages_and_quiz_texts(course):
    root, *_ = course
    tr.extract(root, out=lambda _: None)
    po = polib.pofile(str(root / "bnlib" / "locale" / "zh-TW.po"))
    entries = {e.msgid: e for e in po}
    for text in (
        "Bye",
        "Hello {name}",
        "Check yourself",
        "Which axes?",
        "(N,)",
        "(C, H, W)",
        "Per feature over the batch.",
        "That is layer norm.",
        "1/2?",
        "Half.",
        "units",
    ):
        assert text in entries, text
    assert entries["Hello {name}"].occurrences == [("bnlib/mod.py", "")]
    assert "python-brace-format" in entries["Hello {name}"].flags
    assert entries["Which axes?"].occurrences == [("notebooks/01_tiny.ipynb", "")]
    assert "0.5" not in entries and "answer" not in entries  # numbers are not texts


def test_a_changed_message_takes_the_closest_translation_marked_fuzzy(course):
    root, *_ = course
    tr.extract(root, out=lambda _: None)
    path = root / "bnlib" / "locale" / "zh-TW.po"
    po = polib.pofile(str(path), wrapwidth=0)
    next(e for e in po if e.msgid == "Hello {name}").msgstr = "你好，{name}"
    path.write_text(tr.po_text(po), encoding="utf-8")
    mod = root / "bnlib" / "mod.py"
    mod.write_text(mod.read_text().replace("Hello {name}", "Hello, {name}"))
    tr.extract(root, out=lambda _: None)
    entries = {e.msgid: e for e in polib.pofile(str(path))}
    new = entries["Hello, {name}"]
    assert new.msgstr == "你好，{name}" and "fuzzy" in new.flags
    assert new.previous_msgid == "Hello {name}"
    assert entries["Hello {name}"].obsolete


def test_quiz_texts_must_be_literals():
    texts, problems = tr.quiz_literals(QUIZ_CELL)
    assert texts[0] == "Check yourself" and not problems
    _, problems = tr.quiz_literals(
        'q = MultipleChoice(f"What is {x}?", ["a", b], answer=0, explanation="e")\n%time q'
    )
    assert len(problems) == 2 and "MultipleChoice.question" in problems[0]
    assert "MultipleChoice.choices" in problems[1]


def test_build_translates_markdown_adds_the_switch_and_keeps_the_code(course):
    root, lesson, solution = course
    tr.extract(root, out=lambda _: None)
    _translate(
        root,
        "01_tiny",
        {
            "prose": "## 平均值\n\n見[練習](../exercises/ex01_tiny.ipynb)、"
            "[第一課](01_tiny.ipynb#top)、[說明](../README.md)與"
            "[論文](https://arxiv.org/abs/1502.03167)。",
            "doomed": "即將刪除。",
        },
    )
    _edit(lesson, "doomed", "Gone soon, changed.")  # its translation is now fuzzy: not used
    tr.extract(root, out=lambda _: None)
    written = tr.build(root, out=lambda _: None)
    assert sorted(p.relative_to(root).as_posix() for p in written) == [
        "notebooks/zh-TW/01_tiny.ipynb",
        "solutions/zh-TW/ex01_tiny.ipynb",
    ]
    english = nbformat.read(lesson, as_version=4)
    zh = nbformat.read(root / "notebooks" / "zh-TW" / "01_tiny.ipynb", as_version=4)
    assert [c.id for c in zh.cells] == ["title", tr.SWITCH_ID, "prose", "code1", "doomed", "quiz"]
    switch = zh.cells[1]
    assert switch.cell_type == "code" and tr.SWITCH_TAG in switch.metadata["tags"]
    assert 'set_language("zh-TW")' in switch.source
    cells = {c.id: c.source for c in zh.cells}
    assert cells["title"] == "# Lesson 1: tiny"  # untranslated: the English
    assert cells["doomed"] == "Gone soon, changed."  # fuzzy: the English
    # a translation carries its language (Taiwan's glyphs); the English cells do not
    assert cells["prose"].startswith('<div lang="zh-Hant-TW">\n\n## 平均值\n')
    assert cells["prose"].endswith("。\n\n</div>")
    assert "<div" not in tr.unwrap_language(cells["prose"])
    assert "(../../exercises/zh-TW/ex01_tiny.ipynb)" in cells["prose"]
    assert "(01_tiny.ipynb#top)" in cells["prose"]
    assert "(../../README.zh-TW.md)" in cells["prose"]
    assert "(https://arxiv.org/abs/1502.03167)" in cells["prose"]
    # the English page's links to the zh-TW edition lead back to the English one
    english_prose = next(c.source for c in english.cells if c.id == "prose")
    relinked = tr._relink(english_prose, lesson.parent, root)
    assert "[第一課](../01_tiny.ipynb)" in relinked and "[說明](../../README.md)" in relinked
    assert [(c.id, c.source) for c in english.cells if c.cell_type == "code"] == [
        (c.id, c.source) for c in zh.cells if c.cell_type == "code" and c.id != tr.SWITCH_ID
    ]
    assert zh.metadata["bnlib"]["language"] == "zh-TW"
    sol = nbformat.read(root / "solutions" / "zh-TW" / "ex01_tiny.ipynb", as_version=4)
    assert sol.metadata["bnlib"]["exercise"] == "ex01_tiny"
    assert tr.build(root, out=lambda _: None) == [], "a second build changed something"


def test_build_keeps_outputs_of_unchanged_code_only(course):
    root, lesson, _ = course
    tr.extract(root, out=lambda _: None)
    tr.build(root, out=lambda _: None)
    target = root / "notebooks" / "zh-TW" / "01_tiny.ipynb"
    nb = nbformat.read(target, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(nb, target)
    _edit(lesson, "code1", "x = 2\nprint(x)")
    tr.build(root, out=lambda _: None)
    outputs = {
        c.id: c.outputs for c in nbformat.read(target, as_version=4).cells if c.cell_type == "code"
    }
    assert outputs["code1"] == [] and outputs["quiz"][0]["text"] == "ran\n"


def test_check_finds_each_way_the_edition_drifts(course):
    root, lesson, _ = course
    assert any("missing" in p for p in tr.check(root))
    tr.extract(root, out=lambda _: None)
    tr.build(root, out=lambda _: None)
    assert tr.check(root) == []
    _edit(lesson, "prose", "## The mean, rewritten")
    assert tr.check(root) == [
        "translations/zh-TW/01_tiny.po: not in step with its sources "
        "(run `python -m bnlib.translate extract`)",
        "notebooks/zh-TW/01_tiny.ipynb: out of date with its sources (run `make zh-TW`)",
    ]
    tr.extract(root, out=lambda _: None)
    tr.build(root, out=lambda _: None)
    assert tr.check(root) == []
    target = root / "notebooks" / "zh-TW" / "01_tiny.ipynb"
    _edit(target, "code1", "x = 'edited by hand'")
    assert tr.check(root) == [
        "notebooks/zh-TW/01_tiny.ipynb: out of date with its sources (run `make zh-TW`)"
    ]
    (root / "bnlib" / "mod.py").write_text('from bnlib.i18n import _\n_("New message")\n')
    assert "bnlib/locale/zh-TW.po: not in step" in tr.check(root)[0]


def test_the_command_line(course, capsys):
    root, *_ = course
    assert tr.main(["check", "--root", str(root)]) == 1
    assert tr.main(["extract", "--root", str(root)]) == 0
    assert tr.main(["build", "--root", str(root)]) == 0
    assert tr.main(["check", "--root", str(root)]) == 0
    assert "in step" in capsys.readouterr().out
    assert tr.main(["status", "--root", str(root)]) == 0
    assert "translations/zh-TW/01_tiny.po: 0 of 3 translated, 0 stale" in capsys.readouterr().out
    po = root / "translations" / "zh-TW" / "01_tiny.po"
    po.write_text(po.read_text() + "\na line that is not PO\n", encoding="utf-8")
    assert tr.main(["extract", "--root", str(root)]) == 1  # a broken PO file: named, no traceback
    assert "01_tiny.po: not a valid PO file" in capsys.readouterr().err


# --- the course ---------------------------------------------------------------------------------


def test_every_english_notebook_has_a_po_file_and_a_zh_tw_edition_and_nothing_else_does():
    assert len(SOURCES) >= 12
    have = {p.name for p in (ROOT / "translations" / "zh-TW").glob("*.po")}
    assert have == {tr.po_path(s).name for s in SOURCES}
    for folder in tr.EDITION_DIRS:
        english = {p.name for p in (ROOT / folder).glob("*.ipynb")}
        zh = {p.name for p in (ROOT / folder / "zh-TW").glob("*.ipynb")}
        assert zh == english, f"{folder}/zh-TW/ and {folder}/ differ: {zh ^ english}"


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_po_file_is_in_step_with_its_notebook(source):
    path = tr.po_path(source)
    assert path.read_text(encoding="utf-8") == tr.po_text(tr.notebook_catalogue(source)), (
        f"{path.relative_to(ROOT)} is not what extraction makes of {source.name} now "
        "(a markdown cell was added, changed or removed): run `python -m bnlib.translate extract`"
    )


def test_runtime_catalogue_is_in_step_with_bnlib_and_the_quizzes():
    path = i18n.catalogue_path("zh-TW")
    want = tr.po_text(tr.runtime_catalogue())
    have = path.read_text(encoding="utf-8")
    missing = sorted(
        {e.msgid for e in polib.pofile(want) if not e.obsolete}
        - {e.msgid for e in polib.pofile(have) if not e.obsolete}
    )
    assert not missing, f"messages missing from {path.name} (run extract): {missing[:10]}"
    assert have == want, f"{path.name} is not in step: run `python -m bnlib.translate extract`"


def test_every_quiz_text_is_a_literal():
    _, problems = tr.runtime_messages()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_every_markdown_cell_is_translated(source):
    po = polib.pofile(str(tr.po_path(source)))
    missing = [e.msgctxt for e in po if not e.obsolete and not e.msgstr]
    assert not missing, (
        f"{tr.po_path(source).relative_to(ROOT)}: {len(missing)} of "
        f"{len([e for e in po if not e.obsolete])} markdown cells have no translation yet "
        f"(cell ids {missing[:5]}{'...' if len(missing) > 5 else ''})"
    )


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_no_translation_is_stale(source):
    po = polib.pofile(str(tr.po_path(source)))
    stale = [e.msgctxt for e in po if not e.obsolete and "fuzzy" in e.flags]
    assert not stale, (
        f"{tr.po_path(source).relative_to(ROOT)}: the English of cells {stale} changed since "
        "they were translated (`#, fuzzy`; the old English is under `#| msgid`): update the "
        "translations, then delete those two lines"
    )


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_translations_keep_the_links_and_anchors_of_their_cell(source):
    bad = []
    for e in polib.pofile(str(tr.po_path(source))):
        if e.obsolete or not e.msgstr:
            continue
        for pattern in (LINK, ANCHOR):
            want = {
                m.group(0) if pattern is ANCHOR else "".join(m.groups(""))
                for m in pattern.finditer(e.msgid)
            }
            have = {
                m.group(0) if pattern is ANCHOR else "".join(m.groups(""))
                for m in pattern.finditer(e.msgstr)
            }
            if want - have:
                bad.append(f"cell {e.msgctxt}: lost {sorted(want - have)}")
    assert not bad, f"{tr.po_path(source).name}:\n" + "\n".join(bad)


def test_runtime_catalogue_is_translated():
    po = polib.pofile(str(i18n.catalogue_path("zh-TW")))
    live = [e for e in po if not e.obsolete]
    missing = [e.msgid for e in live if not e.msgstr]
    stale = [e.msgid for e in live if "fuzzy" in e.flags]
    assert not missing and not stale, (
        f"bnlib/locale/zh-TW.po: {len(missing)} of {len(live)} messages untranslated "
        f"(e.g. {missing[:3]}), {len(stale)} stale (fuzzy, e.g. {stale[:3]})"
    )


def test_translated_messages_keep_their_format_fields():
    bad = [
        (e.msgid, e.msgstr)
        for e in polib.pofile(str(i18n.catalogue_path("zh-TW")))
        if e.msgstr and sorted(FIELD.findall(e.msgid)) != sorted(FIELD.findall(e.msgstr))
    ]
    assert not bad, f"a translation must keep each {{field}} of its message: {bad}"


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_zh_tw_notebook_is_built_from_its_sources(source):
    target = tr.edition_path(source)
    have = tr.cell_view(nbformat.read(target, as_version=4))
    want = tr.cell_view(tr.build_notebook(source))
    stale = [w[0] for h, w in zip(have, want, strict=False) if h != w]
    assert have == want, (
        f"{target.relative_to(ROOT)} is not what build makes of {source.name} and its PO file "
        f"(first differing cells: {stale[:5]}): run `make zh-TW`"
    )


# The language wrapper (tr.wrap_language) must not change how the markdown renders: CommonMark
# (markdown-it-py; JupyterLab's marked and nbconvert's mistune follow it for HTML blocks) renders
# the wrapped cell as the div around exactly what the plain cell renders to.
RENDERER = MarkdownIt("commonmark").enable("table")
MATH = re.compile(r"(?<!\\)\$\$.+?(?<!\\)\$\$|(?<!\\)\$[^$\n]+?(?<!\\)\$", re.DOTALL)
WRAPPER_SAMPLES = [
    "# 第一課：批次正規化",
    '<a id="top"></a>\n\n## 平均值\n\n一段**粗體**文字。',
    '<a id="q1"></a>\n### 測驗\n\n- 項目一\n- 項目二\n\n1. 第一\n2. 第二',
    "| 欄 | 值 |\n|---|---|\n| a | $y$ |",
    "公式：\n\n$$\n\\hat x = \\frac{x-\\mu}{\\sigma}\n$$\n\n結束。",
    "```python\nx = 1  # 程式碼\n```",
    "> 引言：批次\n\n    縮排的程式碼\n",
    "<details><summary>答案</summary>\n\n是。\n\n</details>",
]


def _rendered_inside(text):
    """(HTML of the wrapped text minus the wrapper's tags, HTML of the text alone)."""
    plain = RENDERER.render(MATH.sub("MATH", text))
    wrapped = RENDERER.render(MATH.sub("MATH", tr.wrap_language(text))).rstrip("\n")
    head, tail = f"{tr.LANG_OPEN}\n", tr.LANG_CLOSE
    assert wrapped.startswith(head) and wrapped.endswith(tail), wrapped
    return wrapped[len(head) : -len(tail)].rstrip("\n"), plain.rstrip("\n")


@pytest.mark.parametrize("text", WRAPPER_SAMPLES)
def test_the_language_wrapper_renders_the_markdown_unchanged_inside_it(text):
    inside, plain = _rendered_inside(text)
    assert inside == plain
    assert tr.unwrap_language(tr.wrap_language(text)) == text.strip("\n")
    assert tr.wrap_language(tr.wrap_language(text)) == tr.wrap_language(text)


def test_the_wrapper_check_can_fail():
    # without the blank line after it, the div's HTML block swallows the heading as raw HTML
    text = "# 標題\n\n內容"
    glued = RENDERER.render(f"{tr.LANG_OPEN}\n{text}\n\n{tr.LANG_CLOSE}")
    assert "<h1>" not in glued and "<h1>" in RENDERER.render(text)
    assert tr.wrap_language("English only, no Chinese.") == "English only, no Chinese."


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_every_translation_renders_unchanged_inside_the_language_wrapper(source):
    bad = []
    for cid, text in tr.translations(source).items():
        inside, plain = _rendered_inside(text) if tr.HAN.search(text) else (text, text)
        if inside != plain:
            bad.append(cid)
    assert not bad, f"{tr.po_path(source).name}: cells {bad} render differently when wrapped"


@pytest.mark.parametrize("source", SOURCES, ids=NAMES)
def test_the_two_editions_share_their_code(source):
    english = nbformat.read(source, as_version=4)
    zh = nbformat.read(tr.edition_path(source), as_version=4)
    switch = [c for c in zh.cells if c.get("id") == tr.SWITCH_ID]
    assert len(switch) == 1 and tr.SWITCH_TAG in switch[0].metadata.get("tags", [])
    first_code = next(c for c in zh.cells if c.cell_type == "code")
    assert first_code is switch[0], "the language switch is not the first code cell"
    assert 'set_language("zh-TW")' in switch[0].source
    code = [(c.id, c.source) for c in english.cells if c.cell_type == "code"]
    assert code == [(c.id, c.source) for c in zh.cells if c.cell_type == "code"][1:]
    assert [c.id for c in english.cells] == [c.id for c in zh.cells if c is not switch[0]]


def test_zh_tw_exercises_are_what_bnlib_assign_writes(capsys):
    code = cli.main(
        [
            "assign",
            "--check",
            "--solutions",
            str(ROOT / "solutions" / "zh-TW"),
            "--exercises",
            str(ROOT / "exercises" / "zh-TW"),
        ]
    )
    assert code == 0, capsys.readouterr().out


@pytest.mark.parametrize("folder", ["solutions", "exercises"])
def test_zh_tw_exercises_keep_their_exercise_id(folder):
    for path in sorted((ROOT / folder / "zh-TW").glob("*.ipynb")):
        zh = nbformat.read(path, as_version=4).metadata["bnlib"]
        english = nbformat.read(ROOT / folder / path.name, as_version=4).metadata["bnlib"]
        assert zh["exercise"] == english["exercise"], path.name
        assert zh["language"] == "zh-TW"


def test_bnlib_grade_grades_a_zh_tw_solution_as_the_english_one(capsys):
    path = ROOT / "solutions" / "zh-TW" / "ex01_forward_backward.ipynb"
    assert cli.main(["grade", "--json", "--jobs", "1", str(path)]) == 0
    (result,) = json.loads(capsys.readouterr().out)["notebooks"]
    assert result["exercise"] == "ex01_forward_backward"
    assert result["score"] == result["max_score"] > 0, result


def test_the_glossary_exists_and_names_the_course_term():
    text = (ROOT / tr.GLOSSARY).read_text(encoding="utf-8")
    assert "| batch normalization (BN) | 批次正規化 |" in text


@pytest.fixture
def chinese():
    i18n.set_language("zh-TW")
    yield
    i18n.set_language("en")


def test_the_switch_cell_runs(chinese):
    i18n.set_language("en")
    exec(tr.SWITCH_SOURCE, {})  # noqa: S102 - the cell the generator writes
    assert i18n.get_language() == "zh-TW"


# --- Taiwan usage: the English of a technical term at its first use in each notebook -----------


def technical_terms():
    """[(Taiwan term, the English accepted in brackets after it)] of the glossary's technical
    terms (its first table). A row of alternatives (training mode / eval mode) pairs them up."""
    text = (ROOT / tr.GLOSSARY).read_text(encoding="utf-8").split("## 一般用語")[0]
    pairs = []
    for row in table_rows(text, ["English", "臺灣用語"]):
        english = [e.strip() for e in row["English"].split(" / ")]
        taiwan = row["臺灣用語"].split("／")
        if len(english) != len(taiwan):
            english, taiwan = english[:1], taiwan[:1]
        for en, tw in zip(english, taiwan, strict=True):
            accepted = [re.sub(r"\s*\(.*?\)", "", en)] + re.findall(r"\((.*?)\)", en)
            pairs.append((terms(tw)[0], [a.lower() for a in accepted if a]))
    return pairs


TERMS = technical_terms()


def missing_english(cells, bilingual=()):
    """The technical terms whose first use in `cells` (texts in order) lacks its English.

    bilingual: the indices of cells written in both languages (the English is beside each term).
    """
    missing = []
    longer = {tw: [t for t, _ in TERMS if tw in t and t != tw] for tw, _ in TERMS}
    cells = ["\n".join(line for line in c.splitlines() if not line.startswith("#")) for c in cells]
    for tw, accepted in TERMS:
        for index, text in enumerate(cells):  # headings aside: a title rarely has the English
            for other in longer[tw]:  # 批次正規化 inside 同步批次正規化 is not its use
                text = text.replace(other, "\0" * len(other))
            at = text.find(tw)
            if at < 0:
                continue
            if index in bilingual:
                break
            after = re.match(r"[」』]?\s*[（(]([^）)]*)[）)]", text[at + len(tw) :])
            said = after.group(1).lower().replace("-", " ") if after else ""
            if not any(a.replace("-", " ") in said for a in accepted):
                missing.append(f"{tw}（{accepted[0]}）")
            break
    return missing


def test_the_first_use_check_finds_a_term_without_its_english():
    assert len(TERMS) > 30
    assert missing_english(["批次正規化（batch normalization, BN）讓變異數（variance）穩定"]) == []
    assert missing_english(["# 批次正規化", "批次正規化（BN）"]) == []  # a heading is skipped
    found = missing_english(["同步批次正規化很慢", "批次正規化（BN）與變異數"])
    assert sorted(found) == ["同步批次正規化（synchronized bn）", "變異數（variance）"]
    assert missing_english(["「訓練模式」（training mode）與推論模式（eval-mode）"]) == []
    assert missing_english(["Variance · 變異數", "變異數"], bilingual={0}) == []


# the lessons and exercises (the start page is a map of the course, not a lesson)
TAUGHT = [s for s in SOURCES if s.stem != "00_start_here"]


@pytest.mark.parametrize("source", TAUGHT, ids=[str(s.relative_to(ROOT)) for s in TAUGHT])
def test_technical_terms_give_their_english_at_first_use(source):
    done = tr.translations(source)
    nb = nbformat.read(source, as_version=4)
    cells = [(done[c.id], done[c.id] == c.source) for c in nb.cells if c.id in done]
    missing = missing_english(
        [text for text, _ in cells], {i for i, (_, same) in enumerate(cells) if same}
    )
    assert not missing, (
        f"{tr.po_path(source).name}: give the English in brackets at the first use of "
        f"{missing} (translations/zh-TW/GLOSSARY.md)"
    )


def test_the_runtime_catalogue_ships_with_bnlib():
    """bnlib.i18n reads bnlib/locale/*.po at run time: a wheel must carry it (package data)."""
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["bnlib"]
    assert any(
        i18n.catalogue_path("zh-TW").relative_to(ROOT / "bnlib").match(pattern) for pattern in data
    ), data
