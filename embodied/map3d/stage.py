"""The ``map3d`` stage of ``memstream run`` and the outputs of ``memstream reconstruct``.

Each frame goes through :class:`~memstream.embodied.map3d.memory.DualMemory3D` (with the tracking stage's
masks when that stage runs before it). Written as the run goes, one whole line at a time, so a run
that stops early leaves valid files:

* ``trajectory.txt``: the camera trajectory in TUM format (``t tx ty tz qx qy qz qw``);
* ``objects.jsonl``: per frame and dynamic object, its centre (mean of its observed points) and,
  when the tracking stage named it, its name;
* ``dynamic/<object>_<frame>.ply``: each object's points on each frame (``dynamic: every_frame``),
  or only its latest points at the end (``latest``, the default);

and at the end ``static.ply`` (the static map as a mesh, or its points with ``static: points``). Frames the memory refuses (no depth, wrong unit...) stop the run with the memory's
one-line error; empty depth frames are skipped with a warning.

RGB-only frames (plain video): with ``depth_model`` set, a frame without depth gets the model's
(:mod:`memstream.embodied.map3d.depth_model`: metric models only, or a relative one with the user's
``relative_depth_scale``) and, when it has no intrinsics either, a pinhole camera from ``fov_deg``
(60 degrees horizontal when unset) or ``fx_px`` / ``fy_px``. Frames with depth keep it; their
missing intrinsics are filled only when ``fov_deg`` or ``fx_px`` is set.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from memstream.embodied.map3d.depth_model import (
    MonocularDepth,
    RelativeDepthScale,
    load_depth_model,
    pinhole_intrinsics,
)
from memstream.embodied.map3d.memory import DualMemory3D, Map3DConfig, Map3DUpdate
from memstream.streaming.configtypes import strict_config
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.types import Frame

log = logging.getLogger(__name__)


@strict_config
@dataclass(frozen=True)
class Map3DOptions(Map3DConfig):
    """Options of the ``map3d`` stage (values in ``configs/reconstruct.yaml``).

    The memory's own settings are :class:`~memstream.embodied.map3d.memory.Map3DConfig`'s fields,
    inherited with their defaults (``psm``, ``tdm``, ``registration``, ``dynamic_masks``, ``pose``...):
    ``stages.map3d.options.psm.voxel_m`` is ``PSMConfig.voxel_m``. The stage adds what it writes and
    how it completes RGB-only frames (see the module docstring).

    Attributes:
        static: ``static.ply`` as a ``mesh`` or as ``points``.
        dynamic: per object its ``latest`` points at the end, its points on ``every_frame``, or ``none``.
        depth_model: a monocular depth model (local directory or hub id) for frames without depth.
        depth_device: its device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        depth_dtype: its weights' dtype.
        relative_depth_scale: relative models only: ``1 / depth_m = scale * prediction + shift``.
        relative_depth_shift: the shift above.
        fov_deg: horizontal field of view for frames without intrinsics (60 when unset and the
            depth model runs).
        fx_px, fy_px: or the focal lengths, pixels (``fy_px`` defaults to ``fx_px``).
        fuse_every: fuse only every n-th frame the stage sees (the first, the (n+1)-th, ...); the
            others pass through unfused (``Map3DUpdate.fused`` False: no pose written, and the scene
            memory places objects with the frame's own depth, intrinsics and pose when it has them,
            in image pixels otherwise). The 3D memory's cost per frame (fusion and the geometry
            check's ray cast, most of the ``scene`` preset's time) drops about n-fold; the static
            map sees fewer views and estimated poses (``pose: estimate``) must bridge n frames.
            1 (default): every frame.
    """

    static: Literal["mesh", "points"] = "mesh"
    dynamic: Literal["latest", "every_frame", "none"] = "latest"
    depth_model: str | None = None
    depth_device: str = "auto"
    depth_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    relative_depth_scale: Annotated[float | None, Field(gt=0)] = None
    relative_depth_shift: float = 0.0
    fov_deg: Annotated[float | None, Field(gt=0, lt=180)] = None
    fx_px: Annotated[float | None, Field(gt=0)] = None
    fy_px: Annotated[float | None, Field(gt=0)] = None
    fuse_every: Annotated[int, Field(ge=1)] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.fov_deg is not None and self.fx_px is not None:
            raise ValueError("fov_deg and fx_px both give the focal length; give one of them")
        if self.fy_px is not None and self.fx_px is None:
            raise ValueError("fy_px is set without fx_px; give fx_px too (fy_px defaults to it)")
        if self.relative_depth_shift != 0 and self.relative_depth_scale is None:
            raise ValueError("relative_depth_shift is set without relative_depth_scale; give the scale too")
        if self.relative_depth_scale is not None and self.depth_model is None:
            raise ValueError("relative_depth_scale is set but no depth_model; give the relative model with depth_model")

    def memory_config(self) -> Map3DConfig:
        """The memory's part of the options, as a plain :class:`Map3DConfig`."""
        return Map3DConfig(**{f.name: getattr(self, f.name) for f in fields(Map3DConfig)})

    def relative_scale(self) -> RelativeDepthScale | None:
        if self.relative_depth_scale is None:
            return None
        return RelativeDepthScale(self.relative_depth_scale, self.relative_depth_shift)


