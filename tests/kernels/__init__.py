"""Tests of ``kernels``: each reference against brute force, each Triton kernel against its reference.

Without a GPU the Triton kernels run in the Triton interpreter on CPU tensors. Triton decides
between compiled and interpreted kernels when a kernel module is imported (``kernels`` imports them
at the first ``backend="triton"`` call), so ``TRITON_INTERPRET=1`` is set here, when pytest imports
this package, before any test runs; it stays set for the rest of the test process. On a machine
with CUDA the variable is left alone and the compiled kernels are tested on the GPU.
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"

#: device the Triton kernels are tested on: CUDA when present, else CPU through the interpreter.
TRITON_DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
