"""Lesson 6 covers what it promises: the five exam points and the quiz page's ten questions, each
in English and Traditional Chinese with a link back to a lesson, a bilingual glossary, and a
self-check of at least 15 questions whose answers bnlib.quiz accepts (the notebook asserts that
itself; nbval replays it)."""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NB = nbformat.read(ROOT / "notebooks" / "06_exam_review.ipynb", as_version=4)
CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
EXAM_POINTS = [f"ep{k}" for k in range(1, 6)]
QUESTIONS = [f"q{k}" for k in range(1, 11)]


def sections():
    """{anchor id: the markdown and code of its cells, up to the next anchor}."""
    found, current = {}, None
    for cell in NB.cells:
        m = re.search(r'<a id="([\w-]+)"></a>', cell.source)
        if m and cell.cell_type == "markdown":
            current = m.group(1)
            found[current] = ""
        elif cell.cell_type == "markdown" and cell.source.startswith("## "):
            current = None  # a new part ends the section
        if current:
            found[current] += cell.source + "\n"
    return found


SECTIONS = sections()


@pytest.mark.parametrize("anchor", EXAM_POINTS + QUESTIONS)
def test_each_exam_point_and_question_is_answered_in_both_languages(anchor):
    text = SECTIONS.get(anchor)
    assert text, f"no section with anchor {anchor}"
    assert len(CJK.findall(text)) >= 80, f"{anchor}: too little Traditional Chinese"
    assert len(LATIN_WORD.findall(text)) >= 40, f"{anchor}: too little English"


@pytest.mark.parametrize("anchor", EXAM_POINTS)
def test_each_exam_point_links_its_lesson_and_computes_something(anchor):
    text = SECTIONS[anchor]
    assert re.search(r"\]\(0[1-5]_\w+\.ipynb\)", text), f"{anchor}: no link to a lesson"
    assert "assert" in text or "print(" in text, f"{anchor}: nothing computed"


def test_simplified_characters_do_not_slip_into_the_taiwanese_text():
    # the mainland terms are named on purpose in the glossary and the terms note; elsewhere the
    # text is Traditional Chinese, so common simplified forms must not appear
    simplified = set("归络训练习数据层单处这为确变规标类网图样种时个输计测")
    rest = [c.source for c in NB.cells if 'id="glossary"' not in c.source]
    rest = [s for s in rest if "用語說明" not in s]
    found = {ch for s in rest for ch in s if ch in simplified}
    assert not found, f"simplified characters outside the glossary: {sorted(found)}"


def test_glossary_is_bilingual_and_complete():
    table = [line for line in SECTIONS["glossary"].splitlines() if line.startswith("| ")][2:]
    assert len(table) >= 20, "the glossary should define at least 20 terms"
    for row in table:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, row
        english, taiwan, mainland, meaning = cells
        assert LATIN_WORD.search(english) and CJK.search(taiwan) and CJK.search(meaning), row
    terms = " ".join(table).lower()
    for term in (
        "internal covariate shift",
        "moving average",
        "scale and shift",
        "epsilon",
        "layer normalization",
        "instance normalization",
        "group normalization",
        "running statistics",
        "momentum",
    ):
        assert term in terms, f"glossary misses {term!r}"


def test_self_check_has_at_least_15_questions_checked_by_bnlib_quiz():
    quiz = next(c.source for c in NB.cells if "SELF_CHECK = Quiz(" in c.source)
    count = quiz.count("MultipleChoice(") + quiz.count("Numeric(")
    assert count >= 15
    assert "SELF_CHECK.score([q.answer for q in SELF_CHECK.questions]) == len(SELF_CHECK)" in quiz
    numeric = quiz.count("Numeric(")
    assert numeric >= 5 and quiz.count('ANSWERS["') >= 4, "numeric answers must come from ANSWERS"
    answers_cell = next(c.source for c in NB.cells if "ANSWERS = {" in c.source)
    assert "F.batch_norm" in answers_cell, "the BN answers must be computed by bnlib"


def test_the_wrong_answers_of_the_page_are_named_and_refuted():
    for anchor in ("q6", "q7", "q8", "q9", "q10"):
        text = SECTIONS[anchor]
        assert "What is wrong" in text and "問題所在" in text, anchor
        assert re.search(r"lesson \d|第.課", text), f"{anchor}: no pointer to the evidence"
