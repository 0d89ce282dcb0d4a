"""From a frame's tracking result (and its depth, camera and pose) to :class:`ObjectObservation`\\ s.

An object's world position is its mask's valid-depth pixels back-projected through the camera pose,
reduced to their per-axis median (robust to mask pixels that bleed onto the background), and, with
``centre: behind_surface``, moved away from the camera along the viewing ray by half the mask's
width in metres. Without depth, intrinsics or a pose the position is the mask's median pixel
``(u, v)`` (the box centre when there is no mask), flagged ``space="image"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memstream.embodied.scene.config import SceneConfig
from memstream.embodied.scene.types import ObjectObservation, Space
from memstream.streaming.types import Frame

if TYPE_CHECKING:
    from memstream.tracking.types import TrackOutput, TrackState


@dataclass(frozen=True)
class Camera:
    """What places pixels in the world: depth ``(H, W)`` metres, intrinsics ``(3, 3)`` pixels, pose
    ``(4, 4)`` world_from_cam metres."""

    depth_m: np.ndarray
    intrinsics: np.ndarray
    pose: np.ndarray


def camera_of(frame: Frame, map3d: Any = None) -> Camera | None:
    """The 3D memory's depth, intrinsics and pose for the frame when it fused it (a
    :class:`~memstream.embodied.map3d.memory.Map3DUpdate`: its pose may be estimated, its depth
    predicted), else the frame's own when it has all three, else None (image-plane positions)."""
    if map3d is not None and getattr(map3d, "fused", False) and getattr(map3d, "depth_m", None) is not None:
        return Camera(map3d.depth_m, map3d.intrinsics, map3d.pose)
    if frame.depth_m is not None and frame.intrinsics is not None and frame.pose is not None:
        return Camera(frame.depth_m, frame.intrinsics, frame.pose)
    return None


def tracker_score(state: TrackState) -> float:
    """``affinity x sigmoid(object_score)`` in [0, 1]: how well the frame shows the object."""
    presence = 1.0 / (1.0 + math.exp(-max(min(state.object_score, 50.0), -50.0)))
    return float(np.clip(state.affinity, 0.0, 1.0) * presence)


def observations(
    frame: Frame, tracking: TrackOutput, camera: Camera | None, config: SceneConfig
) -> list[ObjectObservation]:
    """One observation per object present on the frame (see the module docstring)."""
    space: Space = "world" if camera is not None else "image"
    found = []
    for state in tracking.states:
        if not state.present:
            continue
        mask = state.mask if state.mask is not None else _box_mask(state.box_xywh, frame.height, frame.width)
        position = world_position(mask, camera, config) if camera is not None else image_position(mask)
        area = visible_area_m2(mask, camera) if camera is not None else float(mask.sum())
        at_border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        found.append(
            ObjectObservation(
                state.object_id,
                frame.index,
                frame.timestamp_s,
                position,
                space,
                tracker_score(state),
                tuple(float(v) for v in state.box_xywh),
                tracking.name_of(state.object_id),  # type: ignore[arg-type]
                area,
                at_border,
            )
        )
    return found


def world_position(
    mask: np.ndarray, camera: Camera, config: SceneConfig
) -> tuple[float, float, float] | None:
    """The object's position in the world, metres, or None with fewer than ``min_depth_px`` valid
    depth pixels under the mask."""
    depth = camera.depth_m
    valid = mask & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    if len(v) < config.min_depth_px:
        return None
    if len(v) > config.max_points:  # evenly spaced pixels: the same every time for the same mask
        pick = np.linspace(0, len(v) - 1, config.max_points).astype(np.int64)
        v, u = v[pick], u[pick]
    z = depth[v, u].astype(np.float64)
    k = np.asarray(camera.intrinsics, np.float64)
    x_cam = (u - k[0, 2]) * z / k[0, 0]
    cam = np.stack([x_cam, (v - k[1, 2]) * z / k[1, 1], z], axis=1)
    pose = np.asarray(camera.pose, np.float64)
    point = np.median(cam, axis=0) @ pose[:3, :3].T + pose[:3, 3]
    if config.centre == "behind_surface":
        ray = point - pose[:3, 3]
        low, high = np.percentile(x_cam, [5, 95])
        half_width = 0.5 * float(high - low)
        point = point + ray / max(float(np.linalg.norm(ray)), 1e-9) * half_width
    return (float(point[0]), float(point[1]), float(point[2]))


def visible_area_m2(mask: np.ndarray, camera: Camera) -> float:
    """Square metres the mask's pixels with depth cover, each ``z^2 / (fx fy)`` (fronto-parallel)."""
    z = camera.depth_m[mask]
    z = z[np.isfinite(z) & (z > 0)].astype(np.float64)
    k = camera.intrinsics
    return float((z * z).sum() / (k[0, 0] * k[1, 1]))


def image_position(mask: np.ndarray) -> tuple[float, float] | None:
    """The mask's median pixel ``(u, v)``, or None for an empty mask."""
    v, u = np.nonzero(mask)
    if len(v) == 0:
        return None
    return (float(np.median(u)), float(np.median(v)))


def _box_mask(box_xywh: np.ndarray, height: int, width: int) -> np.ndarray:
    x, y, w, h = (round(float(c)) for c in box_xywh)
    mask = np.zeros((height, width), bool)
    mask[max(y, 0) : max(min(y + h, height), 0), max(x, 0) : max(min(x + w, width), 0)] = True
    return mask
