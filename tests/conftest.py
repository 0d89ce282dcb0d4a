"""Shared test setup: offline hub, fixed seeds, markers (see pyproject.toml)."""

from __future__ import annotations

import importlib.util
import os
import random

import numpy as np
import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Triton decides between compiled and interpreted kernels when triton itself is first imported,
# and the simulators import it early (memstream.embodied.envs.gl), as do torch._dynamo's users: on
# a machine without CUDA the kernel tests run interpreted, so the choice is made here, first.
if importlib.util.find_spec("torch") is not None:
    import torch

    if not torch.cuda.is_available():
        os.environ["TRITON_INTERPRET"] = "1"


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
