"""RGB-D helpers of the agents: back-projection into the gps frame, a ray-count occupancy grid (the
Memory Maze agent's map) and the colour detector of the FindingDory agent's tracking memory.

Frame of the maps: habitat's ``gps`` frame, ``(forward, right)`` metres from the episode's first pose;
a heading ``compass`` (left positive) points along ``(cos c, -sin c)``. The camera is level at
``camera_height_m`` with a square pinhole of ``fov_deg``; ``depth`` is metres along the optical axis.

* :class:`OccupancyMap`: per cell, hits of points between ``floor_m`` and ``ceiling_m`` (obstacles)
  minus the rays that passed through it (free).
* :func:`colour_masks`: saturated pixels classified into the five object colours (MiniWorld's
  palette), the detections :class:`~memstream.embodied.agents.object_tracks.ObjectTracks` turns
  into persistent object ids. (The FindingDory agent's map is the 3D memory:
  :mod:`~memstream.embodied.agents.memory_map`.)

Example:
    >>> depth = np.full((8, 8, 1), 3.0, dtype=np.float32)             # a wall 3 m ahead
    >>> pts = backproject(depth, np.zeros(2), 0.0, fov_deg=60.0, camera_height_m=1.5, stride=1)
    >>> bool(np.allclose(pts[:, 0], 3.0)), bool(pts[:, 2].max() < 1.5 + 3.0 * np.tan(np.pi / 6) + 1e-6)
    (True, True)
"""

from __future__ import annotations

import math

import numpy as np

from memstream.embodied.envs.navgrid import GridSpec

# hue ranges (degrees) of MiniWorld's saturated object colours under its lighting
COLOUR_HUES = {
    "red": ((345.0, 360.0), (0.0, 15.0)),
    "yellow": ((45.0, 75.0),),
    "green": ((95.0, 150.0),),
    "blue": ((215.0, 250.0),),
    "purple": ((260.0, 300.0),),
}


def backproject(
    depth: np.ndarray,
    gps: np.ndarray,
    compass: float,
    fov_deg: float,
    camera_height_m: float,
    stride: int = 2,
    max_depth_m: float = 8.0,
    pitch_deg: float = 0.0,
) -> np.ndarray:
    """float32 (N, 3): ``(forward, right, up)`` map points of every ``stride``-th pixel with depth < max.

    Args:
        depth: float (H, W, 1) or (H, W), metres along the optical axis.
        gps: (2,) camera position in the map. compass: heading, radians, left positive.
        pitch_deg: the camera's tilt, degrees, negative looking down (Memory Maze's camera: -5.74).
    """
    d = np.asarray(depth, dtype=np.float32).reshape(depth.shape[0], depth.shape[1])[::stride, ::stride]
    h, w = depth.shape[0], depth.shape[1]
    focal = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    v, u = np.mgrid[0:h:stride, 0:w:stride]
    keep = (d > 0.05) & (d < max_depth_m)
    z = d[keep]
    x_right = (u[keep] + 0.5 - w / 2) / focal * z
    y_cam = (h / 2 - v[keep] - 0.5) / focal * z
    if pitch_deg:  # rotate the camera frame about its right axis: forward and up mix
        pitch = math.radians(pitch_deg)
        z, y_cam = z * math.cos(pitch) - y_cam * math.sin(pitch), z * math.sin(pitch) + y_cam * math.cos(pitch)
    y_up = y_cam + camera_height_m
    heading = np.array([math.cos(compass), -math.sin(compass)])
    right = np.array([math.sin(compass), math.cos(compass)])
    xy = np.asarray(gps, dtype=np.float64)[None] + z[:, None] * heading[None] + x_right[:, None] * right[None]
    return np.concatenate([xy, y_up[:, None]], axis=1).astype(np.float32)


