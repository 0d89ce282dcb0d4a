"""Shared test setup: offline hub, fixed seeds, markers (see pyproject.toml)."""

from __future__ import annotations

import faulthandler
import importlib.util
import os
import random
import sys

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


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Keep Python's fault handler on after pytest's own plugin switches it off at the end of the session:
    a fresh-venv CI run passed every test and then died with a segmentation fault at interpreter exit
    (stop 35, not reproduced since), in some native library's teardown. If it happens again, every
    thread's Python stack is printed to stderr, which names the library."""
    faulthandler.enable(file=sys.__stderr__, all_threads=True)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
