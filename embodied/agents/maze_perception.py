"""Classical target detection for Memory Maze from RGB-D and pose, and the memory of where targets are.

Memory Maze's targets are hemispheres (radius 0.6 m) of the palette's colours standing on the floor;
its walls are textured in the same colours and its floor is blue. Colour alone cannot tell them apart,
so a pixel is a target pixel when (1) its chromaticity ``rgb / sum(rgb)`` is within ``max_chroma_l1``
of a palette colour's, (2) back-projected with depth and pose it lies between ``min_height_m`` and
``max_height_m`` above the floor (a target is at most 0.6 m high; walls are 1.5 m), and (3) no point of
the same frame higher than ``wall_height_m`` falls in its map cell or the 8 around it (the cells of a
wall show such points: the camera at 0.9 m sees every wall up past 1.1 m), and (4) the pixel just
above the top of its column is farther by ``open_above_m`` (a target stands free against what is
behind it; a wall's low strip whose top a nearer wall hides does not). A target's position
is the median of its pixels' floor points pushed ``push_back_m`` farther from the camera (from the
visible surface to the centre). The image border (the shown target colour) is ignored.

:class:`TargetMemory` remembers, per colour, where its target was seen (a weighted mean: near and
large detections weigh more), and when.

Example:
    >>> rgb = np.zeros((16, 16, 3), dtype=np.uint8); rgb[9:12, 7:9] = (170, 38, 30)  # red patch
    >>> depth = np.full((16, 16, 1), 25.0, dtype=np.float32); depth[9:12, 7:9] = 2.0  # 2 m, sky behind
    >>> detector = TargetDetector(pitch_deg=0.0, border_px=0)       # level camera, 80 deg, at 0.9 m
    >>> found = detector.detect(rgb, depth, np.zeros(2), 0.0)       # the patch is 0.17-0.59 m high
    >>> sorted(found), found[0].pixels, round(float(found[0].position[0]), 2)     # red is colour 0
    ([0], 6, 2.45)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from memstream.embodied.agents.mapping import backproject
from memstream.embodied.envs.memory_maze_env import target_border_px

#: Memory Maze's target colours (``memory_maze.maze.TARGET_COLORS`` x 220) in its order: the task's
#: categories, as habitat's ``objectgoal`` ids are. 9x9 uses the first three.
PALETTE_RGB = np.array(
    [[170, 38, 30], [99, 170, 88], [39, 140, 217], [93, 105, 199], [220, 193, 59], [220, 128, 107]],
    dtype=np.float64,
)
PALETTE_NAMES = ("red", "green", "blue", "purple", "yellow", "salmon")


def chromaticity(rgb: np.ndarray) -> np.ndarray:
    """float64 (..., 3): ``rgb / (r + g + b)`` (brightness removed)."""
    rgb = np.asarray(rgb, dtype=np.float64)
    return rgb / np.maximum(rgb.sum(axis=-1, keepdims=True), 1.0)


def palette_index(target_color: np.ndarray) -> int:
    """The palette colour nearest (in chromaticity) to ``target_color`` (RGB, any scale)."""
    distances = np.abs(chromaticity(PALETTE_RGB) - chromaticity(np.asarray(target_color))).sum(axis=1)
    return int(np.argmin(distances))


@dataclass(frozen=True)
class Detection:
    """One colour's target in one frame: ``position`` (2,) map metres, ``pixels`` count, ``distance_m``."""

    colour: int
    position: np.ndarray
    pixels: int
    distance_m: float


