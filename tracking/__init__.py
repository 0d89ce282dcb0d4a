"""The tracking memory: SAMURAI's motion-aware selection and memory gating over SAM 2 (or a
weight-free backend), streaming, multi-object, with bounded memory.

Example:
    >>> from tracking import Prompt, Tracker
    >>> from tracking.classical import ClassicalBackend
    >>> tracker = Tracker(ClassicalBackend(), selection="samurai")
"""

from __future__ import annotations

from typing import Any

from tracking.protocol import CandidateBackend
from tracking.selection import SamuraiConfig
from tracking.tracker import Tracker, TrackingInputError
from tracking.types import Candidates, Decision, Prompt, TrackOutput, TrackState

_LAZY = {  # backends import torch / OpenCV on first use only
    "Sam2Backend": "tracking.sam2_stream.backend",
    "ClassicalBackend": "tracking.classical",
    "ClassicalConfig": "tracking.classical",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracking' has no attribute {name!r}")


__all__ = [
    "CandidateBackend", "Candidates", "ClassicalBackend", "ClassicalConfig", "Decision", "Prompt",
    "SamuraiConfig", "Sam2Backend", "TrackOutput", "TrackState", "Tracker", "TrackingInputError",
]
