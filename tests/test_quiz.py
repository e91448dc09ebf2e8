"""bnlib.quiz: marking logic, the text fallback (questions without answers), and the widget."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bnlib.quiz import MultipleChoice, Numeric, Quiz, parse_number

MC = MultipleChoice(
    "Over which axes does BatchNorm2d average an (N, C, H, W) input?",
    ["(N,)", "(N, H, W)", "(C, H, W)"],
    answer=1,
    explanation="One mean per channel, over every sample and position: EXPLAIN-MC.",
    hints={2: "That is layer norm: HINT-LN."},
)
NUM = Numeric(
    "x = 2, 4, 4, 4, 5, 5, 7, 9. What is xhat for x = 9?",
    answer=2.0,
    tol=0.01,
    explanation="mean 5, biased std 2: EXPLAIN-NUM.",
    unit="standard deviations",
    hints={1.8708: "You divided by N - 1: HINT-UNBIASED."},
)
ODD = Numeric("What is 1/sqrt(2)?", answer=0.7071, tol=1e-3, explanation="EXPLAIN-ODD.")


def make_quiz():
    return Quiz("Check yourself", [MC, NUM, ODD])


# --- multiple choice -----------------------------------------------------------------------------


def test_multiple_choice_right_answer_by_index_and_by_text():
    for response in (1, "(N, H, W)"):
        correct, feedback = MC.check(response)
        assert correct
        assert feedback.startswith("Correct.")
        assert "EXPLAIN-MC" in feedback


def test_multiple_choice_wrong_answer_gives_its_hint_then_the_explanation():
    correct, feedback = MC.check(2)
    assert not correct
    assert feedback.startswith("Not quite.")
    assert feedback.index("HINT-LN") < feedback.index("EXPLAIN-MC")
    correct, feedback = MC.check(0)  # a wrong choice without a hint
    assert not correct and "HINT-LN" not in feedback and "EXPLAIN-MC" in feedback


def test_multiple_choice_without_a_pick_is_not_marked():
    correct, feedback = MC.check(None)
    assert not correct
    assert not feedback.startswith(("Correct.", "Not quite."))


@pytest.mark.parametrize(
    "response, error", [(3, ValueError), (-1, ValueError), ("(D,)", ValueError), (True, TypeError)]
)
def test_multiple_choice_rejects_responses_that_are_no_choice(response, error):
    with pytest.raises(error):
        MC.check(response)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(choices=["a"], answer=0), "at least 2"),
        (dict(choices=["a", "a"], answer=0), "differ"),
        (dict(choices=["a", "b"], answer=2), "index"),
        (dict(choices=["a", "b"], answer=0, hints={0: "x"}), "wrong choice"),
        (dict(choices=["a", "b"], answer=0, hints={5: "x"}), "wrong choice"),
    ],
)
def test_multiple_choice_validates_its_definition(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultipleChoice("q?", explanation="e", **kwargs)


# --- numeric -------------------------------------------------------------------------------------


@pytest.mark.parametrize("response", [2.0, 2, "2", " 2.005 ", "1.995", "2,00", "4/2", "20e-1"])
def test_numeric_accepts_values_within_the_tolerance(response):
    correct, feedback = NUM.check(response)
    assert correct, (response, feedback)
    assert feedback.startswith("Correct.") and "EXPLAIN-NUM" in feedback


@pytest.mark.parametrize("response", [2.02, "1.98", "-2", "\u22122", "nan", "inf", -math.inf])
def test_numeric_rejects_values_outside_the_tolerance(response):
    correct, feedback = NUM.check(response)
    assert not correct
    assert feedback.startswith("Not quite.") and "EXPLAIN-NUM" in feedback


def test_numeric_hint_names_the_mistake_behind_a_likely_wrong_value():
    correct, feedback = NUM.check("1.87")
    assert not correct and "HINT-UNBIASED" in feedback
    assert "HINT-UNBIASED" not in NUM.check("1.5")[1]


@pytest.mark.parametrize("response", [None, "", "   "])
def test_numeric_empty_response_asks_for_a_number(response):
    correct, feedback = NUM.check(response)
    assert not correct and feedback == "Type a number first."


@pytest.mark.parametrize("response", ["two", "1/0", "2..0", True])
def test_numeric_unparseable_response_is_not_marked(response):
    correct, feedback = NUM.check(response)
    assert not correct
    assert feedback.startswith("Type a number")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(answer=1.0, tol=0.0), "tol"),
        (dict(answer=1.0, tol=-1.0), "tol"),
        (dict(answer=math.nan, tol=0.1), "finite"),
        (dict(answer=1.0, tol=0.1, hints={1.05: "x"}), "must be wrong"),
    ],
)
def test_numeric_validates_its_definition(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Numeric("q?", explanation="e", **kwargs)


def test_parse_number():
    assert parse_number("1/4") == 0.25
    assert parse_number("1e-5") == 1e-5
    assert parse_number("0,5") == 0.5
    assert parse_number("\u22123") == -3.0
    assert parse_number("") is None and parse_number(None) is None
    with pytest.raises(ValueError):
        parse_number("1,000.5,")


@given(
    answer=st.floats(-1e6, 1e6),
    tol=st.floats(1e-6, 1e3),
    response=st.floats(allow_nan=True, allow_infinity=True),
)
def test_numeric_is_right_exactly_within_the_tolerance(answer, tol, response):
    q = Numeric("q?", answer=answer, tol=tol, explanation="e")
    assert q.check(response)[0] == (abs(response - answer) <= tol)


# --- the quiz ------------------------------------------------------------------------------------


def test_quiz_check_answer_and_score():
    quiz = make_quiz()
    assert quiz.check_answer(0, 1)[0] and not quiz.check_answer(1, "1.87")[0]
    assert quiz.score([1, "2", "0.7071"]) == 3
    assert quiz.score([0, "2", None]) == 1
    with pytest.raises(IndexError):
        quiz.check_answer(3, 0)
    with pytest.raises(ValueError, match="expected 3 responses"):
        quiz.score([1])


def test_quiz_score_line():
    quiz = make_quiz()
    assert quiz.score_line([None] * 3).startswith("Score: 0 / 3")
    assert quiz.score_line([True, False, None]) == "Score: 1 / 3 right (1 not checked yet)"
    assert quiz.score_line([True, True, True]).startswith("Score: 3 / 3 right")


def test_quiz_validates_questions():
    with pytest.raises(ValueError):
        Quiz("empty", [])
    with pytest.raises(TypeError, match="question 2"):
        Quiz("bad", [MC, "What is BN?"])


def test_text_fallback_lists_questions_and_choices_but_not_answers():
    quiz = make_quiz()
    bundle = quiz._repr_mimebundle_()
    for view in (bundle["text/plain"], bundle["text/html"]):
        assert "Check yourself" in view
        assert "BatchNorm2d" in view and "1/sqrt(2)" in view  # the questions
        assert "(C, H, W)" in view  # a choice (html-escaped text keeps the parentheses)
        for secret in ("EXPLAIN", "HINT", "0.7071", "1.8708"):
            assert secret not in view, secret
    assert "standard deviations" in bundle["text/plain"]  # the unit, not the value
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert set(quiz._repr_mimebundle_(include={"text/plain"})) == {"text/plain"}


# --- the widget ----------------------------------------------------------------------------------


def _find(widget, css_class):
    """All widgets under `widget` (itself included) that carry `css_class`."""
    found = [widget] if css_class in widget._dom_classes else []
    for child in getattr(widget, "children", ()):
        found += _find(child, css_class)
    return found


def test_widget_has_the_css_hooks_of_the_browser_test():
    box = make_quiz().widget()
    assert "bnlib-quiz" in box._dom_classes
    assert len(_find(box, "bnlib-quiz-question")) == 3
    assert len(_find(box, "bnlib-quiz-options")) == 1
    assert len(_find(box, "bnlib-quiz-input")) == 2
    assert len(_find(box, "bnlib-quiz-check")) == 3
    assert len(_find(box, "bnlib-quiz-feedback")) == 3
    assert len(_find(box, "bnlib-quiz-score")) == 1


def test_widget_marks_answers_and_updates_the_score():
    box = make_quiz().widget()
    questions = _find(box, "bnlib-quiz-question")
    (score,) = _find(box, "bnlib-quiz-score")

    def answer(k, css_class, value):
        (field,) = _find(questions[k], css_class)
        field.value = value
        (_find(questions[k], "bnlib-quiz-check")[0]).click()
        return _find(questions[k], "bnlib-quiz-feedback")[0]

    feedback = answer(0, "bnlib-quiz-options", 2)
    assert feedback.value.startswith("Not quite.") and "HINT-LN" in feedback.value
    assert "bnlib-quiz-wrong" in feedback._dom_classes
    assert score.value.startswith("Score: 0 / 3")
    feedback = answer(0, "bnlib-quiz-options", 1)
    assert feedback.value.startswith("Correct.")
    assert "bnlib-quiz-correct" in feedback._dom_classes
    assert "bnlib-quiz-wrong" not in feedback._dom_classes
    assert score.value.startswith("Score: 1 / 3")
    feedback = answer(1, "bnlib-quiz-input", "two")  # not a number: not marked
    assert feedback.value.startswith("Type a number")
    assert not {"bnlib-quiz-correct", "bnlib-quiz-wrong"} & set(feedback._dom_classes)
    assert score.value == "Score: 1 / 3 right (2 not checked yet)"
    answer(1, "bnlib-quiz-input", "2.0")
    answer(2, "bnlib-quiz-input", "0.707")
    assert score.value.startswith("Score: 3 / 3 right")


def test_each_widget_keeps_its_own_score():
    quiz = make_quiz()
    first, second = quiz.widget(), quiz.widget()
    question = _find(first, "bnlib-quiz-question")[0]
    _find(question, "bnlib-quiz-options")[0].value = 1
    _find(question, "bnlib-quiz-check")[0].click()
    assert _find(first, "bnlib-quiz-score")[0].value.startswith("Score: 1 / 3")
    assert _find(second, "bnlib-quiz-score")[0].value.startswith("Score: 0 / 3")


# --- the notebook's language ---------------------------------------------------------------------

ZH = {
    "Check yourself": "自我檢測",
    MC.question: "BatchNorm2d 對 (N, C, H, W) 輸入沿哪些軸平均？",
    "(C, H, W)": "(C, H, W)（層正規化）",
    MC.explanation: "每個通道一個平均值：EXPLAIN-MC-ZH。",
    "That is layer norm: HINT-LN.": "那是層正規化：HINT-LN-ZH。",
    "standard deviations": "個標準差",
    "Correct.": "正確。",
    "Not quite.": "不太對。",
    "Check": "檢查",
    "Type a number first.": "請先輸入數字。",
    "[answer in {unit}]": "［答案單位：{unit}］",
    "Score: {right} / {total} right ({unchecked} not checked yet)": (
        "得分：{right} / {total}（{unchecked} 題尚未檢查）"
    ),
    "(Run this notebook in Jupyter to check your answers.)": (
        "（在 Jupyter 中執行本筆記本即可檢查答案。）"
    ),
}


@pytest.fixture
def in_chinese(monkeypatch):
    """The notebook's language is zh-TW, with ZH as its catalogue."""
    from bnlib import i18n

    monkeypatch.setattr(i18n, "_translations", lambda language: ZH if language == "zh-TW" else {})
    i18n.set_language("zh-TW")
    yield
    i18n.set_language("en")


