"""Typed options of the ``tracking`` stage (``stages.tracking.options`` in a run config).

Values live in ``configs/*.yaml``; every key is validated here and a bad one is named with its
dotted path. SAMURAI's constants default to its SAM 2.1 T/S/B+ configs; ``configs/samurai_l.yaml``
sets ``kf_score_weight: 0.15`` as SAMURAI's L config does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from memstream.tracking.selection import SamuraiConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptOptions(_Strict):
    """A box (and/or points) for one object on one frame, in pixels of the frame as decoded."""

    object_id: int = Field(ge=1)
    frame: int = Field(0, ge=0)
    box: tuple[float, float, float, float] | None = None  # x, y, w, h
    points: list[tuple[float, float]] | None = None
    labels: list[int] | None = None  # 1 = object, 0 = background; default all 1


class SamuraiOptions(_Strict):
    """SAMURAI's constants (its ``configs/samurai/sam2.1_hiera_*.yaml``)."""

    kf_score_weight: float = Field(0.25, ge=0, le=1)
    stable_frames_threshold: int = Field(15, ge=1)
    stable_ious_threshold: float = Field(0.3, ge=0, le=1)
    memory_bank_iou_threshold: float = Field(0.5, ge=0, le=1)
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = Field(0.0, ge=0, le=1)
    min_obj_score_logit: float = -1.0  # SAM 2 blanks masks at or below this object score (SAM 2: 0)

    def selection_config(self) -> SamuraiConfig:
        return SamuraiConfig(**self.model_dump(exclude={"min_obj_score_logit"}))


class Sam2Options(_Strict):
    """Where the SAM 2 model comes from."""

    model_config_name: str = Field("configs/sam2.1/sam2.1_hiera_t.yaml", alias="model_config", min_length=1)
    checkpoint: str | None = None  # local .pt or hub id; null = random weights (tests, benchmarks)
    image_size: int | None = Field(None, ge=64)  # null = the config's (1024)
    device: str = "auto"  # auto | cpu | cuda | cuda:N


class OutputOptions(_Strict):
    """What the stage writes into the run folder (all written frame by frame, so a run that stops
    early leaves valid files for the frames it processed)."""

    boxes: bool = True  # <object_id>.txt, LaSOT x,y,w,h per frame
    scores: bool = True  # scores.jsonl while running, scores.json at the end
    masks: bool = False  # masks/<frame>.png, uint16 instance ids
    video: bool = False  # tracking.mp4 with boxes and masks drawn
    video_crf: int = Field(20, ge=0, le=51)


class TrackingOptions(_Strict):
    """Options of the ``tracking`` stage.

    Attributes:
        backend: ``classical`` (weight-free, OpenCV) or ``sam2``.
        selection: ``samurai`` (motion-aware choice and memory gate) or ``affinity`` (plain SAM 2).
        prompts: boxes or points per object and frame.
        gt_objects: ground-truth object ids to prompt from the source's own ground truth on the
            first frame where each is visible (synthetic scenes); ignored when the source has none.
    """

    backend: Literal["classical", "sam2"] = "classical"
    selection: Literal["samurai", "affinity"] = "samurai"
    prompts: list[PromptOptions] = Field(default_factory=list)
    gt_objects: list[int] = Field(default_factory=list)
    samurai: SamuraiOptions = Field(default_factory=SamuraiOptions)
    sam2: Sam2Options = Field(default_factory=Sam2Options)
    classical: dict[str, Any] = Field(default_factory=dict)  # fields of memstream.tracking.classical.ClassicalConfig
    outputs: OutputOptions = Field(default_factory=OutputOptions)

    @field_validator("prompts")
    @classmethod
    def _one_prompt_per_object_and_frame(cls, prompts: list[PromptOptions]) -> list[PromptOptions]:
        keys = [(p.object_id, p.frame) for p in prompts]
        if len(set(keys)) != len(keys):
            raise ValueError("an object is prompted twice on the same frame")
        for p in prompts:
            if p.box is None and not p.points:
                raise ValueError(f"prompt for object {p.object_id} needs a box or points")
        return prompts
