"""The exercises' self-checks: `check_*(your functions) -> CheckResult`.

Each check runs your code on hidden cases, compares it with bnlib's float64 reference and names
the likely mistake when it fails. The result shows itself as a PASS/FAIL box in Jupyter and as one
line of text elsewhere; a check never raises, whatever your code does.

    from bnlib.checks import check_batchnorm_forward
    check_batchnorm_forward(batchnorm_forward)

The checks are the tasks of bnlib/grading/exercises/exNN.py, run by the check engine
(bnlib.grading.engine), the same way `bnlib grade` runs them.
"""

from bnlib.grading.engine import CheckResult
from bnlib.grading.exercises import TASKS
from bnlib.grading.exercises.ex01 import (
    check_batchnorm_backward,
    check_batchnorm_forward,
    check_spatial_batchnorm_backward,
    check_spatial_batchnorm_forward,
)
from bnlib.grading.exercises.ex02 import (
    check_batchnorm_eval,
    check_batchnorm_module,
    check_fold_bn,
    check_running_stats,
)
from bnlib.grading.exercises.ex03 import check_layer_percentiles, check_noisy_bn

__all__ = [
    "CheckResult",
    "check_batchnorm_backward",
    "check_batchnorm_eval",
    "check_batchnorm_forward",
    "check_batchnorm_module",
    "check_fold_bn",
    "check_layer_percentiles",
    "check_noisy_bn",
    "check_running_stats",
    "check_spatial_batchnorm_backward",
    "check_spatial_batchnorm_forward",
]


# --- TEMPORARY (phase 1 of issue 15): the old private API, for checks_ex04.py and checks_ex05.py --
# They still import these names from here and register their tasks through `task`. Phase 2 moves
# exercises 4 and 5 to bnlib/grading/exercises/ as Tasks and deletes this block (and the
# CALL_TIMEOUT/CHECK_TIMEOUT copies, which their tests patch here). Do not use it in new code.
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from bnlib.grading import engine as _engine  # noqa: E402
from bnlib.grading.engine import (  # noqa: E402, F401
    Mistake,
    hidden_cases,  # noqa: E402, F401
    matching_mistakes,
    outputs_match,
)
from bnlib.grading.exercises.ex01 import normalized as _xhat  # noqa: E402, F401

_CallError, _EpsCase, _Outcome, _Stop = (
    _engine.CallError,
    _engine.EpsCase,
    _engine.Outcome,
    _engine.Stop,
)
_array_problem, _call, _case_rng, _case_seed = (
    _engine.array_problem,
    _engine.call,
    _engine.case_rng,
    _engine.case_seed,
)
_describe_exception, _fail, _guarded, _label = (
    _engine.describe_exception,
    _engine.fail,
    _engine.guarded,
    _engine.label_of,
)
_mismatch, _modified, _not_callable, _one_line = (
    _engine.mismatch,
    _engine.modified,
    _engine.not_callable,
    _engine.one_line,
)
_summary, _type_name, _unpack = _engine.summary, _engine.type_name, _engine.unpack
CALL_TIMEOUT = _engine.CALL_TIMEOUT  # the legacy checks read these two when they start
CHECK_TIMEOUT = _engine.CHECK_TIMEOUT


class _Budget(_engine.Budget):
    def __init__(self):
        super().__init__(CALL_TIMEOUT, CHECK_TIMEOUT)


def _run_cases(run_case, cases):
    return _engine.run_cases(run_case, cases, _Budget())


@dataclass(frozen=True)
class _LegacyTask:
    name: str
    needs: tuple[str, ...]
    run: Any
    points: float = 1.0


def task(name, check, needs, /, **kwargs):
    """A task whose run calls check(*[namespace[n] for n in needs], **kwargs)."""
    needs = tuple(needs)

    def run(namespace):
        for n in needs:
            if n not in namespace:
                return _engine.Task(name, needs, cases=list).run(namespace)  # "is not defined"
        return check(*(namespace[n] for n in needs), **kwargs)

    return _LegacyTask(name, needs, run)


from bnlib import checks_ex04, checks_ex05  # noqa: E402

for _module in (checks_ex04, checks_ex05):
    TASKS.update({exercise: list(tasks) for exercise, tasks in _module.TASKS.items()})
    __all__ += _module.__all__
    globals().update({name: getattr(_module, name) for name in _module.__all__})
# --- end of the temporary block ------------------------------------------------------------------
