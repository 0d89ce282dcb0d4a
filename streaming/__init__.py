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
    from memstream.streaming.errors import ConfigError, MemstreamError, SourceError, StageError, UnknownSourceError
    from memstream.streaming.sources import SOURCES, Source, SourceOptions, open_source
    from memstream.streaming.types import Frame, FrameGroundTruth, SourceInfo

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
