"""Template search for the classical backend: where do an object's memories match in a frame?

Pure functions of arrays (OpenCV and numpy, no weights, no state): :func:`search_window` picks the
region, :func:`match_peaks` scores it at a few scales (normalised cross-correlation of the memory
templates, ``cv2.TM_CCOEFF_NORMED``, merged with the object's colour likelihood) and returns the top
distinct peaks; :func:`crop_template` cuts a new memory template.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from memstream.tracking.classical.config import ClassicalConfig
from memstream.tracking.kalman import box_iou_xywh


@dataclass(frozen=True)
class Peak:
    """One appearance match.

    Attributes:
        score: the match score: ``(1 - colour_weight) * ncc + colour_weight * colour``, times the
            scale penalty when the scale is not 1.
        ncc: the weighted mean normalised cross-correlation of the memory templates, in [-1, 1].
        colour: the mean P(object | colour) inside the box, in [0, 1].
        box_xywh: float64 ``(4,)`` pixels of the frame: where the templates match, at that scale.
    """

    score: float
    ncc: float
    colour: float
    box_xywh: np.ndarray


def search_window(
    center_xy: np.ndarray,
    size_wh: np.ndarray,
    search_scale: float | None,
    frame_wh: tuple[int, int],
    margin_px: float = 0.0,
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` integer pixels: ``search_scale`` times the box size around its centre,
    plus ``margin_px`` on every side, clipped to the frame; the whole frame when ``search_scale`` is
    None."""
    width, height = frame_wh
    if search_scale is None:
        return 0, 0, width, height
    half = np.asarray(size_wh, np.float64) * search_scale / 2 + margin_px
    x0, y0 = np.floor(np.asarray(center_xy) - half).astype(int)
    x1, y1 = np.ceil(np.asarray(center_xy) + half).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def match_peaks(
    grey: np.ndarray,
    probability: np.ndarray,
    window: tuple[int, int, int, int],
    size_wh: np.ndarray,
    templates: Sequence[np.ndarray],
    weights: np.ndarray,
    config: ClassicalConfig,
    count: int,
    scales: Sequence[float] | None = None,
) -> list[Peak]:
    """The ``count`` best distinct matches of the templates inside ``window``.

    Every template is ``(th, tw)`` (the object's template shape). At each scale ``s`` of
    ``scales`` (``config.scales`` when None) the window is resized so that an object of ``size_wh * s`` pixels becomes
    ``(tw, th)``, and every position gets two scores, merged as in Staple (Bertinetto et al. 2016):

    * the NCC of each memory template, averaged with ``weights``. A mean rather than a max (or a
      softmax over memories): the most recent template always matches wherever the object was last
      placed, so a max-like combination lets it confirm itself and the output sticks to whatever it
      last covered; the mean keeps the prompt and the gated bank in every score;
    * the mean colour probability inside the box (an integral image), which a look-alike shares but
      the background does not, and which survives rotation and blur.

    Local maxima of all scales are pooled, sorted and thinned by greedy non-maximum suppression on
    box IoU (``config.nms_iou``).

    Args:
        grey: uint8 ``(h, w)``: the window's pixels in grey.
        probability: float32 ``(h, w)``: the window's P(object | colour).
        window: ``(x0, y0, x1, y1)`` frame pixels of the window, from :func:`search_window`.
        size_wh: the object's reference size in pixels (scale 1).
        templates: uint8 ``(th, tw)`` each.
        weights: float ``(len(templates),)``, positive.
        config: scales, scale penalty, colour weight, NMS threshold.
        count: how many peaks to return at most.
        scales: relative sizes to try instead of ``config.scales`` (the lost object's re-detection
            tries ``config.redetect_scales``); every one but 1.0 gets ``config.scale_penalty``.

    Returns:
        Up to ``count`` peaks, best first (fewer when the window is too small for more).
    """
    combined, gain = combine_templates(templates, weights)
    peaks: list[Peak] = []
    for scale in config.scales if scales is None else scales:
        maps = _scale_maps(grey, probability, np.asarray(size_wh) * scale, combined, gain)
        if maps is None:
            continue
        ncc, colour, fx, fy = maps
        score = (1 - config.colour_weight) * ncc + config.colour_weight * colour
        penalty = 1.0 if scale == 1.0 else config.scale_penalty
        w_px, h_px = float(size_wh[0]) * scale, float(size_wh[1]) * scale
        for value, (row, col) in _local_maxima(score, 2 * count):
            box = np.array([window[0] + col / fx, window[1] + row / fy, w_px, h_px])
            peaks.append(Peak(value * penalty, float(ncc[row, col]), float(colour[row, col]), box))
    peaks.sort(key=lambda p: -p.score)
    return _suppress(peaks, count, config.nms_iou)


