"""The objects stage 0 (frames and sources) produces.

``Frame`` is the currency of the whole pipeline: every source yields Frames and every memory's
``update`` takes one. It is immutable (a frozen dataclass whose arrays are made read-only), so a
frame can be shared between stage threads without copies.

Conventions used throughout memstream:

* images are RGB, ``uint8``, shape ``(H, W, 3)``, row-major, origin at the top-left pixel;
* depth is metric z-depth (distance along the optical axis), ``float32`` metres, shape ``(H, W)``;
  ``0`` or ``nan`` means "no measurement";
* intrinsics ``K`` are the 3x3 pinhole matrix in pixels, for the image as stored in the frame;
* poses are ``world_from_cam`` 4x4 rigid transforms in metres, camera axes OpenCV-style
  (x right, y down, z forward);
* boxes are ``xywh`` in pixels (top-left corner, width, height), float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def read_only(array: np.ndarray | None) -> np.ndarray | None:
    """Make ``array`` read-only in place (None passes through) and return it: frozen dataclasses of
    arrays use it so results can be shared between threads without copies."""
    if array is not None and array.flags.writeable:
        array.flags.writeable = False
    return array


@dataclass(frozen=True)
class FrameGroundTruth:
    """Exact per-frame ground truth, provided by synthetic scenes and some recordings.

    Objects are listed in a fixed order for the whole stream (the scene's object order), so row ``i``
    always refers to the same object, present or not.

    Attributes:
        object_ids: int32 ``(n,)``, ids >= 1; the values used in ``instance_mask``.
        boxes_xywh: float32 ``(n, 4)``, pixels; the tight box around the object's *visible* pixels,
            all zeros when none is visible.
        visible_fraction: float32 ``(n,)``, visible pixels / pixels the object would cover without
            occluders (0 when fully occluded or out of view).
        in_view: bool ``(n,)``, whether the unoccluded object projects onto at least one pixel.
        is_dynamic: bool ``(n,)``, whether the object moves at any time in the stream.
        instance_mask: int32 ``(H, W)``; the id of the object seen at each pixel, 0 for background.
        names: one name per object (the scene's: ``walker``, ``ball``...), or ``()`` when unnamed.
    """

    object_ids: np.ndarray
    boxes_xywh: np.ndarray
    visible_fraction: np.ndarray
    in_view: np.ndarray
    is_dynamic: np.ndarray
    instance_mask: np.ndarray
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.object_ids)
        if self.boxes_xywh.shape != (n, 4):
            raise ValueError(f"boxes_xywh must be ({n}, 4), got {self.boxes_xywh.shape}")
        for name in ("visible_fraction", "in_view", "is_dynamic"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must be ({n},), got {getattr(self, name).shape}")
        if self.names and len(self.names) != n:
            raise ValueError(f"names must hold {n} names, got {len(self.names)}")
        for name in ("object_ids", "boxes_xywh", "visible_fraction", "in_view", "is_dynamic", "instance_mask"):
            read_only(getattr(self, name))

    @property
    def visible(self) -> np.ndarray:
        """bool ``(n,)``: at least one pixel of the object is visible in this frame."""
        return self.visible_fraction > 0

    def index_of(self, object_id: int) -> int:
        """Row of ``object_id`` in the arrays; raises KeyError when the scene has no such object."""
        rows = np.flatnonzero(self.object_ids == object_id)
        if rows.size == 0:
            raise KeyError(f"no object with id {object_id}")
        return int(rows[0])

    def name_of(self, object_id: int) -> str | None:
        """The scene's name of ``object_id``, or None when the ground truth names nothing."""
        return self.names[self.index_of(object_id)] if self.names else None

    def mask_of(self, object_id: int) -> np.ndarray:
        """bool ``(H, W)``: the visible pixels of ``object_id``."""
        return self.instance_mask == object_id


@dataclass(frozen=True)
class Frame:
    """One frame of a stream.

    Attributes:
        index: 0-based position in the stream as yielded (after stride / fps subsampling).
        timestamp_s: presentation time in seconds: from the container for files, from the wall
            clock (monotonic, relative to the first frame) for live sources.
        rgb: uint8 ``(H, W, 3)``.
        depth_m: float32 ``(H, W)`` metric z-depth in metres, or None.
        intrinsics: float64 ``(3, 3)`` pinhole matrix in pixels, or None when unknown.
        pose: float64 ``(4, 4)`` world_from_cam in metres, or None when unknown.
        source_id: identifies the stream (a file path, ``cam:0``, ``synthetic://demo?seed=0``).
        gt: exact ground truth when the source has it (synthetic scenes), else None.

    Example:
        >>> import numpy as np
        >>> f = Frame(index=0, timestamp_s=0.0, rgb=np.zeros((4, 6, 3), np.uint8), source_id="x")
        >>> f.height, f.width
        (4, 6)
    """

    index: int
    timestamp_s: float
    rgb: np.ndarray
    depth_m: np.ndarray | None = None
    intrinsics: np.ndarray | None = None
    pose: np.ndarray | None = None
    source_id: str = ""
    gt: FrameGroundTruth | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        rgb = self.rgb
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"rgb must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self.depth_m is not None:
            if self.depth_m.shape != rgb.shape[:2] or self.depth_m.dtype != np.float32:
                raise ValueError(
                    f"depth_m must be float32 {rgb.shape[:2]}, got {self.depth_m.dtype} {self.depth_m.shape}"
                )
        if self.intrinsics is not None and self.intrinsics.shape != (3, 3):
            raise ValueError(f"intrinsics must be (3, 3), got {self.intrinsics.shape}")
        if self.pose is not None and self.pose.shape != (4, 4):
            raise ValueError(f"pose must be (4, 4), got {self.pose.shape}")
        for name in ("rgb", "depth_m", "intrinsics", "pose"):
            read_only(getattr(self, name))

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


@dataclass(frozen=True)
class SourceInfo:
    """What a source knows before the first frame, for progress bars and writers.

    Attributes:
        uri: the URI the source was opened with.
        num_frames: number of frames the source will yield after subsampling, or None when unknown
            (live sources, containers without a frame count).
        fps: frames per second of the yielded stream, or None when unknown.
        width, height: frame size in pixels after any resize, or None when unknown until decoding.
        is_live: True for cameras and network streams (no end, real-time timestamps).
        backend: the library that decodes (``decord``, ``pyav``, ``opencv``, ``numpy``...).
    """

    uri: str
    num_frames: int | None = None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    is_live: bool = False
    backend: str = ""
