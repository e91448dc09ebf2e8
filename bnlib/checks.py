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
from bnlib.grading.exercises.ex04 import (
    check_batch_renorm_backward,
    check_batch_renorm_forward,
    check_global_batch_stats,
    check_local_stats,
)
from bnlib.grading.exercises.ex05 import (
    check_groupnorm_forward,
    check_instancenorm_forward,
    check_layernorm_backward,
    check_layernorm_forward,
    check_rmsnorm_backward,
    check_rmsnorm_forward,
)

__all__ = [
    "CheckResult",
    "check_batch_renorm_backward",
    "check_batch_renorm_forward",
    "check_batchnorm_backward",
    "check_batchnorm_eval",
    "check_batchnorm_forward",
    "check_batchnorm_module",
    "check_fold_bn",
    "check_global_batch_stats",
    "check_groupnorm_forward",
    "check_instancenorm_forward",
    "check_layer_percentiles",
    "check_layernorm_backward",
    "check_layernorm_forward",
    "check_local_stats",
    "check_noisy_bn",
    "check_rmsnorm_backward",
    "check_rmsnorm_forward",
    "check_running_stats",
    "check_spatial_batchnorm_backward",
    "check_spatial_batchnorm_forward",
]
