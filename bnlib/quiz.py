"""Self-check quizzes: multiple-choice and numeric questions with instant feedback.

A `Quiz` holds `MultipleChoice` and `Numeric` questions. The marking is pure logic,
`quiz.check_answer(i, response) -> (correct, feedback)`, so it is tested without a browser; the
widget (`quiz.widget()`) only wires buttons to it. Displayed in Jupyter, a quiz is live widgets;
where no widget front end runs (nbconvert, nbval, a code host's notebook viewer) it shows as text
and static HTML listing the questions and choices, never the answers.

Feedback starts with "Correct." or "Not quite.", then a hint for a recognized wrong answer (if the
question has one), then the explanation. A score line counts the questions answered right.

Every text is shown in the notebook's language (`bnlib.i18n`): the quiz's own words ("Check", the
score line) and the texts a notebook gives it (title, questions, choices, hints, explanations,
units), looked up at display time in bnlib/locale/zh-TW.po, where `python -m bnlib.translate
extract` collects the string literals of every `Quiz`, `MultipleChoice` and `Numeric` in the
notebooks. So write those texts as literals (not f-strings), and keep numbers in `answer`.

CSS classes, a contract with the browser tests: the quiz `bnlib-quiz`; each
question `bnlib-quiz-question`; its radio buttons `bnlib-quiz-options`; a numeric input
`bnlib-quiz-input`; its button `bnlib-quiz-check`; its feedback `bnlib-quiz-feedback` (plus
`bnlib-quiz-correct` or `bnlib-quiz-wrong` once checked); the score line `bnlib-quiz-score`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from bnlib.i18n import N_, _

__all__ = ["MultipleChoice", "Numeric", "Quiz", "parse_number"]

CORRECT = N_("Correct.")
WRONG = N_("Not quite.")


def _join(*parts):
    """The parts as one text: a space between sentences, none after Chinese punctuation (。)."""
    text = ""
    for part in filter(None, parts):
        text += ("" if not text or text[-1] in "。！？；：」』）" else " ") + part
    return text


@dataclass(frozen=True)
class MultipleChoice:
    """A question with one right choice among several.

    question: the text; choices: two or more option texts; answer: the index of the right one;
    explanation: shown after every check, right or wrong;
    hints: optional {index of a wrong choice: what that choice gets wrong}, shown before the
    explanation when the learner picks it (name the misconception, not just "wrong").
    """

    question: str
    choices: Sequence[str]
    answer: int
    explanation: str
    hints: Mapping[int, str] | None = None

    def __post_init__(self):
        choices = tuple(str(c) for c in self.choices)
        object.__setattr__(self, "choices", choices)
        if len(choices) < 2:
            raise ValueError(f"MultipleChoice: expected at least 2 choices, got {len(choices)}")
        if len(set(choices)) != len(choices):
            raise ValueError(f"MultipleChoice: choices must differ, got {choices}")
        if not isinstance(self.answer, int) or not 0 <= self.answer < len(choices):
            raise ValueError(
                f"MultipleChoice: answer must be an index in 0..{len(choices) - 1}, "
                f"got {self.answer!r}"
            )
        hints = dict(self.hints or {})
        for k in hints:
            if not isinstance(k, int) or not 0 <= k < len(choices) or k == self.answer:
                raise ValueError(
                    f"MultipleChoice: hints are keyed by the index of a wrong choice "
                    f"(0..{len(choices) - 1}, not the answer {self.answer}), got {k!r}"
                )
        object.__setattr__(self, "hints", hints)

    def _index(self, response):
        """The chosen index from an index or a choice's text; None when nothing is chosen."""
        if response is None:
            return None
        if isinstance(response, str):
            if response in self.choices:
                return self.choices.index(response)
            shown = [_(c) for c in self.choices]  # the text as the learner reads it
            if response in shown:
                return shown.index(response)
            raise ValueError(
                f"MultipleChoice: response {response!r} is not one of the choices {self.choices}"
            )
        if isinstance(response, bool) or not isinstance(response, int):
            raise TypeError(
                f"MultipleChoice: expected a choice's index or text, got {type(response).__name__}"
            )
        if not 0 <= response < len(self.choices):
            raise ValueError(
                f"MultipleChoice: response must be in 0..{len(self.choices) - 1}, got {response}"
            )
        return response

    def check(self, response):
        """Mark a response (a choice's index or text; None = nothing picked).

        Returns (correct, feedback).
        """
        return self._mark(response)[1:]

    def _mark(self, response):
        """(marked, correct, feedback): marked is False when nothing was chosen."""
        i = self._index(response)
        if i is None:
            return False, False, _("Pick one of the options first.")
        if i == self.answer:
            return True, True, _join(_(CORRECT), _(self.explanation))
        hint = self.hints.get(i)
        return True, False, _join(_(WRONG), hint and _(hint), _(self.explanation))

    def text(self):
        """The question and its lettered choices, without the answer."""
        lines = [_(self.question)]
        lines += [f"   ({chr(97 + k)}) {_(c)}" for k, c in enumerate(self.choices)]
        return "\n".join(lines)

    def html(self):
        items = "".join(f"<li>{html.escape(_(c))}</li>" for c in self.choices)
        return f'{html.escape(_(self.question))}<ol type="a">{items}</ol>'


