"""Measure a 3D memory against exact ground truth: map accuracy, ghosts, object positions, poses.

Conventions follow the CUT3R evaluation code: reconstruction accuracy / completeness are mean
nearest-neighbour distances (``eval/mv_recon``), and ATE / RPE follow the TUM RGB-D benchmark as
CUT3R computes them with ``evo`` (RMSE statistics, RPE over consecutive frames). CUT3R aligns with
Sim(3) because its predictions are up to scale; our memory is metric (depth is given), so the
default here is SE(3). Everything is metres, seconds and degrees; points are float64 ``(n, 3)``.

Example:
    >>> from memstream.streaming import open_source
    >>> with open_source("synthetic://dynamic_room?frames=4&size=48x36") as source:
    ...     gt = ground_truth(list(source))
    >>> gt.track_kind, sorted(gt.object_tracks)
    ('scene_centre', [1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.spatial import cKDTree

from memstream.streaming.errors import ConfigError
from memstream.streaming.synthetic import SceneSpec, build_scene
from memstream.streaming.types import Frame

Track = tuple[np.ndarray, np.ndarray]  # times_s float64 (m,), positions float64 (m, 3) metres


def backproject(
    depth_m: np.ndarray,
    intrinsics: np.ndarray,
    pose: np.ndarray,
    mask: np.ndarray | None = None,
    stride: int = 1,
) -> np.ndarray:
    """World points of the pixels with valid depth (finite and > 0).

    Args:
        depth_m: float32 ``(H, W)`` z-depth, metres; 0 or nan means no measurement.
        intrinsics: ``(3, 3)`` pinhole matrix, pixels (pixel centres at integer coordinates).
        pose: ``(4, 4)`` world_from_cam, metres, OpenCV camera axes.
        mask: bool ``(H, W)`` pixels to keep, or None for all.
        stride: keep every ``stride``-th row and column (from pixel 0).

    Returns:
        float64 ``(n, 3)`` world points, metres, in row-major pixel order.
    """
    depth = np.asarray(depth_m)
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, bool)
    if stride > 1:
        keep = np.zeros_like(valid)
        keep[::stride, ::stride] = True
        valid &= keep
    v, u = np.nonzero(valid)
    z = depth[v, u].astype(np.float64)
    k, world_from_cam = np.asarray(intrinsics, np.float64), np.asarray(pose, np.float64)
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1)
    return cam @ world_from_cam[:3, :3].T + world_from_cam[:3, 3]


def voxel_downsample(points: np.ndarray, voxel_m: float) -> np.ndarray:
    """float64 ``(k, 3)``: the centroid of the points in each occupied ``voxel_m`` cube."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    if voxel_m <= 0:
        raise ValueError(f"voxel_m must be > 0, got {voxel_m}")
    if len(points) == 0:
        return points.copy()
    _, inverse, counts = np.unique(
        np.floor(points / voxel_m).astype(np.int64), axis=0, return_inverse=True, return_counts=True
    )
    inverse = inverse.ravel()
    return np.stack([np.bincount(inverse, points[:, j]) for j in range(3)], axis=1) / counts[:, None]


def _add_points(parts: list[np.ndarray], points: np.ndarray, voxel_m: float, budget: int = 2_000_000) -> None:
    """Append a frame's points; re-downsample once the list holds more than ``budget`` points.

    Re-downsampling averages earlier centroids (unweighted), which keeps every output point inside
    its voxel and bounds memory by the number of occupied voxels on long sequences.
    """
    if len(points):
        parts.append(voxel_downsample(points, voxel_m))
        if sum(map(len, parts)) > budget:
            parts[:] = [voxel_downsample(np.concatenate(parts), voxel_m)]


def ghost_zone_of(static_points: np.ndarray, dynamic_swept: np.ndarray, voxel_m: float) -> np.ndarray:
    """float64 ``(g, 3)``: the swept points farther than ``2 * voxel_m`` from every static point."""
    swept = np.asarray(dynamic_swept, np.float64).reshape(-1, 3)
    if len(static_points) == 0 or len(swept) == 0:
        return swept.copy()
    distance, _ = cKDTree(static_points).query(swept, distance_upper_bound=2 * voxel_m)
    return swept[distance > 2 * voxel_m]


