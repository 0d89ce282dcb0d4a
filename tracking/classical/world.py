"""World-space plausibility for the classical backend, on frames with depth, intrinsics and a pose.

An RGB tracker sees only pixels: a camera that turns carries every object across the image, a
receding object shrinks, and a look-alike two metres away is as good a match as the object. An
RGB-D stream with camera poses (what the 3D memory reads) says more, and
``ClassicalConfig.world_gate`` uses it (off by default; the ``scene`` preset turns it on):

* **Where to look**: each object keeps a world anchor, the back-projected centre of the box last
  chosen for it. On every frame the anchor is projected into the current camera, so the search
  follows the camera's own motion (a glance aside and back) instead of the object's last pixel.
* **At what size**: the prompt box's metric size (its pixels times its depth over the focal length)
  at the anchor's depth in this view is the matcher's reference size, so a receding object's
  template scale is predicted rather than searched, and cannot wander (on a plain 9-20 px object
  the matcher's own estimate grew 40 % in 35 s until no template matched; a metric size re-measured
  from the colour mask ran away the other way on a textured object whose mask covers part of it).
* **What can be it**: a candidate whose box back-projects farther from the anchor than
  ``world_margin_m + world_speed_m_s * seconds since it was last found``, or whose metric size is
  off by more than ``world_size_ratio`` from the object's at its expected depth, is no candidate (a look-alike across the room, a patch of
  the far wall that matches a small object's template).

Frames without depth, intrinsics or pose leave the backend exactly as it is without the option (no
anchor is made and nothing is gated), and an anchor whose object has not been found since a restore
is simply absent (the anchor is not saved; it is made again from the next box found).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memstream.streaming.types import Frame

MIN_DEPTH_PX = 3  # a box needs this many valid depth pixels in its core to be placed in the world
CORE = 0.25  # the box's central part (this fraction trimmed per side) is read for its depth


@dataclass(frozen=True)
class WorldView:
    """One frame's geometry: depth ``(H, W)`` metres, intrinsics ``(3, 3)`` pixels, pose ``(4, 4)``
    world_from_cam metres (OpenCV camera axes: x right, y down, z forward)."""

    depth_m: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray
    time_s: float

    @classmethod
    def of(cls, frame: Frame) -> WorldView | None:
        """The frame's geometry, or None when it lacks depth, intrinsics or a pose."""
        if frame.depth_m is None or frame.intrinsics is None or frame.pose is None:
            return None
        return cls(frame.depth_m, np.asarray(frame.intrinsics, np.float64), np.asarray(frame.pose, np.float64),
                   float(frame.timestamp_s))

    @property
    def focal_px(self) -> float:
        return float(0.5 * (self.intrinsics[0, 0] + self.intrinsics[1, 1]))

    def box_depth(self, box_xywh: np.ndarray) -> float | None:
        """Median valid depth over the box's core, metres (None: fewer than ``MIN_DEPTH_PX`` there)."""
        x, y, w, h = (float(v) for v in box_xywh)
        height, width = self.depth_m.shape
        x0, x1 = int(np.floor(x + CORE * w)), int(np.ceil(x + (1 - CORE) * w))
        y0, y1 = int(np.floor(y + CORE * h)), int(np.ceil(y + (1 - CORE) * h))
        core = self.depth_m[max(y0, 0):min(max(y1, y0 + 1), height), max(x0, 0):min(max(x1, x0 + 1), width)]
        valid = core[np.isfinite(core) & (core > 0)]
        return float(np.median(valid)) if valid.size >= min(MIN_DEPTH_PX, core.size) and valid.size else None

    def mask_depth(self, mask: np.ndarray, origin_xy: tuple[int, int]) -> float | None:
        """Median valid depth under a mask ``(h, w)`` whose top-left pixel is ``origin_xy``, metres."""
        x0, y0 = origin_xy
        window = self.depth_m[y0:y0 + mask.shape[0], x0:x0 + mask.shape[1]]
        values = window[mask[:window.shape[0], :window.shape[1]]]
        valid = values[np.isfinite(values) & (values > 0)]
        return float(np.median(valid)) if valid.size else None

    def place(self, box_xywh: np.ndarray, depth_m: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """The box's centre in the world ``(3,)`` metres and its metric size ``(2,)`` (w, h) metres,
        at ``depth_m`` (default: the box core's, :meth:`box_depth`), or None without depth there."""
        z = self.box_depth(box_xywh) if depth_m is None else depth_m
        if z is None:
            return None
        k = self.intrinsics
        u, v = box_xywh[0] + box_xywh[2] / 2, box_xywh[1] + box_xywh[3] / 2
        cam = np.array([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z])
        size = np.asarray(box_xywh[2:], np.float64) * z / self.focal_px
        return self.pose[:3, :3] @ cam + self.pose[:3, 3], size

    def project(self, point: np.ndarray) -> tuple[np.ndarray, float] | None:
        """``((u, v) pixels, depth metres)`` of a world point, or None when it is behind the camera."""
        cam = self.pose[:3, :3].T @ (np.asarray(point) - self.pose[:3, 3])
        if cam[2] <= 1e-3:
            return None
        k = self.intrinsics
        return np.array([k[0, 0] * cam[0] / cam[2] + k[0, 2], k[1, 1] * cam[1] / cam[2] + k[1, 2]]), float(cam[2])


@dataclass
class WorldAnchor:
    """Where one object was last found in the world, ``point`` ``(3,)`` metres at ``time_s``, and its
    metric size ``size_m`` ``(2,)`` (w, h) metres, measured once on the prompt: the prompt box is the
    one size the user vouches for (the matcher's own size estimate drifts larger on a plain object,
    whose template matches a box with a rim of background as well as the tight one)."""

    point: np.ndarray
    size_m: np.ndarray
    time_s: float

    def reach_m(self, now_s: float, margin_m: float, speed_m_s: float, reach_max_m: float | None = None) -> float:
        """How far from ``point`` the object can be at ``now_s`` (at most ``reach_max_m``)."""
        reach = margin_m + speed_m_s * max(now_s - self.time_s, 0.0)
        return reach if reach_max_m is None else min(reach, max(reach_max_m, margin_m))

    def plausible(self, placed: tuple[np.ndarray, np.ndarray] | None, expected_size_m: np.ndarray, now_s: float,
                  margin_m: float, speed_m_s: float, size_ratio: float, reach_max_m: float | None = None) -> bool:
        """Whether a candidate placed at ``placed`` (from :meth:`WorldView.place`) can be this object:
        within reach, and its metric size within ``size_ratio`` of ``expected_size_m`` (the object's
        reference size at its expected depth) on the longer side. A box without depth cannot be
        checked and passes."""
        if placed is None:
            return True
        point, size = placed
        if float(np.linalg.norm(point - self.point)) > self.reach_m(now_s, margin_m, speed_m_s, reach_max_m):
            return False
        ratio = float(max(size.max(), 1e-6) / max(expected_size_m.max(), 1e-6))
        return 1.0 / size_ratio <= ratio <= size_ratio
