"""Exact analytic ray casting of a :class:`SceneSpec` in numpy.

Each pixel's ray is intersected with the room (a box seen from inside) and with every object
(spheres and yawed boxes, solved in closed form), so depth, instance masks and boxes are exact:
there is no rasterisation error to model in the tests. Objects are only intersected inside the
screen rectangle their bounding sphere projects to, which keeps a 320x240 frame well above 100 fps.

Rays use camera directions with z = 1, so the ray parameter of a hit *is* its z-depth in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streaming.synthetic.scene import Appearance, ObjectSpec, SceneSpec

_TEXTURE_SIZE = 64
_NEAR_M = 0.05
_FACE_CLASS = np.array([0, 0, 2, 1, 0, 0])  # inner face (-x,+x,-y,+y,-z,+z) -> walls/floor/ceiling
_OFFSET = 4096.0  # shifts surface coordinates positive so int truncation is floor


@dataclass(frozen=True)
class RenderedFrame:
    """The output of :meth:`Renderer.render` for one time.

    Attributes:
        rgb: uint8 (H, W, 3).
        depth_m: float32 (H, W) z-depth in metres (every pixel hits the room, so no holes).
        instance_mask: int32 (H, W), object id or 0.
        pose: float64 (4, 4) world_from_cam.
        amodal_px: int64 (n,) pixels each object covers ignoring occluders (scene object order).
        visible_px: int64 (n,) pixels where each object is the nearest surface.
        boxes_xywh: float32 (n, 4) tight boxes around visible pixels, zeros when none.
        object_depth_m: per object, float32 (H, W) depth of its own surface (inf where its ray
            misses); only kept when ``keep_object_depth`` is set (tests).
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    instance_mask: np.ndarray
    pose: np.ndarray
    amodal_px: np.ndarray
    visible_px: np.ndarray
    boxes_xywh: np.ndarray
    object_depth_m: tuple[np.ndarray, ...] | None = None


def _noise_texture(appearance: Appearance) -> np.ndarray:
    """(T, T, 3) float32 texture: pattern-free noise around 1.0, fixed by the texture seed."""
    rng = np.random.default_rng(appearance.texture_seed)
    noise = rng.uniform(-1, 1, (_TEXTURE_SIZE, _TEXTURE_SIZE, 1)).astype(np.float32)
    return 1.0 + appearance.noise * noise