def parse_number(response):
    """A float from a number or from text such as "0.5", "-2", "1e-5", "1/4" or "0,5".

    Returns None for an empty response; raises ValueError for text that is not a number.
    """
    if response is None:
        return None
    if isinstance(response, bool):
        raise ValueError(f"expected a number, got {response!r}")
    if isinstance(response, int | float):
        return float(response)
    text = str(response).strip().replace("\u2212", "-")  # U+2212, the minus sign of typeset text
    if not text:
        return None
    if text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")  # a decimal comma, as many countries write 0,5
    try:
        return float(Fraction(text.replace(" ", "")))  # "1/4" as well as "0.25", "1e-5"
    except (ValueError, ZeroDivisionError):
        pass
    try:
        return float(text)  # "inf", "nan" and the like: wrong, but numbers
    except ValueError:
        raise ValueError(f"expected a number such as 0.5, -2 or 1/4, got {response!r}") from None


@dataclass(frozen=True)
class Numeric:
    """A question whose answer is a number, right within an absolute tolerance.

    question: the text (say how many decimals are wanted); answer: the value; tol: accepted
    |response - answer| (> 0); explanation: shown after every check; unit: shown next to the input;
    hints: optional {a likely wrong value: the mistake that gives it}, matched within tol.
    """

    question: str
    answer: float
    tol: float
    explanation: str
    unit: str | None = None
    hints: Mapping[float, str] | None = None

    def __post_init__(self):
        if not math.isfinite(self.answer):
            raise ValueError(f"Numeric: answer must be a finite number, got {self.answer!r}")
        if not self.tol > 0:
            raise ValueError(f"Numeric: tol must be > 0, got {self.tol!r}")
        hints = {float(k): v for k, v in (self.hints or {}).items()}
        for k in hints:
            if abs(k - self.answer) <= self.tol:
                raise ValueError(
                    f"Numeric: a hint's value must be wrong (farther than tol={self.tol} from "
                    f"{self.answer}), got {k}"
                )
        object.__setattr__(self, "hints", hints)

    def check(self, response):
        """Mark a response (a number or its text; None or "" = nothing typed).

        Returns (correct, feedback).
        """
        return self._mark(response)[1:]

    def _mark(self, response):
        """(marked, correct, feedback): marked is False when the response is not a number."""
        try:
            value = parse_number(response)
        except ValueError:
            got = repr(str(response))
            return (
                False,
                False,
                _("Type a number, such as 0.5, -2 or 1/4 (got {got}).").format(got=got),
            )
        if value is None:
            return False, False, _("Type a number first.")
        if abs(value - self.answer) <= self.tol:  # False for nan
            return True, True, _join(_(CORRECT), _(self.explanation))
        hint = next((h for k, h in self.hints.items() if abs(value - k) <= self.tol), None)
        return True, False, _join(_(WRONG), hint and _(hint), _(self.explanation))

    def text(self):
        """The question (and its unit), without the answer."""
        if not self.unit:
            return _(self.question)
        return _(self.question) + "   " + _("[answer in {unit}]").format(unit=_(self.unit))

    def html(self):
        unit = ""
        if self.unit:
            unit = " <i>" + html.escape(_("(answer in {unit})").format(unit=_(self.unit))) + "</i>"
        answer = html.escape(_("Your answer: a number."))
        return f"{html.escape(_(self.question))}{unit}<br><i>{answer}</i>"


