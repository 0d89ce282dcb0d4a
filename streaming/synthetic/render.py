"""Exact analytic ray casting of a :class:`SceneSpec` in numpy.

Each pixel's ray is intersected with the room and with every object in closed form (see
:mod:`memstream.streaming.synthetic.raycast`), so depth, instance masks and boxes are exact: there is no
rasterisation error to model in the tests. Objects are only intersected inside the screen rectangle
their bounding box projects to, and shaded only where they are visible; the room costs a few
full-frame operations and is reused while the camera stands still.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from memstream.streaming.synthetic import raycast
from memstream.streaming.synthetic.raycast import Rays, Rect
from memstream.streaming.synthetic.scene import ObjectSpec, SceneSpec
from memstream.streaming.synthetic.texture import ObjectTexture, RoomTexture


@dataclass(frozen=True)
class RenderedFrame:
    """The output of :meth:`Renderer.render` for one time.

    Attributes:
        index: frame index in the scene.
        time_s: scene time of the frame, seconds.
        rgb: uint8 (H, W, 3).
        depth_m: float32 (H, W) z-depth in metres (every pixel hits the room, so no holes).
        instance_mask: int32 (H, W), object id or 0.
        pose: float64 (4, 4) world_from_cam.
        amodal_px: int64 (n,) in-image pixels each object covers ignoring occluders (scene order).
        visible_px: int64 (n,) pixels where each object is the nearest surface.
        boxes_xywh: float32 (n, 4) tight boxes around visible pixels, zeros when none.
        object_depth_m: per object, float32 (H, W) depth of its own surface (inf where its ray
            misses); only kept when the renderer's ``keep_object_depth`` is set (tests).
    """

    index: int
    time_s: float
    rgb: np.ndarray
    depth_m: np.ndarray
    instance_mask: np.ndarray
    pose: np.ndarray
    amodal_px: np.ndarray
    visible_px: np.ndarray
    boxes_xywh: np.ndarray
    object_depth_m: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class Placement:
    """Where an object is at one time: centre (3,) and half sizes (3,) in metres, world_from_object (3, 3)."""

    center: np.ndarray
    half_m: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def of(obj: ObjectSpec, t_s: float) -> Placement:
        scale = float(obj.scale.at(t_s)[0])
        if obj.shape == "sphere":
            return Placement(obj.position.at(t_s), np.full(3, obj.half_extent_m[0] * scale), np.eye(3))
        rotation = raycast.yaw_matrix(float(obj.yaw.at(t_s)[0]))
        return Placement(obj.position.at(t_s), np.asarray(obj.half_extent_m, np.float64) * scale, rotation)


@dataclass
class _Layers:
    """The frame being composited: depth (H, W) float32, RGBA colour (H, W, 4) float32, ids (H, W) int32."""

    depth: np.ndarray
    color: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        # Flat views for scattering visible pixels: one complex128 = one RGBA float32 pixel.
        self.color_flat = self.color.reshape(-1, 4).view(np.complex128).ravel()
        self.mask_flat = self.mask.reshape(-1)


def scaled_intrinsics(intrinsics: np.ndarray, width_px: int, height_px: int, to_width: int, to_height: int):
    """Intrinsics of the same camera rendered at another size (pixel centres stay aligned)."""
    k = np.asarray(intrinsics, np.float64).copy()
    sx, sy = to_width / width_px, to_height / height_px
    k[0, 0] *= sx
    k[1, 1] *= sy
    k[0, 2] = sx * (k[0, 2] + 0.5) - 0.5
    k[1, 2] = sy * (k[1, 2] + 0.5) - 0.5
    return k


class Renderer:
    """Renders frames of one scene at any time; reuse it for every frame of the scene.

    Args:
        scene: what to draw.
        width_px, height_px: output size; defaults to the camera's. Rendering at another size scales
            the intrinsics, which is exact (no resampling).
        keep_object_depth: also return each object's own depth map (for tests).

    Example:
        >>> from memstream.streaming.synthetic import build_scene
        >>> frame = Renderer(build_scene("demo", frames=2, size=(64, 48))).render(1)
        >>> frame.rgb.shape, frame.depth_m.dtype
        ((48, 64, 3), dtype('float32'))
    """

    def __init__(
        self,
        scene: SceneSpec,
        width_px: int | None = None,
        height_px: int | None = None,
        keep_object_depth: bool = False,
    ) -> None:
        self.scene = scene
        cam = scene.camera
        self.width = int(width_px or cam.width_px)
        self.height = int(height_px or cam.height_px)
        self.intrinsics = scaled_intrinsics(
            cam.intrinsics, cam.width_px, cam.height_px, self.width, self.height
        )
        self.keep_object_depth = keep_object_depth
        light = np.asarray(scene.lighting.direction, np.float64)
        self._to_light = -light / np.linalg.norm(light)
        room = scene.room
        faces = [room.walls, room.walls, room.ceiling, room.floor, room.walls, room.walls]
        inner_normals = -raycast.box_face_normals(np.eye(3))  # the room is seen from inside
        self._room_texture = RoomTexture(faces, self._shade(inner_normals @ self._to_light))
        self._textures = [ObjectTexture(o.appearance) for o in scene.objects]
        self._room_cache: tuple[bytes, np.ndarray, np.ndarray] | None = None

    def _shade(self, cos_to_light: np.ndarray) -> np.ndarray:
        """Lambertian + ambient light factor, float32, from the cosine between normal and light."""
        ambient = self.scene.lighting.ambient
        return (ambient + (1 - ambient) * np.clip(cos_to_light, 0, 1)).astype(np.float32)

    def render(self, index: int) -> RenderedFrame:
        """Render frame ``index`` (time ``index / fps``); any index >= 0 works, in any order."""
        scene = self.scene
        t_s = scene.time_of(index)
        pose = scene.camera.pose(t_s)
        origin = pose[:3, 3]
        if not (np.all(origin > scene.room.min_m) and np.all(origin < scene.room.max_m)):
            raise ValueError(f"camera at {origin.tolist()} is outside the room at t={t_s:.3f} s")
        rays = Rays.from_intrinsics(self.intrinsics, self.width, self.height, pose[:3, :3])
        room_depth, room_color = self._room(pose, rays)
        layers = _Layers(room_depth.copy(), room_color.copy(), np.zeros((self.height, self.width), np.int32))
        n = len(scene.objects)
        amodal = np.zeros(n, np.int64)
        rects: list[Rect | None] = []
        object_depths = []
        for i, obj in enumerate(scene.objects):
            placement = Placement.of(obj, t_s)
            rect = self._screen_rect(placement, pose)
            own = np.full((self.height, self.width), np.inf, np.float32) if self.keep_object_depth else None
            if rect is not None:
                amodal[i] = self._draw_object(i, placement, origin, rays, rect, layers, own)
            rects.append(rect)
            object_depths.append(own)
        gain = float(scene.lighting.gain.at(t_s)[0])
        rgb = cv2.cvtColor(cv2.convertScaleAbs(layers.color, alpha=gain * 255.0), cv2.COLOR_RGBA2RGB)
        visible, boxes = self._visible_boxes(layers.mask, rects)
        return RenderedFrame(
            index=index,
            time_s=t_s,
            rgb=rgb,
            depth_m=layers.depth,
            instance_mask=layers.mask,
            pose=pose,
            amodal_px=amodal,
            visible_px=visible,
            boxes_xywh=boxes,
            object_depth_m=tuple(object_depths) if self.keep_object_depth else None,
        )

    def _room(self, pose: np.ndarray, rays: Rays) -> tuple[np.ndarray, np.ndarray]:
        """Depth (H, W) and lit RGBA colour (H, W, 4) of the room, cached while the camera does not move."""
        key = pose.tobytes()
        if self._room_cache is None or self._room_cache[0] != key:
            room = self.scene.room
            hits = raycast.room_hits(pose[:3, 3], rays, np.asarray(room.min_m), np.asarray(room.max_m))
            self._room_cache = (key, hits.depth_m, self._room_texture.color(hits.face, hits.u_m, hits.v_m))
        return self._room_cache[1], self._room_cache[2]

    def _screen_rect(self, placement: Placement, pose: np.ndarray) -> Rect | None:
        """Pixel rectangle that contains the object's projection, clipped to the image; None if empty.

        Boxes are bounded by their 8 corners, spheres by their bounding cube: the projection of a
        convex body lies in the convex hull of its bounding polytope's projected corners, as long as
        every corner is in front of the camera (else the whole image is used).
        """
        corners_world = placement.center + (_CORNER_SIGNS * placement.half_m) @ placement.rotation.T
        corners = (corners_world - pose[:3, 3]) @ pose[:3, :3]  # cam_from_world, row-wise
        if (corners[:, 2] <= raycast.NEAR_M).all():
            return None
        if (corners[:, 2] <= raycast.NEAR_M).any():
            return 0, 0, self.width, self.height
        k = self.intrinsics
        us = k[0, 0] * corners[:, 0] / corners[:, 2] + k[0, 2]
        vs = k[1, 1] * corners[:, 1] / corners[:, 2] + k[1, 2]
        x0, x1 = max(int(np.floor(us.min())), 0), min(int(np.ceil(us.max())) + 1, self.width)
        y0, y1 = max(int(np.floor(vs.min())), 0), min(int(np.ceil(vs.max())) + 1, self.height)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def _draw_object(self, i, placement, origin, rays, rect, layers: _Layers, own_depth) -> int:
        """Z-test object ``i`` into ``layers`` inside ``rect``; returns its amodal (unoccluded) pixels."""
        obj = self.scene.objects[i]
        x0, y0, x1, y1 = rect
        rel_origin = origin - placement.center
        if obj.shape == "sphere":
            t_hit = raycast.sphere_depth(placement.half_m[0], rel_origin, rays, rect)
        else:
            t_hit = raycast.box_depth(placement.half_m, placement.rotation, rel_origin, rays, rect)
        if own_depth is not None:
            own_depth[y0:y1, x0:x1] = t_hit
        depth = layers.depth[y0:y1, x0:x1]
        visible = np.flatnonzero(t_hit < depth).astype(np.int32)  # inf (a miss) is never closer
        if visible.size:
            rows = visible // np.int32(x1 - x0)
            cols = visible - rows * np.int32(x1 - x0)
            t_vis = np.take(t_hit, visible)
            dirs = rays.at(y0 + rows, x0 + cols)
            if obj.shape == "sphere":
                normal, u, v = raycast.sphere_surface(placement.half_m[0], rel_origin, dirs, t_vis)
                shade = self._shade(normal @ self._to_light)
            else:
                face, u, v = raycast.box_surface(
                    placement.half_m, placement.rotation, rel_origin, dirs, t_vis
                )
                shade = np.take(
                    self._shade(raycast.box_face_normals(placement.rotation) @ self._to_light), face
                )
            rgba = cv2.multiply(self._textures[i].albedo(u, v)[:, None], cv2.merge([shade] * 4)[:, None])
            flat = (y0 + rows) * np.int32(self.width) + (x0 + cols)
            np.minimum(depth, t_hit, out=depth)
            layers.mask_flat[flat] = obj.object_id
            layers.color_flat[flat] = rgba.reshape(-1, 4).view(np.complex128).ravel()
        return int(np.count_nonzero(t_hit < np.inf))

    def _visible_boxes(self, mask: np.ndarray, rects: list[Rect | None]) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.scene.objects)
        visible = np.zeros(n, np.int64)
        boxes = np.zeros((n, 4), np.float32)
        for i, (obj, rect) in enumerate(zip(self.scene.objects, rects)):
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            own = mask[y0:y1, x0:x1] == obj.object_id
            count = int(np.count_nonzero(own))
            if count == 0:
                continue
            visible[i] = count
            cols, rows = np.flatnonzero(own.any(0)), np.flatnonzero(own.any(1))
            boxes[i] = (x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        return visible, boxes


_CORNER_SIGNS = np.array([(sx, sy, sz) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
