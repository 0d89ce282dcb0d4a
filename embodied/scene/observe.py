"""From a frame's tracking result (and its depth, camera and pose) to :class:`ObjectObservation`\\ s.

An object's world position comes from its mask's valid-depth pixels back-projected through the
camera pose: their per-axis median in world coordinates (robust to mask pixels that bleed onto the
background), each pixel weighted by the solid angle it subtends, and, with ``centre:
behind_surface``, pushed along the viewing ray to where a convex object's centre lies behind its
visible side (:func:`world_position`). Only the visible part of an object enters, so the estimate is
built to stay put when only the camera turns; what changes the visible part (the image border, an
occluder) is flagged on the observation (``at_border``, ``area``, ``occluded``: another tracked
object nearer the camera overlaps its box) for motion detection to skip.
Without depth, intrinsics or a pose the position is the mask's median pixel ``(u, v)`` (the box
centre when there is no mask), flagged ``space="image"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from memstream.embodied.scene.config import SceneConfig
from memstream.embodied.scene.types import ObjectObservation, Space
from memstream.streaming.types import Frame

_EXTENT = (0.02, 0.98)

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
    present = [state for state in tracking.states if state.present]
    masks = [
        state.mask if state.mask is not None else _box_mask(state.box_xywh, frame.height, frame.width)
        for state in present
    ]
    ranges = [_median_depth(mask, camera) for mask in masks] if camera is not None else []
    found = []
    for i, (state, mask) in enumerate(zip(present, masks, strict=True)):
        position = world_position(mask, camera, config) if camera is not None else image_position(mask)
        area = visible_area_m2(mask, camera) if camera is not None else float(mask.sum())
        at_border = bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
        occluded = camera is not None and any(
            j != i and ranges[j] < ranges[i] and _boxes_overlap(state.box_xywh, other.box_xywh)
            for j, other in enumerate(present)
        )
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
                occluded,
            )
        )
    return found


def _median_depth(mask: np.ndarray, camera: Camera) -> float:
    """The median valid depth under the mask (inf without any): which of two objects is nearer."""
    z = camera.depth_m[mask]
    z = z[np.isfinite(z) & (z > 0)]
    return float(np.median(z)) if len(z) else math.inf


def _boxes_overlap(a: Any, b: Any) -> bool:
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    return min(ax + aw, bx + bw) > max(ax, bx) and min(ay + ah, by + bh) > max(ay, by)


def world_position(
    mask: np.ndarray, camera: Camera, config: SceneConfig
) -> tuple[float, float, float] | None:
    """The object's position in the world, metres, or None with fewer than ``min_depth_px`` valid
    depth pixels under the mask.

    It does not move when only the camera turns (a glance that carries an object from the image
    edge to its centre moved the previous, camera-axis estimate of a 0.8 m table by 20 cm, which
    motion detection took for a move):

    * the points are reduced in world coordinates, not along the camera's axes (which turn with it);
    * each pixel weighs the solid angle it subtends, ``cos^3`` of its angle off the optical axis (a
      pixel near the image edge covers less of the world than one at the centre, so an unweighted
      median slides as the object crosses the image);
    * ``behind_surface``: the horizontal plane (world ``y`` is vertical, as in the camera convention
      of the first pose) is split along the ray to the median point (``ahead``) and across it; the
      centre lies ``near + width / 2`` ahead, where ``near`` is the nearest visible point and
      ``width`` the extent across (both as 2nd / 98th weighted percentiles, the extent divided by
      0.96; ``near`` among the points within ``width`` of the median point along the ray, so mask
      pixels that bleed onto a nearer occluder or the floor in front do not count), at the middle of
      that extent, and at the height of the ray through the median point.
      This is exact for a sphere and for an upright box seen from any side (the nearest edge plus
      half the width across is its centre's distance), where a push by half the camera-``x`` width
      was exact only face-on. Looking (nearly) straight down or up, the median point is returned.
    """
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
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1)
    cos_off_axis = z / np.linalg.norm(cam, axis=1)
    weight = cos_off_axis**3  # solid angle per pixel, up to a constant
    pose = np.asarray(camera.pose, np.float64)
    origin = pose[:3, 3]
    world = cam @ pose[:3, :3].T + origin
    point = np.array([_weighted_quantiles(world[:, j], weight, (0.5,))[0] for j in range(3)])
    if config.centre == "behind_surface":
        rel, seen = world - origin, point - origin
        ahead = np.array([seen[0], 0.0, seen[2]])  # the ray to the median point, horizontal
        reach = float(np.linalg.norm(ahead))
        if reach < 0.3 * float(np.linalg.norm(seen)):  # looking (nearly) straight down or up
            return (float(point[0]), float(point[1]), float(point[2]))
        ahead /= reach
        across = np.array([ahead[2], 0.0, -ahead[0]])
        lo, hi = _EXTENT
        left, right = (float(x) for x in _weighted_quantiles(rel @ across, weight, (lo, hi)))
        width = (right - left) / (hi - lo)
        # a convex object's visible side lies within its width of the median point along the ray:
        # mask pixels farther off (onto a nearer occluder or the floor in front) are not its nearest point
        along = rel @ ahead
        inside = np.abs(along - reach) <= max(width, 1e-3)
        near = float(_weighted_quantiles(along[inside], weight[inside], (lo,))[0]) if inside.any() else reach
        depth = near + 0.5 * width  # the centre's horizontal distance
        point = origin + ahead * depth + across * 0.5 * (left + right)
        point[1] = origin[1] + seen[1] / reach * depth  # on the ray through the median point
    return (float(point[0]), float(point[1]), float(point[2]))


def _weighted_quantiles(values: np.ndarray, weight: np.ndarray, q: tuple[float, ...]) -> np.ndarray:
    """Quantiles ``q`` of ``values`` with ``weight``s: the cumulative weight is taken at the middle
    of each value's own weight, and the quantile is where it reaches ``q`` of its last entry
    (linear between values; the end values beyond)."""
    order = np.argsort(values, kind="stable")
    sorted_values, w = values[order], weight[order]
    cumulative = np.cumsum(w) - 0.5 * w
    return np.interp(np.asarray(q) * cumulative[-1], cumulative, sorted_values)


def visible_area_m2(mask: np.ndarray, camera: Camera) -> float:
    """Square metres the mask's pixels with depth cover, across the viewing ray: each pixel's solid
    angle ``cos^3(off-axis) / (fx fy)`` times its squared range (the same whichever way the camera
    turns)."""
    depth = camera.depth_m
    valid = mask & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float64)
    k = np.asarray(camera.intrinsics, np.float64)
    x, y = (u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1]
    # range^2 * cos^3 = z^2 (1 + x^2 + y^2) / (1 + x^2 + y^2)^1.5, with x, y the normalised coordinates
    return float((z * z / np.sqrt(1.0 + x * x + y * y)).sum() / (k[0, 0] * k[1, 1]))


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
