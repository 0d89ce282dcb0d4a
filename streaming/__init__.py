"""memstream stage 0: frames, sources, the pipeline runner and the CLI.

Public API::

    from streaming import Frame, open_source
    with open_source("synthetic://demo?frames=8") as source:
        for frame in source:
            ...
"""

from streaming.errors import ConfigError, MemstreamError, SourceError, StageError, UnknownSourceError
from streaming.sources import SOURCES, Source, SourceOptions, open_source
from streaming.types import Frame, FrameGroundTruth, SourceInfo

__version__ = "0.1.0"

__all__ = [
    "SOURCES",
    "ConfigError",
    "Frame",
    "FrameGroundTruth",
    "MemstreamError",
    "Source",
    "SourceError",
    "SourceInfo",
    "SourceOptions",
    "StageError",
    "UnknownSourceError",
    "open_source",
]
