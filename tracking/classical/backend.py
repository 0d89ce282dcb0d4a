"""The weight-free candidate backend: template matching with a SAMURAI-shaped memory bank.

:class:`ClassicalBackend` implements :class:`~memstream.tracking.protocol.CandidateBackend` with OpenCV and
numpy only, so SAMURAI's selection and memory gate (:class:`~memstream.tracking.tracker.Tracker`) run on a
CPU with nothing downloaded. It is the default backend of ``memstream run`` / ``memstream track``.

How it works, per object and frame:

* **Memory** (:mod:`memstream.tracking.classical.memory`): the prompt template (a conditioning memory, always
  kept), a bank of up to ``bank_size`` (6) frames the tracker let in (``Decision.enters_memory``; a
  bounded deque) and always the most recent frame, as SAMURAI always attends the previous frame.
  Each memory is a small grey template (``template_size_px`` on its longer side); nothing grows per
  frame.
* **Candidates** (:mod:`memstream.tracking.classical.matching`): over a search region of ``search_scale``
  times the object's size around its last position (grown by how far it may have moved, see
  ``motion_reach``; the whole frame once it has been absent ``lost_after_frames`` frames), at
  ``scales``, the weighted mean NCC of the memory templates merged with the object's colour
  likelihood; the ``num_candidates`` best peaks after non-maximum suppression. A look-alike near the
  object is therefore a candidate with a similar affinity: exactly where SAMURAI's motion score
  decides.
* **More proposers** (:mod:`memstream.tracking.classical.proposers`, ``ClassicalConfig.proposers``, all
  four by default): on a frame where the template candidates alone would report the object absent (an
  animated or turning target, compression blur), an OpenCV correlation filter, colour mean shift and
  median optical flow from the last box join in. Every candidate's box is verified against the memory
  as a template peak is scored, and calibrated per proposer
  (:mod:`memstream.tracking.classical.calibration`) onto the template score's scale, so SAMURAI's motion
  score and memory gate read the same numbers whoever proposed the box. A follower's box that SAMURAI
  chooses moves the object, but the memory remembers it only when its templates verify the box above
  ``follower_memory_gate`` (so a follower drifting onto a look-alike cannot teach it the wrong
  object). ``proposer_wins`` counts whose candidate was chosen. Followers agreeing with each other are
  evidence of presence only for ``follower_presence_frames`` frames since the memory's templates last
  found the object themselves; past that, presence is the memory's verdict on every candidate (its
  verified match score, no lift, no agreement), so followers that settle on an occluder or on the
  background an object vanished from cannot hold it present.
* **Absence and re-detection**: the object is reported absent once no candidate where it can be
  scores above ``presence_score`` (``presence_keep_score`` while it is present: hysteresis); after
  ``lost_after_frames`` absent frames the whole frame is searched every ``redetect_every`` frames
  (around the last position between), over ``redetect_scales`` (0.7-1.4 times its last size), until the
  memory matches again. Memory changes only through
  SAMURAI's gate (and the most recent frame, as SAMURAI always attends frame t-1).
* **Scores**: affinity is the peak's match score mapped linearly from ``[score_floor, score_ceiling]``
  onto [0, 1] (calibrated on the synthetic scenes so that it tracks the candidate's IoU). The object
  score logit is ``logit_gain * (score - presence_score)`` of the best match *where the object can
  be* (within ``presence_radius`` sizes of its last position, give or take its reach): a look-alike
  elsewhere is a candidate but no evidence that this object is visible, so an object hidden behind
  its look-alike gets a non-positive logit, an empty mask and a zero box, and the tracker's motion
  model coasts instead of jumping.
* **Masks** (:mod:`memstream.tracking.classical.segmentation`): around each candidate box, the colour
  likelihood thresholded (at a threshold fitted per object on the prompt frame, which cuts off the
  colour fringe H.264's half-resolution chroma leaves) and the component under the box centre kept (the
  filled box when that fails). A candidate's box is its mask's box.

Good for: weight-free CI, the default run, exercising SAMURAI's selection and gating on look-alike
distractors, rigid textured objects under moderate motion, scale and lighting change. Not for:
non-rigid objects, large appearance or viewpoint change (templates see one view; a fast-rotating
object is lost), or real segmentation quality (masks are colour blobs). It is not SAM 2 and its
numbers say nothing about SAM 2's.

Example:
    >>> from memstream.streaming import open_source
    >>> from memstream.tracking.tracker import Tracker
    >>> from memstream.tracking.types import Prompt
    >>> tracker = Tracker(ClassicalBackend())
    >>> with open_source("synthetic://distractors?frames=120", max_frames=10) as source:
    ...     for frame in source:
    ...         prompts = [Prompt(1, frame.gt.boxes_xywh[0])] if frame.index == 0 else []
    ...         state = tracker.update(frame, prompts).get(1)
    >>> state.present, tracker.memory_summary()["objects"][1]["frames"]  # prompt + the last 6 frames
    (True, [0, 4, 5, 6, 7, 8, 9])
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from memstream.streaming.types import Frame
from memstream.tracking.classical.calibration import CALIBRATION
from memstream.tracking.classical.config import ClassicalConfig
from memstream.tracking.classical.matching import box_pixels, combine_templates, match_peaks, search_window
from memstream.tracking.classical.memory import ObjectMemory
from memstream.tracking.classical.proposers import (
    CorrelationProposer,
    Proposal,
    colour_box,
    equivalent_score,
    feature_image,
    flow_box,
    verify_score,
)
from memstream.tracking.classical.segmentation import ColourModel, Segment, fit_mask_threshold, segment
from memstream.tracking.classical.world import WorldAnchor, WorldView
from memstream.tracking.kalman import box_iou_xywh
from memstream.tracking.tracker import TrackingInputError
from memstream.tracking.types import Candidates, Decision, Prompt

PROMPT_LOGIT = 10.0  # object score logit reported on a prompt frame (the user says it is there)
AGREE_IOU = 0.5  # two proposers agree on a box when their boxes overlap by more than this IoU


@dataclass(frozen=True)
class Scored:
    """One candidate after verification: the proposal, its verified match score ``score``, how many
    other proposers agree with it, ``equivalent``, the template-scale score its affinity is computed
    from (the verified score, lifted by at most ``follower_lift`` for a follower), and ``presence``,
    the calibrated template-scale score with agreement counted, which the object score reads."""

    proposal: Proposal
    score: float
    agree: int
    equivalent: float
    presence: float


@dataclass
class _Followers:
    """One object's frame-to-frame proposers: its correlation filter and the box it was last found at
    (None while it is absent, or until the first commit after a restore)."""

    correlation: CorrelationProposer
    last_box: np.ndarray | None = None
    unverified: int = 0  # consecutive frames reported present on the followers' word alone


@dataclass
class _Proposal:
    """One object's candidates between ``propose`` and ``commit``.

    ``segments[i]`` is row i's mask (None: empty, the object is absent); ``match_boxes[i]`` is the
    matcher's box of row i, which the object's memory follows if row i is chosen (the colour mask
    only shapes the output: it leaks into same-coloured neighbours, and a memory that followed it
    would drift with it).
    """

    candidates: Candidates
    segments: list[Segment | None]
    match_boxes: np.ndarray
    sources: list[str | None]
    scored: list[Scored] = field(default_factory=list)
    verified: list[float] = field(default_factory=list)  # row i's verified match score (-1: no row)
    followers_joined: bool = False  # the templates alone found nothing above the presence threshold
    threshold: float = 0.0  # the presence threshold this frame was judged by


@dataclass
class _FrameCache:
    """Conversions of one frame, shared by all objects, and the proposals made on it."""

    frame: Frame
    grey: np.ndarray
    hsv: np.ndarray
    features: np.ndarray
    proposals: dict[int, _Proposal] = field(default_factory=dict)
    world: WorldView | None = None  # the frame's depth and pose when ``world_gate`` is on and it has them
    _bgr: np.ndarray | None = None

    @classmethod
    def of(cls, frame: Frame, features: str = "grey", world: bool = False) -> _FrameCache:
        rgb = np.ascontiguousarray(frame.rgb)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return cls(frame, grey, cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), feature_image(grey, features),
                   world=WorldView.of(frame) if world else None)

    @property
    def bgr(self) -> np.ndarray:
        """The frame in OpenCV's channel order (for the correlation filter), converted once."""
        if self._bgr is None:
            self._bgr = cv2.cvtColor(np.ascontiguousarray(self.frame.rgb), cv2.COLOR_RGB2BGR)
        return self._bgr


