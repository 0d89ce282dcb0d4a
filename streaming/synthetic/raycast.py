"""Closed-form ray intersections with the room (a box seen from inside), yawed boxes and spheres.

A pixel's ray has camera direction ``(x_u, y_v, 1)`` with ``x_u = (u - cx) / fx`` and
``y_v = (v - cy) / fy``, so a hit's ray parameter ``t`` *is* its z-depth in metres, and any linear
function of the world direction ``L . (R @ (x_u, y_v, 1))`` is ``a * x_u + b * y_v + c``: an outer
sum of a row and a column vector. :class:`Rays` exploits that, so no (H, W, 3) direction array is
ever built. Intersections come in two steps: ``*_depth`` computes ``t`` for every ray of a screen
rectangle (the hot loop), ``*_surface`` computes normals and surface coordinates only for the rays
that end up visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_M = 0.05  # hits closer than this to the camera centre are ignored (a near clipping plane)

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end-exclusive


@dataclass(frozen=True)
class Rays:
    """The pixel rays of a pinhole camera in one orientation.

    Attributes:
        x: float32 (W,) camera-space ``x / z`` of each pixel column.
        y: float32 (H,) camera-space ``y / z`` of each pixel row.
        rotation: float64 (3, 3) world_from_cam rotation.
    """

    x: np.ndarray
    y: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def from_intrinsics(intrinsics: np.ndarray, width_px: int, height_px: int, rotation: np.ndarray) -> Rays:
        k = intrinsics
        x = ((np.arange(width_px) - k[0, 2]) / k[0, 0]).astype(np.float32)
        y = ((np.arange(height_px) - k[1, 2]) / k[1, 1]).astype(np.float32)
        return Rays(x, y, np.asarray(rotation, np.float64))

    @property
    def full(self) -> Rect:
        return 0, 0, len(self.x), len(self.y)

    def dot(self, vector: np.ndarray, rect: Rect) -> np.ndarray:
        """float32 (h, w): ``vector . direction`` for each ray in ``rect``; ``vector`` is (3,), world frame."""
        a, b, c = self.rotation.T @ np.asarray(vector, np.float64)
        x0, y0, x1, y1 = rect
        return np.add(
            (np.float32(b) * self.y[y0:y1] + np.float32(c))[:, None], np.float32(a) * self.x[None, x0:x1]
        )

    def norm_sq(self, rect: Rect) -> np.ndarray:
        """float32 (h, w): squared length of each direction (rotation does not change it)."""
        x0, y0, x1, y1 = rect
        return np.add((self.y[y0:y1] ** 2 + 1)[:, None], (self.x[x0:x1] ** 2)[None, :])

    def at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """float64 (m, 3) world directions of the pixels ``(rows[i], cols[i])``."""
        cam = np.stack([self.x[cols], self.y[rows], np.ones(len(rows), np.float32)], axis=1)
        return cam.astype(np.float64) @ self.rotation.T


@dataclass(frozen=True)
class RoomHits:
    """Where every ray of a frame meets the inside of the room.

    Attributes:
        depth_m: float32 (H, W) z-depth of the hit.
        face: uint8 (H, W) inner face hit: 0 -x wall, 1 +x wall, 2 ceiling (-y), 3 floor (+y),
            4 back wall (-z), 5 front wall (+z).
        u_m, v_m: float32 (H, W) world coordinates spanning the face (metres), for texturing.
    """

    depth_m: np.ndarray
    face: np.ndarray
    u_m: np.ndarray
    v_m: np.ndarray


def room_hits(origin: np.ndarray, rays: Rays, room_min: np.ndarray, room_max: np.ndarray) -> RoomHits:
    """Intersect all rays from ``origin`` (strictly inside the room) with the room's inner faces.

    For axis ``a`` the ray meets the wall it points to at ``t_a = (wall_a - o_a) / d_a > 0``; the
    inverse ``w_a = d_a / (wall_a - o_a)`` is the larger of the two candidates (the other wall gives a
    negative value), and is 0 for rays parallel to the walls. The hit is the axis with the largest
    ``w``, at depth ``1 / w``. Working with inverse depths avoids every division by zero.
    """
    origin = np.asarray(origin, np.float64)
    d = [rays.dot(np.eye(3)[a], rays.full) for a in range(3)]  # world direction components
    inverse = [
        np.maximum(
            d[a] * np.float32(1 / (room_max[a] - origin[a])), d[a] * np.float32(1 / (room_min[a] - origin[a]))
        )
        for a in range(3)
    ]
    w_max = np.maximum(np.maximum(inverse[0], inverse[1]), inverse[2])
    depth = np.float32(1.0) / w_max
    on_y = inverse[1] == w_max
    on_x = (inverse[0] == w_max) & ~on_y
    on_z = ~(on_x | on_y)
    positive = (on_x & (d[0] > 0)) | (on_y & (d[1] > 0)) | (on_z & (d[2] > 0))
    face = 4 - 4 * on_x.view(np.uint8) - 2 * on_y.view(np.uint8) + positive.view(np.uint8)
    px, py, pz = (np.float32(origin[a]) + d[a] * depth for a in range(3))
    # Arithmetic selection: much faster than np.where on this numpy build.
    u = px + on_x.astype(np.float32) * (pz - px)
    v = py + on_y.astype(np.float32) * (pz - py)
    return RoomHits(depth, face, u, v)


def yaw_matrix(yaw_rad: float) -> np.ndarray:
    """(3, 3) world_from_object rotation about the world y axis (float64)."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def box_depth(
    half_m: np.ndarray, rotation: np.ndarray, rel_origin: np.ndarray, rays: Rays, rect: Rect
) -> np.ndarray:
    """Depth of the first hit with an oriented box (slab method), inf where the ray misses.

    Args:
        half_m: (3,) half sizes in the box frame, metres.
        rotation: (3, 3) world_from_box rotation.
        rel_origin: (3,) ray origin minus box centre, world frame.
        rays: the frame's rays.
        rect: the screen rectangle to intersect.

    Returns:
        float32 (h, w); a ray starting inside the box or hitting it nearer than ``NEAR_M`` misses.
    """
    o = rel_origin @ rotation  # box frame (rotation.T @ o)
    t_near = t_far = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for axis in range(3):
            inv = np.float32(1.0) / rays.dot(rotation[:, axis], rect)  # 1 / direction along the box axis
            t0 = np.float32(-half_m[axis] - o[axis]) * inv
            t1 = np.float32(half_m[axis] - o[axis]) * inv
            lo, hi = np.minimum(t0, t1), np.maximum(t0, t1)
            t_near = lo if t_near is None else np.maximum(t_near, lo)
            t_far = hi if t_far is None else np.minimum(t_far, hi)
    # A nan (ray parallel to a slab and starting on its plane) compares False: a miss.
    hit = (t_near <= t_far) & (t_near > NEAR_M)
    t_near[~hit] = np.inf
    return t_near


