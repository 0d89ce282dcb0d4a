"""SAMURAI's box motion model, batched over objects.

The filter is SAMURAI's (DeepSORT's) constant-velocity Kalman filter on the box state
``(cx, cy, a, h, vcx, vcy, va, vh)`` (centre in pixels, aspect ratio a = w / h, height h in pixels,
dt = 1 frame), with noise proportional to the box height:

* initial std: ``[2 sp h, 2 sp h, 1e-2, 2 sp h, 10 sv h, 10 sv h, 1e-5, 10 sv h]``
* process std:  ``[sp h, sp h, 1e-2, sp h, sv h, sv h, 1e-5, sv h]`` (h of the current mean)
* measurement std: ``[sp h, sp h, 1e-1, sp h]``

with ``sp = 1/20`` and ``sv = 1/160`` (SAMURAI's ``kalman_filter.py``). Defect of the reference fixed
here: SAMURAI keeps one filter on the model object, so it tracks a single object; this class is
stateless and works on ``(n, 8)`` means and ``(n, 8, 8)`` covariances, one row per object, so every
object has its own filter and all of them are stepped in one batched call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NDIM = 4


def xywh_to_xyah(boxes_xywh: np.ndarray) -> np.ndarray:
    """(n, 4) top-left xywh -> (n, 4) centre, aspect, height. A zero height becomes 1 (as SAMURAI)."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    height = np.where(boxes[:, 3] > 0, boxes[:, 3], 1.0)
    return np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2, boxes[:, 2] / height, height], 1)


def xyah_to_xywh(boxes_xyah: np.ndarray) -> np.ndarray:
    """(n, 4) centre, aspect, height -> (n, 4) top-left xywh."""
    boxes = np.asarray(boxes_xyah, np.float64).reshape(-1, 4)
    width = boxes[:, 2] * boxes[:, 3]
    return np.stack([boxes[:, 0] - width / 2, boxes[:, 1] - boxes[:, 3] / 2, width, boxes[:, 3]], 1)


def box_iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), xywh; (n, m). Empty boxes give 0."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y1 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass(frozen=True)
class KalmanBoxFilter:
    """Constant-velocity box filter (see the module docstring); stateless, batched over objects.

    Attributes:
        std_weight_position: sp, SAMURAI 1/20.
        std_weight_velocity: sv, SAMURAI 1/160.

    Example:
        >>> kf = KalmanBoxFilter()
        >>> mean, cov = kf.initiate(xywh_to_xyah([[10, 10, 20, 40]]))
        >>> mean, cov = kf.predict(mean, cov)
        >>> xyah_to_xywh(mean[:, :4]).round(3).tolist()
        [[10.0, 10.0, 20.0, 40.0]]
    """

    std_weight_position: float = 1.0 / 20
    std_weight_velocity: float = 1.0 / 160

    @property
    def motion(self) -> np.ndarray:
        """(8, 8) F: position += velocity (dt = 1 frame)."""
        f = np.eye(2 * NDIM)
        f[:NDIM, NDIM:] = np.eye(NDIM)
        return f

    def _stds(self, height: np.ndarray, position: tuple[float, float], velocity: tuple[float, float] | None):
        """Per-object std vectors scaled by height; aspect terms are absolute (1e-2 / 1e-5 / 1e-1)."""
        sp, sv = self.std_weight_position, self.std_weight_velocity
        pos_scale, aspect_std = position
        cols = [pos_scale * sp * height, pos_scale * sp * height, np.full_like(height, aspect_std), pos_scale * sp * height]
        if velocity is not None:
            vel_scale, aspect_vel_std = velocity
            cols += [vel_scale * sv * height, vel_scale * sv * height, np.full_like(height, aspect_vel_std), vel_scale * sv * height]
        return np.stack(cols, 1)

    def initiate(self, measurement_xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """New tracks from (n, 4) measurements: means (n, 8) with zero velocity, covariances (n, 8, 8)."""
        z = np.asarray(measurement_xyah, np.float64).reshape(-1, NDIM)
        mean = np.concatenate([z, np.zeros_like(z)], 1)
        std = self._stds(z[:, 3], (2.0, 1e-2), (10.0, 1e-5))
        return mean, _diag(std**2)

    def predict(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame ahead: ``x = F x``, ``P = F P F^T + Q`` (Q from the current height)."""
        f = self.motion
        q = _diag(self._stds(mean[:, 3], (1.0, 1e-2), (1.0, 1e-5)) ** 2)
        return mean @ f.T, f @ covariance @ f.T + q

    def project(self, mean: np.ndarray, covariance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Into measurement space: (n, 4) means and (n, 4, 4) innovation covariances ``H P H^T + R``."""
        r = _diag(self._stds(mean[:, 3], (1.0, 1e-1), None) ** 2)
        return mean[:, :NDIM], covariance[:, :NDIM, :NDIM] + r

    def update(self, mean: np.ndarray, covariance: np.ndarray, measurement_xyah: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Correct with (n, 4) measurements; returns the posterior means and covariances."""
        z = np.asarray(measurement_xyah, np.float64).reshape(-1, NDIM)
        projected, s = self.project(mean, covariance)
        cross = covariance[:, :, :NDIM]  # P H^T, (n, 8, 4)
        # K = P H^T S^-1, solved rather than inverted (S is symmetric positive definite).
        gain = np.linalg.solve(s, cross.transpose(0, 2, 1)).transpose(0, 2, 1)
        innovation = z - projected
        new_mean = mean + np.einsum("nij,nj->ni", gain, innovation)
        new_cov = covariance - gain @ s @ gain.transpose(0, 2, 1)
        return new_mean, new_cov


def _diag(values: np.ndarray) -> np.ndarray:
    """(n, k) -> (n, k, k) diagonal matrices."""
    out = np.zeros(values.shape + values.shape[-1:], values.dtype)
    idx = np.arange(values.shape[-1])
    out[:, idx, idx] = values
    return out
