"""memstream stage 0: frames, sources, the pipeline runner and the CLI.

Public API::

    from memstream.streaming import Frame, open_source
    with open_source("synthetic://demo?frames=8") as source:
        for frame in source:
            ...
"""

if __name__ != "memstream.streaming":  # imported by the bare name: it is another distribution's
    from memstream.kernels.bare_name import hand_over

    hand_over(__name__)
else:
    from typing import Any

    from memstream.streaming.errors import ConfigError, MemstreamError, SourceError, StageError, UnknownSourceError

    __version__ = "0.1.0"

    # Sources and frame types import numpy and OpenCV: loaded on first use, so that `memstream --help`
    # and argument errors (the CLI lives in this package) start without them.
    _LAZY = {
        "SOURCES": "memstream.streaming.sources", "Source": "memstream.streaming.sources",
        "SourceOptions": "memstream.streaming.sources", "open_source": "memstream.streaming.sources",
        "Frame": "memstream.streaming.types", "FrameGroundTruth": "memstream.streaming.types",
        "SourceInfo": "memstream.streaming.types",
    }

    def __getattr__(name: str) -> Any:
        if name in _LAZY:
            import importlib

            return getattr(importlib.import_module(_LAZY[name]), name)
        raise AttributeError(f"module 'memstream.streaming' has no attribute {name!r}")

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