def box_face_normals(rotation: np.ndarray) -> np.ndarray:
    """(6, 3) world normals of a box's faces in ``box_surface`` face order (-x, +x, -y, +y, -z, +z)."""
    return np.stack([sign * rotation[:, axis] for axis in range(3) for sign in (-1.0, 1.0)])


def box_surface(
    half_m: np.ndarray, rotation: np.ndarray, rel_origin: np.ndarray, dirs: np.ndarray, depth_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face index (m,) and face coordinates ``u, v`` (m,) in metres of hits on a box.

    The face hit is the axis where the local hit point is closest to the surface (largest
    ``|p| / half``), numbered ``2 * axis + (p_axis > 0)`` as in :func:`box_face_normals`. Faces get
    different ``u`` offsets so they do not share texels. Selections are arithmetic (no np.choose).
    """
    p = (rel_origin + dirs * depth_m[:, None]) @ rotation  # (m, 3) box frame
    px, py, pz = p[:, 0], p[:, 1], p[:, 2]
    ax, ay, az = (np.abs(c) / h for c, h in zip((px, py, pz), half_m))
    on_y = (ay >= ax) & (ay >= az)
    on_x = (ax > ay) & (ax >= az)
    on_z = ~(on_x | on_y)
    positive = (on_x & (px > 0)) | (on_y & (py > 0)) | (on_z & (pz > 0))
    face = 4 - 4 * on_x.astype(np.int64) - 2 * on_y + positive
    u = px + on_x * (pz - px) + face * 1.5
    v = py + on_y * (pz - py)
    return face, u, v


def sphere_depth(radius_m: float, rel_origin: np.ndarray, rays: Rays, rect: Rect) -> np.ndarray:
    """Depth of the first hit with a sphere, inf where the ray misses; ``rel_origin`` = origin - centre."""
    half_b = rays.dot(rel_origin, rect)
    a = rays.norm_sq(rect)
    c = np.float32(rel_origin @ rel_origin - radius_m * radius_m)
    disc = half_b * half_b - a * c
    with np.errstate(invalid="ignore"):
        t = (-half_b - np.sqrt(disc)) / a
    t[~((disc >= 0) & (t > NEAR_M))] = np.inf
    return t


def sphere_surface(
    radius_m: float, rel_origin: np.ndarray, dirs: np.ndarray, depth_m: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normals (m, 3) and longitude/latitude coordinates (metres along the equator)."""
    p = rel_origin + dirs * depth_m[:, None]
    normal = p / radius_m
    u = np.arctan2(p[:, 0], p[:, 2]) * radius_m
    v = np.arcsin(np.clip(p[:, 1] / radius_m, -1, 1)) * radius_m
    return normal, u, v