class ClassicalBackend:
    """Weight-free :class:`~memstream.tracking.protocol.CandidateBackend` (see the module docstring).

    Args:
        config: the matcher's and the memory's settings (``ClassicalConfig()`` by default).
    """

    name = "classical"

    def __init__(self, config: ClassicalConfig | None = None) -> None:
        self.config = config or ClassicalConfig()
        self._objects: dict[int, ObjectMemory] = {}
        self._followers: dict[int, _Followers] = {}
        self._pending: _FrameCache | None = None
        self._greys: dict[int, np.ndarray] = {}  # the last two frames' grey images, by frame index
        self._anchors: dict[int, WorldAnchor] = {}  # ``world_gate``: where each object was last found
        self.wins: Counter[str] = Counter()
        self.trace: list[dict[str, Any]] | None = None

    @property
    def proposer_wins(self) -> dict[str, int]:
        """How often each proposer's candidate was chosen on a frame where the object was reported,
        since the backend was built (``wins`` counts; merged duplicates count for the kept one)."""
        return dict(self.wins)

    def add_prompts(
        self, frame: Frame, prompts: Sequence[Prompt]
    ) -> dict[int, tuple[np.ndarray, Candidates]]:
        """Start (or restart, dropping its memory) each prompted object on ``frame``.

        A points-only prompt becomes a box: the bounding box of its positive points grown by
        ``point_pad_frac * min(H, W)`` pixels on every side, clipped to the frame (negative points
        are ignored).

        Returns:
            ``{object_id: (mask bool (H, W), Candidates with one row)}``: the colour mask inside the
            prompt box (the filled box when it fails), its box, affinity 1.

        Raises:
            TrackingInputError: a points-only prompt without a positive point.
        """
        cfg, cache = self.config, _FrameCache.of(frame, self.config.features, self.config.world_gate)
        out: dict[int, tuple[np.ndarray, Candidates]] = {}
        for prompt in prompts:
            box = _clip_box(self._prompt_box(prompt, frame), frame.width, frame.height)
            colour = ColourModel.fit(cache.hsv, box, cfg.colour_ring)
            memory = ObjectMemory.start(prompt.object_id, frame.index, cache.features, box, colour, cfg)
            memory.mask_threshold = fit_mask_threshold(
                cache.hsv, colour, box, (cfg.mask_threshold, *cfg.mask_threshold_fit), cfg.mask_margin, cfg.min_mask_fill
            )
            seg = segment(cache.hsv, colour, box, 0.0, memory.mask_threshold, cfg.min_mask_fill)
            self._objects[prompt.object_id] = memory
            followers = _Followers(CorrelationProposer(cfg.correlation_filter, cfg.correlation_threshold), box)
            if "correlation" in cfg.proposers:
                followers.correlation.start(cache.bgr, box)
            self._followers[prompt.object_id] = followers
            self._anchors.pop(prompt.object_id, None)
            self._place(cache, prompt.object_id, seg)
            out[prompt.object_id] = (
                seg.paste(frame.height, frame.width),
                Candidates(seg.box_xywh[None], [1.0], PROMPT_LOGIT),
            )
        self._remember_grey(cache)
        return out

    def propose(self, frame: Frame, object_ids: Sequence[int]) -> dict[int, Candidates]:
        """The ``num_candidates`` best appearance matches of each object on ``frame``.

        Raises:
            TrackingInputError: an id that was never prompted (or was removed).
        """
        unknown = [i for i in object_ids if i not in self._objects]
        if unknown:
            raise TrackingInputError(
                f"objects {unknown} were never prompted", "Prompt an object with a box first"
            )
        cache = _FrameCache.of(frame, self.config.features, self.config.world_gate)
        for object_id in object_ids:
            self._expect(cache, object_id)
            cache.proposals[object_id] = self._propose_one(
                cache, self._objects[object_id], self._followers[object_id], object_id
            )
        self._pending = cache
        return {i: p.candidates for i, p in cache.proposals.items()}

    def commit(self, decisions: Mapping[int, Decision]) -> dict[int, np.ndarray]:
        """Keep each object's chosen candidate and update its memory; returns its mask bool (H, W)
        (empty when the object is absent)."""
        if self._pending is None:
            raise RuntimeError("commit() needs a propose() before it")
        cache, self._pending = self._pending, None
        height, width = cache.frame.height, cache.frame.width
        masks: dict[int, np.ndarray] = {}
        for object_id, decision in decisions.items():
            proposal, memory = cache.proposals[object_id], self._objects[object_id]
            followers = self._followers[object_id]
            chosen = proposal.segments[decision.index]
            if self.trace is not None:
                self.trace.append(_trace_row(cache.frame.index, object_id, proposal, decision))
            if chosen is None:
                memory.mark_absent()
                followers.last_box, followers.unverified = None, 0
                followers.correlation.stop()  # a filter stepped on frames without its object learns the background
                masks[object_id] = np.zeros((height, width), bool)
            else:
                box, source = proposal.match_boxes[decision.index], proposal.sources[decision.index]
                gated, remember = decision.enters_memory, True
                if source not in (None, "template") and self.config.follower_memory_gate is not None:
                    # A follower's box enters memory (the bank, and the most recent template) only when
                    # the memory itself verifies it: a follower on a look-alike or an occluder moves the
                    # object but teaches its templates nothing.
                    remember = self.config.affinity(proposal.verified[decision.index]) > self.config.follower_memory_gate
                    gated = gated and remember
                memory.observe(cache.frame.index, cache.features, box, gated, remember)
                self._place(cache, object_id, chosen)
                found_by_memory = not proposal.followers_joined or proposal.verified[decision.index] > proposal.threshold
                followers.unverified = 0 if found_by_memory else followers.unverified + 1
                self._follow(cache, followers, box, source, gated)
                if source is not None:
                    self.wins[source] += 1
                masks[object_id] = chosen.paste(height, width)
        self._remember_grey(cache)
        return masks

    def _follow(
        self, cache: _FrameCache, followers: _Followers, box: np.ndarray, source: str | None, gated: bool
    ) -> None:
        """Move the frame-to-frame proposers onto the chosen box: the flow starts from it; the
        correlation filter is started when it is stopped (after an absence) and restarted when a
        frame that passed the memory gate chose another proposer's box it does not overlap."""
        followers.last_box = np.array(box, np.float64)
        if "correlation" not in self.config.proposers:
            return
        filter_ = followers.correlation
        disagrees = filter_.box_xywh is None or box_iou_xywh(filter_.box_xywh, box)[0, 0] < AGREE_IOU
        if not filter_.active or (gated and source != "correlation" and disagrees):
            filter_.start(cache.bgr, box)

    def _expect(self, cache: _FrameCache, object_id: int) -> None:
        """``world_gate``: move the object's search centre to where its world anchor projects in this
        view, and set its reference size to its metric size at the anchor's depth there (the
        camera's own motion and the scale change of a receding object, predicted instead of
        searched). Nothing changes while the anchor projects outside the frame (out of view)."""
        anchor = self._anchors.get(object_id)
        if cache.world is None or anchor is None:
            return
        seen = cache.world.project(anchor.point)
        if seen is None:
            return
        (u, v), depth = seen
        if not (0 <= u < cache.frame.width and 0 <= v < cache.frame.height):
            return
        memory = self._objects[object_id]
        memory.center_xy = seen[0]
        memory.size_wh = np.maximum(anchor.size_m * cache.world.focal_px / depth, 1.0)

    def _place(self, cache: _FrameCache, object_id: int, seg: Segment) -> None:
        """``world_gate``: the object was found: its anchor moves to the memory's new centre (the
        matcher's box, as the search follows it) at the median depth under the chosen mask. On the
        prompt (no anchor yet) the metric size is measured from the prompt box."""
        if cache.world is None:
            return
        memory = self._objects[object_id]
        box = np.concatenate([memory.center_xy - memory.size_wh / 2, memory.size_wh])
        placed = cache.world.place(box, cache.world.mask_depth(seg.mask, seg.origin_xy))
        if placed is None:
            return
        anchor = self._anchors.get(object_id)
        size_m = placed[1] if anchor is None else anchor.size_m
        self._anchors[object_id] = WorldAnchor(placed[0], size_m, cache.world.time_s)

    def _gate(self, scored: list[Scored], cache: _FrameCache, object_id: int) -> list[Scored]:
        """``world_gate``: the candidates that can be the object (see :mod:`~memstream.tracking.classical.world`)."""
        anchor = self._anchors.get(object_id)
        if cache.world is None or anchor is None:
            return scored
        cfg, view = self.config, cache.world
        return [c for c in scored if anchor.plausible(view.place(c.proposal.box_xywh), anchor.size_m, view.time_s,
                                                       cfg.world_margin_m, cfg.world_speed_m_s, cfg.world_size_ratio,
                                                       cfg.world_reach_max_m)]

    def _remember_grey(self, cache: _FrameCache) -> None:
        self._greys[cache.frame.index] = cache.grey
        for index in sorted(self._greys)[:-2]:
            del self._greys[index]

    def remove_object(self, object_id: int) -> None:
        """Forget ``object_id`` and its memory (an unknown id is ignored)."""
        self._objects.pop(object_id, None)
        self._followers.pop(object_id, None)
        self._anchors.pop(object_id, None)

    def reset(self) -> None:
        """Forget every object."""
        self._objects.clear()
        self._followers.clear()
        self._greys.clear()
        self._anchors.clear()
        self._pending = None

    def state_dict(self) -> dict[str, Any]:
        """Every object's memory (see :meth:`ObjectMemory.state_dict`), in the order objects were added."""
        return {"backend": self.name, "objects": [m.state_dict() for m in self._objects.values()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace every object's memory with ``state`` (from :meth:`state_dict`).

        The frame-to-frame proposers (correlation filter, flow) hold OpenCV state that is not saved:
        after a restore they restart from the first box the template search finds."""
        memories = [ObjectMemory.from_state_dict(o, self.config) for o in state["objects"]]
        self._objects = {m.object_id: m for m in memories}
        cfg = self.config
        self._followers = {
            m.object_id: _Followers(CorrelationProposer(cfg.correlation_filter, cfg.correlation_threshold))
            for m in memories
        }
        self._greys.clear()
        self._anchors.clear()  # made again from the first box found (``world_gate``)
        self._pending = None

    def memory_summary(self) -> dict[str, Any]:
        """``{"backend": "classical", "objects": {id: {...}}, "bytes": total}``; per object see
        :meth:`~memstream.tracking.classical.memory.ObjectMemory.summary` (frame indices, bytes held)."""
        objects = {i: m.summary() for i, m in self._objects.items()}
        return {"backend": self.name, "objects": objects, "bytes": sum(o["bytes"] for o in objects.values())}

    def _propose_one(
        self, cache: _FrameCache, memory: ObjectMemory, followers: _Followers, object_id: int
    ) -> _Proposal:
        cfg, k = self.config, self.config.num_candidates
        lost = memory.absent_frames >= cfg.lost_after_frames
        whole_frame = lost and (memory.absent_frames - cfg.lost_after_frames) % cfg.redetect_every == 0
        frame_wh = (cache.frame.width, cache.frame.height)
        window = search_window(
            memory.center_xy, memory.size_wh, None if whole_frame else cfg.search_scale, frame_wh, memory.reach_px
        )
        x0, y0, x1, y1 = window
        templates, weights = memory.templates()
        probability = memory.colour.probability(cache.hsv[y0:y1, x0:x1])
        proposals: list[Proposal] = []
        if "template" in cfg.proposers or memory.absent_frames > 0:  # template search also re-detects
            peaks = match_peaks(
                cache.features[y0:y1, x0:x1], probability, window, memory.size_wh, templates, weights, cfg, 3 * k,
                cfg.redetect_scales if lost else None,
            )
            proposals += [Proposal(p.box_xywh, "template", p.score) for p in peaks]
        if memory.absent_frames == 0 and followers.last_box is not None:
            last = followers.last_box
            if "correlation" in cfg.proposers:
                proposals.append(followers.correlation.propose(cache.bgr))
            if "colour" in cfg.proposers:
                proposals.append(colour_box(probability, window, last))
            previous = [i for i in self._greys if i < cache.frame.index]
            if "flow" in cfg.proposers and previous:
                proposals.append(flow_box(self._greys[max(previous)], cache.grey, last, cfg.flow_max_error_px))
        proposals = [p for p in proposals if p is not None and (
            p.proposer == "template" or _colour_in(probability, window, p.box_xywh) >= cfg.follower_min_colour)]
        threshold = cfg.presence_keep_score if memory.absent_frames == 0 else cfg.presence_score
        templates_only = [p for p in proposals if p.proposer == "template"]
        scored = self._gate(self._score(templates_only, cache, probability, window, templates, weights), cache, object_id)
        best = self._presence(scored, memory, lost)
        followers_joined = best <= threshold and len(templates_only) < len(proposals)
        if followers_joined:
            # The memory's templates find nothing convincing where the object can be (it animates,
            # turns, blurs): the frame-to-frame proposers join in, and agreement counts as evidence,
            # but only for ``follower_presence_frames`` frames since the memory last found the object
            # itself; past that, presence is the memory's verdict on every candidate.
            limit = cfg.follower_presence_frames
            scored = self._gate(self._score(proposals, cache, probability, window, templates, weights), cache, object_id)
            best = self._presence(scored, memory, lost, limit is None or followers.unverified < limit)
        logit = cfg.logit_gain * (best - threshold)
        boxes, match_boxes, affinity = np.zeros((k, 4)), np.zeros((k, 4)), np.zeros(k)
        segments: list[Segment | None] = [None] * k
        sources: list[str | None] = [None] * k
        verified = [-1.0] * k
        row = 0
        for cand in scored:
            if row == k:
                break
            if logit > 0:
                seg = segment(
                    cache.hsv,
                    memory.colour,
                    cand.proposal.box_xywh,
                    cfg.mask_margin,
                    memory.mask_threshold,
                    cfg.min_mask_fill,
                )
                if row and box_iou_xywh(seg.box_xywh, boxes[:row]).max() > cfg.nms_iou:
                    continue  # two candidates whose masks snap onto the same blob are one candidate
                boxes[row], segments[row] = seg.box_xywh, seg
            affinity[row], match_boxes[row] = cfg.affinity(cand.equivalent), cand.proposal.box_xywh
            sources[row], verified[row] = cand.proposal.proposer, cand.score
            row += 1
        return _Proposal(Candidates(boxes, affinity, logit), segments, match_boxes, sources, scored, verified,
                         followers_joined, threshold)

    def _score(
        self,
        proposals: list[Proposal],
        cache: _FrameCache,
        probability: np.ndarray,
        window: tuple[int, int, int, int],
        templates: list[np.ndarray],
        weights: np.ndarray,
    ) -> list[Scored]:
        """Verify, calibrate and thin the proposals: best calibrated (presence) score first, no two
        overlapping by more than ``nms_iou`` (of two that do, the better is kept)."""
        if not proposals:
            return []
        cfg = self.config
        combined, gain = combine_templates(templates, weights)
        boxes = np.array([p.box_xywh for p in proposals])
        overlap = box_iou_xywh(boxes, boxes)
        names = [p.proposer for p in proposals]
        scored = []
        for i, p in enumerate(proposals):
            agree = len({names[j] for j in np.flatnonzero(overlap[i] > AGREE_IOU)} - {p.proposer})
            score = p.raw if p.proposer == "template" else verify_score(
                cache.features, probability, window, p.box_xywh, combined, gain, cfg.colour_weight
            )
            lifted = equivalent_score(p.proposer, score, p.raw, None, CALIBRATION)
            equivalent = score if p.proposer == "template" else min(max(lifted, score), score + cfg.follower_lift)
            scored.append(Scored(p, score, agree, equivalent,
                                 equivalent_score(p.proposer, score, p.raw, agree, CALIBRATION)))
        order = sorted(range(len(scored)), key=lambda i: -scored[i].presence)
        kept: list[int] = []
        for i in order:
            if not kept or overlap[i, kept].max() <= cfg.nms_iou:
                kept.append(i)
        return [scored[i] for i in kept]

    def _presence(self, scored: list[Scored], memory: ObjectMemory, lost: bool, certify: bool = True) -> float:
        """The best equivalent score among candidates that count as the object being there: within
        ``presence_radius`` object sizes of where it can be (its last centre, give or take
        ``memory.reach_px``), anywhere once it is lost; -1 when there is none. ``certify=False``:
        the best verified match score instead (the memory's own verdict: no follower lift, no
        agreement between proposers)."""
        cfg = self.config
        if not certify:
            scored = [replace(c, equivalent=c.score, presence=c.score) for c in scored]
        # A box with affinity 0 (even after a follower's lift) is no evidence, however many proposers
        # agree on it (flow and a correlation filter agree on a static background too). A target that
        # vanishes in place (not leaving the view) can leave the followers agreeing on the background
        # behind it with a lifted affinity above 0: ``follower_presence_frames`` bounds how long.
        looks = [c for c in scored if c.equivalent > cfg.score_floor]
        if lost:
            return max((c.presence for c in looks), default=-1.0)
        near = [
            c.presence
            for c in looks
            if _distance_beyond_reach(c.proposal.box_xywh, memory, cfg) <= cfg.presence_radius
        ]
        return max(near, default=-1.0)

    def _prompt_box(self, prompt: Prompt, frame: Frame) -> np.ndarray:
        if prompt.box_xywh is not None:
            return np.asarray(prompt.box_xywh, np.float64)
        positive = prompt.points_xy[prompt.point_labels == 1]
        if len(positive) == 0:
            raise TrackingInputError(
                f"object {prompt.object_id}: the classical backend needs a box or a positive point",
                "Give a box x,y,w,h or a point with label 1",
            )
        pad = self.config.point_pad_frac * min(frame.width, frame.height)
        (x0, y0), (x1, y1) = positive.min(0) - pad, positive.max(0) + pad
        return np.array([x0, y0, x1 - x0, y1 - y0])


def _trace_row(frame_index: int, object_id: int, proposal: _Proposal, decision: Decision) -> dict[str, Any]:
    """What ``ClassicalBackend.trace`` records per object and frame: every verified candidate (its
    proposer, box, verified score, own confidence, agreement, equivalent score), the object score
    logit and the chosen row's proposer."""
    return {
        "frame": frame_index, "object_id": object_id, "logit": proposal.candidates.object_score_logit,
        "chosen": proposal.sources[decision.index], "chosen_box": proposal.candidates.boxes_xywh[decision.index].tolist(),
        "candidates": [
            {"proposer": c.proposal.proposer, "box": c.proposal.box_xywh.tolist(), "score": c.score,
             "raw": c.proposal.raw, "agree": c.agree, "equivalent": c.equivalent,
             "presence": c.presence}
            for c in proposal.scored
        ],
    }


def _colour_in(probability: np.ndarray, window: tuple[int, int, int, int], box_xywh: np.ndarray) -> float:
    """The mean P(object | colour) inside the box (``probability`` covers ``window``); 0 outside it."""
    x0, y0, x1, y1 = box_pixels(np.asarray(box_xywh) - np.array([window[0], window[1], 0, 0]), probability.shape)
    return float(probability[y0:y1, x0:x1].mean()) if x1 > x0 and y1 > y0 else 0.0


def _distance_beyond_reach(box_xywh: np.ndarray, memory: ObjectMemory, config: ClassicalConfig) -> float:
    """How far the box centre lies beyond ``memory.reach_px`` of the object's last centre, per axis in
    object sizes (an axis shorter than ``presence_radius_min_px / presence_radius`` counts as that
    long, so the presence radius is never under ``presence_radius_min_px`` pixels)."""
    offset = np.abs(box_xywh[:2] + box_xywh[2:] / 2 - memory.center_xy)
    unit = np.maximum(memory.size_wh, config.presence_radius_min_px / config.presence_radius)
    return float(np.hypot(*(np.maximum(offset - memory.reach_px, 0) / unit)))


def _clip_box(box_xywh: np.ndarray, width: int, height: int) -> np.ndarray:
    x0, y0 = np.clip(box_xywh[:2], 0, [width, height])
    x1, y1 = np.clip(box_xywh[:2] + box_xywh[2:], 0, [width, height])
    return np.array([x0, y0, x1 - x0, y1 - y0], np.float64)