@dataclass(frozen=True)
class TargetDetector:
    """Finds the palette's targets in one RGB-D frame (see the module doc).

    Attributes:
        fov_deg / camera_height_m / pitch_deg: the camera (Memory Maze's: 80, 0.9, -5.74).
        colours: how many palette colours to look for (the maze's target count is at most 6).
        border_px: image edge ignored (the shown target colour): at least one more than Memory Maze's
            border at the frame's size (:func:`~memstream.embodied.envs.memory_maze_env.target_border_px`);
            0: none.
    """

    fov_deg: float = 80.0
    camera_height_m: float = 0.9
    pitch_deg: float = -5.74
    colours: int = 6
    max_chroma_l1: float = 0.12
    min_brightness: float = 60.0
    min_height_m: float = 0.1
    max_height_m: float = 0.62
    wall_height_m: float = 0.75
    cell_m: float = 0.2
    min_pixels: int = 4
    push_back_m: float = 0.45
    border_px: int = 3
    max_depth_m: float = 10.0
    open_above_m: float = 0.1

    def detect(
        self, rgb: np.ndarray, depth: np.ndarray, gps: np.ndarray, compass: float
    ) -> dict[int, Detection]:
        """Colour index -> :class:`Detection` for every palette colour seen as a target in this frame."""
        h, w = rgb.shape[:2]
        d = np.asarray(depth, dtype=np.float32).reshape(h, w)
        valid = (d > 0.05) & (d < self.max_depth_m)
        if self.border_px:  # Memory Maze's border widens with the image (4 px at 256): one more than it
            b = max(self.border_px, target_border_px(w) + 1)
            valid[:b], valid[-b:], valid[:, :b], valid[:, -b:] = False, False, False, False
        if not valid.any():
            return {}
        masked = np.where(valid, d, 0.0)[..., None]
        points = backproject(
            masked, gps, compass, self.fov_deg, self.camera_height_m, 1, self.max_depth_m, self.pitch_deg
        )
        colours = rgb[valid].astype(np.float64)  # same order as backproject's points (row-major)
        low = (points[:, 2] > self.min_height_m) & (points[:, 2] < self.max_height_m)
        low &= colours.sum(axis=1) > self.min_brightness
        if not low.any():
            return {}
        low &= ~self._near_walls(points)
        chroma = chromaticity(colours)
        palette = chromaticity(PALETTE_RGB[: self.colours])
        distance = np.abs(chroma[:, None, :] - palette[None]).sum(axis=2)  # (N, colours)
        nearest = distance.argmin(axis=1)
        matched = low & (distance.min(axis=1) < self.max_chroma_l1)
        found: dict[int, Detection] = {}
        camera = np.asarray(gps, dtype=np.float64)
        for colour in np.unique(nearest[matched]):
            mask = np.zeros((h, w), dtype=bool)
            mask[valid] = matched & (nearest == colour)
            keep = self._open_above(mask, d)[valid]
            xy = points[keep, :2].astype(np.float64)
            if len(xy) < self.min_pixels:
                continue
            centre = np.median(xy, axis=0)
            away = centre - camera
            distance_m = float(np.linalg.norm(away))
            centre = centre + self.push_back_m * away / max(distance_m, 1e-6)
            found[int(colour)] = Detection(int(colour), centre, len(xy), distance_m)
        return found

    def _open_above(self, mask: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """``mask`` kept in the columns where the pixel just above its top pixel is farther by
        ``open_above_m``: a target stands free, while a wall's low strip whose upper part a nearer
        wall hides (or a far wall's bottom row) has something as near or nearer above it."""
        rows = np.arange(mask.shape[0])[:, None]
        top = np.where(mask.any(axis=0), np.where(mask, rows, mask.shape[0]).min(axis=0), -1)
        columns = np.flatnonzero(top > 0)
        above = depth[top[columns] - 1, columns]
        free = columns[above > depth[top[columns], columns] + self.open_above_m]
        out = np.zeros_like(mask)
        out[:, free] = mask[:, free]
        return out

    def _near_walls(self, points: np.ndarray) -> np.ndarray:
        """bool (N,): the point's map cell or a neighbour holds a point above ``wall_height_m``."""
        cells = np.floor(points[:, :2] / self.cell_m).astype(np.int64)
        high = cells[points[:, 2] > self.wall_height_m]
        if len(high) == 0:
            return np.zeros(len(points), dtype=bool)
        lo = np.minimum(cells.min(axis=0), high.min(axis=0)) - 1
        shape = np.maximum(cells.max(axis=0), high.max(axis=0)) - lo + 2
        grid = np.zeros(tuple(shape), dtype=bool)
        grid[high[:, 0] - lo[0], high[:, 1] - lo[1]] = True
        dilated = grid.copy()
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                dilated |= np.roll(np.roll(grid, dr, axis=0), dc, axis=1)
        return dilated[cells[:, 0] - lo[0], cells[:, 1] - lo[1]]


class TargetMemory:
    """Where each colour's target was seen (map metres), with a confidence weight and the last frame.

    Every colour seen is remembered, not only the current target's: the next target is another colour.
    Two colours remembered less than ``min_separation_m`` apart cannot both be targets (each stands in
    its own 2 m maze cell): the one with less evidence is dropped."""

    def __init__(self, min_separation_m: float = 1.5) -> None:
        self.min_separation_m = min_separation_m
        self.reset()

    def reset(self) -> None:
        self.positions: dict[int, np.ndarray] = {}
        self.weights: dict[int, float] = {}
        self.last_seen: dict[int, int] = {}

    def update(self, detections: dict[int, Detection], frame: int) -> None:
        """Fold this frame's detections in: a weighted mean, weight ``pixels / (1 + distance)``.

        A target never moves, so a sighting more than 1.5 m from the memory contradicts it: the one
        with more evidence is kept, and a weaker contradiction lowers the memory's weight."""
        for colour, found in detections.items():
            weight = found.pixels / (1.0 + found.distance_m)
            if colour in self.positions and np.linalg.norm(self.positions[colour] - found.position) < 1.5:
                total = self.weights[colour] + weight
                self.positions[colour] = (
                    self.positions[colour] * self.weights[colour] + found.position * weight
                ) / total
                self.weights[colour] = min(total, 200.0)
            elif colour not in self.positions or weight > self.weights[colour]:
                # first sighting, or one elsewhere with more evidence than the memory: it wins
                self.positions[colour] = np.asarray(found.position, dtype=np.float64).copy()
                self.weights[colour] = weight
            else:  # a weaker sighting elsewhere: doubt the memory (repeated ones win in the end)
                self.weights[colour] *= 0.7
                continue
            self.last_seen[colour] = frame
        self._exclude()

    def _exclude(self) -> None:
        """Targets stand in distinct maze cells (2 m apart), so two colours remembered within
        ``min_separation_m`` of each other cannot both be right: the one with less evidence goes (a
        few edge pixels of one target read as another colour, e.g. the blue floor beside a red one)."""
        colours = sorted(self.positions, key=lambda c: -self.weights[c])
        kept: list[int] = []
        for colour in colours:
            if all(np.linalg.norm(self.positions[colour] - self.positions[k]) >= self.min_separation_m for k in kept):
                kept.append(colour)
            else:
                self.forget(colour)

    def get(self, colour: int) -> np.ndarray | None:
        return self.positions.get(colour)

    def forget(self, colour: int) -> None:
        self.positions.pop(colour, None)
        self.weights.pop(colour, None)
        self.last_seen.pop(colour, None)
