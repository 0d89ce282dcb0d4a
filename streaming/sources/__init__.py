"""Frame sources and the one entry point that opens them: :func:`open_source`.

A source kind is registered in :data:`SOURCES` as a :class:`SourceSpec`: a name, a predicate that
recognises its URIs, and a factory. :func:`open_source` tries the kinds in registration order, so
explicit schemes (``synthetic://``, ``cam:``, ``rtsp://``) are matched before paths on disk.
Later packages (simulators, RGB-D sensors) register their own kinds the same way.

URIs understood by the built-in kinds:

==============  =============================================================================
kind            URI
==============  =============================================================================
synthetic       ``synthetic://PRESET?seed=0&frames=120&size=320x240`` (procedural scenes with GT)
camera          ``cam:0``, ``/dev/video0`` (OpenCV V4L2 capture)
network         ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``
tum             a folder in the TUM RGB-D layout (``rgb.txt``, ``depth.txt``)
images          a folder of images (sorted by name), optional ``timestamps.txt``
video           a video file (decord, falling back to PyAV, then OpenCV)
==============  =============================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstream.streaming.errors import SourceError, UnknownSourceError
from memstream.streaming.registry import Registry
from memstream.streaming.sources.protocol import Source, SourceOptions


@dataclass(frozen=True)
class SourceSpec:
    """One kind of source.

    Attributes:
        name: registry key, also accepted as ``open_source(uri, kind=name)``.
        matches: returns True when this kind should open ``uri``.
        open: ``open(uri, options, **backend_options) -> Source``.
        description: one line for ``memstream info`` and error messages.
    """

    name: str
    matches: Callable[[str], bool]
    open: Callable[..., Source]
    description: str = ""


SOURCES: Registry[SourceSpec] = Registry("source")


def register_source(spec: SourceSpec) -> SourceSpec:
    """Register a source kind; later registrations are tried after earlier ones."""
    SOURCES.add(spec.name, spec)
    return spec


def resolve_kind(uri: str) -> SourceSpec:
    """The source kind that opens ``uri``, or a clear error."""
    for name in SOURCES.names():
        spec = SOURCES.get(name)
        if spec.matches(uri):
            return spec
    scheme, sep, _ = uri.partition("://")
    if sep:
        raise UnknownSourceError(
            f"unknown URI scheme {scheme + '://'!r} in {uri!r}",
            "Use a file or folder path, cam:N, rtsp://, http(s):// or synthetic://PRESET",
        )
    if not Path(uri).exists():
        raise SourceError(f"no such file or folder: {uri}", "Check the path, or pass a URI such as synthetic://demo")
    raise UnknownSourceError(
        f"cannot tell what kind of source {uri!r} is",
        "Pass a video file, an image folder, a TUM RGB-D folder, or kind=... explicitly",
    )


def open_source(
    uri: str,
    *,
    kind: str | None = None,
    stride: int = 1,
    max_frames: int | None = None,
    start_s: float = 0.0,
    target_fps: float | None = None,
    resize: tuple[int, int] | None = None,
    **backend_options: Any,
) -> Source:
    """Open a frame source.

    Args:
        uri: a path or URI (see the module docstring for what is understood).
        kind: force a source kind from :data:`SOURCES` instead of guessing from ``uri``.
        stride, max_frames, start_s, target_fps, resize: see :class:`SourceOptions`.
        **backend_options: options of the chosen kind (e.g. ``backend="pyav"`` for videos,
            ``reconnect=3`` for network streams); an unknown option raises ConfigError.

    Returns:
        A :class:`Source`: iterate it for Frames, read ``.info`` for length and fps, close it (or
        use ``with``) when done.

    Example:
        >>> from memstream.streaming import open_source
        >>> with open_source("synthetic://demo?frames=4&size=64x48") as source:
        ...     frames = list(source)
        >>> len(frames), frames[0].rgb.shape
        (4, (48, 64, 3))
    """
    options = SourceOptions(
        stride=stride, max_frames=max_frames, start_s=start_s, target_fps=target_fps, resize=resize
    )
    spec = SOURCES.get(kind) if kind is not None else resolve_kind(uri)
    return spec.open(uri, options, **backend_options)


# Built-in kinds, in matching order. Each module registers itself on import.
from memstream.streaming.sources import synthetic as _synthetic  # noqa: E402,F401
from memstream.streaming.sources import live as _live  # noqa: E402,F401
from memstream.streaming.sources import tum as _tum  # noqa: E402,F401
from memstream.streaming.sources import images as _images  # noqa: E402,F401
from memstream.streaming.sources import video as _video  # noqa: E402,F401

__all__ = ["SOURCES", "Source", "SourceOptions", "SourceSpec", "open_source", "register_source", "resolve_kind"]
