"""From a name or URI to frames: the preset registry, URI parsing, and :class:`Scene`.

``synthetic://PRESET?seed=0&frames=120&size=320x240&fps=30`` names a preset and its parameters;
:func:`build_scene` turns it into a :class:`SceneSpec` (a value), and :class:`Scene` renders that
spec into :class:`~memstream.streaming.types.Frame` objects with exact ground truth, in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from memstream.streaming.errors import ConfigError
from memstream.streaming.registry import Registry
from memstream.streaming.synthetic.render import RenderedFrame, Renderer
from memstream.streaming.synthetic.scene import CameraSpec, Lighting, ObjectSpec, RoomSpec, SceneSpec
from memstream.streaming.types import Frame, FrameGroundTruth

URI_PARAMETERS = "seed (int >= 0), frames (int >= 1), size (WxH, e.g. 320x240), fps (> 0)"


@dataclass(frozen=True)
class SceneParams:
    """Parameters every preset takes (the URI query).

    Attributes:
        seed: seed of ``numpy.random.default_rng`` that jitters the preset's layout and textures.
        frames: number of frames. A preset plays its whole script (crossings, occlusions, exits)
            over them, so fewer frames mean faster motion.
        width, height: image size in pixels.
        fps: frame rate; frame ``i`` is at ``i / fps`` seconds.
    """

    seed: int = 0
    frames: int = 120
    width: int = 320
    height: int = 240
    fps: float = 30.0

    def __post_init__(self) -> None:
        checks = {
            "seed": self.seed >= 0,
            "frames": self.frames >= 1,
            "size": self.width >= 8 and self.height >= 8,
            "fps": self.fps > 0,
        }
        for name, ok in checks.items():
            if not ok:
                value = f"{self.width}x{self.height}" if name == "size" else getattr(self, name)
                raise ConfigError(
                    f"invalid synthetic scene parameter {name}={value}", f"Valid: {URI_PARAMETERS}"
                )


SceneBuilder = Callable[
    [SceneParams, np.random.Generator], tuple[CameraSpec, Lighting, tuple[ObjectSpec, ...]]
]
SCENE_PRESETS: Registry[SceneBuilder] = Registry("synthetic scene preset")


def parse_uri(uri: str) -> tuple[str, SceneParams]:
    """``synthetic://NAME?seed=..&frames=..&size=WxH&fps=..`` -> (preset, params), strictly.

    Raises:
        ConfigError: not a synthetic URI, unknown preset, unknown parameter or invalid value; the
            message names it and lists the valid choices.
    """
    parts = urlsplit(uri)
    if parts.scheme != "synthetic" or not parts.netloc:
        raise ConfigError(f"not a synthetic scene URI: {uri!r}", "Write synthetic://PRESET?seed=0&frames=120")
    name = parts.netloc
    if name not in SCENE_PRESETS:
        raise ConfigError(
            f"unknown synthetic preset {name!r}", f"Choose one of: {', '.join(SCENE_PRESETS.names())}"
        )
    values: dict[str, int | float] = {}
    for key, raw in parse_qsl(parts.query, keep_blank_values=True):
        if key not in ("seed", "frames", "size", "fps"):
            raise ConfigError(f"unknown parameter {key!r} in {uri!r}", f"Valid parameters: {URI_PARAMETERS}")
        try:
            if key == "size":
                width, sep, height = raw.lower().partition("x")
                if not sep:
                    raise ValueError(raw)
                values["width"], values["height"] = int(width), int(height)
            else:
                values[key] = float(raw) if key == "fps" else int(raw)
        except ValueError:
            raise ConfigError(
                f"invalid value {key}={raw!r} in {uri!r}", f"Valid parameters: {URI_PARAMETERS}"
            ) from None
    return name, SceneParams(**values)  # type: ignore[arg-type]


def build_scene(
    scene: str,
    params: SceneParams | None = None,
    *,
    seed: int | None = None,
    frames: int | None = None,
    size: tuple[int, int] | None = None,
    fps: float | None = None,
) -> SceneSpec:
    """Build a preset scene from its name or a ``synthetic://`` URI.

    Args:
        scene: ``"demo"``, ``"demo?seed=3"`` or ``"synthetic://demo?seed=3&frames=60"``.
        params: base parameters (default: the URI's, else :class:`SceneParams` defaults).
        seed, frames, size, fps: override single parameters; ``size`` is ``(width, height)``.

    Example:
        >>> spec = build_scene("synthetic://distractors?frames=10", seed=2)
        >>> spec.name, spec.seed, spec.num_frames, spec.objects[0].role
        ('distractors', 2, 10, 'target')
    """
    preset, uri_params = parse_uri(scene if scene.startswith("synthetic://") else f"synthetic://{scene}")
    params = params or uri_params
    overrides: dict[str, int | float] = {"seed": seed, "frames": frames, "fps": fps}  # type: ignore[dict-item]
    if size is not None:
        overrides["width"], overrides["height"] = size
    params = replace(params, **{k: v for k, v in overrides.items() if v is not None})
    camera, lighting, objects = SCENE_PRESETS.get(preset)(params, np.random.default_rng(params.seed))
    return SceneSpec(preset, params.seed, params.frames, params.fps, camera, RoomSpec(), lighting, objects)


class Scene:
    """A scene ready to stream: random access to frames with exact ground truth.

    Args:
        spec: the scene (from :func:`build_scene` or built by hand).
        width_px, height_px: render size (default: the camera's); intrinsics are scaled exactly.
        source_id: the ``Frame.source_id`` to stamp (default ``synthetic://<name>?seed=<seed>``).
        keep_object_depth: keep per-object depth maps in :meth:`render` results (tests).

    Example:
        >>> scene = Scene(build_scene("occlusion", frames=5, size=(64, 48)))
        >>> frame = scene.frame(4)
        >>> frame.gt.object_ids.tolist(), frame.gt.instance_mask.shape
        ([1, 2, 3], (48, 64))
    """

    def __init__(
        self,
        spec: SceneSpec,
        width_px: int | None = None,
        height_px: int | None = None,
        source_id: str | None = None,
        keep_object_depth: bool = False,
    ) -> None:
        self.spec = spec
        self.renderer = Renderer(spec, width_px, height_px, keep_object_depth=keep_object_depth)
        self.source_id = source_id or f"synthetic://{spec.name}?seed={spec.seed}"
        self._ids = np.array([o.object_id for o in spec.objects], np.int32)
        self._is_dynamic = np.array([o.is_dynamic for o in spec.objects], bool)
        self._names = tuple(o.name for o in spec.objects)

    def __len__(self) -> int:
        return self.spec.num_frames

    @property
    def intrinsics(self) -> np.ndarray:
        """(3, 3) pinhole matrix of the rendered frames, pixels."""
        return self.renderer.intrinsics

    def render(self, index: int) -> RenderedFrame:
        """Everything the renderer knows about frame ``index`` (including amodal pixel counts)."""
        return self.renderer.render(index)

    def ground_truth(self, rendered: RenderedFrame) -> FrameGroundTruth:
        """The :class:`FrameGroundTruth` of a rendered frame (objects in scene order)."""
        return FrameGroundTruth(
            object_ids=self._ids,
            boxes_xywh=rendered.boxes_xywh,
            visible_fraction=(rendered.visible_px / np.maximum(rendered.amodal_px, 1)).astype(np.float32),
            in_view=rendered.amodal_px > 0,
            is_dynamic=self._is_dynamic,
            instance_mask=rendered.instance_mask,
            names=self._names,
        )

    def to_frame(self, rendered: RenderedFrame, output_index: int | None = None) -> Frame:
        """Wrap a rendered frame as a :class:`Frame`; ``output_index`` defaults to the scene index."""
        return Frame(
            index=rendered.index if output_index is None else output_index,
            timestamp_s=rendered.time_s,
            rgb=rendered.rgb,
            depth_m=rendered.depth_m,
            intrinsics=self.intrinsics.copy(),
            pose=rendered.pose,
            source_id=self.source_id,
            gt=self.ground_truth(rendered),
        )

    def frame(self, index: int) -> Frame:
        """Frame ``index`` with RGB, depth, intrinsics, pose and ground truth."""
        return self.to_frame(self.render(index))

    def frames(self) -> Iterator[Frame]:
        """All frames in order, rendered lazily one at a time."""
        for index in range(len(self)):
            yield self.frame(index)
