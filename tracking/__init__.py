"""The tracking memory: SAMURAI's motion-aware selection and memory gating over SAM 2 (or a
weight-free backend), streaming, multi-object, with bounded memory.

What it holds: the :class:`Tracker` over a :class:`CandidateBackend` (``tracker.py``,
``protocol.py``), SAMURAI's per-object Kalman filter (``kalman.py``) and selection with its memory
gate (``selection.py``), the types it produces (``types.py``: :class:`Prompt`, :class:`TrackState`,
:class:`TrackOutput`); the backends ``sam2_stream/`` (SAM 2 with a bounded memory bank, needs torch
and the ``sam2`` package) and ``classical/`` (template matching, OpenCV only); one-pass evaluation
``eval/`` (AUC, P, Pnorm); the ``tracking`` stage and the ``track`` / ``eval-track`` commands.

Importing this package is light (no torch, no OpenCV): every name is loaded on first use.

Example:
    >>> from memstream.streaming import open_source
    >>> from memstream.tracking import ClassicalBackend, Prompt, Tracker
    >>> tracker = Tracker(ClassicalBackend(), selection="samurai")
    >>> with open_source("synthetic://camera_motion?frames=60", max_frames=8) as source:
    ...     for frame in source:  # object 1 is the target; prompt it with its true box on frame 0
    ...         prompts = [Prompt(1, frame.gt.boxes_xywh[0])] if frame.index == 0 else []
    ...         output = tracker.update(frame, prompts)
    >>> output.frame_index, output.object_ids.tolist()
    (7, [1])
    >>> bool((output.get(1).box_xywh == frame.gt.boxes_xywh[0]).all())
    True
"""

from __future__ import annotations

if __name__ != "memstream.tracking":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from memstream.streaming.lazy import lazy_attributes

    _LAZY = {  # name -> module that defines it, imported on first use (numpy; torch / OpenCV for backends)
        "CandidateBackend": "memstream.tracking.protocol",
        "KalmanBoxFilter": "memstream.tracking.kalman",
        "SamuraiConfig": "memstream.tracking.selection",
        "Tracker": "memstream.tracking.tracker",
        "TrackingInputError": "memstream.tracking.tracker",
        "Candidates": "memstream.tracking.types",
        "Decision": "memstream.tracking.types",
        "Prompt": "memstream.tracking.types",
        "TrackOutput": "memstream.tracking.types",
        "TrackState": "memstream.tracking.types",
        "Sam2Backend": "memstream.tracking.sam2_stream.backend",
        "ClassicalBackend": "memstream.tracking.classical",
        "ClassicalConfig": "memstream.tracking.classical",
    }

    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

    __all__ = sorted(_LAZY)
