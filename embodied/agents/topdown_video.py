"""A top-down video of a navigation episode: the agent's map, its path, the true and the chosen goals.

Drawn in habitat's ``gps`` frame (forward up, right to the right, the episode's first pose at the
centre), one frame per step:

* the agent's map when it has one (an ``occupancy`` with ``grid`` and the boolean grids ``seen`` and ``occupied``, as
  :class:`~memstream.embodied.agents.memory_agent.MapMemoryAgent`'s 3D-memory view has): unseen
  black, seen floor grey, obstacles white;
* the path so far (yellow), the agent now (a cyan disc and its heading);
* the true goals (green rings, numbered in order) and the goals the agent chose (red crosses).

``memstream nav-eval --videos N`` writes one for each of the first N episodes of every agent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from memstream.streaming.videoio import VideoWriter


class TopDownRecorder:
    """Writes ``path`` (mp4), ``extent_m`` metres a side at ``px_per_m``; :meth:`add` once a step."""

    def __init__(self, path: str | Path, extent_m: float = 16.0, px_per_m: float = 16.0, fps: float = 15.0) -> None:
        self.size = int(round(extent_m * px_per_m))
        self.px_per_m = px_per_m
        self.writer = VideoWriter(path, fps=fps)
        self.path_px: list[tuple[int, int]] = []
        centres = (np.arange(self.size) + 0.5 - self.size / 2) / px_per_m
        forward, right = np.meshgrid(-centres, centres, indexing="ij")  # row 0 is farthest forward
        self._pixels_xy = np.stack([forward, right], axis=-1)
        self._cells: tuple[Any, np.ndarray, np.ndarray] | None = None  # (grid, cells, inside) of the agent's map

    def _px(self, gps: np.ndarray) -> tuple[int, int]:
        forward, right = float(gps[0]), float(gps[1])
        return int(round(self.size / 2 + right * self.px_per_m)), int(round(self.size / 2 - forward * self.px_per_m))

    def _background(self, agent: Any) -> np.ndarray:
        image = np.zeros((self.size, self.size, 3), np.uint8)
        occupancy = getattr(agent, "occupancy", None)
        if occupancy is None or not hasattr(occupancy, "grid"):
            return image
        grid = occupancy.grid
        if self._cells is None or self._cells[0] is not grid:
            cells = grid.to_cell(self._pixels_xy)
            self._cells = (grid, cells, grid.inside(cells))
        _, cells, inside = self._cells
        rows, cols = cells[..., 0][inside], cells[..., 1][inside]
        shade = np.zeros(rows.shape, np.uint8)
        shade[occupancy.seen[rows, cols]] = 90
        shade[occupancy.occupied[rows, cols]] = 230
        image[inside] = shade[:, None]
        return image

    def add(self, observations: dict[str, Any], agent: Any, goals_gps: list[np.ndarray]) -> None:
        """One frame: ``observations`` (``gps``, ``compass``) after the agent acted on them."""
        import cv2

        image = self._background(agent)
        here = self._px(np.asarray(observations["gps"], dtype=np.float64).reshape(2))
        self.path_px.append(here)
        if len(self.path_px) > 1:
            cv2.polylines(image, [np.asarray(self.path_px, np.int32)], False, (255, 210, 0), 1, cv2.LINE_AA)
        for number, goal in enumerate(goals_gps, start=1):
            centre = self._px(np.asarray(goal))
            cv2.circle(image, centre, 6, (0, 220, 0), 2, cv2.LINE_AA)
            cv2.putText(image, str(number), (centre[0] + 7, centre[1] - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (0, 220, 0), 1, cv2.LINE_AA)
        for goal in getattr(agent, "chosen_goals", None) or []:
            x, y = self._px(np.asarray(goal))
            cv2.line(image, (x - 5, y - 5), (x + 5, y + 5), (255, 40, 40), 2)
            cv2.line(image, (x - 5, y + 5), (x + 5, y - 5), (255, 40, 40), 2)
        heading = float(np.asarray(observations["compass"]).reshape(-1)[0])  # left positive
        tip = self._px(np.asarray(observations["gps"], dtype=np.float64).reshape(2)
                       + 0.6 * np.array([np.cos(heading), -np.sin(heading)]))
        cv2.circle(image, here, 4, (0, 220, 255), -1, cv2.LINE_AA)
        cv2.line(image, here, tip, (0, 220, 255), 1, cv2.LINE_AA)
        self.writer.write(image)

    def close(self) -> None:
        self.writer.close()
