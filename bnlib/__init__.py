"""bnlib: the helper package of "Batch Normalization, hands-on".

Modules, one idea each:
- functional: numpy references mirroring torch.nn.functional (forward and backward; BN, LN,
  IN, GN, RMSNorm)
- nn: torch.nn normalization modules from scratch, state_dict-compatible with PyTorch's
- inference: BN folded into the layer before it, recalibration, BN's cost (time, memory)
- train: the small models (MLP, CNN) and the training loop the experiments share
- hooks: forward hooks that record per-layer statistics during training
- landscape: loss-landscape probes along the gradient (Santurkar et al. 2018)
- distributed: synchronized batch norm across CPU processes (torch.distributed, gloo)
- gradcheck: numeric gradients and relative error
- data: scikit-learn's bundled digits with a fixed split (no downloads)
- plots: the course's matplotlib style and plot helpers
- widgets: interactive ipywidgets explorers for the lessons
- quiz: self-check questions (multiple choice, numeric) with feedback
- checks: the exercise checks (friendly pass/fail, diagnoses common mistakes), the front of
  grading/: the check engine, the exercises as data, and `bnlib assign` / `bnlib grade`
- cli: the `bnlib` command (make exercises from solutions, grade a class folder)
- slides: build offline reveal.js decks of the lessons
"""

import random

import numpy as np

__all__ = ["seed_everything", "__version__"]
__version__ = "0.1.0"


def seed_everything(seed=0):
    """Seed Python's, numpy's and torch's generators, so a notebook prints the same every run."""
    random.seed(seed)
    np.random.seed(seed)
    import torch  # imported here: the numpy parts of bnlib work without loading torch

    torch.manual_seed(seed)
