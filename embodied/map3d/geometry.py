"""Camera geometry shared by the 3D memory: back-projection and poses (OpenCV camera axes, metres)."""

from __future__ import annotations

import numpy as np


def camera_center(world_from_cam: np.ndarray) -> np.ndarray:
    """float64 ``(3,)`` camera position in the world, metres."""
    return np.asarray(world_from_cam, np.float64)[:3, 3]


def backproject_pixels(depth_m: np.ndarray, intrinsics: np.ndarray, world_from_cam: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """World points of the pixels in ``mask`` with valid depth.

    Args:
        depth_m: float32 ``(H, W)`` z-depth, metres (0 or nan: none).
        intrinsics: ``(3, 3)`` pinhole matrix, pixels.
        world_from_cam: ``(4, 4)``.
        mask: bool ``(H, W)``.

    Returns:
        float32 ``(n, 3)`` world points, metres.
    """
    valid = mask & np.isfinite(depth_m) & (depth_m > 0)
    v, u = np.nonzero(valid)
    z = depth_m[v, u].astype(np.float64)
    k = np.asarray(intrinsics, np.float64)
    cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1)
    pose = np.asarray(world_from_cam, np.float64)
    return (cam @ pose[:3, :3].T + pose[:3, 3]).astype(np.float32)
