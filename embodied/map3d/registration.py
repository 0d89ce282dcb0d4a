"""Camera poses estimated here: frame-to-model registration against the static map.

Each frame's static pixels are aligned to a ray cast of the Persistent Structure Memory (depth and
colour rendered at the predicted pose) with open3d's multi-scale RGB-D odometry (point-to-plane
plus photometric, Huber-robust). Registering against the *map*, not the previous frame, is what
keeps the trajectory drift-free while the camera revisits mapped space (KinectFusion's
frame-to-model tracking). Moving pixels known before registration (tracking or ground-truth
masks) are left out; the robust loss and the outlier truncation absorb the rest.

The pose is predicted with a constant-velocity model. While the map is still too sparse to render
enough of the frame (the first frames), the frame is registered to the previous frame instead.
A registration that converges on too few pixels is rejected: the predicted pose is kept and
:attr:`RegistrationResult.tracked` is False, so one bad frame cannot tear the map.

Geometric degeneracy: point-to-plane residuals cannot see a slide along every visible plane. When
the frame's surfaces within range face fewer than three independent directions (in the
``distractors`` preset only the floor and the ceiling lie within ``depth_max_m``; the back wall is at
9 m), the translation along them is unconstrained: odometry wanders and the constant-velocity model
turns the wander into a runaway (measured: 23 cm after one frame of a static camera, 50 m after 30). So
the frame's normals are summarised (the 3 x 3 scatter of unit normals, eigenvalues summing to 1) and
the correction's translation along any direction whose share is below
:attr:`RegistrationConfig.degeneracy_threshold` is dropped: along it the pose follows the motion
model (solution remapping, Zhang et al., ICRA 2016). :attr:`RegistrationResult.degenerate_axes`
counts the directions dropped. What remains: motion that rotation leaks into a dropped direction
persists through the motion model (``distractors`` at 320x240: 3 cm off after 10 frames, 6 cm after
110, instead of metres).

Limits, measured on ``dynamic_room`` (views dominated by walls and floor): projective association
pulls back translation errors of several centimetres to a few millimetres, but a rotation error of
several degrees slides along the walls and ends 10-30 cm off. The constant-velocity prediction
keeps the per-frame error far below that on smooth camera paths (the sequences of
``benchmarks/bench_map3d.py``); a fast-turning hand-held camera needs a higher frame rate. Point
cloud ICP against the whole map recovered 3-degree offsets exactly but cost 10x the time.
The trajectory settles about 3 cm from the truth within the first 5 frames and stays there: open3d's
ray caster marches the TSDF without interpolating, so the rendered model is stair-stepped (after 5
frames at 2 cm voxels: median depth residual 6 mm, 30 % of pixels over 3 cm off); registering a
frame to that model from its true pose lands 0.5-0.8 cm off per axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import Field

from memstream.embodied.map3d.psm import PersistentStructureMemory, _o3d
from memstream.streaming.configtypes import strict_config

RegistrationMethod = Literal["point_to_plane", "hybrid", "intensity"]
Positive = Annotated[float, Field(gt=0)]


@strict_config
@dataclass(frozen=True)
class RegistrationConfig:
    """How poses are estimated.

    Attributes:
        method: open3d's odometry loss: ``point_to_plane`` (depth only), ``hybrid`` (depth +
            intensity), ``intensity``. Point-to-plane is the default because the colour the TSDF
            renders is a blend of many views: registered from the true pose on ``dynamic_room``,
            point-to-plane stays 0.3 cm from it, hybrid drifts 1.8 cm and intensity 9 cm.
        iterations: Gauss-Newton iterations per pyramid level, coarse to fine.
        depth_outlier_m: correspondences farther apart than this are dropped.
        depth_huber_m: Huber threshold of the depth residual.
        intensity_huber: Huber threshold of the intensity residual (intensity in [0, 1]).
        min_model_fraction: share of the frame's valid pixels the map must render for
            frame-to-model registration; below it the frame goes to the previous frame.
        min_fitness: share of the frame's pixels that must end as inliers, else the result is
            rejected and the predicted pose kept.
        constant_velocity: predict each pose by repeating the last motion (else the last pose).
        degeneracy_threshold: a translation direction whose share of the frame's normal scatter is
            below this is left to the motion model (see the module docstring); 0 turns it off.
            Measured shares of the weakest direction (frames 0-29, 160x120 and 320x240):
            ``distractors`` <= 0.002, ``dynamic_room`` >= 0.025, ``demo`` >= 0.08,
            ``camera_motion`` >= 0.06.
    """

    method: RegistrationMethod = "point_to_plane"
    iterations: Annotated[tuple[Annotated[int, Field(ge=1)], ...], Field(min_length=1)] = (12, 8, 4)
    depth_outlier_m: Positive = 0.07
    depth_huber_m: Positive = 0.05
    intensity_huber: Positive = 0.1
    min_model_fraction: Annotated[float, Field(ge=0, le=1)] = 0.3
    min_fitness: float = 0.1  # above 1, nothing passes (tests use that)
    constant_velocity: bool = True
    degeneracy_threshold: Annotated[float, Field(ge=0, lt=1 / 3)] = 0.01

    def __post_init__(self) -> None:
        if self.method not in get_args(RegistrationMethod):
            raise ValueError(f"unknown registration method {self.method!r}; use {', '.join(get_args(RegistrationMethod))}")


@dataclass(frozen=True)
class RegistrationResult:
    """One frame's estimated pose.

    Attributes:
        world_from_cam: float64 ``(4, 4)``, metres.
        target: what the frame was aligned to: ``model`` (the map's ray cast), ``frame`` (the
            previous frame), ``none`` (first frame: the anchor).
        fitness: share of the frame's pixels that ended as inliers.
        rmse_m: inlier residual.
        tracked: False when the alignment was rejected and the predicted pose kept.
        degenerate_axes: translation directions the frame's geometry could not constrain (their
            component was taken from the motion model).
    """

    world_from_cam: np.ndarray
    target: str
    fitness: float = 0.0
    rmse_m: float = 0.0
    tracked: bool = True
    degenerate_axes: int = 0


class FrameToModelRegistration:
    """Estimates camera poses frame by frame (see the module docstring).

    Args:
        config: odometry settings.
        depth_max_m: depth beyond this is not used.
    """

    def __init__(self, config: RegistrationConfig | None = None, depth_max_m: float = 8.0) -> None:
        self.config = config or RegistrationConfig()
        self.depth_max_m = depth_max_m
        self._o3d, self._o3c = _o3d()
        from open3d.t.pipelines import odometry

        self._odometry = odometry
        self._method = {"hybrid": odometry.Method.Hybrid, "point_to_plane": odometry.Method.PointToPlane,
                        "intensity": odometry.Method.Intensity}[self.config.method]
        self._poses: list[np.ndarray] = []  # the last two estimates, for the motion model
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # last frame's (depth, rgb)
        self.frames_lost = 0

    def reset(self) -> None:
        self._poses, self._previous, self.frames_lost = [], None, 0

    def follow(self, world_from_cam: np.ndarray, depth_m: np.ndarray, rgb: np.ndarray) -> None:
        """Take a frame whose pose is known (given with it), so the motion model and the
        frame-to-frame fallback continue from it when later frames need estimating."""
        self._poses = [*self._poses[-1:], np.asarray(world_from_cam, np.float64).copy()]
        self._previous = (depth_m, rgb)

    def predicted_pose(self) -> np.ndarray | None:
        """The pose the motion model expects for the next frame (None before the first)."""
        if not self._poses:
            return None
        last = self._poses[-1]
        if len(self._poses) < 2 or not self.config.constant_velocity:
            return last.copy()
        return last @ (np.linalg.inv(self._poses[-2]) @ last)

    def register(self, depth_m: np.ndarray, rgb: np.ndarray, intrinsics: np.ndarray, psm: PersistentStructureMemory,
                 anchor: np.ndarray | None = None) -> RegistrationResult:
        """Estimate the pose of one frame.

        Args:
            depth_m: float32 ``(H, W)`` metres, 0 at pixels to leave out (invalid or moving).
            rgb: uint8 ``(H, W, 3)``.
            intrinsics: ``(3, 3)`` pixels.
            psm: the static map, rendered at the predicted pose.
            anchor: the pose of the first frame (the world frame), identity when None.
        """
        predicted = self.predicted_pose()
        if predicted is None:
            pose = np.eye(4) if anchor is None else np.asarray(anchor, np.float64).copy()
            result = RegistrationResult(pose, "none")
        else:
            height, width = depth_m.shape
            model_depth, model_rgb = psm.raycast(intrinsics, predicted, width, height)
            enough = (model_depth > 0).sum() >= self.config.min_model_fraction * max((depth_m > 0).sum(), 1)
            if enough or self._previous is None:
                result = self._align(depth_m, rgb, model_depth, model_rgb, intrinsics, predicted, "model")
            else:
                last_depth, last_rgb = self._previous
                result = self._align(depth_m, rgb, last_depth, last_rgb, intrinsics, self._poses[-1], "frame",
                                     init=np.linalg.inv(self._poses[-1]) @ predicted)
        self._poses = [*self._poses[-1:], result.world_from_cam]
        self._previous = (depth_m, rgb)
        self.frames_lost += not result.tracked
        return result

    def _align(self, depth, rgb, target_depth, target_rgb, intrinsics, target_pose, target: str,
               init: np.ndarray | None = None) -> RegistrationResult:
        """Align the frame to a target image seen from ``target_pose``; ``init`` is the initial
        source-to-target motion (identity: the frame starts at the target's pose)."""
        o3c, cfg = self._o3c, self.config
        init = np.eye(4) if init is None else init
        source, goal = self._rgbd(depth, rgb), self._rgbd(target_depth, target_rgb)
        criteria = [self._odometry.OdometryConvergenceCriteria(n) for n in cfg.iterations]
        params = self._odometry.OdometryLossParams(cfg.depth_outlier_m, cfg.depth_huber_m, cfg.intensity_huber)
        try:
            out = self._odometry.rgbd_odometry_multi_scale(
                source, goal, o3c.Tensor(np.asarray(intrinsics, np.float64)), o3c.Tensor(init),
                1.0, self.depth_max_m, criteria, self._method, params)
        except RuntimeError as exc:  # open3d raises when no correspondence survives
            if "correspondences" not in str(exc).lower() and "singular" not in str(exc).lower():
                raise
            return RegistrationResult(target_pose @ init, target, tracked=False)
        motion = out.transformation.cpu().numpy().astype(np.float64)
        fitness, rmse = float(out.fitness), float(out.inlier_rmse)
        if fitness < cfg.min_fitness or not np.isfinite(motion).all():
            return RegistrationResult(target_pose @ init, target, fitness, rmse, tracked=False)
        motion, dropped = self._remap_degenerate(motion, init, depth, intrinsics)
        return RegistrationResult(target_pose @ motion, target, fitness, rmse, degenerate_axes=dropped)

    def _remap_degenerate(self, motion: np.ndarray, init: np.ndarray, depth: np.ndarray,
                          intrinsics: np.ndarray) -> tuple[np.ndarray, int]:
        """Drop the correction's translation along directions the frame's normals do not constrain.

        ``inv(init) @ motion`` is the correction to the predicted pose, in the frame's camera
        coordinates, where the normals are computed.
        """
        threshold = self.config.degeneracy_threshold
        if threshold <= 0:
            return motion, 0
        scatter = normal_scatter(depth, intrinsics, self.depth_max_m)
        if scatter is None:
            return motion, 0
        values, vectors = np.linalg.eigh(scatter)
        weak = vectors[:, values < threshold]
        if not weak.shape[1]:
            return motion, 0
        correction = np.linalg.inv(init) @ motion
        correction[:3, 3] -= weak @ (weak.T @ correction[:3, 3])
        return init @ correction, weak.shape[1]

    def _rgbd(self, depth: np.ndarray, rgb: np.ndarray):
        o3d, o3c = self._o3d, self._o3c
        color = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(rgb, np.float32) / 255.0))
        return o3d.t.geometry.RGBDImage(color, o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(depth, np.float32))))

    def state_dict(self) -> dict:
        return {"poses": [p.copy() for p in self._poses], "frames_lost": self.frames_lost}

    def load_state_dict(self, state: dict) -> None:
        # The previous frame's image is not kept: after a restart the next frame registers to the map.
        self._poses = [np.asarray(p, np.float64) for p in state["poses"]]
        self._previous, self.frames_lost = None, state["frames_lost"]


