"""The grading layer: the exercise checks and the `bnlib` command's machinery. It depends on the
library (functional, nn, hooks) and the library never on it.

- engine: the check engine (cases, the guarded call of learner code, mistakes, scoring, the
  CheckResult); bnlib.checks is its learner-facing front;
- exercises: one module per exercise, its tasks as data (cases, reference, mistakes, points);
- assign: `bnlib assign`, the exercises written from the solutions;
- grade: `bnlib grade`, learners' notebooks graded without trusting them (its docstring has the
  threat model), with
  - sandbox: a throwaway, jailed kernel per notebook (private folder, clean environment, limits,
    a fresh uid and a mount namespace when root; nothing survives it);
  - remote: the grader's stand-ins for the learner's functions: inputs go to the kernel, outputs
    come back as plain data, so the checks score in the grader's process;
  - agent: the code the grader sends into the kernel to call the learner's functions (its source
    is sent, never imported by the grader).
"""
