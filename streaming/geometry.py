"""Small rigid-body helpers: quaternions (x, y, z, w order, as TUM writes them) and slerp."""

from __future__ import annotations

import numpy as np


def quaternion_from_matrix(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion ``(qx, qy, qz, qw)`` with ``qw >= 0`` from a (3, 3) rotation matrix.

    Uses the largest of the four diagonal combinations as pivot (Shepperd's method), which stays
    accurate for rotations near 180 degrees where the trace-only formula loses precision.
    """
    m = np.asarray(rotation, np.float64)
    trace = np.trace(m)
    pivots = [trace, m[0, 0], m[1, 1], m[2, 2]]
    k = int(np.argmax(pivots))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 - m[0, 0] + m[1, 1] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 - m[0, 0] - m[1, 1] + m[2, 2])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def matrix_from_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """(3, 3) rotation from ``(qx, qy, qz, qw)``; the quaternion is normalised first."""
    x, y, z, w = np.asarray(quaternion, np.float64) / np.linalg.norm(quaternion)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def slerp(q0: np.ndarray, q1: np.ndarray, fraction: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions along the shorter arc."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: normalised lerp is exact to float precision
        q = q0 + fraction * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - fraction) * theta) * q0 + np.sin(fraction * theta) * q1) / np.sin(theta)


def pose_from_tum(values: np.ndarray) -> np.ndarray:
    """(4, 4) world_from_cam from a TUM line's ``tx ty tz qx qy qz qw``."""
    pose = np.eye(4)
    pose[:3, :3] = matrix_from_quaternion(values[3:7])
    pose[:3, 3] = values[:3]
    return pose


def pose_to_tum(pose: np.ndarray) -> np.ndarray:
    """``tx ty tz qx qy qz qw`` from a (4, 4) world_from_cam."""
    return np.concatenate([pose[:3, 3], quaternion_from_matrix(pose[:3, :3])])
