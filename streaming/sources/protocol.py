"""The small interface every frame source implements, and the options they share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from memstream.streaming.errors import ConfigError
from memstream.streaming.types import Frame, SourceInfo


@dataclass(frozen=True)
class SourceOptions:
    """Subsampling and resizing options understood by every source.

    Attributes:
        stride: yield every ``stride``-th decoded frame (applied after ``target_fps``).
        max_frames: stop after this many yielded frames; None for no limit.
        start_s: skip frames whose timestamp is before this time, in seconds.
        target_fps: resample to at most this rate by dropping frames (never duplicating); None
            keeps the native rate.
        resize: ``(width, height)`` in pixels to resize every frame to; intrinsics are scaled to
            match. None keeps the native size.
    """

    stride: int = 1
    max_frames: int | None = None
    start_s: float = 0.0
    target_fps: float | None = None
    resize: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.stride < 1:
            raise ConfigError(f"stride must be >= 1, got {self.stride}", "Use stride=1 to keep every frame")
        if self.max_frames is not None and self.max_frames < 1:
            raise ConfigError(f"max_frames must be >= 1, got {self.max_frames}", "Omit it for no limit")
        if self.start_s < 0:
            raise ConfigError(f"start_s must be >= 0, got {self.start_s}", "Use a time in seconds from the start")
        if self.target_fps is not None and self.target_fps <= 0:
            raise ConfigError(f"target_fps must be > 0, got {self.target_fps}", "Omit it to keep the native rate")
        if self.resize is not None:
            if len(self.resize) != 2 or min(self.resize) < 1:
                raise ConfigError(f"resize must be (width, height) > 0, got {self.resize}", "Pass e.g. resize=(320, 240)")
            object.__setattr__(self, "resize", (int(self.resize[0]), int(self.resize[1])))


@runtime_checkable
class Source(Protocol):
    """An iterable of Frames with what is known up front.

    Sources are context managers; iterating a closed source is an error. A source is iterated
    once: it is a stream, not a container.
    """

    info: SourceInfo

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Source: ...

    def __exit__(self, *exc: object) -> None: ...
