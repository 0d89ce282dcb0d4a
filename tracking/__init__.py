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

    _LAZY = {  # on first use only: numpy for the types, torch / OpenCV for the backends (`memstream --help`
        # imports memstream.tracking.cli, so this package's face must cost nothing)
        "CandidateBackend": "memstream.tracking.protocol", "SamuraiConfig": "memstream.tracking.selection",
        "Tracker": "memstream.tracking.tracker", "TrackingInputError": "memstream.tracking.tracker",
        "Candidates": "memstream.tracking.types", "Decision": "memstream.tracking.types",
        "Prompt": "memstream.tracking.types", "TrackOutput": "memstream.tracking.types",
        "TrackState": "memstream.tracking.types",
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
