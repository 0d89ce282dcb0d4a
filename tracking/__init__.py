"""The tracking memory: SAMURAI's motion-aware selection and memory gating over SAM 2 (or a
weight-free backend), streaming, multi-object, with bounded memory.

Example:
    >>> from memstream.tracking import Prompt, Tracker
    >>> from memstream.tracking.classical import ClassicalBackend
    >>> tracker = Tracker(ClassicalBackend(), selection="samurai")
"""

from __future__ import annotations

if __name__ != "memstream.tracking":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from typing import Any

    from memstream.tracking.protocol import CandidateBackend
    from memstream.tracking.selection import SamuraiConfig
    from memstream.tracking.tracker import Tracker, TrackingInputError
    from memstream.tracking.types import Candidates, Decision, Prompt, TrackOutput, TrackState

    _LAZY = {  # backends import torch / OpenCV on first use only
        "Sam2Backend": "memstream.tracking.sam2_stream.backend",
        "ClassicalBackend": "memstream.tracking.classical",
        "ClassicalConfig": "memstream.tracking.classical",
    }


    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            import importlib

            return getattr(importlib.import_module(_LAZY[name]), name)
        raise AttributeError(f"module 'memstream.tracking' has no attribute {name!r}")


    __all__ = [
        "CandidateBackend", "Candidates", "ClassicalBackend", "ClassicalConfig", "Decision", "Prompt",
        "SamuraiConfig", "Sam2Backend", "TrackOutput", "TrackState", "Tracker", "TrackingInputError",
    ]
