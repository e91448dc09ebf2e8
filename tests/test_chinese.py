"""The course's Chinese is Traditional Chinese as written in Taiwan: no Simplified characters, no
mainland terms.

Where: every notebook's markdown and code cells (strings and comments) in notebooks/, solutions/
and exercises/ and their zh-TW/ editions, README.md and README.zh-TW.md, bnlib's .py files, the
translations (each msgstr of translations/zh-TW/*.po and bnlib/locale/zh-TW.po) and the glossary,
translations/zh-TW/GLOSSARY.md. Two checks:

- characters: OpenCC's Simplified-to-Traditional conversion (`s2t`), applied one character at a
  time, must leave each Chinese character unchanged. OpenCC's Traditional is not Taiwan's
  standard in a few characters (it writes 羣 for 群); those are in ALLOWED, each with its reason.
- terms: none of MAINLAND_TERMS (whole words that are Traditional in their characters but
  mainland usage; COURSE.md's "Traditional Chinese (Taiwan) usage"), and none of the terms of
  the glossary's 中國大陸用語 column (GLOSSARY_TERMS, those that are not also Taiwan usage). They
  are matched on the s2t-converted text, so the Simplified spelling (默认, 数据) counts too.

Mainland usage named on purpose is marked, and skipped: the column headed 中國大陸用語 of a
markdown table (the glossary, lesson 6's glossary), and text inside
`<span lang="zh-CN">...</span>`, which also tells the browser which glyphs to use.

Lesson 6's glossary and the course's glossary agree: where both have a row for the same English
term, lesson 6 shows the course's Taiwan term.
"""

import re
from pathlib import Path

import nbformat
import polib
import pytest
from opencc import OpenCC

ROOT = Path(__file__).resolve().parents[1]
S2T = OpenCC("s2t")
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
MAINLAND_SPAN = re.compile(r'<span lang="zh-CN">.*?</span>', re.DOTALL)
MAINLAND_COLUMN = "中國大陸用語"
TAIWAN_COLUMN = "臺灣用語"
GLOSSARY = ROOT / "translations" / "zh-TW" / "GLOSSARY.md"

# characters OpenCC's s2t changes that are nevertheless the standard form in Taiwan
ALLOWED = {
    "群": "Taiwan's standard form (教育部 常用字); OpenCC's traditional writes the variant 羣",
    "台": "台 is standard in Taiwan beside 臺 (台灣, 平台, 一台電腦); OpenCC maps it to 臺",
    "峰": "Taiwan's standard form (峰值, 尖峰); OpenCC's traditional writes the variant 峯",
}

# mainland term (as a regex, in Traditional characters) -> the Taiwan term to use
MAINLAND_TERMS = {
    "激活": "激勵／活化（activation）",
    "方差": "變異數",
    "網絡": "網路",
    "默認": "預設",
    "優化": "最佳化",
    "信息": "資訊",
    "代碼": "程式碼",
    "數據": "資料",
    "質量": "品質",
    "批量": "批次",
    "歸一化": "正規化（或標準化）",
    "(?<!平)均值": "平均值",
    "內存": "記憶體",
    "(?<!演)算法": "演算法",
    "實現": "實作（to implement）",
    "運行": "執行",
    "模塊": "模組",
    "(?<!共)變量": "變數",  # 共變量 (covariate) is Taiwan usage
    "調用": "呼叫",
    "打印": "印出",
    "線程": "執行緒",
    "緩存": "快取",
    "軟件": "軟體",
    "硬件": "硬體",
    "視頻": "影片",
    "魯棒": "穩健",
    "接口": "介面",
    "鏈接": "連結",
}


def table_rows(text, columns):
    """The rows of the markdown tables in `text` that have all of `columns`: [{column: text}]."""
    rows, header = [], None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            header = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells if set(columns) <= set(cells) else []
        elif header and not set("".join(cells)) <= set("-: "):
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def terms(cell):
    """The terms of a glossary cell: split at ／ and 、, with (and without) what is in brackets."""
    found = []
    for part in re.split("[／、]", cell):
        found.append(re.sub(r"（[^）]*）|\([^)]*\)", "", part).strip())
        found += [t.strip() for t in re.findall(r"（([^）]*)）", part)]
    return [t for t in found if t]