def normal_scatter(depth_m: np.ndarray, intrinsics: np.ndarray, depth_max_m: float = np.inf, stride: int = 2,
                   max_jump: float = 0.1) -> np.ndarray | None:
    """The mean outer product of the unit surface normals of a depth image, ``(3, 3)``, camera axes.

    Normals come from the cross product of neighbouring back-projected points (every ``stride``
    pixels). Pixels without depth, beyond ``depth_max_m`` (which registration does not use either),
    or next to a depth jump larger than ``max_jump`` x depth per pixel step (an occlusion edge, whose
    cross product is no surface normal) are left out; a threshold relative to depth keeps oblique
    surfaces at any resolution. Its eigenvalues sum to 1; a small one marks a direction no visible
    plane faces. None when fewer than 100 normals exist.
    """
    d = np.asarray(depth_m, np.float64)[::stride, ::stride]
    d = np.where(np.isfinite(d) & (d <= depth_max_m), d, 0.0)
    k = np.asarray(intrinsics, np.float64)
    rows, cols = np.mgrid[0:d.shape[0], 0:d.shape[1]] * stride
    points = np.stack([(cols - k[0, 2]) / k[0, 0] * d, (rows - k[1, 2]) / k[1, 1] * d, d], axis=-1)
    right, down = points[:-1, 1:] - points[:-1, :-1], points[1:, :-1] - points[:-1, :-1]
    limit = max_jump * stride * d[:-1, :-1]
    ok = ((d[:-1, :-1] > 0) & (d[:-1, 1:] > 0) & (d[1:, :-1] > 0)
          & (np.abs(right[..., 2]) < limit) & (np.abs(down[..., 2]) < limit))
    normals = np.cross(right[ok], down[ok])
    length = np.linalg.norm(normals, axis=1)
    normals = normals[length > 0] / length[length > 0, None]
    if len(normals) < 100:
        return None
    return normals.T @ normals / len(normals)
