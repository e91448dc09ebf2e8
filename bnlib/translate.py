"""The course's Traditional Chinese (Taiwan) edition, generated from the English notebooks.

    python -m bnlib.translate extract   update the PO files from the English sources
    python -m bnlib.translate build     write notebooks/zh-TW/ and solutions/zh-TW/
    python -m bnlib.translate check     write nothing; exit 1 naming what is not in step
    python -m bnlib.translate status    how much of each PO file is translated, and stale

(`make zh-TW` runs extract, build, `bnlib assign` for exercises/zh-TW/, and executes the new
notebooks; `make notebooks` does the same after storing the English outputs.)

The English notebooks in notebooks/ and solutions/ are the single source. Two kinds of PO files
(gettext; edit them with any PO editor, e.g. Poedit, and keep translations/zh-TW/GLOSSARY.md at
hand) hold the translations:

- translations/zh-TW/<notebook>.po, one per notebook: one entry per markdown cell, msgctxt = the
  cell id, msgid = the English cell. Extraction merges as msgmerge does: a translation is kept
  while its English cell is unchanged; when the cell changes, the translation is kept, marked
  `fuzzy` (stale) and the English it was made from is recorded (`#| msgid`); the entry of a cell
  that disappeared becomes obsolete (`#~`), and a new cell whose English equals an obsolete
  entry's (a cell re-created) gets its translation back.
- bnlib/locale/zh-TW.po, the run-time catalogue of `bnlib.i18n`: every `_()`/`N_()` message of
  bnlib/**.py (Babel's Python extractor) and every text literal of a quiz in a notebook's code
  (`Quiz`, `MultipleChoice`, `Numeric`: title, question, choices, hints, explanation, unit), which
  `bnlib.quiz` translates at display time. References (`#:`) name the file, without line numbers
  (so an edit elsewhere in a file does not touch the catalogue). A message changed in the code
  takes the translation of the most similar message that disappeared, marked fuzzy.

Lesson 6 (BILINGUAL) is written in English and Chinese side by side, and its zh-TW edition keeps
it so: its cells and quiz texts translate to themselves until a translator decides otherwise
(for example keeps only the Chinese). Such an identity translation follows its English cell when
that changes; a translation that differs from its English turns fuzzy like any other.

A zh-TW notebook is the English one with each markdown cell replaced by its translation (the
English where there is none yet, or only a fuzzy one: the tests fail on those), relative links
pointing into the zh-TW edition, each translation wrapped in `<div lang="zh-Hant-TW">` (see
`wrap_language`: browsers then draw Taiwan's glyphs, not the Japanese ones of the page's "en"),
and one extra code cell after the title, tagged `language-switch`, calling
`bnlib.i18n.set_language("zh-TW")`. Every other cell keeps its id, metadata and code; the code
cells' outputs are those of the zh-TW notebook's last execution while their code is unchanged,
and none otherwise (nbval then fails until the notebook is executed).
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import os
import posixpath
import re
import sys
from pathlib import Path

import nbformat

__all__ = [
    "BILINGUAL",
    "LANGUAGE",
    "LANG_TAG",
    "TranslateError",
    "SWITCH_ID",
    "SWITCH_TAG",
    "build",
    "build_notebook",
    "catalogues",
    "cell_view",
    "check",
    "edition_path",
    "extract",
    "notebook_catalogue",
    "po_path",
    "po_text",
    "quiz_literals",
    "runtime_catalogue",
    "runtime_messages",
    "sources",
    "status",
    "unwrap_language",
    "wrap_language",
]

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE = "zh-TW"
SOURCE_DIRS = ("notebooks", "solutions")  # exercises/zh-TW/ is made from solutions/zh-TW/
EDITION_DIRS = ("notebooks", "solutions", "exercises")
BILINGUAL = {"06_exam_review"}  # written in both languages: translates to itself by default
SWITCH_ID = "zh-TW-language-switch"
SWITCH_TAG = "language-switch"
SWITCH_SOURCE = (
    "# 繁體中文版：執行這個儲存格後，bnlib 的訊息（測驗、檢查結果、互動元件）都以中文顯示。\n"
    "from bnlib.i18n import set_language\n"
    "\n"
    'set_language("zh-TW")'
)
# Files outside the notebooks that have an edition of their own, for links from the notebooks.
EDITION_FILES = {"README.md": "README.zh-TW.md"}
HEADER = {
    "Project-Id-Version": "bnlib (Batch Normalization, hands-on)",
    "Language": "zh_TW",
    "MIME-Version": "1.0",
    "Content-Type": "text/plain; charset=UTF-8",
    "Content-Transfer-Encoding": "8bit",
    "Plural-Forms": "nplurals=1; plural=0;",
}
GLOSSARY = "translations/zh-TW/GLOSSARY.md"
EXTRACT = "python -m bnlib.translate extract"
MAKE = "make zh-TW"
BILINGUAL_NOTE = (
    "Written in English and Chinese side by side in the English edition; the zh-TW edition keeps "
    "it as it is unless you change this translation (e.g. keep only the Chinese)."
)
# The classes of bnlib.quiz and their text arguments, in positional order.
QUIZ_ARGS = {
    "Quiz": ("title", "questions"),
    "MultipleChoice": ("question", "choices", "answer", "explanation", "hints"),
    "Numeric": ("question", "answer", "tol", "explanation", "unit", "hints"),
}
QUIZ_TEXT = {
    "Quiz": ("title",),
    "MultipleChoice": ("question", "choices", "explanation", "hints"),
    "Numeric": ("question", "explanation", "unit", "hints"),
}
FIELD = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")  # a str.format field; {{ }} are literal braces
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# The BCP 47 tag of the edition's text. JupyterLab's page is lang="en", so without it browsers draw
# the Chinese with a Japanese CJK font (glyph shapes, punctuation placement); see `wrap_language`.
LANG_TAG = "zh-Hant-TW"
LANG_OPEN = f'<div lang="{LANG_TAG}">'
LANG_CLOSE = "</div>"


def _polib():
    import polib

    return polib


# --- where things are ---------------------------------------------------------------------------


def sources(root=ROOT):
    """The English notebooks, the single source: notebooks/*.ipynb and solutions/*.ipynb."""
    root = Path(root)
    return [p for d in SOURCE_DIRS for p in sorted((root / d).glob("*.ipynb"))]


def po_path(source, root=ROOT):
    """translations/zh-TW/<stem>.po for an English notebook."""
    return Path(root) / "translations" / LANGUAGE / f"{Path(source).stem}.po"


def edition_path(source, root=ROOT):
    """notebooks/zh-TW/<name> for notebooks/<name> (solutions/ likewise)."""
    source = Path(source)
    return source.parent / LANGUAGE / source.name


def runtime_po_path(root=ROOT):
    return Path(root) / "bnlib" / "locale" / f"{LANGUAGE}.po"


def _rel(path, root):
    return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()


# --- catalogues ---------------------------------------------------------------------------------


def _new_catalogue(old, comment):
    polib = _polib()
    po = polib.POFile(wrapwidth=0)
    po.header = comment
    po.metadata = dict(old.metadata) if old is not None else {}
    po.metadata.update(HEADER)
    return po


class TranslateError(ValueError):
    """A PO file that cannot be read (a translator's typo): named, with polib's reason."""


def _load(path):
    if not Path(path).is_file():
        return None
    try:
        return _polib().pofile(str(path), wrapwidth=0)
    except (OSError, ValueError) as e:
        raise TranslateError(f"{path}: not a valid PO file ({e})") from None


def po_text(po):
    return str(po).rstrip("\n") + "\n"


def _entry(**fields):
    return _polib().POEntry(**fields)


def _carry(old, **changes):
    """A copy of entry `old` (translator comments, flags, msgstr) with `changes`."""
    new = copy.deepcopy(old)
    new.obsolete = False
    for key, value in changes.items():
        setattr(new, key, value)
    return new


def _mark_changed(new, old_msgid, text):
    """msgmerge's rule for an entry whose English changed from old_msgid to text."""
    if not new.msgstr:
        new.flags = [f for f in new.flags if f != "fuzzy"]
        new.previous_msgid = None
    elif "fuzzy" in new.flags and new.previous_msgid == text:  # the English came back
        new.flags.remove("fuzzy")
        new.previous_msgid = None
    else:
        if not ("fuzzy" in new.flags and new.previous_msgid):
            new.previous_msgid = old_msgid  # the English the translation was made from
        if "fuzzy" not in new.flags:
            new.flags.append("fuzzy")
    new.msgid = text


def _finish(new):
    if "fuzzy" not in new.flags:
        new.previous_msgid = None  # as msgmerge: the previous English only explains a fuzzy entry
    if new.msgstr == "" and "fuzzy" in new.flags:
        new.flags.remove("fuzzy")


def markdown_cells(nb):
    """(cell id, source) of each markdown cell with text, in order."""
    return [(c.id, c.source) for c in nb.cells if c.cell_type == "markdown" and c.source.strip()]


def notebook_catalogue(source, root=ROOT):
    """The PO file of `source` as extraction leaves it (a polib.POFile; nothing is written)."""
    source, root = Path(source), Path(root)
    nb = nbformat.read(source, as_version=4)
    old = _load(po_path(source, root))
    bilingual = source.stem in BILINGUAL
    rel = _rel(source, root)
    po = _new_catalogue(
        old,
        f"Traditional Chinese (Taiwan) translation of {rel}: one entry per markdown cell\n"
        "(msgctxt: the cell id; msgid: the English cell). Glossary: " + GLOSSARY + ".\n"
        "Written by `python -m bnlib.translate extract`; translate the msgstr lines, and once the\n"
        "translation of a changed cell is updated, delete its `#, fuzzy` and `#|` lines.",
    )
    cells = markdown_cells(nb)
    ids = {cid for cid, _ in cells}
    old_entries = list(old) if old is not None else []
    by_context = {e.msgctxt: e for e in old_entries}
    for cid, text in cells:
        previous = by_context.get(cid)
        if previous is not None:
            new = _carry(previous)
            if previous.msgid != text:
                if bilingual and previous.msgstr == previous.msgid:
                    new.msgid, new.msgstr = text, text  # an identity translation follows its cell
                else:
                    _mark_changed(new, previous.msgid, text)
        else:
            # a re-created cell: the translation of a cell that is gone, with the same English
            twin = next(
                (
                    e
                    for e in old_entries
                    if e.msgid == text
                    and e.msgstr
                    and e.msgctxt not in ids
                    and "fuzzy" not in e.flags
                ),
                None,
            )
            msgstr = twin.msgstr if twin else (text if bilingual else "")
            new = _entry(msgctxt=cid, msgid=text, msgstr=msgstr)
        new.comment = BILINGUAL_NOTE if bilingual else ""
        new.occurrences = []
        _finish(new)
        po.append(new)
    for e in old_entries:  # cells that are gone: keep their translations as obsolete entries
        if e.msgctxt not in ids and e.msgstr:
            po.append(_carry(e, obsolete=True, occurrences=[]))
    return po


# --- run-time messages --------------------------------------------------------------------------


def _code_of(cell_source):
    """A code cell's Python: IPython magics and shell escapes are commented out."""
    return "\n".join(
        "# " + line if line.lstrip().startswith(("%", "!")) else line
        for line in cell_source.split("\n")
    )


def _call_name(func):
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def quiz_literals(code, where="code"):
    """The texts of the quizzes built in `code`: (texts in source order, problems).

    A problem is a quiz text that is not a string literal (an f-string, a variable): it cannot be
    looked up in the catalogue, so it would stay English.
    """
    try:
        tree = ast.parse(_code_of(code))
    except SyntaxError as e:
        return [], [f"{where}: cannot be parsed ({e.msg}, line {e.lineno})"]
    found, problems = [], []

    def take(node, what):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.append((node.lineno, node.col_offset, node.value))
        elif isinstance(node, ast.Constant) and node.value is None:
            pass
        else:
            problems.append(
                f"{where}, line {node.lineno}: {what} is not a string literal, so it cannot be "
                "translated (write the text itself there)"
            )

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or _call_name(node.func) not in QUIZ_ARGS:
            continue
        kind = _call_name(node.func)
        args = dict(zip(QUIZ_ARGS[kind], node.args, strict=False))
        args.update({k.arg: k.value for k in node.keywords if k.arg})
        for name in QUIZ_TEXT[kind]:
            value = args.get(name)
            if value is None:
                continue
            what = f"{kind}.{name}"
            if name == "choices" and isinstance(value, ast.List | ast.Tuple):
                for item in value.elts:
                    take(item, what)
            elif name == "hints" and isinstance(value, ast.Dict):
                for item in value.values:
                    take(item, what)
            elif name in ("choices", "hints"):
                problems.append(f"{where}, line {value.lineno}: {what} is not written out")
            else:
                take(value, what)
    return [text for *_, text in sorted(found)], problems


def runtime_messages(root=ROOT):
    """The run-time catalogue's messages: ({msgid: [files where it occurs]}, problems).

    In order: bnlib's `_()`/`N_()` messages (bnlib/**.py), then the notebooks' quiz texts.
    """
    from babel.messages.extract import extract_from_file

    root = Path(root)
    messages, problems = {}, []
    for path in sorted((root / "bnlib").rglob("*.py")):
        rel = _rel(path, root)
        for _lineno, message, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None, "N_": None}
        ):
            if isinstance(message, str) and message:
                files = messages.setdefault(message, [])
                if rel not in files:
                    files.append(rel)
    for source in sources(root):
        rel = _rel(source, root)
        nb = nbformat.read(source, as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            texts, bad = quiz_literals(cell.source, f"{rel} cell {index}")
            problems += bad
            for text in texts:
                files = messages.setdefault(text, [])
                if rel not in files:
                    files.append(rel)
    return messages, problems


def _bilingual_file(rel):
    return any(Path(rel).stem == stem for stem in BILINGUAL)


def runtime_catalogue(root=ROOT):
    """bnlib/locale/zh-TW.po as extraction leaves it (a polib.POFile; nothing is written)."""
    root = Path(root)
    old = _load(runtime_po_path(root))
    messages, _ = runtime_messages(root)
    po = _new_catalogue(
        old,
        "Traditional Chinese (Taiwan) translation of the messages bnlib shows at run time (check\n"
        "feedback, quizzes, widgets), read by bnlib.i18n. Glossary: " + GLOSSARY + ".\n"
        "Written by `python -m bnlib.translate extract`; translate the msgstr lines. Keep every\n"
        "{field} of a message (python-brace-format) exactly as it is: the code fills it in.",
    )
    old_entries = [e for e in old if e.msgid] if old is not None else []
    by_msgid = {e.msgid: e for e in old_entries}
    # translations whose message is gone: candidates for a changed message (fuzzy match)
    orphans = [e for e in old_entries if e.msgid not in messages and e.msgstr]
    for message, files in messages.items():
        previous = by_msgid.get(message)
        if previous is not None:
            new = _carry(previous)
        else:
            new = _entry(msgid=message, msgstr="")
            if all(_bilingual_file(f) for f in files) and HAN.search(message):
                new.msgstr = message  # lesson 6's texts are bilingual already
            elif orphans:
                ratio, best = max(
                    (difflib.SequenceMatcher(None, e.msgid, message).ratio(), i)
                    for i, e in enumerate(orphans)
                )
                if ratio >= 0.75:
                    new.msgstr = orphans[best].msgstr
                    new.previous_msgid = orphans[best].msgid
                    new.flags = ["fuzzy"]
        new.occurrences = [(f, "") for f in files]
        new.comment = ""
        flags = [f for f in new.flags if f != "python-brace-format"]
        if FIELD.search(message):
            flags.append("python-brace-format")
        new.flags = flags
        _finish(new)
        po.append(new)
    for e in old_entries:
        if e.msgid not in messages and e.msgstr:
            po.append(_carry(e, obsolete=True, occurrences=[]))
    return po


# --- extract ------------------------------------------------------------------------------------


def catalogues(root=ROOT):
    """(path, the PO text extraction would write) for every catalogue."""
    pairs = [(po_path(s, root), notebook_catalogue(s, root)) for s in sources(root)]
    pairs.append((runtime_po_path(root), runtime_catalogue(root)))
    return [(path, po_text(po)) for path, po in pairs]


def extract(root=ROOT, out=print):
    """Update every PO file from the English sources. Returns the paths written."""
    written = []
    for path, text in catalogues(root):
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
        out(f"{_rel(path, root)}: updated")
    _, problems = runtime_messages(root)
    for problem in problems:
        out(f"warning: {problem}")
    return written


# --- build --------------------------------------------------------------------------------------

_LINK = re.compile(r"(\]\(\s*<?|\b(?:href|src)\s*=\s*[\"'])([^\s)\"'>]+)")


def _relink(text, source_dir, root):
    """Relative links of a markdown cell of `source_dir` (e.g. notebooks/), rewritten for the
    same cell in `source_dir`/zh-TW/: a link to a course notebook (or README.md) goes to its zh-TW
    edition, and a link to a zh-TW edition (the English page's "中文版" link) to the English one,
    so a translation keeps the English cell's links as they are."""
    root = Path(root).resolve()
    here = Path(source_dir).resolve()
    there = here / LANGUAGE

    def fix(match):
        prefix, url = match.groups()
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^#|^/", url):
            return match.group(0)  # a URL, an anchor in the same page, an absolute path
        path, hash_, fragment = url.partition("#")
        target = Path(os.path.normpath(here / path))
        try:
            rel = target.relative_to(root)
        except ValueError:
            return match.group(0)
        english = {v: k for k, v in EDITION_FILES.items()}
        if len(rel.parts) == 2 and rel.parts[0] in EDITION_DIRS and rel.suffix == ".ipynb":
            target = root / rel.parts[0] / LANGUAGE / rel.parts[1]
        elif rel.parts[:2] in [(d, LANGUAGE) for d in EDITION_DIRS] and len(rel.parts) == 3:
            target = root / rel.parts[0] / rel.parts[2]  # the other edition: the English one
        elif rel.as_posix() in EDITION_FILES and (root / EDITION_FILES[rel.as_posix()]).is_file():
            target = root / EDITION_FILES[rel.as_posix()]
        elif rel.as_posix() in english:
            target = root / english[rel.as_posix()]
        new = posixpath.relpath(target.as_posix(), there.as_posix())
        return prefix + new + hash_ + fragment

    return _LINK.sub(fix, text)


def _switch_cell():
    cell = nbformat.v4.new_code_cell(SWITCH_SOURCE)
    cell["id"] = SWITCH_ID
    cell.metadata = {"slideshow": {"slide_type": "skip"}, "tags": [SWITCH_TAG]}
    return cell


def translations(source, root=ROOT):
    """{cell id: translated text} of the translated, not fuzzy, entries whose English is the cell's
    English today."""
    nb = nbformat.read(source, as_version=4)
    po = _load(po_path(source, root))
    english = dict(markdown_cells(nb))
    if po is None:
        return {}
    return {
        e.msgctxt: e.msgstr
        for e in po
        if not e.obsolete
        and e.msgstr
        and "fuzzy" not in e.flags
        and english.get(e.msgctxt) == e.msgid
    }


def wrap_language(text):
    """A translated markdown cell, wrapped so it carries its language: `<div lang="zh-Hant-TW">`.

    JupyterLab (whose sanitizer keeps `lang`), nbconvert's HTML and the slides then pick Taiwan's
    glyphs. CommonMark makes each tag line an HTML block of its own, ended by the blank line after
    it, so the markdown between them (headings, lists, tables, $$ math, anchors) renders as
    without the wrapper, inside the div; JupyterLab's table of contents and collapsible headings
    still find the headings (marked's top-level tokens). A cell without Chinese is left as it is,
    and so is one already wrapped. Only the built notebooks carry it: the PO files keep the plain
    translation.
    """
    if not HAN.search(text) or text.startswith(LANG_OPEN):
        return text
    body = text.strip("\n")
    return f"{LANG_OPEN}\n\n{body}\n\n{LANG_CLOSE}"


def unwrap_language(text):
    """The markdown inside `wrap_language`'s wrapper (text that has none: unchanged)."""
    head, tail = f"{LANG_OPEN}\n\n", f"\n\n{LANG_CLOSE}"
    if text.startswith(head) and text.endswith(tail):
        return text[len(head) : -len(tail)]
    return text


def build_notebook(source, root=ROOT):
    """The zh-TW edition of English notebook `source` (a NotebookNode; nothing is written)."""
    source, root = Path(source), Path(root)
    nb = copy.deepcopy(nbformat.read(source, as_version=4))
    done = translations(source, root)
    target = edition_path(source, root)
    previous = nbformat.read(target, as_version=4) if target.is_file() else None
    ran = {c.id: c for c in previous.cells if c.cell_type == "code"} if previous else {}
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            translated = done.get(cell.id)
            if translated is None:  # no translation yet: the English, as it is
                cell.source = _relink(cell.source, source.parent, root)
            else:
                cell.source = wrap_language(_relink(translated, source.parent, root))
        elif cell.cell_type == "code":
            last = ran.get(cell.id)
            if last is not None and last.source == cell.source:
                cell.outputs, cell.execution_count = last.outputs, last.execution_count
            else:
                cell.outputs, cell.execution_count = [], None
    switch = _switch_cell()
    if SWITCH_ID in ran and ran[SWITCH_ID].source == switch.source:
        switch.outputs = ran[SWITCH_ID].outputs
        switch.execution_count = ran[SWITCH_ID].execution_count
    at = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
    nb.cells.insert(at, switch)
    nb.metadata.pop("widgets", None)  # saved widget state belongs to a run of this notebook
    if previous is not None and "widgets" in previous.metadata:
        nb.metadata["widgets"] = previous.metadata["widgets"]
    nb.metadata.setdefault("bnlib", {})["language"] = LANGUAGE
    return nb


def cell_view(nb):
    """What build decides about a notebook's cells: (id, type, source, metadata) of each cell."""
    volatile = ("execution", "ExecuteTime", "collapsed", "scrolled")
    return [
        (
            c.get("id"),
            c.cell_type,
            c.source,
            {k: v for k, v in c.metadata.items() if k not in volatile},
        )
        for c in nb.cells
    ]


def build(root=ROOT, out=print):
    """Write notebooks/zh-TW/ and solutions/zh-TW/ from the English notebooks and the PO files.

    A zh-TW notebook whose cells would not change is left alone (its outputs stay). Returns the
    paths written. exercises/zh-TW/ is `bnlib assign`'s job (solutions/zh-TW -> exercises/zh-TW).
    """
    written = []
    for source in sources(root):
        nb = build_notebook(source, root)
        target = edition_path(source, root)
        if target.is_file():
            old = nbformat.read(target, as_version=4)
            if cell_view(old) == cell_view(nb) and old.metadata == nb.metadata:
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
        out(f"{_rel(target, root)}: written")
    return written


# --- check --------------------------------------------------------------------------------------


def check(root=ROOT):
    """Every way the zh-TW edition is out of step with its sources, one line each (none: [])."""
    root = Path(root)
    problems = []
    for path, text in catalogues(root):
        if not path.is_file():
            problems.append(f"{_rel(path, root)}: missing (run `{EXTRACT}`)")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{_rel(path, root)}: not in step with its sources (run `{EXTRACT}`)")
    for source in sources(root):
        target = edition_path(source, root)
        if not target.is_file():
            problems.append(f"{_rel(target, root)}: missing (run `{MAKE}`)")
            continue
        have = cell_view(nbformat.read(target, as_version=4))
        if have != cell_view(build_notebook(source, root)):
            problems.append(f"{_rel(target, root)}: out of date with its sources (run `{MAKE}`)")
    problems += runtime_messages(root)[1]
    return problems


def status(root=ROOT):
    """One line per PO file: translated / entries, and how many are stale (fuzzy)."""
    lines = []
    paths = [po_path(s, root) for s in sources(root)] + [runtime_po_path(root)]
    for path in paths:
        po = _load(path)
        if po is None:
            lines.append(f"{_rel(path, root)}: missing")
            continue
        live = [e for e in po if not e.obsolete]
        done = sum(1 for e in live if e.msgstr and "fuzzy" not in e.flags)
        stale = sum(1 for e in live if "fuzzy" in e.flags)
        lines.append(f"{_rel(path, root)}: {done} of {len(live)} translated, {stale} stale")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bnlib.translate", description=__doc__.splitlines()[0]
    )
    parser.add_argument("command", choices=["extract", "build", "check", "status"])
    parser.add_argument("--root", default=str(ROOT), help="the course's folder (default: this one)")
    args = parser.parse_args(argv)
    try:
        return _run(args.command, Path(args.root))
    except TranslateError as e:
        print(f"python -m bnlib.translate {args.command}: {e}", file=sys.stderr)
        return 1


def _run(command, root):
    if command == "extract":
        extract(root)
    elif command == "build":
        build(root)
    elif command == "status":
        print("\n".join(status(root)))
    else:
        problems = check(root)
        for problem in problems:
            print(problem)
        if problems:
            return 1
        print("the zh-TW edition is in step with its sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