@dataclass(frozen=True)
class GroundTruth:
    """What a dynamic-scene 3D memory should have produced, from exact per-frame ground truth.

    Attributes:
        voxel_m: voxel size every point set below was downsampled with, metres.
        static_points: float64 ``(s, 3)``: background and non-dynamic-object pixels of every frame.
        dynamic_swept: float64 ``(d, 3)``: every pixel of a dynamic object in any frame (where
            dynamic things ever were).
        ghost_zone: float64 ``(g, 3)``: swept points farther than ``2 * voxel_m`` from every static
            point, i.e. places only dynamic objects ever occupied; a static map must stay out.
        object_centroids: dynamic object id -> (times_s ``(m,)``, float64 ``(m, 3)``): the mean of
            the object's back-projected *visible* pixels in each frame where at least one is visible
            (a pixel-weighted centroid of the visible surface, biased towards the camera).
        object_centres: the same ids and times with the object's true centre, from the scene
            description, or None when no scene description is known.
        poses: float64 ``(N, 4, 4)`` world_from_cam of every frame.
        timestamps: float64 ``(N,)`` frame times, seconds.
    """

    voxel_m: float
    static_points: np.ndarray
    dynamic_swept: np.ndarray
    ghost_zone: np.ndarray
    object_centroids: dict[int, Track]
    object_centres: dict[int, Track] | None
    poses: np.ndarray
    timestamps: np.ndarray

    @property
    def track_kind(self) -> str:
        """``"scene_centre"`` when exact centres are known, else ``"visible_surface_centroid"``."""
        return "scene_centre" if self.object_centres is not None else "visible_surface_centroid"

    @property
    def object_tracks(self) -> dict[int, Track]:
        """The preferred reference trajectories: exact centres when known, else visible centroids."""
        return self.object_centres if self.object_centres is not None else self.object_centroids


def ground_truth(
    frames: Iterable[Frame], voxel_m: float = 0.02, scene: SceneSpec | None = None
) -> GroundTruth:
    """Build the :class:`GroundTruth` of a sequence of frames with depth, intrinsics, pose and ``gt``.

    Args:
        frames: the frames, in time order (e.g. ``list(open_source("synthetic://dynamic_room"))``).
        voxel_m: voxel size of the point sets, metres.
        scene: the scene description, for exact object centres. When None and the frames come
            from a ``synthetic://`` URI, the scene is rebuilt from ``source_id`` and used only if
            it reproduces the frames (camera poses, frame times, visible surfaces near centres).

    Raises:
        ValueError: no frames, or a frame without depth, intrinsics, pose or ground truth.
    """
    static: list[np.ndarray] = []
    swept: list[np.ndarray] = []
    tracks: dict[int, list[tuple[float, np.ndarray]]] = {}
    poses, times, source_id = [], [], ""
    for frame in frames:
        if frame.depth_m is None or frame.intrinsics is None or frame.pose is None or frame.gt is None:
            raise ValueError(f"frame {frame.index} lacks depth, intrinsics, pose or ground truth")
        mask = frame.gt.instance_mask
        dynamic_ids = frame.gt.object_ids[frame.gt.is_dynamic]
        for object_id in dynamic_ids:
            tracks.setdefault(int(object_id), [])
        static_px = ~np.isin(mask, dynamic_ids)
        _add_points(static, backproject(frame.depth_m, frame.intrinsics, frame.pose, static_px), voxel_m)
        for object_id in np.intersect1d(np.unique(mask), dynamic_ids):
            points = backproject(frame.depth_m, frame.intrinsics, frame.pose, mask == object_id)
            if len(points):
                _add_points(swept, points, voxel_m)
                tracks[int(object_id)].append((frame.timestamp_s, points.mean(axis=0)))
        poses.append(np.asarray(frame.pose, np.float64))
        times.append(frame.timestamp_s)
        source_id = source_id or frame.source_id
    if not poses:
        raise ValueError("ground_truth needs at least one frame")
    centroids = {i: _as_track(samples) for i, samples in tracks.items()}
    poses_array, times_array = np.stack(poses), np.asarray(times, np.float64)
    if scene is None:
        scene = _matching_scene(source_id, times_array, poses_array, centroids)
    static_points, swept_points = (
        voxel_downsample(np.concatenate([*parts, np.zeros((0, 3))]), voxel_m) for parts in (static, swept)
    )
    return GroundTruth(
        voxel_m=voxel_m,
        static_points=static_points,
        dynamic_swept=swept_points,
        ghost_zone=ghost_zone_of(static_points, swept_points, voxel_m),
        object_centroids=centroids,
        object_centres=None if scene is None else _scene_centres(scene, centroids),
        poses=poses_array,
        timestamps=times_array,
    )


