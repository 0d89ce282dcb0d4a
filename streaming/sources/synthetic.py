"""``synthetic://PRESET?seed=0&frames=120&size=320x240&fps=30``: procedural scenes with exact ground truth."""

from __future__ import annotations

from collections.abc import Iterator

from memstream.streaming.errors import ConfigError
from memstream.streaming.sources import SourceSpec, register_source
from memstream.streaming.sources._base import StreamSource
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.synthetic import Scene, build_scene
from memstream.streaming.types import Frame, SourceInfo


class SyntheticSource(StreamSource):
    """Renders a scene lazily, frame by frame; frames the schedule skips are never rendered.

    ``resize`` renders directly at the requested size (intrinsics scaled), so depth, masks and boxes
    stay exact instead of being resampled.

    Args:
        uri: the ``synthetic://`` URI, stamped as every frame's ``source_id``.
        scene: the scene to render; its size is replaced by ``options.resize`` when given.
        options: subsampling and resizing.
    """

    def __init__(self, uri: str, scene: Scene, options: SourceOptions) -> None:
        super().__init__(options)
        spec = scene.spec
        if options.resize is not None:
            scene = Scene(spec, *options.resize, source_id=uri)
        self.scene = scene
        self.info = SourceInfo(
            uri=uri,
            num_frames=self.schedule.planned_count(spec.num_frames, spec.fps),
            fps=self.schedule.output_fps(spec.fps),
            width=scene.renderer.width,
            height=scene.renderer.height,
            backend="numpy-raycast",
        )

    def _frames(self) -> Iterator[Frame]:
        spec = self.scene.spec
        for native in range(spec.num_frames):
            if self.schedule.done:
                return
            if self.schedule.keep(spec.time_of(native)):
                yield self.scene.to_frame(self.scene.render(native), output_index=self.schedule.yielded - 1)


def open_synthetic(uri: str, options: SourceOptions, **backend_options: object) -> SyntheticSource:
    """Open ``synthetic://PRESET?...``; scene parameters live in the URI, not in options."""
    if backend_options:
        raise ConfigError(
            f"unknown option(s) for a synthetic source: {', '.join(sorted(backend_options))}",
            "Put scene parameters in the URI: synthetic://demo?seed=0&frames=120&size=320x240&fps=30",
        )
    return SyntheticSource(uri, Scene(build_scene(uri), source_id=uri), options)


register_source(
    SourceSpec(
        name="synthetic",
        matches=lambda uri: uri.startswith("synthetic://"),
        open=open_synthetic,
        description="procedural scenes with exact ground truth: synthetic://PRESET?seed=&frames=&size=WxH&fps=",
    )
)
