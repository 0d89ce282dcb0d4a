"""Mask helpers shared by the backends and the outputs."""

from __future__ import annotations

import numpy as np


def box_from_mask(mask: np.ndarray) -> np.ndarray:
    """Tight ``xywh`` box (pixels, float64 ``(4,)``) of a bool ``(H, W)`` mask; zeros when empty.

    Pixel-inclusive, as LaSOT: a mask covering columns 3..5 has x = 3 and w = 3.

    Example:
        >>> m = np.zeros((4, 6), bool); m[1:3, 3:6] = True
        >>> box_from_mask(m).tolist()
        [3.0, 1.0, 3.0, 2.0]
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros(4)
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float64)