def _as_track(samples: list[tuple[float, np.ndarray]]) -> Track:
    times = np.array([t for t, _ in samples], np.float64)
    return times, np.array([c for _, c in samples], np.float64).reshape(-1, 3)


def _scene_centres(scene: SceneSpec, centroids: dict[int, Track]) -> dict[int, Track]:
    objects = {o.object_id: o for o in scene.objects}
    missing = sorted(set(centroids) - set(objects))
    if missing:
        raise ValueError(f"scene {scene.name!r} has no object(s) {missing}")
    return {
        i: (times.copy(), np.array([objects[i].position.at(t) for t in times]).reshape(-1, 3))
        for i, (times, _) in centroids.items()
    }


def _matching_scene(
    source_id: str, times: np.ndarray, poses: np.ndarray, centroids: dict[int, Track]
) -> SceneSpec | None:
    """The scene named by a ``synthetic://`` source id, if it verifiably rendered these frames."""
    if not source_id.startswith("synthetic://"):
        return None
    try:
        scene = build_scene(source_id)
    except ConfigError:
        return None
    ticks = times * scene.fps
    if np.abs(ticks - np.round(ticks)).max() > 1e-6 or ticks.max() > scene.num_frames - 1 + 1e-6:
        return None
    if not np.allclose(np.stack([scene.camera.pose(t) for t in times]), poses, atol=1e-6):
        return None
    objects = {o.object_id: o for o in scene.objects}
    for object_id, (track_times, points) in centroids.items():
        obj = objects.get(object_id)
        if obj is None:
            return None
        for t, point in zip(track_times, points):  # the visible surface lies inside the bounding sphere
            if np.linalg.norm(point - obj.position.at(t)) > obj.bounding_radius_m(t) + 1e-6:
                return None
    return scene


