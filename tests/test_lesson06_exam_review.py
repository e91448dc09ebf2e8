"""Lesson 6 covers what it promises: the five exam points and the quiz page's ten questions, each
in English and Traditional Chinese with a link back to a lesson, a bilingual glossary, and a
formula and number sheet, and a self-check of at least 15 questions whose answers bnlib.quiz
accepts (the notebook asserts that itself; nbval replays it). That the Chinese is Taiwan's
(no Simplified characters, no mainland terms) is tests/test_chinese.py's job."""

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
        "activation",
        "regularization",
    ):
        assert term in terms, f"glossary misses {term!r}"
    rows = {row.split("|")[1].strip(): row for row in table}
    assert "移動平均統計量" in rows["running statistics"]
    assert "激勵" in rows["activation / activation function"]
    # in Taiwan 正規化 also means regularization: the glossary says which word is which
    assert "正則化" in rows["regularization"] and "正規化" in rows["regularization"]


def test_running_statistics_have_one_name_throughout():
    """「執行中統計量」 reads as "statistics of a running program": say 移動平均統計量."""
    text = "\n".join(c.source for c in NB.cells)
    assert "執行中統計量" not in text
    assert text.count("移動平均統計量") >= 5


SHEET_FACTS = [
    # the formulas: Alg. 1, Alg. 2 with the unbiased factor, the closed-form backward
    r"\sigma_B^2 + \epsilon",
    r"\frac{N}{N-1}\, E_B[\sigma_B^2]",
    r"\overline{dy\, \hat{x}}",
    # the running averages, PyTorch against Keras
    "(1 - m)\\,\\text{running} + m",
    "m\\,\\text{moving} + (1 - m)",
    "0.99",
    # a BN layer over C channels
    "$2C$ learned",
    "$4C + 1$",
    # Batch Renorm's r and d
    r"\frac{\sigma_B}{\sigma}",
    r"\frac{\mu_B - \mu}{\sigma}",
    # the axes
    "| BN | (N, H, W) |",
    "| LN | (C, H, W) |",
    "| IN | (H, W) |",
    "| GN | (C/G, H, W) |",
    # Wu & He, Fig. 1 / Table 2 and Table 1
    "| BN | 23.6 | 23.7 | 24.8 | 27.3 | 34.7 |",
    "| GN (G = 32) | 24.1 | 24.2 | 24.0 | 24.2 | 24.1 |",
    "BN 23.6, LN 25.3, IN 28.4, GN 24.1",
    "BN 23.6、LN 25.3、IN 28.4、GN 24.1",
]


@pytest.mark.parametrize("fact", SHEET_FACTS)
def test_the_formula_sheet_states(fact):
    assert fact in SECTIONS["sheet"], f"the formula sheet misses {fact!r}"


def test_the_formula_sheet_is_in_both_languages_and_checks_itself():
    text = SECTIONS["sheet"]
    assert len(CJK.findall(text)) >= 200 and len(LATIN_WORD.findall(text)) >= 150
    assert "learned == 2 * C" in text and "2 * C + 1" in text, "the parameter count is computed"
    assert "allclose(x.grad, dx" in text, "the closed-form backward is checked against autograd"


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


def test_medium_q4_names_the_retuning_the_paper_prescribes():
    text = " ".join(SECTIONS["q9"].split())  # line breaks do not matter
    for step in (
        "raise the learning rate",
        "remove dropout",
        "reduce the L2 weight decay by 5x",
        "decay the learning rate 6x faster",
        "remove local response normalization",
        "shuffle the training examples more thoroughly",
        "reduce photometric distortions",
    ):
        assert step in text, f"medium Q4 misses Ioffe & Szegedy's {step!r}"
    assert "§4.2.1" in text
    for step in ("提高學習率", "拿掉 dropout", "五分之一", "加快 6 倍", "LRN", "打亂", "光度失真"):
        assert step in text, f"medium Q4 misses, in Chinese, {step!r}"


def test_the_gan_row_does_not_claim_bn_makes_gans_more_stable():
    row = next(line for line in SECTIONS["other-claims"].splitlines() if "GAN" in line)
    assert "more stable" not in row and "oscillation" in row


def test_one_language_per_printed_line():
    """Every line a code cell prints is English or Chinese, not both (a quiz widget aside)."""
    mixed = []
    for i, cell in enumerate(NB.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if CJK.search(line) and LATIN_WORD.search(line):
                    mixed.append(f"cell {i}: {line}")
    assert not mixed, "\n".join(mixed)
