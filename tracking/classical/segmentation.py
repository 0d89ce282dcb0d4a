"""Colour segmentation for the classical backend: which pixels around a candidate box are the object?

A hue-saturation likelihood ratio (:class:`ColourModel`, object box vs a ring around it, learnt on the
prompt frame) is back-projected around the candidate box, thresholded, and the connected component
under the box centre kept (:func:`segment`). It is a colour blob, not a segmentation model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from memstream.tracking.classical.matching import box_pixels
from memstream.tracking.kalman import box_iou_xywh

HUE_BINS, SAT_BINS = 30, 16  # OpenCV hue is 0..179 (6 degrees per bin), saturation 0..255


@dataclass(frozen=True)
class ColourModel:
    """``P(object | hue, saturation)`` learnt on one frame: the object's box against a ring around it.

    Hue and saturation, not brightness, so the model survives lighting changes and the darker stripe
    of a two-tone texture.

    Attributes:
        ratio: float32 ``(HUE_BINS, SAT_BINS)`` in [0, 1]: ``h_obj / (h_obj + h_bg)`` of the
            normalised, slightly smoothed histograms (0.5 where neither has mass).
    """

    ratio: np.ndarray

    @classmethod
    def fit(cls, hsv: np.ndarray, box_xywh: np.ndarray, ring: float) -> ColourModel:
        """Learn from ``hsv`` uint8 ``(H, W, 3)`` (OpenCV HSV): pixels in the box vs pixels of the box
        grown by ``ring`` times its size on every side, minus the box."""
        x, y, w, h = (float(v) for v in box_xywh)
        inner = box_pixels(box_xywh, hsv.shape)
        outer = box_pixels(
            np.array([x - ring * w, y - ring * h, w * (1 + 2 * ring), h * (1 + 2 * ring)]), hsv.shape
        )
        ring_mask = np.zeros(hsv.shape[:2], np.uint8)
        ring_mask[outer[1] : outer[3], outer[0] : outer[2]] = 1
        ring_mask[inner[1] : inner[3], inner[0] : inner[2]] = 0
        obj = _histogram(np.ascontiguousarray(hsv[inner[1] : inner[3], inner[0] : inner[2]]))
        background = _histogram(hsv, ring_mask)
        total = obj + background
        ratio = np.divide(obj, total, out=np.full_like(obj, 0.5), where=total > 1e-6)
        return cls(ratio.astype(np.float32))

    def probability(self, hsv: np.ndarray) -> np.ndarray:
        """float32 ``(h, w)``: P(object) of every pixel of ``hsv`` uint8 ``(h, w, 3)``, quantised to
        1/255 (a back-projection of the ratio histogram)."""
        if hsv.size == 0:
            return np.zeros(hsv.shape[:2], np.float32)
        ratio = self.ratio * np.float32(255)
        back = cv2.calcBackProject([np.ascontiguousarray(hsv)], [0, 1], ratio, [0, 180, 0, 256], 1)
        return back.astype(np.float32) * np.float32(1 / 255)


def _histogram(hsv: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Normalised, smoothed float64 (HUE_BINS, SAT_BINS) hue-saturation histogram."""
    hist = cv2.calcHist([hsv], [0, 1], mask, [HUE_BINS, SAT_BINS], [0, 180, 0, 256]).astype(np.float64)
    hist = cv2.GaussianBlur(hist, (3, 3), 0.7, borderType=cv2.BORDER_REPLICATE)
    return hist / max(hist.sum(), 1e-9)


@dataclass(frozen=True)
class Segment:
    """The object's pixels around one candidate box.

    Attributes:
        mask: bool ``(h, w)`` over a window of the frame (never empty).
        origin_xy: ``(x0, y0)`` frame pixels of the window's top-left pixel.
        box_xywh: float64 ``(4,)`` frame pixels, the tight box of ``mask``.
    """

    mask: np.ndarray
    origin_xy: tuple[int, int]
    box_xywh: np.ndarray

    def paste(self, height: int, width: int) -> np.ndarray:
        """bool ``(H, W)``: the mask placed in a frame of that size."""
        out = np.zeros((height, width), bool)
        x0, y0 = self.origin_xy
        out[y0 : y0 + self.mask.shape[0], x0 : x0 + self.mask.shape[1]] = self.mask
        return out