def combine_templates(templates: Sequence[np.ndarray], weights: np.ndarray) -> tuple[np.ndarray, float]:
    """One float32 template whose NCC map times ``gain`` is the weighted mean of the templates' NCC maps.

    NCC is linear in the zero-mean, unit-norm template ``t_i``, so
    ``sum_i w_i NCC(I, t_i) / sum_i w_i = NCC(I, c) * |c| / sum_i w_i`` with ``c = sum_i w_i t_i``
    (zero-mean too): one ``matchTemplate`` per scale instead of one per memory.
    """
    combined = np.zeros(templates[0].shape, np.float32)
    for template, weight in zip(templates, weights, strict=True):
        t = template.astype(np.float32) - float(template.mean())
        norm = float(np.linalg.norm(t))
        if norm > 1e-6:  # a flat template correlates with nothing (OpenCV gives it 0 too)
            combined += (float(weight) / norm) * t
    norm = float(np.linalg.norm(combined))
    if norm < 1e-6:
        return np.ones(templates[0].shape, np.float32), 0.0
    return combined, norm / float(np.sum(weights))


def _scale_maps(
    grey: np.ndarray, probability: np.ndarray, size_wh: np.ndarray, template: np.ndarray, gain: float
) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """``(ncc, colour, fx, fy)`` over the window resized by ``fx, fy`` so ``size_wh`` becomes the
    template shape: the weighted mean NCC map (from :func:`combine_templates`) and the mean probability
    inside each template-sized box (both ``(h' - th + 1, w' - tw + 1)``); None when the resized window
    is smaller than the template."""
    th, tw = template.shape
    height, width = grey.shape
    out_w = int(round(width * tw / max(float(size_wh[0]), 1.0)))
    out_h = int(round(height * th / max(float(size_wh[1]), 1.0)))
    if out_w < tw or out_h < th:
        return None
    region = cv2.resize(grey, (out_w, out_h), interpolation=cv2.INTER_AREA).astype(np.float32)
    ncc = cv2.matchTemplate(region, template, cv2.TM_CCOEFF_NORMED) * gain
    sums = cv2.integral(
        cv2.resize(probability, (out_w, out_h), interpolation=cv2.INTER_AREA), sdepth=cv2.CV_32F
    )
    colour = (sums[th:, tw:] - sums[:-th, tw:] - sums[th:, :-tw] + sums[:-th, :-tw]) / (th * tw)
    return ncc, colour, out_w / width, out_h / height


def _local_maxima(response: np.ndarray, count: int) -> list[tuple[float, tuple[int, int]]]:
    """The ``count`` highest 3x3 local maxima of ``response`` as ``(value, (row, col))``."""
    is_max = response >= cv2.dilate(response, np.ones((3, 3), np.uint8))
    rows, cols = np.nonzero(is_max)
    values = response[rows, cols]
    order = np.argsort(-values)[:count]
    return [(float(values[i]), (int(rows[i]), int(cols[i]))) for i in order]


def _suppress(peaks: list[Peak], count: int, nms_iou: float) -> list[Peak]:
    """Greedy NMS over peaks sorted best first (one IoU matrix, then a scan)."""
    if not peaks:
        return []
    boxes = np.array([p.box_xywh for p in peaks])
    overlap = box_iou_xywh(boxes, boxes)
    kept: list[int] = []
    for i in range(len(peaks)):
        if not kept or overlap[i, kept].max() <= nms_iou:
            kept.append(i)
            if len(kept) == count:
                break
    return [peaks[i] for i in kept]


def crop_template(grey: np.ndarray, box_xywh: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray | None:
    """uint8 ``shape_hw``: the box's pixels (clipped to the frame) resized to the template shape;
    None when less than 2x2 pixels of the box lie in the frame."""
    x0, y0, x1, y1 = box_pixels(box_xywh, grey.shape)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return cv2.resize(grey[y0:y1, x0:x1], (shape_hw[1], shape_hw[0]), interpolation=cv2.INTER_AREA)


def box_pixels(box_xywh: np.ndarray, shape_hw: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the integer pixels a box covers, clipped to an image of ``shape_hw``."""
    x, y, w, h = (float(v) for v in box_xywh)
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), shape_hw[1]), min(int(np.ceil(y + h)), shape_hw[0])
    return x0, y0, max(x1, x0), max(y1, y0)
