"""Helpers shared by the video memory tests."""

from __future__ import annotations

import cv2
import numpy as np


def jpeg(seed: int, shape: tuple[int, int] = (48, 64)) -> bytes:
    """A random-noise JPEG frame of ``shape`` (height, width), the same bytes for the same seed: what the
    service tests post."""
    image = np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def make_frames(n: int, *, seed: int = 0, size: tuple[int, int] = (40, 48), start_s: float = 0.0, fps: float = 2.0):
    """``n`` random RGB frames as :class:`memstream.streaming.types.Frame`, ``fps`` apart."""
    from memstream.streaming.types import Frame

    rng = np.random.default_rng(seed)
    return [
        Frame(index=i, timestamp_s=start_s + i / fps, rgb=rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        for i in range(n)
    ]
