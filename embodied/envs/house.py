"""Multi-room houses with coloured objects: the layout, drawn from a seed, before any simulator runs.

A house is a 2x2 grid of rectangular rooms (metres, floor plane ``x`` right, ``z`` down in MiniWorld's
convention) separated by thin gaps and joined by 3 or 4 doorways; objects of five distinct colours
(box or ball) stand in the rooms. Everything here is numpy: the simulator (``miniworld_env``) builds
the same house, and the scorer's free-space grid (:func:`free_grid`) is computed from the layout.

Example:
    >>> layout = make_layout(np.random.default_rng(0), num_objects=5)
    >>> layout.rooms.shape, len(layout.objects), len(layout.doors) in (3, 4)
    ((4, 4), 5, True)
    >>> grid, free = free_grid(layout, clearance_m=0.45, cell_m=0.1)
    >>> bool(free[tuple(grid.to_cell(layout.start_xz))])
    True
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from memstream.embodied.envs.navgrid import GridSpec

COLOURS = ("red", "green", "blue", "purple", "yellow")  # MiniWorld's saturated colours: one per object
SHAPES = ("box", "ball")
GAP_M = 0.4  # wall gap between neighbouring rooms
DOOR_M = 1.6  # doorway width
OBJECT_RADIUS_M = 0.45  # an object's footprint radius, for blocking (box and ball of size 0.6: 0.42-0.43)


@dataclass(frozen=True)
class HouseObject:
    """One object: ``colour`` (unique in a house), ``shape`` (box or ball), ``xz`` (2,) metres."""

    colour: str
    shape: str
    xz: tuple[float, float]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Door:
    """A doorway between rooms ``a`` and ``b`` across ``axis`` (0: they touch along x, 1: along z),
    spanning ``lo``..``hi`` metres on the other axis."""

    a: int
    b: int
    axis: int
    lo: float
    hi: float


@dataclass(frozen=True)
class HouseLayout:
    """rooms: float (4, 4) ``[min_x, max_x, min_z, max_z]`` metres, row-major 2x2 (0 1 / 2 3).
    doors: the doorways. objects: what stands where. start_xz (2,), start_dir (radians, MiniWorld's)."""

    rooms: np.ndarray
    doors: tuple[Door, ...]
    objects: tuple[HouseObject, ...]
    start_xz: tuple[float, float]
    start_dir: float

    def room_of(self, xz: np.ndarray | tuple[float, float]) -> int:
        """Index of the room containing ``xz``, or -1 (a doorway)."""
        x, z = float(xz[0]), float(xz[1])
        for i, (x0, x1, z0, z1) in enumerate(self.rooms):
            if x0 <= x <= x1 and z0 <= z <= z1:
                return i
        return -1

    def with_objects(self, objects: tuple[HouseObject, ...]) -> HouseLayout:
        return replace(self, objects=objects)


def make_layout(
    rng: np.random.Generator, num_objects: int = 5, room_m: tuple[float, float] = (4.0, 5.5)
) -> HouseLayout:
    """A random house: room sizes ``U(room_m)``, 3-4 doorways, ``num_objects`` <= 5 objects >= 2 m apart."""
    w0, w1 = rng.uniform(*room_m, size=2)
    h0, h1 = rng.uniform(*room_m, size=2)
    xs = ((0.0, w0), (w0 + GAP_M, w0 + GAP_M + w1))
    zs = ((0.0, h0), (h0 + GAP_M, h0 + GAP_M + h1))
    rooms = np.array([[*xs[c], *zs[r]] for r in range(2) for c in range(2)])
    # neighbours: 0-1 and 2-3 touch along x (axis 0), 0-2 and 1-3 along z (axis 1)
    pairs = [(0, 1, 0), (2, 3, 0), (0, 2, 1), (1, 3, 1)]
    if rng.random() < 0.5:
        pairs.pop(int(rng.integers(4)))  # still connected: a 4-cycle minus one edge is a path
    doors = []
    for a, b, axis in pairs:
        other = 2 if axis == 0 else 0  # the span axis columns in rooms: z for axis 0, x for axis 1
        lo = max(rooms[a, other], rooms[b, other]) + 0.3
        hi = min(rooms[a, other + 1], rooms[b, other + 1]) - 0.3 - DOOR_M
        start = float(rng.uniform(lo, hi))
        doors.append(Door(a, b, axis, start, start + DOOR_M))
    points = _spaced_points(rng, rooms, num_objects + 1, min_sep_m=2.0)
    colours = rng.permutation(COLOURS)[:num_objects]
    objects = tuple(
        HouseObject(str(c), str(rng.choice(SHAPES)), (float(p[0]), float(p[1])))
        for c, p in zip(colours, points[1:], strict=True)
    )
    return HouseLayout(
        rooms,
        tuple(doors),
        objects,
        (float(points[0][0]), float(points[0][1])),
        float(rng.uniform(-np.pi, np.pi)),
    )


def _spaced_points(
    rng: np.random.Generator,
    rooms: np.ndarray,
    count: int,
    min_sep_m: float,
    avoid: np.ndarray | None = None,
    margin_m: float = 0.9,
    room: int | None = None,
) -> np.ndarray:
    """``count`` points in the rooms, ``margin_m`` from walls, ``min_sep_m`` apart and from ``avoid``."""
    taken = [] if avoid is None else [np.asarray(p) for p in avoid]
    out: list[np.ndarray] = []
    for _ in range(2_000):
        if len(out) == count:
            break
        x0, x1, z0, z1 = rooms[int(rng.integers(len(rooms))) if room is None else room]
        p = np.array([rng.uniform(x0 + margin_m, x1 - margin_m), rng.uniform(z0 + margin_m, z1 - margin_m)])
        if all(np.linalg.norm(p - q) >= min_sep_m for q in taken + out):
            out.append(p)
    if len(out) < count:
        raise ValueError(f"cannot place {count} points {min_sep_m} m apart")
    return np.array(out)


def spaced_point(
    rng: np.random.Generator, layout: HouseLayout, avoid: np.ndarray, rooms: list[int], min_sep_m: float = 2.0
) -> np.ndarray:
    """One point (2,) in one of ``rooms`` (in order), ``min_sep_m`` (else as far as fits) from ``avoid``."""
    for sep in (min_sep_m, 0.75 * min_sep_m, 0.5 * min_sep_m):
        for room in rooms:
            try:
                return _spaced_points(rng, layout.rooms, 1, sep, avoid=avoid, room=room)[0]
            except ValueError:
                continue
    raise ValueError(f"no room of {rooms} has a point {0.5 * min_sep_m} m from {len(avoid)} others")


def free_grid(
    layout: HouseLayout,
    clearance_m: float,
    cell_m: float,
    blockers: np.ndarray | None = None,
    blocker_radius_m: float = OBJECT_RADIUS_M,
) -> tuple[GridSpec, np.ndarray]:
    """Where an agent's centre may be: inside a room or doorway, ``clearance_m`` from walls and blockers.

    Args:
        layout: the house. clearance_m: the agent's radius plus a margin. cell_m: grid cell side.
        blockers: float (n, 2) centres of objects standing on the floor (each ``blocker_radius_m``).

    Returns:
        the grid's placement and bool (rows, cols) free cells.
    """
    x0, z0 = layout.rooms[:, 0].min() - 0.5, layout.rooms[:, 2].min() - 0.5
    x1, z1 = layout.rooms[:, 1].max() + 0.5, layout.rooms[:, 3].max() + 0.5
    grid = GridSpec(
        (float(x0), float(z0)), cell_m, (int(np.ceil((x1 - x0) / cell_m)), int(np.ceil((z1 - z0) / cell_m)))
    )
    rows, cols = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
    centres = grid.to_xy(np.stack([rows, cols], axis=-1))
    x, z = centres[..., 0], centres[..., 1]
    c = clearance_m
    free = np.zeros(grid.shape, dtype=bool)
    for rx0, rx1, rz0, rz1 in layout.rooms:
        free |= (x >= rx0 + c) & (x <= rx1 - c) & (z >= rz0 + c) & (z <= rz1 - c)
    for door in layout.doors:
        a, b = layout.rooms[door.a], layout.rooms[door.b]
        if door.axis == 0:  # a's max_x faces b's min_x
            free |= (x >= a[1] - c) & (x <= b[0] + c) & (z >= door.lo + c) & (z <= door.hi - c)
        else:
            free |= (z >= a[3] - c) & (z <= b[2] + c) & (x >= door.lo + c) & (x <= door.hi - c)
    if blockers is not None:
        for bx, bz in np.asarray(blockers).reshape(-1, 2):
            free &= (x - bx) ** 2 + (z - bz) ** 2 > (blocker_radius_m + c) ** 2
    return grid, free
