"""``synthetic://PRESET?seed=0&frames=120&size=320x240&fps=30``: procedural scenes with exact ground truth."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from streaming.errors import ConfigError
from streaming.sources._base import StreamSource
from streaming.sources.protocol import SourceOptions
from streaming.synthetic import Renderer, SceneSpec, build_scene, parse_uri
from streaming.synthetic.render import RenderedFrame
from streaming.sources import SourceSpec, register_source
from streaming.types import Frame, FrameGroundTruth, SourceInfo


class SyntheticSource(StreamSource):
    """Renders a scene lazily, frame by frame; frames the schedule skips are never rendered.

    ``resize`` renders directly at the requested size (intrinsics scaled), so depth, masks and boxes
    stay exact instead of being resampled.
    """

    def __init__(self, uri: str, scene: SceneSpec, options: SourceOptions) -> None:
        super().__init__(options)
        width, height = options.resize or (scene.camera.width_px, scene.camera.height_px)
        self.scene = scene
        self.renderer = Renderer(scene, width, height)
        self.info = SourceInfo(
            uri=uri,
            num_frames=self.schedule.planned_count(scene.num_frames, scene.fps),
            fps=self.schedule.output_fps(scene.fps),
            width=width,
            height=height,
            backend="numpy-raycast",
        )
        self._is_dynamic = np.array([o.is_dynamic for o in scene.objects], bool)
        self._ids = np.array([o.object_id for o in scene.objects], np.int32)

    def _frames(self) -> Iterator[Frame]:
        index = 0
        for native in range(self.scene.num_frames):
            if self.schedule.done:
                return
            t_s = self.scene.time_of(native)
            if not self.schedule.keep(t_s):
                continue
            yield self.to_frame(index, t_s, self.renderer.render(native))
            index += 1

    def to_frame(self, index: int, t_s: float, out: RenderedFrame) -> Frame:
        gt = FrameGroundTruth(
            object_ids=self._ids,
            boxes_xywh=out.boxes_xywh,
            visible_fraction=(out.visible_px / np.maximum(out.amodal_px, 1)).astype(np.float32),
            in_view=out.amodal_px > 0,
            is_dynamic=self._is_dynamic,
            instance_mask=out.instance_mask,
        )
        return Frame(
            index=index,
            timestamp_s=t_s,
            rgb=out.rgb,
            depth_m=out.depth_m,
            intrinsics=self.renderer.intrinsics,
            pose=out.pose,
            source_id=self.info.uri,
            gt=gt,
        )


def open_synthetic(uri: str, options: SourceOptions, **backend_options: object) -> SyntheticSource:
    if backend_options:
        raise ConfigError(
            f"unknown option(s) for a synthetic source: {', '.join(sorted(backend_options))}",
            "Put scene parameters in the URI: synthetic://demo?seed=0&frames=120&size=320x240&fps=30",
        )
    preset, params = parse_uri(uri)
    return SyntheticSource(uri, build_scene(preset, params), options)


register_source(
    SourceSpec(
        name="synthetic",
        matches=lambda uri: uri.startswith("synthetic://"),
        open=open_synthetic,
        description="procedural scenes with exact ground truth: synthetic://PRESET?seed=&frames=&size=WxH&fps=",
    )
)
