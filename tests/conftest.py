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

# torch's OpenMP threads spin while they wait for each other. On a busy machine (CI neighbours,
# benchmarks, simulators in other processes) a spinning thread holds the core its partner needs:
# a 30-step training test measured 15 s with passive waiting and over 300 s with spinning at a load
# of 15 on 2 cores. OpenMP reads this once, when torch loads, so it is set before the import below.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
