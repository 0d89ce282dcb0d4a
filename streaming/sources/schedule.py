"""Frame selection and resizing shared by all sources, so every source subsamples the same way."""

from __future__ import annotations

import math

import cv2
import numpy as np

from memstream.streaming.sources.protocol import SourceOptions


class FrameSchedule:
    """Decides, frame by frame, which decoded frames a source yields.

    Order of the rules: drop frames before ``start_s``; then keep at most ``target_fps`` frames per
    second (a frame is kept when its timestamp reaches the next slot, slots are ``1/target_fps``
    apart starting at the first kept frame; a 0.5 ms tolerance absorbs container rounding); then keep
    every ``stride``-th of those; stop after ``max_frames``.

    Example:
        >>> s = FrameSchedule(SourceOptions(stride=2, max_frames=2))
        >>> [s.keep(t / 30) for t in range(5)], s.done
        ([True, False, True, False, False], True)
    """

    _TOLERANCE_S = 5e-4

    def __init__(self, options: SourceOptions) -> None:
        self.options = options
        self.yielded = 0
        self._candidates = 0
        self._next_slot_s: float | None = None

    @property
    def done(self) -> bool:
        """True once ``max_frames`` frames were kept; the source should stop decoding."""
        return self.options.max_frames is not None and self.yielded >= self.options.max_frames

    def keep(self, timestamp_s: float) -> bool:
        """Whether the decoded frame at ``timestamp_s`` is yielded; call once per decoded frame, in order."""
        opts = self.options
        if self.done or timestamp_s < opts.start_s - self._TOLERANCE_S:
            return False
        if opts.target_fps is not None:
            if self._next_slot_s is not None and timestamp_s < self._next_slot_s - self._TOLERANCE_S:
                return False
            period = 1.0 / opts.target_fps
            if self._next_slot_s is None:
                self._next_slot_s = timestamp_s + period
            else:
                # Advance past this frame even after a gap, so a stall never causes a burst.
                steps = max(1, math.floor((timestamp_s - self._next_slot_s) / period + self._TOLERANCE_S) + 1)
                self._next_slot_s += steps * period
        self._candidates += 1
        if (self._candidates - 1) % opts.stride != 0:
            return False
        self.yielded += 1
        return True

    def planned_count(self, native_count: int | None, native_fps: float | None) -> int | None:
        """Number of frames that will be yielded from a stream of ``native_count`` frames at
        ``native_fps``, or None when that cannot be known up front."""
        if native_count is None:
            return None
        if native_fps is None or native_fps <= 0:
            if self.options.start_s > 0 or self.options.target_fps is not None:
                return None
            native_fps = 1.0
        return self.count_kept(i / native_fps for i in range(native_count))

    def count_kept(self, timestamps_s) -> int:
        """How many of these (increasing) timestamps a fresh schedule with the same options keeps."""
        probe = FrameSchedule(self.options)
        return sum(probe.keep(t) for t in timestamps_s)

    def output_fps(self, native_fps: float | None) -> float | None:
        """Frame rate of the yielded stream, or None when unknown."""
        if native_fps is None or native_fps <= 0:
            return None
        fps = native_fps if self.options.target_fps is None else min(native_fps, self.options.target_fps)
        return fps / self.options.stride


def resize_frame(
    rgb: np.ndarray,
    size: tuple[int, int] | None,
    depth_m: np.ndarray | None = None,
    intrinsics: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Resize an RGB image (area/linear), its depth (nearest: no mixed depths) and scale its intrinsics.

    Args:
        rgb: uint8 (H, W, 3).
        size: (width, height) in pixels, or None to return the inputs unchanged.
        depth_m: float32 (H, W) metres, or None.
        intrinsics: (3, 3) pixels, or None.

    Returns:
        ``(rgb, depth_m, intrinsics)`` at the new size.
    """
    if size is None or (rgb.shape[1], rgb.shape[0]) == size:
        return rgb, depth_m, intrinsics
    width, height = size
    sx, sy = width / rgb.shape[1], height / rgb.shape[0]
    interpolation = cv2.INTER_AREA if sx < 1 and sy < 1 else cv2.INTER_LINEAR
    rgb = cv2.resize(rgb, (width, height), interpolation=interpolation)
    if depth_m is not None:
        depth_m = cv2.resize(depth_m, (width, height), interpolation=cv2.INTER_NEAREST)
    if intrinsics is not None:
        intrinsics = intrinsics.astype(np.float64).copy()
        # Pixel centres: u' + 0.5 = sx * (u + 0.5).
        intrinsics[0, 0] *= sx
        intrinsics[1, 1] *= sy
        intrinsics[0, 2] = sx * (intrinsics[0, 2] + 0.5) - 0.5
        intrinsics[1, 2] = sy * (intrinsics[1, 2] + 0.5) - 0.5
    return rgb, depth_m, intrinsics