def segment(
    hsv: np.ndarray,
    colour: ColourModel,
    box_xywh: np.ndarray,
    margin: float,
    threshold: float,
    min_fill: float,
) -> Segment:
    """Segment the object around ``box_xywh`` (frame pixels) in the frame ``hsv`` uint8 (H, W, 3).

    The window is the box grown by ``margin`` times its size on every side (clipped to the frame).
    Pixels with P(object) above ``threshold`` are foreground (closed with a 3x3 kernel); the component
    with most pixels in the central half of the box is kept. Where it reaches an edge of the window
    that is not the frame's, it is leaking into something of the same colour (a look-alike, the
    floor): that side is cut back to the box's side. A component covering less than ``min_fill`` of
    the box (or missing its centre) gives the filled box.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    x0, y0, x1, y1 = box_pixels(
        np.array([x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)]), hsv.shape
    )
    probability = colour.probability(hsv[y0:y1, x0:x1])
    bx0, by0, bx1, by1 = box_pixels(
        np.asarray(box_xywh, np.float64) - np.array([x0, y0, 0, 0]), probability.shape
    )
    filled = np.zeros(probability.shape, bool)
    filled[by0:by1, bx0:bx1] = True
    if not filled.any():  # the box has no pixel in the frame: one pixel at its clipped corner
        filled[min(by0, probability.shape[0] - 1), min(bx0, probability.shape[1] - 1)] = True
    fallback = Segment(filled, (x0, y0), _tight_box(filled, x0, y0))
    fg = cv2.morphologyEx(
        (probability > threshold).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)
    )
    count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    cx0, cy0 = (3 * bx0 + bx1) // 4, (3 * by0 + by1) // 4
    cx1, cy1 = max((bx0 + 3 * bx1) // 4, cx0 + 1), max((by0 + 3 * by1) // 4, cy0 + 1)
    votes = np.bincount(labels[cy0:cy1, cx0:cx1].ravel(), minlength=count)
    votes[0] = 0
    best = int(np.argmax(votes))
    if best == 0 or stats[best, cv2.CC_STAT_AREA] < min_fill * max((bx1 - bx0) * (by1 - by0), 1):
        return fallback
    left, top, width, height = (int(v) for v in stats[best, :4])
    rows, cols = probability.shape
    leaks = (
        left == 0 and x0 > 0,
        top == 0 and y0 > 0,
        left + width == cols and x1 < hsv.shape[1],
        top + height == rows and y1 < hsv.shape[0],
    )
    sx0, sy0 = (bx0 if leaks[0] else 0), (by0 if leaks[1] else 0)
    sx1, sy1 = (bx1 if leaks[2] else cols), (by1 if leaks[3] else rows)
    mask = np.zeros(probability.shape, bool)
    mask[sy0:sy1, sx0:sx1] = labels[sy0:sy1, sx0:sx1] == best
    if not mask.any():
        return fallback
    return Segment(mask, (x0, y0), _tight_box(mask, x0, y0))


def fit_mask_threshold(
    hsv: np.ndarray,
    colour: ColourModel,
    box_xywh: np.ndarray,
    thresholds: tuple[float, ...],
    margin: float,
    min_fill: float,
) -> float:
    """The threshold (of ``thresholds``) whose :func:`segment` of ``box_xywh`` on its own frame
    reproduces the box best (box IoU; ties, within 0.005, go to the lowest threshold).

    Fitted on the prompt frame, where the box is known: on compressed video the object's colour
    bleeds past its edges (H.264 stores chroma at half resolution) with a likelihood below the
    object's own, and the threshold that cuts that fringe off is found where the answer is known.
    """
    box = np.asarray(box_xywh, np.float64)
    best, best_iou = thresholds[0], -1.0
    for threshold in sorted(thresholds):
        found = segment(hsv, colour, box, margin, threshold, min_fill).box_xywh
        iou = float(box_iou_xywh(found, box)[0, 0])
        if iou > best_iou + 0.005:
            best, best_iou = threshold, iou
    return float(best)


def _tight_box(mask: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """float64 (4,) frame pixels: the tight box of a non-empty window mask placed at ``(x0, y0)``."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0] + x0, rows[0] + y0, cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], np.float64)