class OccupancyMap:
    """A fixed-size grid centred on the map origin (``extent_m`` square, ``cell_m`` cells)."""

    def __init__(
        self,
        extent_m: float = 30.0,
        cell_m: float = 0.2,
        floor_m: float = 0.15,
        ceiling_m: float = 2.0,
    ) -> None:
        n = round(extent_m / cell_m)
        self.grid = GridSpec((-extent_m / 2, -extent_m / 2), cell_m, (n, n))
        self.floor_m, self.ceiling_m = floor_m, ceiling_m
        self.reset()

    def reset(self) -> None:
        self.evidence = np.zeros(self.grid.shape, dtype=np.int16)  # > 0 occupied, < 0 free, 0 unknown
        self.seen = np.zeros(self.grid.shape, dtype=bool)
        self.bumps = np.zeros(self.grid.shape, dtype=bool)

    def update(self, points: np.ndarray, camera_xy: np.ndarray) -> None:
        """Add one frame's ``points`` (N, 3) seen from ``camera_xy`` (2,)."""
        if len(points) == 0:
            return
        obstacle = (points[:, 2] > self.floor_m) & (points[:, 2] < self.ceiling_m)
        # free space: samples along each ray in the floor plane, short of its end
        fractions = np.linspace(0.0, 1.0, 16, endpoint=False)[:, None, None]
        ends = points[:, :2][None].astype(np.float64)
        samples = camera_xy[None, None] + fractions * (ends - camera_xy[None, None])
        free_counts = self._counts(samples.reshape(-1, 2))
        hit_counts = self._counts(points[obstacle, :2])
        floor_counts = self._counts(points[~obstacle & (points[:, 2] <= self.floor_m), :2])
        evidence = (
            self.evidence.astype(np.int32) - np.minimum(free_counts, 20) + 4 * np.minimum(hit_counts, 10)
        )
        self.evidence = np.clip(evidence, -20, 20).astype(np.int16)
        self.seen |= (free_counts + hit_counts + floor_counts) > 0

    def _counts(self, xy: np.ndarray) -> np.ndarray:
        """int64 (rows, cols): how many of the points ``xy`` (N, 2) fall in each cell."""
        cells = self._cells(xy)
        flat = cells[:, 0] * self.grid.shape[1] + cells[:, 1]
        return np.bincount(flat, minlength=self.grid.shape[0] * self.grid.shape[1]).reshape(self.grid.shape)

    def _cells(self, xy: np.ndarray) -> np.ndarray:
        cells = self.grid.to_cell(xy)
        return cells[self.grid.inside(cells)]

    def mark_blocked(self, xy: np.ndarray) -> None:
        """A bump: the cell at ``xy`` is an obstacle whatever the rays said."""
        cell = self.grid.to_cell(xy)
        if self.grid.inside(cell):
            self.bumps[cell[0], cell[1]] = True

    @property
    def occupied(self) -> np.ndarray:
        """bool (rows, cols): more obstacle hits than free rays, or bumped into."""
        return (self.evidence > 0) | self.bumps


def colour_masks(rgb: np.ndarray, min_saturation: float = 0.55, min_value: int = 50) -> dict[str, np.ndarray]:
    """bool (H, W) per colour of :data:`COLOUR_HUES`: saturated pixels of that hue."""
    rgb = rgb.astype(np.float32)
    high, low = rgb.max(axis=2), rgb.min(axis=2)
    saturated = (high >= min_value) & ((high - low) >= min_saturation * np.maximum(high, 1.0))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    span = np.maximum(high - low, 1e-6)
    hue = (
        np.where(high == r, (g - b) / span % 6, np.where(high == g, (b - r) / span + 2, (r - g) / span + 4))
        * 60.0
    )
    masks = {}
    for colour, ranges in COLOUR_HUES.items():
        inside = np.zeros(hue.shape, dtype=bool)
        for lo, hi in ranges:
            inside |= (hue >= lo) & (hue < hi)
        masks[colour] = saturated & inside
    return masks
