"""The exercises as data for the check engine: one module per exercise, each with its EXERCISE
id and its TASKS (bnlib.grading.engine.Task), in the order the notebook asks for them.

`TASKS` maps an exercise id to its tasks; `bnlib grade` grades a notebook with them.
"""

from bnlib.grading.exercises import ex01, ex02, ex03, ex04, ex05

__all__ = ["TASKS"]

TASKS: dict[str, list] = {m.EXERCISE: list(m.TASKS) for m in (ex01, ex02, ex03, ex04, ex05)}