def _glossary_terms():
    """{mainland term (s2t): the Taiwan term} of the glossary, where the mainland term is not
    itself Taiwan usage (written the same, or part of a Taiwan term: 均值 in 平均值)."""
    rows = table_rows(GLOSSARY.read_text(encoding="utf-8"), [TAIWAN_COLUMN, MAINLAND_COLUMN])
    taiwan = [t for row in rows for t in terms(row[TAIWAN_COLUMN])]
    found = {}
    for row in rows:
        for term in terms(row[MAINLAND_COLUMN]):
            converted = S2T.convert(term)
            if HAN.search(converted) and not any(converted in t for t in taiwan):
                found[re.escape(converted)] = row[TAIWAN_COLUMN]
    return found


GLOSSARY_TERMS = _glossary_terms()


def without_marked_mainland(text):
    """text less the marked mainland usage: <span lang="zh-CN"> and the 中國大陸用語 column."""
    text = MAINLAND_SPAN.sub(" ", text)
    lines, column = text.splitlines(), None
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            column = None
            continue
        cells = line.strip().strip("|").split("|")
        if column is None and any(c.strip() == MAINLAND_COLUMN for c in cells):
            column = [c.strip() for c in cells].index(MAINLAND_COLUMN)
        elif column is not None and column < len(cells):
            cells[column] = " "
            lines[i] = "|" + "|".join(cells) + "|"
    return "\n".join(lines)


def simplified_characters(text):
    """{character: its s2t conversion} for every character s2t would change (ALLOWED aside)."""
    found = {}
    for ch in HAN.findall(text):
        converted = S2T.convert(ch)
        if converted != ch and ch not in ALLOWED:
            found[ch] = converted
    return found


def mainland_terms(text):
    """{mainland term found: the Taiwan term}, matched on the s2t-converted text."""
    converted = "".join(S2T.convert(ch) if HAN.match(ch) else ch for ch in text)
    return {
        re.search(term, converted).group(0): taiwan
        for term, taiwan in {**GLOSSARY_TERMS, **MAINLAND_TERMS}.items()
        if re.search(term, converted)
    }


def _documents():
    """(name, text) for each piece of course text that may hold Chinese."""
    docs = [
        (name, (ROOT / name).read_text(encoding="utf-8"))
        for name in ("README.md", "README.zh-TW.md", "translations/zh-TW/GLOSSARY.md")
        if (ROOT / name).is_file()
    ]
    for path in sorted((ROOT / "bnlib").rglob("*.py")):
        docs.append((str(path.relative_to(ROOT)), path.read_text()))
    catalogues = sorted((ROOT / "translations").rglob("*.po")) + sorted(
        (ROOT / "bnlib" / "locale").glob("*.po")
    )
    for path in catalogues:
        for entry in polib.pofile(str(path)):
            if entry.msgstr and not entry.obsolete:
                name = f"{path.relative_to(ROOT)} {entry.msgctxt or entry.msgid[:40]!r}"
                docs.append((name, entry.msgstr))
    for folder in ("notebooks", "solutions", "exercises"):
        for path in sorted((ROOT / folder).glob("*.ipynb")) + sorted(
            (ROOT / folder).glob("*/*.ipynb")
        ):
            nb = nbformat.read(path, as_version=4)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type in ("markdown", "code"):
                    docs.append((f"{path.relative_to(ROOT)} cell {i}", cell.source))
    return [(name, text) for name, text in docs if HAN.search(text)]


DOCUMENTS = _documents()


def test_the_course_has_chinese_to_check():
    assert any("06_exam_review" in name for name, _ in DOCUMENTS)
    assert any("GLOSSARY.md" in name for name, _ in DOCUMENTS)
    assert any(name.startswith("translations/zh-TW/06_exam_review.po") for name, _ in DOCUMENTS)
    assert any("notebooks/zh-TW/" in name for name, _ in DOCUMENTS)


def test_the_glossary_adds_its_mainland_terms_and_only_those():
    assert GLOSSARY_TERMS, "no mainland terms read from the glossary"
    found = mainland_terms("這個控件在幻燈片上，用單元格執行")
    assert {"控件", "幻燈片", "單元格"} <= set(found), found
    assert found["控件"] == "互動元件"
    # written the same in Taiwan (標準差), or part of a Taiwan term (均值 in 平均值): not added
    assert not mainland_terms("標準差、平均值、通道、梯度消失、內部共變量偏移、演算法")
    assert terms("訓練模式／推論（評估）模式") == ["訓練模式", "推論模式", "評估"]