def tum_line(timestamp_s: float, world_from_cam: np.ndarray) -> str:
    """One TUM trajectory line: ``timestamp tx ty tz qx qy qz qw``."""
    from scipy.spatial.transform import Rotation

    qx, qy, qz, qw = Rotation.from_matrix(world_from_cam[:3, :3]).as_quat()
    tx, ty, tz = world_from_cam[:3, 3]
    return f"{timestamp_s:.6f} {tx:.6f} {ty:.6f} {tz:.6f} {qx:.7f} {qy:.7f} {qz:.7f} {qw:.7f}\n"


def write_points(path: Path, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """A PLY point cloud (open3d's writer), colours uint8 when given."""
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(points, np.float64)))
    if colors is not None and len(colors) == len(points):
        cloud.colors = o3d.utility.Vector3dVector(np.asarray(colors, np.float64) / 255.0)
    if not o3d.io.write_point_cloud(str(path), cloud):
        raise OSError(f"open3d could not write {path}")


class Map3DStage:
    """Runs the dual 3D memory on every frame and writes its outputs; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(Map3DOptions, name, options)
        self.memory = DualMemory3D(self.options.memory_config())
        self.depth_model: MonocularDepth | None = None  # loaded in open()
        self._frames_predicted = 0
        self.out: Path | None = None
        self._files: list[str] = []
        self._frames = 0

    def open(self, context: RunContext) -> None:
        o = self.options
        if o.depth_model is not None:
            self.depth_model = load_depth_model(o.depth_model, device=o.depth_device, dtype=o.depth_dtype,
                                                relative_scale=o.relative_scale())
        if context.out_dir is None:
            return
        self.out = Path(context.out_dir)
        for name in ("trajectory.txt", "objects.jsonl"):
            (self.out / name).write_text("")
            self._files.append(name)
        if self.options.dynamic != "none":
            (self.out / "dynamic").mkdir(parents=True, exist_ok=True)

    def update(self, frame: Frame, upstream: Upstream):
        skip = self._frames % self.options.fuse_every != 0
        self._frames += 1
        if skip:
            return Map3DUpdate(frame.index, frame.timestamp_s, fused=False)
        frame = self._complete(frame)
        result = self.memory.update(frame, upstream)
        if self.out is None or not result.fused:
            return result
        with (self.out / "trajectory.txt").open("a") as handle:
            handle.write(tum_line(frame.timestamp_s, result.pose))  # given or estimated
        lines = []
        tracking = upstream.get("tracking")  # a TrackOutput when the tracking stage ran: it names the objects
        for object_id in result.object_ids:
            centre = self.memory.object_position(object_id, frame.timestamp_s)
            if centre is not None:
                name = tracking.name_of(object_id) if tracking is not None else None
                lines.append(json.dumps({"frame": frame.index, "t": frame.timestamp_s, "object": object_id,
                                         **({"name": name} if name else {}),
                                         "centre_m": [round(float(c), 5) for c in centre]}) + "\n")
            if self.options.dynamic == "every_frame":
                write_points(self.out / "dynamic" / f"{object_id}_{frame.index:06d}.ply", self.memory.tdm.points(object_id))
        if lines:
            with (self.out / "objects.jsonl").open("a") as handle:
                handle.writelines(lines)
        return result

    def _complete(self, frame: Frame) -> Frame:
        """The frame with the model's depth and a pinhole camera where it has none (module docstring)."""
        o = self.options
        depth, intrinsics = frame.depth_m, frame.intrinsics
        camera_given = o.fov_deg is not None or o.fx_px is not None
        if depth is None and self.depth_model is not None:
            depth = self.depth_model.predict(frame.rgb)
            self._frames_predicted += 1
        if intrinsics is None and (camera_given or depth is not frame.depth_m):
            intrinsics = pinhole_intrinsics(frame.width, frame.height, fov_deg=o.fov_deg, fx_px=o.fx_px, fy_px=o.fy_px)
        if depth is frame.depth_m and intrinsics is frame.intrinsics:
            return frame
        return replace(frame, depth_m=depth, intrinsics=intrinsics)  # Frame is frozen

    def close(self) -> None:
        if self.out is None:
            return
        if self.options.static == "mesh":
            import open3d as o3d

            mesh = self.memory.psm.mesh()
            if not o3d.io.write_triangle_mesh(str(self.out / "static.ply"), mesh):
                raise OSError(f"open3d could not write {self.out / 'static.ply'}")
        else:
            points, colors = self.memory.static_points()
            # in coordinate order: the grid lists its blocks in the order its parallel hash map
            # handed out slots, which differs from run to run, so the same map wrote different files
            order = np.lexsort(points.T[::-1])
            write_points(self.out / "static.ply", points[order], colors[order])
        self._files.append("static.ply")
        if self.options.dynamic == "latest":
            for object_id in self.memory.tdm.objects():
                write_points(self.out / "dynamic" / f"{object_id}.ply", self.memory.tdm.points(object_id))
                self._files.append(f"dynamic/{object_id}.ply")

    def summary(self) -> dict[str, Any]:
        summary = {"frames": self._frames, "memory": self.memory.memory_summary(), "files": self._files}
        if self.depth_model is not None:
            summary["depth_model"] = {**self.depth_model.describe(), "frames_predicted": self._frames_predicted}
        return summary


def make_stage(name: str, options: Mapping[str, Any]) -> Map3DStage:
    """Entry point of the ``memstream.stages`` group."""
    return Map3DStage(name, options)