def test_quiz_texts_and_feedback_speak_the_notebook_language(in_chinese):
    correct, feedback = MC.check(2)
    assert (
        not correct
        and feedback == "不太對。那是層正規化：HINT-LN-ZH。每個通道一個平均值：EXPLAIN-MC-ZH。"
    )
    assert MC.check("(C, H, W)（層正規化）") == MC.check(2)  # a choice as the learner reads it
    assert NUM.check(None) == (False, "請先輸入數字。")
    text = make_quiz().text()
    assert text.startswith("自我檢測\n") and "BatchNorm2d 對" in text
    assert "(c) (C, H, W)（層正規化）" in text and "［答案單位：個標準差］" in text
    assert "（在 Jupyter 中執行本筆記本即可檢查答案。）" in text
    assert "x = 2, 4, 4, 4, 5, 5, 7, 9" in text  # a text without a translation stays English
    assert make_quiz().score_line([True, False, None]) == "得分：1 / 3（1 題尚未檢查）"


def test_widget_speaks_the_notebook_language(in_chinese):
    box = make_quiz().widget()
    assert {b.description for b in _find(box, "bnlib-quiz-check")} == {"檢查"}
    question = _find(box, "bnlib-quiz-question")[0]
    (options,) = _find(question, "bnlib-quiz-options")
    assert options.options[2] == ("(C, H, W)（層正規化）", 2)
    options.value = 1
    _find(question, "bnlib-quiz-check")[0].click()
    feedback = _find(question, "bnlib-quiz-feedback")[0]
    assert feedback.value.startswith("正確。") and "bnlib-quiz-correct" in feedback._dom_classes
    assert _find(box, "bnlib-quiz-score")[0].value == "得分：1 / 3（2 題尚未檢查）"