def _shade_surface(appearance: Appearance, texture: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Albedo (n, 3) float32 at surface coordinates ``u, v`` in metres."""
    s = appearance.cells_per_m
    if appearance.pattern == "stripes":
        mix = np.floor(u * s).astype(np.int64) & 1
    elif appearance.pattern == "checker":
        mix = (np.floor(u * s).astype(np.int64) + np.floor(v * s).astype(np.int64)) & 1
    else:
        mix = np.zeros(u.shape, np.int64)
    colors = np.array([appearance.color_a, appearance.color_b], np.float32)
    texel_u = (np.floor(u * 40).astype(np.int64)) % _TEXTURE_SIZE
    texel_v = (np.floor(v * 40).astype(np.int64)) % _TEXTURE_SIZE
    return colors[mix] * texture[texel_v, texel_u]


class Renderer:
    """Renders frames of one scene; reuse it for every frame of the scene.

    Args:
        scene: what to draw.
        width_px, height_px: output size; defaults to the camera's. Rendering at another size scales
            the intrinsics, which is exact (no resampling).
        keep_object_depth: also return each object's own depth map (for tests).
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
        k = cam.intrinsics.copy()
        sx, sy = self.width / cam.width_px, self.height / cam.height_px
        k[0, 0] *= sx
        k[1, 1] *= sy
        k[0, 2] = sx * (k[0, 2] + 0.5) - 0.5
        k[1, 2] = sy * (k[1, 2] + 0.5) - 0.5
        self.intrinsics = k
        self.keep_object_depth = keep_object_depth
        u, v = np.meshgrid(np.arange(self.width), np.arange(self.height))
        self._dirs_cam = np.stack(
            [(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u, dtype=np.float64)], -1
        ).astype(np.float32)
        light = np.asarray(scene.lighting.direction, np.float32)
        self._to_light = -light / np.linalg.norm(light)
        self._textures = {id(a): _noise_texture(a) for a in self._appearances()}
        room = scene.room
        self._room_faces = (room.walls, room.floor, room.ceiling)
        self._room_lit_colors = self._lit_room_colors()
        self._room_noise = np.stack([self._textures[id(a)][..., 0] for a in self._room_faces]).ravel()
        self._room_cache: tuple[bytes, tuple[np.ndarray, np.ndarray]] | None = None

    def _lit_room_colors(self) -> np.ndarray:
        """(12, 3) colour of each of the 6 inner faces x 2 pattern colours, with Lambertian light."""
        normals = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
        shade = self._shade(np.clip(normals @ self._to_light, 0, 1))
        rows = []
        for face6 in range(6):
            appearance = self._room_faces[_FACE_CLASS[face6]]
            rows += [np.asarray(c, np.float32) * shade[face6] for c in (appearance.color_a, appearance.color_b)]
        return np.stack(rows)

    def _shade(self, lambert: np.ndarray) -> np.ndarray:
        ambient = self.scene.lighting.ambient
        return ambient + (1 - ambient) * lambert

    def _appearances(self) -> list[Appearance]:
        room = self.scene.room
        return [room.floor, room.walls, room.ceiling] + [o.appearance for o in self.scene.objects]

    def render(self, index: int) -> RenderedFrame:
        """Render frame ``index`` (time ``index / fps``)."""
        scene = self.scene
        t_s = scene.time_of(index)
        pose = scene.camera.pose(t_s)
        rotation = pose[:3, :3].astype(np.float32)
        origin = pose[:3, 3].astype(np.float32)
        if not (np.all(origin > scene.room.min_m) and np.all(origin < scene.room.max_m)):
            raise ValueError(f"camera at {origin.tolist()} is outside the room at t={t_s:.3f} s")
        dirs = cv2.transform(self._dirs_cam, rotation)  # (H, W, 3) world directions, camera z-component 1
        depth, color = (a.copy() for a in self._room(pose, origin, dirs))
        mask = np.zeros((self.height, self.width), np.int32)
        n = len(scene.objects)
        amodal = np.zeros(n, np.int64)
        rects: list[tuple[int, int, int, int] | None] = []
        object_depths = []
        for i, obj in enumerate(scene.objects):
            rect = self._screen_rect(obj, t_s, pose)
            rects.append(rect)
            own_depth = np.full((self.height, self.width), np.inf, np.float32) if self.keep_object_depth else None
            if rect is not None:
                amodal[i] = self._draw_object(obj, t_s, origin, dirs, rect, depth, color, mask, own_depth)
            object_depths.append(own_depth)
        rgb = cv2.convertScaleAbs(color, alpha=float(scene.lighting.gain.at(t_s)[0] * 255.0))  # saturating
        visible, boxes = self._visible_boxes(mask, rects)
        return RenderedFrame(
            rgb=rgb,
            depth_m=depth,
            instance_mask=mask,
            pose=pose,
            amodal_px=amodal,
            visible_px=visible,
            boxes_xywh=boxes,
            object_depth_m=tuple(object_depths) if self.keep_object_depth else None,
        )

    def _room(self, pose: np.ndarray, origin: np.ndarray, dirs: np.ndarray):
        """The room layers, cached while the camera does not move (static-camera scenes)."""
        key = pose.tobytes()
        if self._room_cache is None or self._room_cache[0] != key:
            self._room_cache = (key, self._render_room(origin, dirs))
        return self._room_cache[1]

    def _render_room(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Depth and lit colour of the room's inner faces, computed on per-axis planes.

        The camera is strictly inside the room, so for a non-zero direction component the distance
        to the wall it points at is positive; a zero component (either sign) gives +-inf, hence abs.
        """
        room = self.scene.room
        planes = [dirs[..., a] for a in range(3)]
        with np.errstate(divide="ignore"):
            t_axis = [
                np.abs((np.where(d >= 0, np.float32(hi), np.float32(lo)) - o) / d)
                for d, o, lo, hi in zip(planes, origin, room.min_m, room.max_m)
            ]
        depth = np.minimum(np.minimum(t_axis[0], t_axis[1]), t_axis[2])
        on_y = t_axis[1] == depth
        on_x = (t_axis[0] == depth) & ~on_y
        px, py, pz = (o + d * depth for o, d in zip(origin, planes))
        axis = np.where(on_y, 1, np.where(on_x, 0, 2))
        positive = np.where(on_y, planes[1] > 0, np.where(on_x, planes[0] > 0, planes[2] > 0))
        face6 = axis * 2 + positive  # 0..5: -x, +x, -y (ceiling), +y (floor), -z, +z
        face = np.take(_FACE_CLASS, face6)  # 0 walls, 1 floor, 2 ceiling
        u = np.where(on_x, pz, px)
        v = np.where(on_y, pz, py)
        # Integer cell/texel indices via truncation of shifted positive values (cheaper than floor).
        mix = np.zeros(depth.shape, np.int32)
        for cls, appearance in enumerate(self._room_faces):
            if appearance.pattern == "plain":
                continue
            cells = (u * appearance.cells_per_m + _OFFSET).astype(np.int32)
            if appearance.pattern == "checker":
                cells += (v * appearance.cells_per_m + _OFFSET).astype(np.int32)
            mix = np.where(face == cls, cells & 1, mix)
        texel = ((u * 40 + _OFFSET).astype(np.int32) % _TEXTURE_SIZE) + _TEXTURE_SIZE * (
            (v * 40 + _OFFSET).astype(np.int32) % _TEXTURE_SIZE
        )
        noise = np.take(self._room_noise, face * _TEXTURE_SIZE**2 + texel)
        color = np.take(self._room_lit_colors, face6 * 2 + mix, axis=0) * noise[..., None]
        return depth.astype(np.float32, copy=False), color

    def _screen_rect(self, obj: ObjectSpec, t_s: float, pose: np.ndarray) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (x0, y0, x1, y1), end-exclusive, that contains the object's projection.

        Boxes are bounded by their 8 corners, spheres by their bounding cube: the projection of a
        convex body lies in the convex hull of its bounding polytope's projected corners, as long as
        every corner is in front of the camera (else the whole image is used).
        """
        scale = float(obj.scale.at(t_s)[0])
        if obj.shape == "sphere":
            half = np.full(3, obj.half_extent_m[0] * scale)
            rot = np.eye(3)
        else:
            half = np.asarray(obj.half_extent_m) * scale
            c, s = np.cos(obj.yaw.at(t_s)[0]), np.sin(obj.yaw.at(t_s)[0])
            rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        signs = np.array([(sx, sy, sz) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
        corners_world = obj.position.at(t_s) + (signs * half) @ rot.T
        corners = (corners_world - pose[:3, 3]) @ pose[:3, :3]  # cam_from_world applied row-wise
        if (corners[:, 2] <= _NEAR_M).all():
            return None
        if (corners[:, 2] <= _NEAR_M).any():
            return 0, 0, self.width, self.height
        k = self.intrinsics
        us = k[0, 0] * corners[:, 0] / corners[:, 2] + k[0, 2]
        vs = k[1, 1] * corners[:, 1] / corners[:, 2] + k[1, 2]
        x0, x1 = int(np.floor(us.min())), int(np.ceil(us.max())) + 1
        y0, y1 = int(np.floor(vs.min())), int(np.ceil(vs.max())) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.width), min(y1, self.height)
        return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None

    def _draw_object(self, obj, t_s, origin, dirs, rect, depth, color, mask, own_depth) -> int:
        """Z-test one object into ``depth``/``color``/``mask`` inside ``rect``; returns its amodal pixel count."""
        x0, y0, x1, y1 = rect
        d = dirs[y0:y1, x0:x1]
        center = obj.position.at(t_s).astype(np.float32)
        scale = float(obj.scale.at(t_s)[0])
        t_hit, normal, uv = _intersect(obj, scale, float(obj.yaw.at(t_s)[0]), origin - center, d)
        hit = np.isfinite(t_hit)
        if own_depth is not None:
            own_depth[y0:y1, x0:x1] = t_hit
        closer = hit & (t_hit < depth[y0:y1, x0:x1])
        if closer.any():
            appearance = obj.appearance
            depth[y0:y1, x0:x1][closer] = t_hit[closer]
            mask[y0:y1, x0:x1][closer] = obj.object_id
            albedo = _shade_surface(appearance, self._textures[id(appearance)], uv[0][closer], uv[1][closer])
            shade = self._shade(np.clip(normal[closer] @ self._to_light, 0, 1))
            color[y0:y1, x0:x1][closer] = albedo * shade[:, None]
        return int(hit.sum())

    def _visible_boxes(self, mask: np.ndarray, rects) -> tuple[np.ndarray, np.ndarray]:
        n = len(self.scene.objects)
        visible = np.zeros(n, np.int64)
        boxes = np.zeros((n, 4), np.float32)
        for i, (obj, rect) in enumerate(zip(self.scene.objects, rects)):
            if rect is None:
                continue
            x0, y0, x1, y1 = rect
            own = mask[y0:y1, x0:x1] == obj.object_id
            count = int(own.sum())
            if count == 0:
                continue
            visible[i] = count
            cols, rows = np.flatnonzero(own.any(0)), np.flatnonzero(own.any(1))
            boxes[i] = (x0 + cols[0], y0 + rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1)
        return visible, boxes


def _intersect(obj: ObjectSpec, scale: float, yaw: float, rel_origin: np.ndarray, dirs: np.ndarray):
    """Ray hits with one object: (t (h, w) inf on miss, world normals (h, w, 3), (u, v) surface coords)."""
    if obj.shape == "sphere":
        return _intersect_sphere(obj.half_extent_m[0] * scale, rel_origin, dirs)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)  # world_from_object
    o = rel_origin @ rot  # object frame (rot.T @ o)
    d = dirs @ rot
    half = np.asarray(obj.half_extent_m, np.float32) * scale
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t0, t1 = (-half - o) * inv, (half - o) * inv
    t_min, t_max = np.minimum(t0, t1), np.maximum(t0, t1)
    t_min = np.where(np.isnan(t_min), -np.inf, t_min)
    t_max = np.where(np.isnan(t_max), np.inf, t_max)
    t_near, t_far = t_min.max(-1), t_max.min(-1)
    hit = (t_near <= t_far) & (t_near > _NEAR_M)
    t = np.where(hit, t_near, np.inf).astype(np.float32)
    face = t_min.argmax(-1)
    sign = -np.sign(np.take_along_axis(d, face[..., None], -1)[..., 0])
    normal_local = np.zeros(d.shape, np.float32)
    np.put_along_axis(normal_local, face[..., None], sign[..., None].astype(np.float32), -1)
    p = o + d * np.where(hit, t_near, 0)[..., None]
    # Surface coordinates: the two in-face axes, offset by the face so faces do not share texels.
    u = np.choose(face, [p[..., 2], p[..., 0], p[..., 0]]) + face * 3.0
    v = np.choose(face, [p[..., 1], p[..., 2], p[..., 1]])
    return t, normal_local @ rot.T, (u, v)


def _intersect_sphere(radius: float, rel_origin: np.ndarray, dirs: np.ndarray):
    a = np.einsum("...i,...i->...", dirs, dirs)
    b = 2 * dirs @ rel_origin
    c = float(rel_origin @ rel_origin) - radius * radius
    disc = b * b - 4 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2 * a)
    hit = (disc >= 0) & (t > _NEAR_M)
    t = np.where(hit, t, np.inf).astype(np.float32)
    p = rel_origin + dirs * np.where(hit, t, 0)[..., None]
    normal = p / radius
    # Longitude/latitude scaled to metres along the equator.
    u = np.arctan2(p[..., 0], p[..., 2]) * radius
    v = np.arcsin(np.clip(p[..., 1] / radius, -1, 1)) * radius
    return t, normal, (u, v)
