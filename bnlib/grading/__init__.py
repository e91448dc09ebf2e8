"""The machinery behind `bnlib grade` (see bnlib.grade for the threat model).

- sandbox: a throwaway, jailed kernel per notebook (private folder, clean environment, limits,
  a fresh uid and a mount namespace when root; nothing survives it);
- remote: the grader's stand-ins for the learner's functions: inputs go to the kernel, outputs
  come back as plain data, so the checks score in the grader's process;
- agent: the code the grader sends into the kernel to call the learner's functions (its source
  is sent, never imported by the grader).
"""
