"""Vectorised top-down rendering: a static background per layout, then per-slot rectangles and discs.

Pixel ``(row, col)`` covers arena ``x in [col, col + 1) / size`` and ``y in (1 - (row + 1) / size,
1 - row / size]`` (row 0 at the top, y up). A rectangle covers the pixels whose centres it contains.
Every call paints all ``B`` images at once with numpy indexing; there is no per-slot Python loop.

Example:
    >>> canvas = Canvas(64, Layout(np.array([[0.0, 0.0, 1.0, 1.0]]), (), 0.5, 0.1, 0.5))
    >>> images = canvas.blank(2)
    >>> canvas.discs(images, np.array([[0.5, 0.5], [0.25, 0.75]]), 0.05, (255, 255, 255))
    >>> images.shape, int(images[1, 16, 16, 0])
    ((2, 64, 64, 3), 255)
"""

from __future__ import annotations

import math

import numpy as np

from memstream.embodied.envs.arena import FLOOR, WALL, Layout


class Canvas:
    """Draws the images of one layout at one size.

    Args:
        size_px: side of the square image in pixels.
        layout: the arena; its floor and painted rectangles form the cached background.
    """

    def __init__(self, size_px: int, layout: Layout) -> None:
        self.size_px = size_px
        background = np.empty((size_px, size_px, 3), dtype=np.uint8)
        background[:] = WALL
        for rect in layout.free_rects:
            background[self.slices(rect)] = FLOOR
        for rect, colour in layout.painted:
            background[self.slices(rect)] = colour
        self.background = background
        self.background.setflags(write=False)

    def slices(self, rect: np.ndarray | tuple[float, ...]) -> tuple[slice, slice]:
        """(rows, cols) slices of the pixels whose centres lie in ``rect`` [x0, y0, x1, y1] (arena units)."""
        x0, y0, x1, y1 = (float(v) for v in rect)
        n = self.size_px
        cols = slice(max(0, math.ceil(x0 * n - 0.5)), min(n, math.floor(x1 * n - 0.5) + 1))
        rows = slice(max(0, math.ceil((1.0 - y1) * n - 0.5)), min(n, math.floor((1.0 - y0) * n - 0.5) + 1))
        return rows, cols

    def blank(self, batch: int) -> np.ndarray:
        """uint8 (batch, H, W, 3): fresh copies of the background."""
        return np.broadcast_to(self.background, (batch, *self.background.shape)).copy()

    def fill(self, images: np.ndarray, rect: np.ndarray | tuple[float, ...], colours: np.ndarray) -> None:
        """Paint ``rect`` in image ``b`` with ``colours[b]`` (uint8 (B, 3)); in place."""
        rows, cols = self.slices(rect)
        images[:, rows, cols, :] = np.asarray(colours, dtype=np.uint8)[:, None, None, :]

    def fill_some(self, images: np.ndarray, which: np.ndarray, rect: np.ndarray | tuple[float, ...],
                  colours: np.ndarray) -> None:
        """Paint ``rect`` only in the images where ``which`` (bool (B,)) holds, with ``colours[which]``."""
        index = np.flatnonzero(which)
        if index.size:
            rows, cols = self.slices(rect)
            images[index, rows, cols, :] = np.asarray(colours, dtype=np.uint8)[index][:, None, None, :]

    def discs(self, images: np.ndarray, centres: np.ndarray, radius: float,
              colour: tuple[int, int, int]) -> None:
        """Draw a disc of ``radius`` (arena units) at ``centres`` float (B, 2) in each image; in place.

        A pixel is painted when its centre lies within the radius, except that the pixel holding the
        centre is always painted, so the disc never vanishes at small sizes.
        """
        n = self.size_px
        radius_px = radius * n
        half = math.ceil(radius_px) + 1
        offsets = np.arange(-half, half + 1)
        x_px, y_px = centres[:, 0] * n, (1.0 - centres[:, 1]) * n  # continuous pixel coordinates
        cols = np.floor(x_px).astype(np.int64)[:, None] + offsets  # (B, P)
        rows = np.floor(y_px).astype(np.int64)[:, None] + offsets
        dx2 = (cols + 0.5 - x_px[:, None]) ** 2
        dy2 = (rows + 0.5 - y_px[:, None]) ** 2
        inside = dy2[:, :, None] + dx2[:, None, :] <= radius_px**2  # (B, P, P)
        inside[:, half, half] = True
        inside &= ((rows >= 0) & (rows < n))[:, :, None] & ((cols >= 0) & (cols < n))[:, None, :]
        batch, r, c = np.nonzero(inside)
        images[batch, rows[batch, r], cols[batch, c]] = colour
