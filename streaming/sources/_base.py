"""Boilerplate shared by the built-in sources: one-shot iteration, closing, context management."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from memstream.streaming.errors import SourceError
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import FrameSchedule
from memstream.streaming.types import Frame, SourceInfo


class StreamSource:
    """Base of the built-in sources. Subclasses set ``info`` and implement :meth:`_frames`.

    ``_frames`` yields the Frames to emit (already selected with ``self.schedule`` and resized);
    this class enforces that a source is iterated once and not after :meth:`close`, and releases
    resources through :meth:`_release` exactly once.
    """

    info: SourceInfo

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.schedule = FrameSchedule(options)
        self._closed = False
        self._started = False

    def _frames(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _release(self) -> None:
        """Free decoders, captures, file handles. Called once by :meth:`close`."""

    def __iter__(self) -> Iterator[Frame]:
        if self._closed:
            raise SourceError(f"source {self.info.uri!r} is closed", "Open it again with open_source()")
        if self._started:
            raise SourceError(f"source {self.info.uri!r} was already iterated", "A source is a stream: open it again")
        self._started = True
        return self._frames()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> StreamSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.uri!r}, backend={self.info.backend!r})"


def read_rgb(path: Path) -> np.ndarray:
    """uint8 (H, W, 3) RGB from an image file; a missing or unreadable image is a SourceError naming it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SourceError(f"cannot read image {path}", "Check that the file exists and is a complete PNG/JPEG image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