def accuracy_completeness(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """CUT3R ``mv_recon`` accuracy and completeness, metres.

    Args:
        pred: float ``(n, 3)`` predicted points.
        gt: float ``(m, 3)`` ground-truth points.

    Returns:
        ``(accuracy, completeness)``: mean distance from each predicted point to its nearest
        ground-truth point, and from each ground-truth point to its nearest predicted point.

    Raises:
        ValueError: either set is empty (the distances are undefined).
    """
    pred, gt = np.asarray(pred, np.float64).reshape(-1, 3), np.asarray(gt, np.float64).reshape(-1, 3)
    if len(pred) == 0 or len(gt) == 0:
        raise ValueError(f"accuracy/completeness need points on both sides, got {len(pred)} and {len(gt)}")
    accuracy = float(cKDTree(gt).query(pred)[0].mean())
    completeness = float(cKDTree(pred).query(gt)[0].mean())
    return accuracy, completeness


def chamfer(pred: np.ndarray, gt: np.ndarray) -> float:
    """``(accuracy + completeness) / 2``, metres (see :func:`accuracy_completeness`)."""
    accuracy, completeness = accuracy_completeness(pred, gt)
    return (accuracy + completeness) / 2


def ghost_ratio(static_map_points: np.ndarray, gt: GroundTruth, radius_m: float | None = None) -> float:
    """Share of static-map points lying where only dynamic objects ever were.

    A point counts as a ghost when it is within ``radius_m`` of a ghost-zone point. The default
    ``1.5 * gt.voxel_m`` covers the spacing of the voxel-downsampled ghost zone (a surface sampled
    at one point per voxel) while staying below the ``2 * voxel_m`` margin that separates the
    ghost zone from static geometry, so a map point on a static ground-truth sample is never
    flagged. Points on static surfaces between samples can come slightly closer; pass a smaller
    radius for maps much denser than the ground truth.

    Args:
        static_map_points: float ``(n, 3)`` the memory's static map (points or mesh vertices), metres.
        gt: the ground truth (its ``ghost_zone`` and ``voxel_m``).
        radius_m: ghost radius, metres; None for ``1.5 * gt.voxel_m``.

    Returns:
        Ghost points / map points in [0, 1]; 0.0 when the ghost zone is empty, nan for an empty map.
    """
    points = np.asarray(static_map_points, np.float64).reshape(-1, 3)
    if len(points) == 0:
        return float("nan")
    if len(gt.ghost_zone) == 0:
        return 0.0
    radius = 1.5 * gt.voxel_m if radius_m is None else radius_m
    distance, _ = cKDTree(gt.ghost_zone).query(points, distance_upper_bound=radius)
    return float(np.mean(distance <= radius))


def position_errors(
    pred: dict[int, Track], gt: GroundTruth, reference: Literal["auto", "centre", "surface"] = "auto"
) -> dict[int, dict[str, float]]:
    """Per-object Euclidean position error at the ground-truth times, metres.

    Args:
        pred: object id (the ground truth's ids; association happens upstream) -> (times_s
            ``(k,)``, positions ``(k, 3)``). A prediction matches a ground-truth time when its
            nearest timestamp is within 1e-6 s.
        gt: the ground truth; its tracks hold the times each object was visible.
        reference: ``"centre"`` (exact centres), ``"surface"`` (visible-surface centroids) or
            ``"auto"`` (centres when known).

    Returns:
        Per id (every ground-truth object and every predicted id): ``mean_m``, ``median_m``,
        ``max_m`` over matched times (nan when none), ``matched``, ``missing`` (ground-truth times
        without a prediction) and ``extra`` (predicted samples that matched no ground-truth time).
    """
    if reference == "centre" and gt.object_centres is None:
        raise ValueError("exact object centres are unknown for this ground truth")
    tracks = gt.object_centroids if reference == "surface" else gt.object_tracks
    empty: Track = (np.zeros(0), np.zeros((0, 3)))
    report: dict[int, dict[str, float]] = {}
    for object_id in sorted(set(tracks) | set(pred)):
        gt_times, gt_positions = tracks.get(object_id, empty)
        times, positions = (np.asarray(a, np.float64) for a in pred.get(object_id, empty))
        used, errors = np.zeros(len(times), bool), np.zeros(0)
        if len(times) and len(gt_times):
            order = np.argsort(times, kind="stable")
            slot = np.searchsorted(times[order], gt_times)
            sides = order[np.clip(np.stack([slot - 1, slot]), 0, len(times) - 1)]  # (2, m) neighbours
            nearest = sides[np.argmin(np.abs(times[sides] - gt_times), axis=0), np.arange(len(gt_times))]
            hit = np.abs(times[nearest] - gt_times) <= 1e-6
            used[nearest[hit]] = True
            errors = np.linalg.norm(positions[nearest[hit]] - gt_positions[hit], axis=1)
        values = errors if len(errors) else np.full(1, np.nan)
        report[object_id] = {
            "mean_m": float(values.mean()),
            "median_m": float(np.median(values)),
            "max_m": float(values.max()),
            "matched": int(len(errors)),
            "missing": int(len(gt_times) - len(errors)),
            "extra": int((~used).sum()),
        }
    return report


def umeyama(
    source: np.ndarray, target: np.ndarray, with_scale: bool = False
) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity ``target ~ s * R @ source + t`` (Umeyama 1991; Horn without scale).

    Args:
        source, target: float ``(n, 3)`` corresponding points, n >= 1 (n >= 3 non-collinear for a
            unique rotation).
        with_scale: estimate ``s``; otherwise ``s = 1`` (rigid, SE(3)).

    Returns:
        ``(s, R (3, 3), t (3,))``, float64.
    """
    src, dst = np.asarray(source, np.float64).reshape(-1, 3), np.asarray(target, np.float64).reshape(-1, 3)
    if len(src) != len(dst) or len(src) == 0:
        raise ValueError(f"umeyama needs equal non-empty point sets, got {len(src)} and {len(dst)}")
    mu_src, mu_dst = src.mean(axis=0), dst.mean(axis=0)
    centred_src, centred_dst = src - mu_src, dst - mu_dst
    u, singular, vt = np.linalg.svd(centred_dst.T @ centred_src / len(src))
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # reflection: flip the weakest axis
        sign[2, 2] = -1
    rotation = u @ sign @ vt
    variance = float((centred_src**2).sum() / len(src))
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if with_scale and variance > 0 else 1.0
    return scale, rotation, mu_dst - scale * rotation @ mu_src


def ate_rpe(
    estimated: np.ndarray, reference: np.ndarray, align: Literal["se3", "sim3", "none"] = "se3"
) -> dict[str, float]:
    """Camera trajectory errors following the TUM RGB-D benchmark (as CUT3R reports them via evo).

    The estimated trajectory is first aligned to the reference by :func:`umeyama` on camera
    positions (``align``); ATE is the RMSE of the aligned position differences. RPE compares
    consecutive frames (delta = 1): ``E_i = (Q_i^-1 Q_i+1)^-1 (P_i^-1 P_i+1)`` with Q the reference
    and P the aligned estimate; ``rpe_trans_m`` is the RMSE of ``|trans(E_i)|`` and
    ``rpe_rot_deg`` the RMSE of the rotation angle of ``E_i``.

    Args:
        estimated, reference: float ``(N, 4, 4)`` world_from_cam poses of the same frames, metres.
        align: ``"se3"`` (rigid, default: our memory is metric), ``"sim3"`` (also scale, CUT3R's
            choice for up-to-scale predictions) or ``"none"``.

    Returns:
        ``ate_rmse_m``, ``rpe_trans_m``, ``rpe_rot_deg`` (both RPE nan when N < 2) and ``scale``.
    """
    est, ref = np.asarray(estimated, np.float64), np.asarray(reference, np.float64)
    if est.shape != ref.shape or est.ndim != 3 or est.shape[1:] != (4, 4) or len(est) == 0:
        raise ValueError(f"need two (N, 4, 4) trajectories, got {est.shape} and {ref.shape}")
    if align not in ("se3", "sim3", "none"):
        raise ValueError(f"align must be 'se3', 'sim3' or 'none', got {align!r}")
    scale, rotation, shift = 1.0, np.eye(3), np.zeros(3)
    if align != "none":
        scale, rotation, shift = umeyama(est[:, :3, 3], ref[:, :3, 3], with_scale=align == "sim3")
    aligned = est.copy()
    aligned[:, :3, :3] = rotation @ est[:, :3, :3]
    aligned[:, :3, 3] = scale * est[:, :3, 3] @ rotation.T + shift
    ate = float(np.sqrt(np.mean(np.sum((aligned[:, :3, 3] - ref[:, :3, 3]) ** 2, axis=1))))
    if len(est) < 2:
        return {"ate_rmse_m": ate, "rpe_trans_m": float("nan"), "rpe_rot_deg": float("nan"), "scale": scale}
    relative_ref = np.linalg.inv(ref[:-1]) @ ref[1:]
    relative_est = np.linalg.inv(aligned[:-1]) @ aligned[1:]
    error = np.linalg.inv(relative_ref) @ relative_est
    cos_angle = np.clip((np.trace(error[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    return {
        "ate_rmse_m": ate,
        "rpe_trans_m": float(np.sqrt(np.mean(np.sum(error[:, :3, 3] ** 2, axis=1)))),
        "rpe_rot_deg": float(np.sqrt(np.mean(np.degrees(np.arccos(cos_angle)) ** 2))),
        "scale": scale,
    }
