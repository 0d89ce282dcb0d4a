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
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext, Stage, Upstream
from memstream.streaming.registry import Registry
from memstream.streaming.types import Frame
from memstream.streaming.videoio import VideoWriter

StageFactory = Callable[[str, Mapping[str, Any]], Stage]
STAGES: Registry[StageFactory] = Registry("stage")
ENTRY_POINT_GROUP = "memstream.stages"
_discovered = False


def discover_stages(name: str | None = None) -> Registry[StageFactory]:
    """Load stage factories advertised by installed packages; returns :data:`STAGES`.

    With ``name``, only that stage's entry point is loaded (a run imports the stages it runs, not
    torch and transformers for a video memory it does not use); without, all of them (once).
    """
    global _discovered
    if not _discovered:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name not in STAGES and (name is None or entry.name == name):
                try:
                    factory = entry.load()
                except ImportError as exc:
                    raise ConfigError(
                        f"stage {entry.name!r} ({entry.value}) cannot be imported: {exc}",
                        "Install the extra it needs (see `memstream info`)",
                    ) from exc
                STAGES.add(entry.name, factory)
        _discovered = name is None
    return STAGES


def build_stage(name: str, options: Mapping[str, Any]) -> Stage:
    """Instantiate the stage registered as ``name`` with its options."""
    return discover_stages(name).get(name)(name, options)


def parse_options(model: type[BaseModel], stage: str, options: Mapping[str, Any]) -> BaseModel:
    """Validate a stage's options strictly; errors name ``stages.<stage>.<key>`` and the bad value."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid option stages.{stage}.{key}={first.get('input')!r}: {first['msg']}",
            f"Valid options for {stage}: {', '.join(model.model_fields)}",
        ) from None


class VideoWriterOptions(BaseModel):
    """Options of the ``video_writer`` stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    filename: str = "video.mp4"
    codec: str = "auto"
    crf: int = 18
    fps: float | None = None  # default: the source's fps, else 30


class VideoWriterStage:
    """Writes every frame it sees to ``OUT/<filename>`` (H.264 by default).

    Stages that draw (track boxes, masks) will place themselves before it and hand it an annotated
    image through ``upstream``; for now it writes the frames as decoded.
    """

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options: VideoWriterOptions = parse_options(VideoWriterOptions, name, options)  # type: ignore[assignment]
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