def test_the_glossary_names_one_term_per_row_and_the_course_term_for_bn():
    rows = table_rows(GLOSSARY.read_text(encoding="utf-8"), ["English", TAIWAN_COLUMN])
    assert len(rows) > 40
    assert (
        rows[0]["English"] == "batch normalization (BN)" and rows[0][TAIWAN_COLUMN] == "批次正規化"
    )
    for row in rows:
        assert row["English"] and row[TAIWAN_COLUMN] and row[MAINLAND_COLUMN], row


def test_lesson_6_glossary_agrees_with_the_course_glossary():
    columns = ["English", TAIWAN_COLUMN]
    course = {r["English"]: r[TAIWAN_COLUMN] for r in table_rows(GLOSSARY.read_text(), columns)}
    nb = nbformat.read(ROOT / "notebooks" / "06_exam_review.ipynb", as_version=4)
    rows = [r for c in nb.cells if c.cell_type == "markdown" for r in table_rows(c.source, columns)]
    assert len(rows) > 20, "lesson 6's glossary table was not found"
    disagree = [
        (row["English"], row[TAIWAN_COLUMN], course[row["English"]])
        for row in rows
        if row["English"] in course
        and not set(terms(course[row["English"]])) <= set(terms(row[TAIWAN_COLUMN]))
    ]
    matched = [row for row in rows if row["English"] in course]
    assert len(matched) > 15, "few rows of lesson 6's glossary are in the course's"
    assert not disagree, f"lesson 6 vs {GLOSSARY.name} (English, lesson 6, glossary): {disagree}"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("批量归一化", {"归": "歸"}),
        ("数据与网络", {"数": "數", "据": "據", "与": "與", "网": "網", "络": "絡"}),
        ("臺灣的批次正規化、群組正規化、平台", {}),
    ],
)
def test_the_character_check_finds_simplified_and_allows_taiwan_forms(text, expected):
    assert simplified_characters(text) == expected


@pytest.mark.parametrize(
    "text, term",
    [
        ("激活函數", "激活"),
        ("方差", "方差"),
        ("默认值", "默認"),  # simplified spelling, found after conversion
        ("數據集", "數據"),
        ("模型質量", "質量"),
        ("均值與方差", "均值"),
        ("這個算法", "算法"),
        ("輸入變量", "變量"),
    ],
)
def test_the_term_check_finds_mainland_terms(text, term):
    assert term in mainland_terms(text)


def test_the_term_check_leaves_taiwan_usage_alone():
    taiwan = "平均值、變異數、演算法、最佳化、資料、預設、網路、激勵函數、品質、內部共變量偏移"
    assert not mainland_terms(taiwan)


def test_marked_mainland_usage_is_skipped_and_nothing_else():
    table = (
        "| English | 臺灣用語 | 中國大陸用語 | 說明 |\n|---|---|---|---|\n"
        "| variance | 變異數 | 方差 | 平均平方偏差 |\n\n不在表中的方差"
    )
    kept = without_marked_mainland(table)
    assert "變異數" in kept and "平均平方偏差" in kept
    assert mainland_terms(kept) == {"方差": "變異數"}  # the one outside the table
    span = '大陸譯為<span lang="zh-CN">批量归一化</span>，臺灣譯為批次正規化'
    assert not simplified_characters(without_marked_mainland(span))
    assert simplified_characters(span) == {"归": "歸"}


def test_every_allowed_character_is_one_s2t_changes():
    """An allowance s2t does not need is dead weight: drop it."""
    for ch, reason in ALLOWED.items():
        assert S2T.convert(ch) != ch and reason, ch


@pytest.mark.parametrize("name, text", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_no_simplified_characters(name, text):
    found = simplified_characters(without_marked_mainland(text))
    assert not found, f"{name}: Simplified characters (→ Traditional): {found}"


@pytest.mark.parametrize("name, text", DOCUMENTS, ids=[name for name, _ in DOCUMENTS])
def test_no_mainland_terms(name, text):
    found = mainland_terms(without_marked_mainland(text))
    assert not found, f"{name}: mainland terms (→ Taiwan usage): {found}"
