"""The stage registry and the built-in stages.

Stages are registered by name in :data:`STAGES` as factories ``factory(name, options) -> Stage``.
Packages that build on ``streaming`` (tracking, embodied) add theirs through the entry-point group
``memstream.stages`` in their ``pyproject.toml``::

    [project.entry-points."memstream.stages"]
    tracking = "memstream.tracking.stage:make_stage"

so ``streaming`` never imports them. Users can also call ``STAGES.add(name, factory)`` in code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from pathlib import PurePath
from typing import Annotated, Any, TypeVar

from pydantic import Field

from memstream.streaming.configtypes import parse, strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext, Stage, Upstream
from memstream.streaming.registry import Registry, entry_points_of
from memstream.streaming.types import Frame
from memstream.streaming.videoio import VideoWriter

T = TypeVar("T")
StageFactory = Callable[[str, Mapping[str, Any]], Stage]
STAGES: Registry[StageFactory] = Registry("stage")
ENTRY_POINT_GROUP = "memstream.stages"
_discovered = False


def discover_stages() -> Registry[StageFactory]:
    """Load every stage factory advertised by installed packages (once); returns :data:`STAGES`."""
    global _discovered
    if not _discovered:
        for entry in entry_points_of(ENTRY_POINT_GROUP):
            _load(entry)
        _discovered = True
    return STAGES


def stage_names() -> list[str]:
    """Names of the registered stages: the built-in ones, those added with ``STAGES.add`` and those
    advertised through the ``memstream.stages`` entry points (named without importing them)."""
    return sorted({*STAGES.names(), *(entry.name for entry in entry_points_of(ENTRY_POINT_GROUP))})


def build_stage(name: str, options: Mapping[str, Any]) -> Stage:
    """Instantiate the stage registered as ``name`` with its options.

    Only that stage's entry point is imported: a run of the 3D memory does not pay for the video
    memory's torch and transformers (half a gigabyte of resident memory).
    """
    if name not in STAGES:
        entry = next((e for e in entry_points_of(ENTRY_POINT_GROUP) if e.name == name), None)
        if entry is None:
            raise ConfigError(f"unknown stage {name!r}", f"Choose one of: {', '.join(stage_names()) or 'none'}")
        _load(entry)
    return STAGES.get(name)(name, options)


def _load(entry: EntryPoint) -> None:
    if entry.name in STAGES:
        return
    try:
        factory = entry.load()
    except ImportError as exc:
        raise ConfigError(
            f"stage {entry.name!r} ({entry.value}) cannot be imported: {exc}",
            "Install the extra it needs (see `memstream info`)",
        ) from exc
    STAGES.add(entry.name, factory)


def parse_options(options_type: type[T], stage: str, options: Mapping[str, Any] | T | None) -> T:
    """Validate a stage's options into its options dataclass (:func:`~memstream.streaming.configtypes.parse`);
    errors name ``stages.<stage>.options.<key>``, the bad value and the fix."""
    return parse(options_type, options, f"stages.{stage}.options")


@strict_config
@dataclass(frozen=True)
class VideoWriterOptions:
    """Options of the ``video_writer`` stage; ``codec`` and ``crf`` are :class:`~memstream.streaming.videoio.VideoWriter`'s.

    Attributes:
        filename: the video's name inside the run folder.
        codec: ``auto`` (H.264 with PyAV, else mp4v), ``h264`` or ``mp4v``.
        crf: H.264 constant rate factor, 0 (lossless) to 51.
        fps: frame rate of the file; None: the source's, else 30.
    """

    filename: Annotated[str, Field(min_length=1)] = "video.mp4"
    codec: str = "auto"
    crf: Annotated[int, Field(ge=0, le=51)] = 18
    fps: Annotated[float | None, Field(gt=0)] = None

    def __post_init__(self) -> None:
        # a folder part (../x.mp4, /tmp/x.mp4) would write outside --out, where --overwrite never looks
        if PurePath(self.filename).name != self.filename or self.filename in (".", ".."):
            raise ValueError(f"filename {self.filename!r} must be a file name inside the run folder, "
                             "with no folder part")


class VideoWriterStage:
    """Writes every frame it sees to ``OUT/<filename>`` (H.264 by default).

    Stages that draw (track boxes, masks) will place themselves before it and hand it an annotated
    image through ``upstream``; for now it writes the frames as decoded.
    """

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(VideoWriterOptions, name, options)
        self._writer: VideoWriter | None = None
        self._path = None

    def open(self, context: RunContext) -> None:
        if context.out_dir is None:
            raise ConfigError(f"stage {self.name!r} needs an output folder", "Pass --out DIR")
        fps = self.options.fps or context.source.fps or 30.0
        self._path = context.out_dir / self.options.filename
        self._writer = VideoWriter(self._path, fps, codec=self.options.codec, crf=self.options.crf)

    def update(self, frame: Frame, upstream: Upstream) -> None:
        assert self._writer is not None, "open() was not called"
        self._writer.write(frame.rgb)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def summary(self) -> dict[str, Any]:
        written = self._writer.frames_written if self._writer else 0
        return {"path": str(self._path), "frames_written": written, "codec": self._writer.codec if self._writer else None}


STAGES.add("video_writer", VideoWriterStage)
