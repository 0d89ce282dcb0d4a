"""The weight-free classical candidate backend (template matching, OpenCV and numpy only).

Public API::

    from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
    tracker = Tracker(ClassicalBackend(ClassicalConfig(num_candidates=3)), selection="samurai")
"""

from memstream.tracking.classical.backend import ClassicalBackend
from memstream.tracking.classical.config import ClassicalConfig

__all__ = ["ClassicalBackend", "ClassicalConfig"]
