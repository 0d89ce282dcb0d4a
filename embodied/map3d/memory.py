"""Mem4D-style dual 3D memory: a persistent static map beside a transient dynamics memory.

Mem4D ("Decoupling Static and Dynamic Memory for Dynamic Scene Reconstruction", arXiv 2508.07908)
splits the scene memory in two: a Persistent Structure Memory (PSM) for drift-free static geometry
and a Transient Dynamics Memory (TDM) for recent motion, queried alternately. Its network is not
published; here the same split runs over metric depth, exact where a learned model approximates:

1. **Split.** A pixel is dynamic when a dynamic mask says so: the tracking stage's masks for the
   frame (``upstream["tracking"]``), the synthetic ground truth's moving objects (``dynamic_masks:
   ground_truth``), and *geometric inconsistency* with the PSM: observed depth clearly in front of
   the static surface the map predicts there (ray cast at the frame's pose), so an untracked mover
   does not smear into the map either.
2. **PSM.** Static pixels are fused into the TSDF (:mod:`memstream.embodied.map3d.psm`).
3. **TDM.** Tracked or ground-truth dynamic pixels are back-projected and stored per object id
   (:mod:`memstream.embodied.map3d.tdm`), which answers where each object is at a time.

Poses come with the frames (RGB-D recordings, simulators, synthetic scenes) or are estimated here
by frame-to-model registration against the PSM (:mod:`memstream.embodied.map3d.registration`), before the
geometric check and the fusion, with the frame's known dynamic pixels left out. Bad input is refused
before anything is fused: depth in the wrong unit, missing intrinsics or pose, size mismatches; an
empty depth frame is skipped with a warning. The map is never touched by a refused frame.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, get_args

import numpy as np
from pydantic import Field

from memstream.embodied.map3d.geometry import backproject_pixels
from memstream.embodied.map3d.psm import PersistentStructureMemory, PSMConfig
from memstream.embodied.map3d.registration import FrameToModelRegistration, RegistrationConfig, RegistrationResult
from memstream.embodied.map3d.tdm import TDMConfig, TransientDynamicsMemory
from memstream.embodied.map3d.topdown import TopDownView, top_down_view
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
from memstream.embodied.map3d.types import MaskSource, PoseMode

log = logging.getLogger(__name__)

#: Depth beyond this is taken as a unit error (millimetres read as metres), not a far surface.
MAX_PLAUSIBLE_DEPTH_M = 100.0

#: Codes of :meth:`DualMemory3D.occupancy`.
UNKNOWN, FREE, OCCUPIED, DYNAMIC = 0, 1, 2, 3

#: Poses the memory keeps for :meth:`DualMemory3D.trajectory` (about 13 MB).
MAX_POSES_KEPT = 100_000


class DepthInputError(MemstreamError):
    """A frame the 3D memory cannot fuse (missing depth, intrinsics or pose, wrong unit or size)."""


@strict_config
@dataclass(frozen=True)
class Map3DConfig:
    """The dual memory's settings.

    Attributes:
        psm: the static map's fusion and budget.
        tdm: the dynamics memory's window and bounds.
        dynamic_masks: sources of dynamic pixels, any of ``tracking`` (the tracking stage's masks),
            ``ground_truth`` (synthetic scenes' moving objects), ``geometry`` (depth in front of
            the static map).
        geometry_margin_m, geometry_margin_rel: a pixel is geometrically dynamic when its depth is
            smaller than the map's by more than ``max(margin_m, margin_rel * depth)``.
        warmup_frames: frames fused before the geometric check starts (the map must exist first).
        pose: where camera poses come from: ``given`` (with the frames; a frame without one is an
            error), ``estimated`` (registered against the map; a given pose only anchors the first
            frame, so estimates can be scored against it), ``auto`` (given when the frame has one,
            estimated otherwise).
        registration: the odometry settings used when poses are estimated.
    """

    psm: PSMConfig = field(default_factory=PSMConfig)
    tdm: TDMConfig = field(default_factory=TDMConfig)
    dynamic_masks: tuple[MaskSource, ...] = get_args(MaskSource)
    geometry_margin_m: Annotated[float, Field(ge=0)] = 0.15
    geometry_margin_rel: Annotated[float, Field(ge=0)] = 0.05
    warmup_frames: Annotated[int, Field(ge=0)] = 3
    pose: PoseMode = "auto"
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)

    def __post_init__(self) -> None:
        if self.pose not in get_args(PoseMode):
            raise ValueError(f"unknown pose mode {self.pose!r}; use {', '.join(get_args(PoseMode))}")
        unknown = set(self.dynamic_masks) - set(get_args(MaskSource))
        if unknown:
            raise ValueError(f"unknown dynamic mask sources {sorted(unknown)}; use {', '.join(get_args(MaskSource))}")


@dataclass(frozen=True)
class Map3DUpdate:
    """What one frame did to the 3D memory.

    Attributes:
        frame_index, timestamp_s: the frame.
        fused: whether the frame was fused (False when skipped).
        static_fraction: share of valid-depth pixels fused into the static map.
        dynamic_mask: bool ``(H, W)`` pixels kept out of the static map.
        object_ids: ids of the objects pushed into the dynamics memory.
        pose: float64 ``(4, 4)`` world_from_cam used for the frame (given or estimated).
        registration: the estimate's details when the pose was estimated, else None.
        depth_m: float32 ``(H, W)`` the depth the frame was fused with, metres (the frame's, or a
            depth model's for RGB-only frames; nan mapped to 0), for later stages; None when skipped.
        intrinsics: float64 ``(3, 3)`` the camera matrix used, pixels; None when skipped.
    """

    frame_index: int
    timestamp_s: float
    fused: bool
    static_fraction: float = 0.0
    dynamic_mask: np.ndarray | None = None
    object_ids: tuple[int, ...] = ()
    pose: np.ndarray | None = None
    registration: RegistrationResult | None = None
    depth_m: np.ndarray | None = None
    intrinsics: np.ndarray | None = None


def check_frame(frame: Frame, need_pose: bool = True) -> np.ndarray | None:
    """The frame's depth, float32 with nan -> 0, after the checks; None for an empty depth frame.

    Raises:
        DepthInputError: no depth, intrinsics or pose (when ``need_pose``); depth and image sizes
            differ; depth in a wrong unit (values past 100 m).
    """
    if frame.depth_m is None:
        raise DepthInputError(
            f"frame {frame.index} has no depth",
            "Give an RGB-D source (TUM folder, simulator, synthetic://), or predict depth from RGB with a metric "
            "model: --depth-model depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf (stage option depth_model)")
    if frame.intrinsics is None:
        raise DepthInputError(
            f"frame {frame.index} has no intrinsics",
            "Give the camera matrix with the source (e.g. TUM intrinsics), or --fov-deg F / --fx F [--fy F] "
            "(stage options fov_deg, fx_px, fy_px)")
    if frame.pose is None and need_pose:
        raise DepthInputError(
            f"frame {frame.index} has no camera pose",
            "Give poses with the source (groundtruth.txt for TUM folders) or estimate them (pose: auto)")
    if frame.depth_m.shape != frame.rgb.shape[:2]:
        raise DepthInputError(
            f"frame {frame.index}: depth is {frame.depth_m.shape[1]}x{frame.depth_m.shape[0]}, the image "
            f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}", "Register depth to the colour image at the same size")
    depth = np.nan_to_num(frame.depth_m.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    valid = depth > 0
    if not valid.any():
        return None
    far = float(np.percentile(depth[valid], 99))
    if far > MAX_PLAUSIBLE_DEPTH_M:
        raise DepthInputError(
            f"frame {frame.index}: depth reaches {far:.0f} m, so it is probably not in metres",
            "Scale depth to metres at the source (TUM PNGs: divide by 5000; millimetre sensors: by 1000)")
    return depth


class DualMemory3D:
    """The Mem4D-style dual 3D memory (see the module docstring).

    Args:
        config: settings of both memories and of the static/dynamic split.

    Example::

        memory = DualMemory3D()
        for frame in open_source("synthetic://dynamic_room?frames=120"):
            memory.update(frame)
        points, colors = memory.static_points()
        memory.object_position(1, at_s=2.0)
    """

    def __init__(self, config: Map3DConfig | None = None) -> None:
        self.config = config or Map3DConfig()
        self.psm = PersistentStructureMemory(self.config.psm)
        self.tdm = TransientDynamicsMemory(self.config.tdm)
        self.registration = FrameToModelRegistration(self.config.registration, self.config.psm.depth_max_m)
        # (timestamp, world_from_cam) of the latest fused frames; the stage writes every pose to
        # trajectory.txt as it goes, so this stays bounded on endless streams.
        self.poses: deque[tuple[float, np.ndarray]] = deque(maxlen=MAX_POSES_KEPT)
        self.skipped = 0

    def update(self, frame: Frame, upstream: Mapping[str, Any] | None = None) -> Map3DUpdate:
        """Place the frame, split its pixels, fuse the static ones, remember the dynamic ones.

        Args:
            frame: an RGB-D frame with intrinsics (and a pose unless poses are estimated).
            upstream: earlier stages' results for the frame (``"tracking"``: a TrackOutput).

        Raises:
            DepthInputError: see :func:`check_frame` (nothing is fused then).
        """
        depth = check_frame(frame, need_pose=self.config.pose == "given")
        if depth is None:
            self.skipped += 1
            log.warning("frame %d has no valid depth: skipped", frame.index)
            return Map3DUpdate(frame.index, frame.timestamp_s, fused=False)
        labels = self._object_labels(frame, upstream)
        dynamic = labels > 0
        pose, registration = self._place(frame, np.where(dynamic, 0.0, depth).astype(np.float32))
        if "geometry" in self.config.dynamic_masks and self.psm.frames_fused >= self.config.warmup_frames:
            dynamic |= self._in_front_of_map(frame.intrinsics, pose, depth)
        static_depth = np.where(dynamic, 0.0, depth).astype(np.float32)
        self.psm.integrate(static_depth, frame.rgb, frame.intrinsics, pose)
        points = {}
        colors = {}
        for object_id in np.unique(labels[labels > 0]).tolist():
            mask = labels == object_id
            points[object_id] = backproject_pixels(depth, frame.intrinsics, pose, mask)
            colors[object_id] = frame.rgb[mask & (depth > 0)]
        self.tdm.update(frame.index, frame.timestamp_s, points, colors)
        self.poses.append((frame.timestamp_s, pose.copy()))
        valid = depth > 0
        return Map3DUpdate(
            frame.index, frame.timestamp_s, fused=True,
            static_fraction=float((valid & ~dynamic).sum() / max(valid.sum(), 1)),
            dynamic_mask=dynamic, object_ids=tuple(sorted(points)), pose=pose, registration=registration,
            depth_m=depth, intrinsics=np.asarray(frame.intrinsics, np.float64),
        )

    def _place(self, frame: Frame, static_depth: np.ndarray) -> tuple[np.ndarray, RegistrationResult | None]:
        """The frame's pose: given, or registered against the map from its known-static pixels."""
        mode = self.config.pose
        if mode == "given" or (mode == "auto" and frame.pose is not None):
            pose = np.asarray(frame.pose, np.float64)
            if mode == "auto":  # a later frame without a pose continues from this one
                self.registration.follow(pose, static_depth, frame.rgb)
            return pose, None
        result = self.registration.register(static_depth, frame.rgb, frame.intrinsics, self.psm, anchor=frame.pose)
        if not result.tracked:
            log.warning("frame %d: registration failed (fitness %.2f); the predicted pose is used", frame.index, result.fitness)
        return result.world_from_cam, result

    def _object_labels(self, frame: Frame, upstream: Mapping[str, Any] | None) -> np.ndarray:
        """int32 ``(H, W)``: the dynamic object id of each pixel from masks (0: none)."""
        labels = np.zeros(frame.rgb.shape[:2], np.int32)
        sources = self.config.dynamic_masks
        if "ground_truth" in sources and frame.gt is not None:
            moving = frame.gt.object_ids[frame.gt.is_dynamic]
            where = np.isin(frame.gt.instance_mask, moving)
            labels[where] = frame.gt.instance_mask[where]
        tracking = None if upstream is None or "tracking" not in upstream else upstream["tracking"]
        if "tracking" in sources and tracking is not None:  # a memstream.tracking.types.TrackOutput
            tracked = tracking.instance_mask(*labels.shape)
            labels = np.where((labels == 0) & (tracked > 0), tracked, labels)
        return labels

    def _in_front_of_map(self, intrinsics: np.ndarray, pose: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels whose depth is clearly in front of the static surface the map predicts there."""
        height, width = depth.shape
        expected, _ = self.psm.raycast(intrinsics, pose, width, height, colour=False)
        margin = np.maximum(self.config.geometry_margin_m, self.config.geometry_margin_rel * depth)
        return (depth > 0) & (expected > 0) & (depth < expected - margin)

    # ---- queries -------------------------------------------------------------------------------
    def static_points(self) -> tuple[np.ndarray, np.ndarray]:
        """The static map's surface: float64 ``(n, 3)`` world points (metres) and uint8 colours."""
        return self.psm.point_cloud()

    def dynamic_points(self, at_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Dynamic points at a time (the latest when None) and their object ids."""
        return self.tdm.snapshot(at_s)

    def object_position(self, object_id: int, at_s: float) -> np.ndarray | None:
        """An object's centre (of its observed points) at ``at_s``, or None when unknown."""
        return self.tdm.position(object_id, at_s)

    def trajectory(self) -> tuple[np.ndarray, np.ndarray]:
        """Camera trajectory of the fused frames: times ``(N,)`` and poses ``(N, 4, 4)``."""
        if not self.poses:
            return np.zeros(0), np.zeros((0, 4, 4))
        times, poses = zip(*self.poses)
        return np.asarray(times), np.stack(poses)

    def occupancy(self, points: np.ndarray, at_s: float | None = None, radius_m: float | None = None) -> np.ndarray:
        """What is at world points: ``UNKNOWN`` (0, never observed), ``FREE`` (1, seen through:
        the TSDF stores free space only within its truncation band in front of a surface, 32 cm by
        default; farther out the map holds no blocks and reads unknown),
        ``OCCUPIED`` (2, on a static surface, within 1.5 voxels of it, or inside the truncation band
        behind it), ``DYNAMIC`` (3, within ``radius_m`` of a dynamic object's
        points at ``at_s``; the latest when None).

        Args:
            points: float ``(n, 3)`` world points, metres.
            at_s: time for the dynamic objects.
            radius_m: distance to a dynamic point that counts; one voxel by default.

        Returns:
            int8 ``(n,)`` codes.
        """
        points = np.asarray(points, np.float64).reshape(-1, 3)
        tsdf, _ = self.psm.sample(points)
        surface = 1.5 / self.config.psm.trunc_voxels  # 1.5 voxels in truncation units: the nearest sample is up to 0.87 off
        codes = np.full(len(points), UNKNOWN, np.int8)
        seen = ~np.isnan(tsdf)
        codes[seen & (tsdf > surface)] = FREE
        codes[seen & (tsdf <= surface)] = OCCUPIED
        if len(points) and self.tdm.objects():
            dynamic = self.tdm.occupied(points, radius_m or self.config.psm.voxel_m, at_s)
            codes[dynamic] = DYNAMIC
        return codes

    def occupancy_2d(self, cell_m: float = 0.1, height_range_m: tuple[float, float] = (-1.5, 0.3), up_axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """A top-down occupancy grid of the static map (for navigation agents).

        Args:
            cell_m: cell size, metres.
            height_range_m: heights (along ``up_axis``, world frame) whose points count as obstacles.
            up_axis: the world axis that points up or down (1: y, as in OpenCV-style worlds).

        Returns:
            bool ``(rows, cols)`` occupied cells and the world coordinates ``(2,)`` of cell (0, 0).
        """
        points, _ = self.static_points()
        ground = [a for a in range(3) if a != up_axis]
        heights = points[:, up_axis]
        obstacles = points[(heights >= height_range_m[0]) & (heights <= height_range_m[1])][:, ground]
        if len(obstacles) == 0:
            return np.zeros((0, 0), bool), np.zeros(2)
        origin = obstacles.min(0)
        cells = np.floor((obstacles - origin) / cell_m).astype(np.int64)
        grid = np.zeros(cells.max(0) + 1, bool)
        grid[cells[:, 0], cells[:, 1]] = True
        return grid, origin

    def top_down(
        self, origin: np.ndarray, cell_m: float, shape: tuple[int, int], up_axis: int = 2, up_sign: float = 1.0,
        floor_m: float = 0.15, ceiling_m: float = 2.0, at_s: float | None = None, still_m: float | None = None,
        surface_voxels: float = 1.5,
    ) -> TopDownView:
        """The 2D occupancy and height grid of both memories on a given ground grid, for planners
        (:mod:`memstream.embodied.map3d.topdown`): seen, static-occupied and dynamic cells, and the
        highest static surface per cell between ``floor_m`` and ``ceiling_m``.

        Args:
            origin: ground coordinates (metres) of the corner of cell (0, 0); the ground axes are the
                world axes other than ``up_axis``, in order.
            cell_m, shape: the grid. up_axis, up_sign: which world axis points up, and its sign.
            at_s: time of the dynamic objects' points (the latest when None).
            still_m: None: each dynamic object's points at ``at_s`` (as :meth:`dynamic_points`). A
                distance: its footprint over every remembered observation (up to ``at_s``) whose
                centroid lies within ``still_m`` of the latest one, i.e. since it last moved, so a
                still object seen whole once and partly since keeps its whole footprint.
            surface_voxels: how near the TSDF's zero crossing (in voxels) a voxel counts as surface:
                smaller keeps walls thin (doorways open), too small leaves gaps where a wall is
                seen at a grazing angle.
        """
        if still_m is None:
            dynamic, _ = self.tdm.snapshot(at_s)
        else:
            clouds = [np.zeros((0, 3), np.float32)]
            for object_id in self.tdm.objects():
                seen = [o for o in self.tdm.observations(object_id) if at_s is None or o.timestamp_s <= at_s]
                if seen:
                    clouds += [o.points for o in seen if np.linalg.norm(o.centroid - seen[-1].centroid) <= still_m]
            dynamic = np.concatenate(clouds)
        cfg = self.config.psm
        return top_down_view(
            self.psm.observed_voxels(), dynamic, origin, cell_m, shape, cfg.voxel_m, cfg.trunc_voxels,
            up_axis=up_axis, up_sign=up_sign, floor_m=floor_m, ceiling_m=ceiling_m, surface_voxels=surface_voxels,
        )

    def memory_summary(self) -> dict:
        return {"static": self.psm.memory_summary(), "dynamic": self.tdm.memory_summary(), "frames_skipped": self.skipped,
                "frames_lost": self.registration.frames_lost}

    def state_dict(self) -> dict:
        """Both memories and the trajectory (numpy arrays and plain values)."""
        return {"psm": self.psm.state_dict(), "tdm": self.tdm.state_dict(), "poses": list(self.poses), "skipped": self.skipped,
                "registration": self.registration.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (same config)."""
        self.psm.load_state_dict(state["psm"])
        self.tdm.load_state_dict(state["tdm"])
        self.poses = deque(((t, np.asarray(p)) for t, p in state["poses"]), maxlen=MAX_POSES_KEPT)
        self.skipped = state["skipped"]
        if "registration" in state:  # maps saved before pose estimation existed have none
            self.registration.load_state_dict(state["registration"])
