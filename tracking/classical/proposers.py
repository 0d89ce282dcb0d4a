"""Candidate proposers of the classical backend besides template matching, and the score that puts
every candidate on one scale.

The template matcher (:mod:`memstream.tracking.classical.matching`) finds the object where its
memories match; it fails where the object changes faster than the memory does (an animated, turning
sprite) and where compression blurs the texture it matches. Three cheaper, differently failing
proposers add candidates, as long-term trackers combine a short-term tracker with a detector:

* ``correlation``: OpenCV's KCF (or CSRT) correlation filter, one per object, started on the prompt
  and restarted on the chosen box whenever a frame that passed SAMURAI's memory gate disagrees with
  it (:class:`CorrelationProposer`); it follows appearance change frame to frame.
* ``colour``: mean shift of the object's hue-saturation back-projection from its last box
  (:func:`colour_box`); it survives rotation, animation and blur.
* ``flow``: a 6x6 grid of points in the last box carried by pyramidal Lucas-Kanade optical flow,
  kept where the forward-backward error is small, the box moved by their median displacement and
  scaled by the median change of their pairwise distances (MedianFlow, Kalal et al. 2010;
  :func:`flow_box`); it follows whatever moves with the object, camera pans included.

All of them stop while the object is absent (a correlation filter updated on frames without its
object learns the background) and start again from the box the tracker finds it at.

**One scale for all.** SAMURAI's motion score and memory gate read a candidate's affinity and the
object score, so those must mean the same whatever proposed the box. Every candidate is therefore
*verified* the same way: its match score ``s`` is computed at its box exactly as the template
matcher scores a peak (weighted mean NCC of the memory templates and the mean colour likelihood,
:func:`verify_score`), and its affinity is that score mapped as before: what the box looks like
against the gated memory, the same function of the box for every proposer. A follower's affinity may
be lifted by its proposer's calibrated line (``P(IoU > 0.5)`` from ``s`` and ``raw``, written back on
the template scale) but by at most ``ClassicalConfig.follower_lift``: a correlation filter's box that
matches the memory poorly is often right on an animated target, yet the memory gate must not let a
poorly matching view in on the proposer's word alone. The object score comes from a per-proposer logistic
calibration (:mod:`memstream.tracking.classical.calibration`) of ``s``, the proposer's own confidence
``raw`` and ``agree`` (how many other proposers put a box on the same spot) to ``P(IoU > 0.5 with the
object)``, written back as the template score with the same probability (:func:`equivalent_score`):
independent proposers agreeing on a box is evidence that the object is there even when its
appearance has drifted from the memory (an animated sprite), while the choice between that box and a
look-alike beside it stays with SAMURAI's motion score. The followers join only when the template
candidates alone would report the object absent (a cascade, as long-term trackers fall back on a
detector), so where the memory matches well nothing changes. A follower's box that SAMURAI chooses is
remembered only when its verified score passes ``ClassicalConfig.follower_memory_gate`` (the memory's
own verdict, before any lift): the followers may carry the object through an appearance change, but a
follower that drifted onto a look-alike or an occluder cannot teach the memory the wrong object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from memstream.streaming.errors import ConfigError
from memstream.tracking.classical.config import PROPOSER_NAMES as PROPOSERS
from memstream.tracking.classical.matching import box_pixels, crop_template

__all__ = ["PROPOSERS", "CorrelationProposer", "Proposal", "colour_box", "equivalent_score", "feature_image",
           "flow_box", "verify_score"]

FLOW_GRID = 6  # points per side of the flow grid
MEAN_SHIFT_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 1.0)


@dataclass(frozen=True)
class Proposal:
    """One candidate box before scoring.

    Attributes:
        box_xywh: float64 ``(4,)`` frame pixels.
        proposer: which proposer made it (one of :data:`PROPOSERS`).
        raw: the proposer's own confidence in [0, 1] (template: its peak score; flow: the share of
            points that pass the forward-backward check; colour: the mean likelihood in the box;
            correlation: 1, OpenCV reports no confidence, only success).
    """

    box_xywh: np.ndarray
    proposer: str
    raw: float


class CorrelationProposer:
    """One object's OpenCV correlation filter (``kind`` ``kcf`` or ``csrt``).

    Args:
        kind: ``"kcf"`` (fast, fixed size) or ``"csrt"`` (scale-adaptive, about 10x slower).
        detect_threshold: KCF's peak threshold below which it reports a failure (OpenCV's 0.5 gives
            up on an animated target within a few frames; a failure gives no candidate).
    """

    def __init__(self, kind: str, detect_threshold: float) -> None:
        factory = "TrackerCSRT_create" if kind == "csrt" else "TrackerKCF_create"
        if not hasattr(cv2, factory):  # another package's opencv-python wrote its cv2 over the contrib one
            raise ConfigError(
                f"OpenCV {cv2.__version__} at {Path(cv2.__file__).parent} has no cv2.{factory} (the classical "
                "tracker's correlation proposer): a build without the contrib modules was installed over "
                "opencv-contrib-python-headless (sapien, from the mikasa extra, pulls opencv-python)",
                "Run: pip install --force-reinstall --no-deps opencv-contrib-python-headless",
            )
        self.kind, self.detect_threshold = kind, detect_threshold
        self._tracker: cv2.Tracker | None = None
        self.box_xywh: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self._tracker is not None

    def start(self, bgr: np.ndarray, box_xywh: np.ndarray) -> None:
        """(Re)start on ``box_xywh``; a box with under 4x4 pixels in the frame stops the filter."""
        x0, y0, x1, y1 = box_pixels(box_xywh, bgr.shape)
        if x1 - x0 < 4 or y1 - y0 < 4:
            self.stop()
            return
        if self.kind == "csrt":
            tracker = cv2.TrackerCSRT_create()
        else:
            params = cv2.TrackerKCF_Params()
            params.detect_thresh = self.detect_threshold
            tracker = cv2.TrackerKCF_create(params)
        tracker.init(bgr, (x0, y0, x1 - x0, y1 - y0))
        self._tracker, self.box_xywh = tracker, np.array([x0, y0, x1 - x0, y1 - y0], np.float64)

    def stop(self) -> None:
        self._tracker, self.box_xywh = None, None

    def propose(self, bgr: np.ndarray) -> Proposal | None:
        """Step the filter onto ``bgr``; its box, or None when it reports a failure (or is stopped)."""
        if self._tracker is None:
            return None
        ok, found = self._tracker.update(bgr)
        if not ok or found[2] <= 0 or found[3] <= 0:
            self.box_xywh = None
            return None
        self.box_xywh = np.array(found, np.float64)
        return Proposal(self.box_xywh, "correlation", 1.0)


def flow_box(
    previous_grey: np.ndarray, grey: np.ndarray, box_xywh: np.ndarray, max_error_px: float
) -> Proposal | None:
    """The box carried from ``previous_grey`` to ``grey`` by median optical flow (see the module
    docstring); None when fewer than 4 points survive the forward-backward check."""
    x, y, w, h = (float(v) for v in box_xywh)
    if w < 2 or h < 2:
        return None
    gx, gy = np.meshgrid(np.linspace(x + 0.15 * w, x + 0.85 * w, FLOW_GRID),
                         np.linspace(y + 0.15 * h, y + 0.85 * h, FLOW_GRID))
    points = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)[:, None]
    window = (max(int(min(w, h) / 3), 5) | 1,) * 2
    ahead, status, _ = cv2.calcOpticalFlowPyrLK(previous_grey, grey, points, None, winSize=window, maxLevel=2)
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(grey, previous_grey, ahead, None, winSize=window, maxLevel=2)
    error = np.linalg.norm((back - points)[:, 0], axis=1)
    good = (status[:, 0] == 1) & (status_back[:, 0] == 1) & (error < max_error_px)
    if good.sum() < 4:
        return None
    before, after = points[good, 0].astype(np.float64), ahead[good, 0].astype(np.float64)
    shift = np.median(after - before, axis=0)
    i, j = np.triu_indices(len(before), 1)
    d_before = np.linalg.norm(before[i] - before[j], axis=1)
    d_after = np.linalg.norm(after[i] - after[j], axis=1)
    keep = d_before > 1.0
    scale = float(np.clip(np.median(d_after[keep] / d_before[keep]), 0.8, 1.25)) if keep.any() else 1.0
    cx, cy = x + w / 2 + shift[0], y + h / 2 + shift[1]
    box = np.array([cx - scale * w / 2, cy - scale * h / 2, scale * w, scale * h])
    return Proposal(box, "flow", float(good.mean()))


def colour_box(
    probability: np.ndarray, window: tuple[int, int, int, int], box_xywh: np.ndarray
) -> Proposal | None:
    """Mean shift of ``probability`` (float32, the search window's P(object | colour)) from
    ``box_xywh`` (frame pixels); the converged box at the same size, or None when the box has no
    pixel in the window."""
    x0, y0 = window[0], window[1]
    bx0, by0, bx1, by1 = box_pixels(np.asarray(box_xywh) - np.array([x0, y0, 0, 0]), probability.shape)
    if bx1 - bx0 < 2 or by1 - by0 < 2:
        return None
    back = (probability * 255).astype(np.uint8)
    _, (cx, cy, cw, ch) = cv2.meanShift(back, (bx0, by0, bx1 - bx0, by1 - by0), MEAN_SHIFT_CRITERIA)
    raw = float(probability[cy : cy + ch, cx : cx + cw].mean()) if cw and ch else 0.0
    return Proposal(np.array([cx + x0, cy + y0, cw, ch], np.float64), "colour", raw)


def verify_score(
    features: np.ndarray,
    probability: np.ndarray,
    window: tuple[int, int, int, int],
    box_xywh: np.ndarray,
    combined: np.ndarray,
    gain: float,
    colour_weight: float,
) -> float:
    """The template matcher's score of ``box_xywh``: ``(1 - colour_weight) * ncc + colour_weight *
    colour``, ``ncc`` of the box's pixels resized to the template shape against the combined memory
    template (:func:`~memstream.tracking.classical.matching.combine_templates`, times ``gain``),
    ``colour`` the mean of ``probability`` (over ``window``) inside the box; -1 when the box has
    under 2x2 pixels in the frame."""
    crop = crop_template(features, box_xywh, combined.shape)
    if crop is None:
        return -1.0
    ncc = float(cv2.matchTemplate(crop.astype(np.float32), combined, cv2.TM_CCOEFF_NORMED)[0, 0]) * gain
    x0, y0, x1, y1 = box_pixels(np.asarray(box_xywh) - np.array([window[0], window[1], 0, 0]), probability.shape)
    colour = float(probability[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0
    return (1 - colour_weight) * ncc + colour_weight * colour


def equivalent_score(
    proposer: str, score: float, raw: float, agree: int | None, calibration: dict[str, tuple[float, ...]]
) -> float:
    """The template score with the same calibrated chance of being right as this candidate.

    ``calibration[proposer] = (a, b_score, b_raw, b_agree)``: ``logit P = a + b_score s + b_raw raw +
    b_agree agree``; ``calibration["reference"] = (a, b)``: the template matcher's own line at
    ``agree = 0``. Returns ``(logit P - a_ref) / b_ref``. With ``agree=None``, the affinity lines
    ``calibration[proposer + "/affinity"] = (a, b_score, b_raw)`` and ``calibration["reference/affinity"]``
    (fitted without agreement) are used.
    """
    if agree is None:
        a, b_score, b_raw = calibration[f"{proposer}/affinity"]
        ref_a, ref_b = calibration["reference/affinity"]
        return (a + b_score * score + b_raw * raw - ref_a) / ref_b
    a, b_score, b_raw, b_agree = calibration[proposer]
    ref_a, ref_b = calibration["reference"]
    return (a + b_score * score + b_raw * raw + b_agree * agree - ref_a) / ref_b


def feature_image(grey: np.ndarray, kind: str) -> np.ndarray:
    """uint8 (H, W) the matcher works on: ``grey`` itself, ``smooth`` (Gaussian-blurred, sigma 1:
    takes out H.264's block and ringing noise before NCC) or ``gradient`` (the Sobel gradient
    magnitude of the smoothed image, which keeps edges and drops flat shading)."""
    if kind == "grey":
        return grey
    smooth = cv2.GaussianBlur(grey, (5, 5), 1.0)
    if kind == "smooth":
        return smooth
    dx = cv2.Sobel(smooth, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(smooth, cv2.CV_16S, 0, 1, ksize=3)
    return cv2.convertScaleAbs(cv2.addWeighted(cv2.convertScaleAbs(dx), 0.5, cv2.convertScaleAbs(dy), 0.5, 0), alpha=2.0)
