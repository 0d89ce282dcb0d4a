"""The weight-free classical candidate backend (template matching, OpenCV and numpy only).

Public API::

    from tracking.classical import ClassicalBackend, ClassicalConfig
    tracker = Tracker(ClassicalBackend(ClassicalConfig(num_candidates=3)), selection="samurai")
"""

from tracking.classical.backend import ClassicalBackend
from tracking.classical.config import ClassicalConfig

__all__ = ["ClassicalBackend", "ClassicalConfig"]