class Quiz:
    """A titled list of questions; shows itself as widgets in Jupyter and as text elsewhere.

    title: str; questions: MultipleChoice and Numeric questions (at least one).
    """

    def __init__(self, title, questions):
        questions = list(questions)
        if not questions:
            raise ValueError("Quiz: expected at least one question, got none")
        for k, q in enumerate(questions):
            if not isinstance(q, MultipleChoice | Numeric):
                raise TypeError(
                    f"Quiz: question {k + 1} must be a MultipleChoice or a Numeric, "
                    f"got {type(q).__name__}"
                )
        self.title = str(title)
        self.questions = tuple(questions)

    def __len__(self):
        return len(self.questions)

    def check_answer(self, i, response):
        """Mark `response` to question i (0-based). Returns (correct: bool, feedback: str)."""
        return self._mark(i, response)[1:]

    def _mark(self, i, response):
        if not 0 <= i < len(self.questions):
            raise IndexError(f"Quiz: question index must be in 0..{len(self) - 1}, got {i}")
        return self.questions[i]._mark(response)

    def score(self, responses):
        """How many of `responses` (one per question, None = unanswered) are right."""
        responses = list(responses)
        if len(responses) != len(self):
            raise ValueError(f"Quiz: expected {len(self)} responses, got {len(responses)}")
        return sum(self.check_answer(i, r)[0] for i, r in enumerate(responses))

    def score_line(self, results):
        """The summary line from each question's latest result (True, False, None = unchecked)."""
        results = list(results)
        if len(results) != len(self):
            raise ValueError(f"Quiz: expected {len(self)} results, got {len(results)}")
        right = sum(r is True for r in results)
        unchecked = sum(r is None for r in results)
        counts = dict(right=right, total=len(self), unchecked=unchecked)
        if unchecked == len(self):
            line = _("Score: {right} / {total} right (check an answer to start)")
        elif unchecked:
            line = _("Score: {right} / {total} right ({unchecked} not checked yet)")
        elif right == len(self):
            line = _("Score: {right} / {total} right — all right, well done.")
        else:
            line = _("Score: {right} / {total} right")
        return line.format(**counts)

    # --- static views: the questions and choices, never the answers ----------------------------

    def text(self):
        title = _(self.title)
        parts = [title, "=" * len(title)]
        for k, q in enumerate(self.questions, 1):
            parts.append(f"{k}. " + q.text())
        parts.append(_("(Run this notebook in Jupyter to check your answers.)"))
        return "\n".join(parts)

    def html(self):
        items = "".join(f"<li>{q.html()}</li>" for q in self.questions)
        run = html.escape(_("Run this notebook in Jupyter to check your answers."))
        return (
            f'<div class="bnlib-quiz-static"><b>{html.escape(_(self.title))}</b><ol>{items}</ol>'
            f"<i>{run}</i></div>"
        )

    def __repr__(self):
        return f"Quiz({self.title!r}, {len(self)} questions)"

    # --- the live view ---------------------------------------------------------------------------

    def widget(self):
        """A fresh VBox: each question with its options or input, a Check button and feedback."""
        import ipywidgets as w

        results = [None] * len(self)
        score = w.HTML(html.escape(self.score_line(results))).add_class("bnlib-quiz-score")
        boxes = [w.HTML(f"<b>{html.escape(_(self.title))}</b>")]
        for i, q in enumerate(self.questions):
            prompt = w.HTML(f"<b>{i + 1}.</b> {html.escape(_(q.question))}")
            prompt.layout.width = "100%"
            if isinstance(q, MultipleChoice):
                answer = w.RadioButtons(
                    options=[(_(c), k) for k, c in enumerate(q.choices)],
                    value=None,
                    layout=w.Layout(width="auto"),
                ).add_class("bnlib-quiz-options")
            else:
                answer = w.Text(
                    placeholder=_("a number, e.g. 0.5 or 1/4"), layout=w.Layout(width="16em")
                ).add_class("bnlib-quiz-input")
            button = w.Button(description=_("Check"), button_style="primary").add_class(
                "bnlib-quiz-check"
            )
            feedback = w.HTML("").add_class("bnlib-quiz-feedback")
            feedback.layout.width = "100%"

            def on_check(_, i=i, answer=answer, feedback=feedback):
                response = answer.value if answer.value != "" else None
                marked, correct, text = self._mark(i, response)
                feedback.value = html.escape(text)
                feedback.remove_class("bnlib-quiz-correct").remove_class("bnlib-quiz-wrong")
                feedback.style.text_color = None
                # Only a marked answer counts; "pick an option first" leaves the score alone.
                if marked:
                    results[i] = correct
                    feedback.add_class("bnlib-quiz-correct" if correct else "bnlib-quiz-wrong")
                    feedback.style.text_color = "#1a7f37" if correct else "#b42318"
                score.value = html.escape(self.score_line(results))

            button.on_click(on_check)
            if isinstance(q, MultipleChoice):  # the options one under another, then the button
                rows = [answer, button]
            else:  # the input, its unit and the button on one line
                rows = [w.HBox([answer] + ([w.Label(_(q.unit))] if q.unit else []) + [button])]
            box = w.VBox([prompt, *rows, feedback]).add_class("bnlib-quiz-question")
            box.layout.margin = "0 0 12px 0"
            boxes.append(box)
        boxes.append(score)
        return w.VBox(boxes).add_class("bnlib-quiz")

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.widget()._repr_mimebundle_() or {}
        bundle["text/plain"] = self.text()
        bundle["text/html"] = self.html()
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle
