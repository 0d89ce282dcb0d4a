"""Settings of the classical backend, validated on construction and when parsed from YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from memstream.streaming.configtypes import strict_config

PROPOSER_NAMES: tuple[str, ...] = ("template", "correlation", "colour", "flow")
ALL_PROPOSERS = PROPOSER_NAMES  # ``ClassicalConfig(proposers=ALL_PROPOSERS)``: every proposer


@strict_config
@dataclass(frozen=True)
class ClassicalConfig:
    """What the classical backend matches with, keeps in memory and reports.

    Attributes:
        num_candidates: k, candidates proposed per object and frame (SAM 2's multimask output has 3).
        search_scale: side of the search region around the last position, in object sizes.
        scales: relative object sizes tried per frame (1.0 = the current size); must contain 1.0.
        scale_penalty: factor on the match score of every scale other than 1.0, in (0, 1] (keeps the
            size from wandering on ties).
        size_rate: how fast the object's reference size follows the chosen match, in [0, 1]: 0
            never changes it, 1 takes the new size as is.
        template_size_px: the longer side of every memory template, pixels (the matcher works at
            this resolution, which is what makes it fast).
        bank_size: accepted frames kept besides the prompt and the most recent frame (SAMURAI: 6).
        prompt_weight: weight of the prompt template in the weighted mean of response maps; every
            other memory weighs 1.
        recent_weight: weight of the most recent frame's template (it follows gradual appearance
            change fastest).
        colour_weight: weight of the colour score (mean P(object | colour) in the box) against the
            template NCC in the match score, in [0, 1) (Staple's merge factor is 0.3).
        nms_iou: a peak overlapping a better one by more than this box IoU is not a new candidate.
        score_floor: the match score that maps to affinity 0.
        score_ceiling: the match score that maps to affinity 1. Floor and ceiling are calibrated on
            the synthetic scenes (presets demo, distractors, occlusion, fast_motion, camera_motion,
            seeds 20-22, not the benchmark's; while the tracker is on its object): candidates scoring
            under 0.45 have a mean IoU under 0.1 with the object, over 0.85 above 0.8, and in between
            it rises roughly linearly, so the affinity behaves like SAM 2's predicted IoU.
        presence_score: the best nearby match's score at which the object score logit is 0 (below:
            absent); where candidates start to overlap their object by IoU > 0.5 (about 1 in 5), so
            a partly hidden object stays present with a low affinity.
        logit_gain: object score logit per unit of match score above ``presence_score``.
        presence_radius: only a match whose centre lies within this many object sizes (per axis,
            Euclidean) of the last position counts as the object being there; a look-alike further
            away is a candidate but no evidence of presence.
        presence_radius_min_px: ... or within this many pixels, whichever is more (per axis): a
            6-pixel object's 0.3 sizes is under 2 pixels, less than one frame's jitter of a small
            mover or of its compressed edges.
        motion_reach: how far the object may have moved since it was last found, in multiples of
            its recent speed (pixels per frame, smoothed) times the frames since (2: room for
            acceleration and turns): the search region and the presence radius grow by that many
            pixels, so a fast object is found again after a hidden stretch while a slow one does not
            reach a look-alike beside it; 0 disables.
        lost_after_frames: after this many absent frames the search covers the whole frame and any
            match counts.
        mask_margin: how far the mask of a candidate may reach past its box, in box sizes per side.
        mask_threshold: P(object | colour) above which a pixel is foreground (the lowest threshold an
            object may get; see ``mask_threshold_fit``).
        mask_threshold_fit: higher thresholds also tried on the prompt frame: each object keeps the
            one (of ``mask_threshold`` and these) whose segment of the prompt frame reproduces the
            prompt box best (ties go to the lower). On rendered frames every threshold gives the
            prompt box and ``mask_threshold`` stays; through H.264 (4:2:0 chroma, half resolution)
            the object's colour bleeds 1-2 pixels past its edges with P(object) up to 0.9, which a
            higher threshold cuts off (synthetic tuning seeds, CRF 18: mean IoU of the segment's box
            0.87 -> 0.92 at 0.95). 0.98 and 0.99 were added for CRF 28, where the fringe is wider
            (held-out synthetic, CRF 28 AUC 56.1 -> 57.4, raw unchanged). Empty: ``mask_threshold`` for
            every object.
        min_mask_fill: a colour component covering less than this fraction of the box falls back to
            the filled box.
        colour_ring: width of the background ring around the prompt box, in box sizes, for the
            colour model.
        point_pad_frac: a points-only prompt's box is the positive points' bounding box grown by
            this fraction of min(H, W) on every side.
        proposers: which proposers add candidates (:mod:`memstream.tracking.classical.proposers`):
            ``template`` (the memory templates matched around the last position), ``correlation``
            (an OpenCV correlation filter), ``colour`` (mean shift of the colour back-projection),
            ``flow`` (median optical flow of the last box). At least one; the whole-frame search
            for a lost object is template matching whichever are chosen. The followers (all but
            ``template``) join only on frames where the template candidates alone would report the
            object absent. Default: all four (``ALL_PROPOSERS``), with ``follower_memory_gate`` so
            that a follower's box the memory does not verify moves the object but is not
            remembered; ``proposers=("template",)`` is the template matcher alone
            (benchmarks/bench_tracking_synthetic.py and bench_tracking_game.py compare them).
        features: what the template matcher correlates: ``grey``, ``smooth`` (grey blurred with
            sigma 1, which takes out most of H.264's block noise) or ``gradient`` (Sobel magnitude
            of the smoothed grey).
        correlation_filter: ``kcf`` (fast) or ``csrt`` (scale-adaptive, about 10x slower).
        correlation_threshold: KCF's detection threshold: a peak below it is a failure (no
            candidate); OpenCV's own default is 0.5.
        flow_max_error_px: forward-backward error, pixels, above which a flow point is dropped.
        presence_keep_score: while the object is present, the best nearby (equivalent) match score
            at which it stays present (hysteresis: at or below ``presence_score``, so a target
            that turns or animates is not reported absent on its first poor match).
        follower_lift: how far a follower's (correlation, colour, flow) calibrated affinity may rise
            above what its box's verified match score alone gives, in match-score units (0: the
            verified score only; see :mod:`memstream.tracking.classical.proposers`).
        redetect_scales: relative sizes (of the last reference size) the lost object's search
            tries instead of ``scales``: an object that receded or came closer while it was out of
            sight is found at its new size. Must contain 1.0. The object's reference size takes the
            re-detected size as is (``size_rate`` is for frame-to-frame change). Default (0.7, 1.0,
            1.4) with ``presence_radius_min_px`` 3: game footage presence-aware AUC 46.0 / 41.3 / 43.7
            -> 47.7 / 43.7 / 44.7 (raw / CRF 18 / CRF 28), held-out synthetic AUC unchanged; (0.5, 0.7,
            1.0, 1.4) found look-alikes on the 160x120 scene-QA footage.
        redetect_every: once lost, the whole frame is searched on every n-th frame (the frames
            between search around the last position), as long-term trackers re-detect at a lower
            rate than they track. Default 2 (as the all-proposer default was measured); with the
            template alone, 2 cost 3.6 points of presence-aware AUC on the game-footage set (raw,
            48.4 -> 44.8) against 1.
        follower_min_colour: a follower's box whose mean P(object | colour) is below this is no
            candidate (0: every box; 0.5 keeps the followers off a grey occluder but not off a
            look-alike, and costs game footage some of what they add there).
        follower_memory_gate: a follower's (correlation, colour, flow) box that SAMURAI chose is
            remembered (the bank, if SAMURAI's gate lets it in, and the most recent template) only
            when the memory's templates verify it: its verified match score's affinity, before any
            ``follower_lift``, above this (0.5, SAMURAI's gate on affinity). Below, the object moves
            to the box (the followers keep it while its appearance changes faster than the memory)
            but its templates learn nothing from it, so a follower that drifted onto a look-alike
            or an occluder cannot teach the memory the wrong object. None: SAMURAI's gate alone
            (with the lifted affinity), as the proposers were first built.
        follower_presence_frames: how many consecutive frames the followers (correlation, colour,
            flow) may keep an object present on their own word: their calibrated score, with
            agreement and ``follower_lift``, certifies presence only while the memory's templates
            last found the object (a candidate whose verified match score, the templates' own,
            passed the presence threshold) at most this many frames ago. Past it, presence is what the memory says of every candidate (its verified
            match score, no lift, no agreement): followers still move the box while the memory
            agrees, but followers agreeing with each other on an occluder or on the background an
            object vanished from cannot hold it present. None: no limit (as the proposers were
            first built). Default 4: on held-out synthetic scenes absence recall 47 % -> 91 % (0 % ->
            84 % on ``occlusion``) at the same AUC; 8 and 16 gave 91 % and 76 %.
        world_gate: on frames with depth, intrinsics and a camera pose (RGB-D with poses, as the 3D
            memory reads), search where the object's last world position projects in this view, at
            the size its metric size has at that depth, and drop candidates that cannot be it: farther
            from that position than ``world_margin_m + world_speed_m_s`` times the seconds since it
            was last found, or of a metric size off by more than ``world_size_ratio``
            (:mod:`memstream.tracking.classical.world`). Frames without depth or pose are tracked as
            without the option. Off by default (RGB streams); the ``scene`` preset turns it on.
        world_margin_m: how far from its last world position an object may be found at once, metres
            (the box centre's back-projection wanders with the box and the visible side).
        world_speed_m_s: the fastest an object moves, metres per second: the reach grows by this
            per second since the object was last found (1.0: faster than a walking object's
            carried things move in the scenes this is built for; a person walks at 1.4).
        world_size_ratio: a candidate whose metric size (longer side) is more than this factor off the
            object's is no candidate.
        world_reach_max_m: the reach stops growing here, metres: an object unseen for minutes is
            looked for within this distance of where it was last found, not anywhere (a long
            absence otherwise admits any look-alike in the room; an object that went farther
            while unseen stays lost rather than being re-found on something else). None: no cap.
    """

    num_candidates: Annotated[int, Field(ge=1)] = 3
    search_scale: Annotated[float, Field(ge=1)] = 3.0
    scales: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (0.95, 1.0, 1.05)
    scale_penalty: Annotated[float, Field(gt=0, le=1)] = 0.98
    size_rate: Annotated[float, Field(ge=0, le=1)] = 0.5
    template_size_px: Annotated[int, Field(ge=8)] = 24
    bank_size: Annotated[int, Field(ge=0)] = 6
    prompt_weight: Annotated[float, Field(gt=0)] = 1.0
    recent_weight: Annotated[float, Field(gt=0)] = 1.0
    colour_weight: Annotated[float, Field(ge=0, lt=1)] = 0.2
    nms_iou: Annotated[float, Field(ge=0, lt=1)] = 0.3
    score_floor: Annotated[float, Field(ge=-1)] = 0.45
    score_ceiling: Annotated[float, Field(le=1)] = 0.85
    presence_score: Annotated[float, Field(gt=-1, lt=1)] = 0.5
    logit_gain: Annotated[float, Field(gt=0)] = 10.0
    presence_radius: Annotated[float, Field(gt=0)] = 0.3
    presence_radius_min_px: Annotated[float, Field(ge=0)] = 3.0
    motion_reach: Annotated[float, Field(ge=0)] = 2.0
    lost_after_frames: Annotated[int, Field(ge=1)] = 8
    mask_margin: Annotated[float, Field(ge=0, le=1)] = 0.15
    mask_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    mask_threshold_fit: tuple[Annotated[float, Field(gt=0, lt=1)], ...] = (0.7, 0.85, 0.95, 0.98, 0.99)
    min_mask_fill: Annotated[float, Field(ge=0, le=1)] = 0.3
    colour_ring: Annotated[float, Field(gt=0)] = 0.5
    point_pad_frac: Annotated[float, Field(gt=0)] = 0.05
    proposers: Annotated[tuple[Literal["template", "correlation", "colour", "flow"], ...], Field(min_length=1)] = (
        "template", "correlation", "colour", "flow")
    features: Literal["grey", "smooth", "gradient"] = "grey"
    correlation_filter: Literal["kcf", "csrt"] = "kcf"
    correlation_threshold: Annotated[float, Field(gt=0, lt=1)] = 0.3
    flow_max_error_px: Annotated[float, Field(gt=0)] = 2.0
    presence_keep_score: Annotated[float, Field(gt=-1, lt=1)] = 0.5
    redetect_scales: Annotated[tuple[Annotated[float, Field(gt=0)], ...], Field(min_length=1)] = (0.7, 1.0, 1.4)
    redetect_every: Annotated[int, Field(ge=1)] = 2
    follower_lift: Annotated[float, Field(ge=0, le=1)] = 0.5
    follower_min_colour: Annotated[float, Field(ge=0, le=1)] = 0.0
    follower_memory_gate: Annotated[float, Field(ge=0, lt=1)] | None = 0.5
    follower_presence_frames: Annotated[int, Field(ge=0)] | None = 4
    world_gate: bool = False
    world_margin_m: Annotated[float, Field(gt=0)] = 0.3
    world_speed_m_s: Annotated[float, Field(ge=0)] = 1.0
    world_size_ratio: Annotated[float, Field(gt=1)] = 1.6
    world_reach_max_m: Annotated[float, Field(gt=0)] | None = 2.0

    def __post_init__(self) -> None:
        # Ranges of single fields are in the annotations (checked on construction and when parsed).
        if 1.0 not in self.scales:
            raise ValueError(f"ClassicalConfig.scales={self.scales!r} must include 1.0 (the current size)")
        # ``Annotated[...] | None`` fields: the constraint inside is not checked on construction.
        if self.follower_presence_frames is not None and self.follower_presence_frames < 0:
            raise ValueError(f"ClassicalConfig.follower_presence_frames={self.follower_presence_frames!r} must be >= 0 "
                             "or None (no limit)")
        if self.follower_memory_gate is not None and not 0 <= self.follower_memory_gate < 1:
            raise ValueError(f"ClassicalConfig.follower_memory_gate={self.follower_memory_gate!r} must be in [0, 1) "
                             "or None (SAMURAI's gate alone)")
        if 1.0 not in self.redetect_scales:
            raise ValueError(f"ClassicalConfig.redetect_scales={self.redetect_scales!r} must include 1.0 (the last size)")
        if self.score_floor >= self.score_ceiling:
            raise ValueError(f"ClassicalConfig.score_floor={self.score_floor!r} must be below score_ceiling "
                             f"({self.score_ceiling!r})")
        if self.presence_keep_score > self.presence_score:
            raise ValueError(f"ClassicalConfig.presence_keep_score={self.presence_keep_score!r} must not exceed "
                             f"presence_score ({self.presence_score!r})")
        unknown = [p for p in self.proposers if p not in PROPOSER_NAMES]
        if unknown:
            raise ValueError(f"ClassicalConfig.proposers={self.proposers!r}: unknown {unknown}; choose from "
                             f"{', '.join(PROPOSER_NAMES)}")
        if len(set(self.proposers)) != len(self.proposers):
            raise ValueError(f"ClassicalConfig.proposers={self.proposers!r} names a proposer twice")
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        object.__setattr__(self, "redetect_scales", tuple(float(s) for s in self.redetect_scales))
        object.__setattr__(self, "mask_threshold_fit", tuple(float(t) for t in self.mask_threshold_fit))
        object.__setattr__(self, "proposers", tuple(self.proposers))

    def affinity(self, score: float) -> float:
        """A match score mapped linearly from ``[score_floor, score_ceiling]`` onto [0, 1] (clipped)."""
        return float(min(max((score - self.score_floor) / (self.score_ceiling - self.score_floor), 0.0), 1.0))
