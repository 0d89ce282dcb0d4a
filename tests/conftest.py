"""Shared test setup: offline hub, fixed seeds, markers (see pyproject.toml)."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

# Nothing in the test suite may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
