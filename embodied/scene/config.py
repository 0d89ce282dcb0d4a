"""Settings of the scene memory: its caps (what bounds it on endless streams) and its thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from memstream.streaming.configtypes import strict_config

CentreEstimate = Literal["behind_surface", "surface"]


@strict_config
@dataclass(frozen=True)
class SceneConfig:
    """How the scene memory places objects, when it calls them moving, and what it keeps.

    Positions are world metres when the frame's depth, intrinsics and pose are known (from the
    ``map3d`` stage, else from the frame itself), image pixels otherwise; thresholds in metres then
    apply to pixels divided by ``image_px_per_m``.

    Attributes:
        centre: where an object's position is taken: ``surface``, the per-axis median (in world
            coordinates, each pixel weighted by its solid angle) of its mask's back-projected pixels
            (a point on the side facing the camera), or ``behind_surface``, the centre of a convex
            object behind that side: as far along the viewing ray as its nearest visible point plus
            half its visible width across the ray, at the middle of that width (exact for a sphere
            and an upright box seen from any side; see
            :func:`~memstream.embodied.scene.observe.world_position`). Both stay put when only the
            camera turns.
        min_depth_px: valid-depth mask pixels an observation needs for a position (fewer: the
            object counts as seen, without a new position).
        max_points: mask pixels sampled (evenly) for the median, which bounds the cost per object.
        min_step_m: a new trajectory sample starts when the object is this far from the current
            one, whose position is the mean of the observations since it started; so the position
            answered for any time is within ``min_step_m`` of the one observed (until thinning,
            below), noise below it averages out, and a still object costs one sample. Set it above
            the position noise (a tracker's masks: a few centimetres).
        max_samples: trajectory samples kept per object; when full, the older half is thinned to
            every other sample (old positions get coarser, the recent half stays exact).
        gap_frames: a visit (an interval in which the object is seen) ends when the object is
            missing from more than this many consecutive frames.
        max_visits: visits kept per object; when full, the two visits with the shortest gap
            between them are merged (short disappearances are forgotten first).
        top_frames: the best frames kept per object, by tracker score (``affinity x
            sigmoid(object_score)``).
        top_frames_min_gap_s: two kept frames are at least this far apart in time (a better frame
            replaces a kept one closer than that), so the best frames are not k neighbours.
        motion_start_m: a resting object starts moving when it is farther than this from where it
            rests; the motion's start is back-dated to its last observation within ``motion_rest_m``.
        motion_rest_m: the hysteresis band: an object rests again once it stays within this radius
            of one point for ``motion_settle_s``; the motion's end is when it arrived there. While
            at rest, its resting point follows it slowly (see ``rest_follow_s``), so slow drift of the
            position estimate (the visible side changes as the camera moves) is not motion.
        motion_settle_s: see ``motion_rest_m``.
        motion_confirm_s: a motion that ends back within ``motion_start_m`` of where the object
            rested before it is forgotten (nothing moved, net), and so is a run of motions, there and
            back, each starting less than this many seconds after the one before it ended: a mask
            that takes in a nearer occluder for a few frames moves the estimate along the viewing
            ray and back (1-2 s on bench_scene_qa's hour). The price: an object carried away and put
            back that fast is not seen to move; 10 s there also dropped a ball's real round trip
            (rests of 8-9 s between its moves). 0 keeps only the first rule.
        motion_size_ratio: a big object must move farther: it starts moving only when farther than
            this times its size (the square root of its visible area, the upper quartile of the last
            ``area_memory_s``) from where it rests, when that is more than ``motion_start_m`` (and
            ``motion_rest_m`` grows in proportion). The centre estimate of a big object from a
            partial or spilled mask errs by a fraction of its size: on bench_scene_qa's hour the 0.8 m
            table at the image edge, tracked by boxes, wandered 0.2-0.26 m at rest. With 0.5, objects
            up to 0.16 m^2 of visible area keep ``motion_start_m``; the table (0.6-0.8 m^2) needs about
            0.4 m. 0: ``motion_start_m`` for every object.
        min_area_ratio: an observation feeds motion detection only when the object's visible area
            (square metres, :class:`~memstream.embodied.scene.types.ObjectObservation`) is at least
            this share of its largest recent one and its mask does not touch the image border: a
            partly hidden or cut-off object's position is biased, and that bias is not motion. It
            still counts as seen and placed.
        area_memory_s: how fast "its largest recent area" forgets: it decays by ``e`` every this
            many seconds (a lasting change of view is accepted after about that long).
        rest_follow_s: time constant, seconds, with which the resting point follows the position
            at rest (an exponential mean): drift slower than ``motion_rest_m / rest_follow_s`` is
            not motion, and neither is a real motion that slow.
        smoothing_frames: positions fed to motion detection are the per-axis median of the last
            this many observations (1: none), which removes single-frame mask glitches.
        max_motions: motion intervals kept per object (the latest ones).
        max_objects: objects held; an observation of one more is refused with an error.
        image_px_per_m: for image-plane positions only: pixels that count as one metre in the
            thresholds above.
    """

    centre: CentreEstimate = "behind_surface"
    min_depth_px: Annotated[int, Field(ge=1)] = 8
    max_points: Annotated[int, Field(ge=16)] = 4096
    min_step_m: Annotated[float, Field(gt=0)] = 0.05
    max_samples: Annotated[int, Field(ge=8)] = 4096
    gap_frames: Annotated[int, Field(ge=0)] = 2
    max_visits: Annotated[int, Field(ge=2)] = 1024
    top_frames: Annotated[int, Field(ge=1)] = 8
    top_frames_min_gap_s: Annotated[float, Field(ge=0)] = 1.0
    motion_start_m: Annotated[float, Field(gt=0)] = 0.2
    motion_rest_m: Annotated[float, Field(gt=0)] = 0.08
    motion_settle_s: Annotated[float, Field(ge=0)] = 0.5
    motion_confirm_s: Annotated[float, Field(ge=0)] = 3.0
    motion_size_ratio: Annotated[float, Field(ge=0)] = 0.5
    min_area_ratio: Annotated[float, Field(ge=0, le=1)] = 0.7
    area_memory_s: Annotated[float, Field(gt=0)] = 60.0
    rest_follow_s: Annotated[float, Field(gt=0)] = 5.0
    smoothing_frames: Annotated[int, Field(ge=1)] = 3
    max_motions: Annotated[int, Field(ge=1)] = 64
    max_objects: Annotated[int, Field(ge=1)] = 256
    image_px_per_m: Annotated[float, Field(gt=0)] = 100.0

    def __post_init__(self) -> None:
        if self.motion_rest_m >= self.motion_start_m:
            raise ValueError(
                f"motion_rest_m ({self.motion_rest_m}) must be below motion_start_m "
                f"({self.motion_start_m}): the gap between them is the hysteresis"
            )
