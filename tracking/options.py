"""Options of the ``tracking`` stage (``stages.tracking.options`` in a run config).

The components' config dataclasses are nested as they are, so their defaults are the only ones:
``samurai`` is :class:`~memstream.tracking.selection.SamuraiConfig` (SAMURAI's SAM 2.1 T/S/B+
constants; ``configs/samurai_l.yaml`` sets ``kf_score_weight: 0.15`` as SAMURAI's L config does) and
``classical`` is :class:`~memstream.tracking.classical.config.ClassicalConfig`. What belongs to the
stage (prompts, where SAM 2 comes from, which files to write) is defined here. Values live in
``configs/*.yaml``; :func:`~memstream.streaming.configtypes.parse` validates them, naming a bad key by
its dotted path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from memstream.streaming.configtypes import registered, strict_config
from memstream.tracking.backends import BACKENDS
from memstream.tracking.classical.config import ClassicalConfig
from memstream.tracking.names import check_object_name
from memstream.tracking.selection import SamuraiConfig
from memstream.tracking.tracker import SelectionMode


@strict_config
@dataclass(frozen=True)
class PromptOptions:
    """A box and/or points for one object on one frame, in pixels of the frame as decoded.

    Attributes:
        object_id: the object's id, >= 1.
        frame: index of the frame the prompt applies to.
        box: ``(x, y, w, h)``.
        points: ``(x, y)`` clicks.
        labels: one per point, 1 = on the object, 0 = background; default all 1.
        name: the object's name (``cup``), carried with its id to every memory and output; None:
            unnamed (outputs then say ``object <id>``).
    """

    object_id: Annotated[int, Field(ge=1)]
    frame: Annotated[int, Field(ge=0)] = 0
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    labels: tuple[Annotated[int, Field(ge=0, le=1)], ...] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.box is None and not self.points:
            raise ValueError(f"prompt for object {self.object_id} needs a box or points")
        if self.name is not None:
            check_object_name(self.name)


@strict_config
@dataclass(frozen=True)
class Sam2Options:
    """Where the SAM 2 model comes from (the arguments of ``Sam2Backend.from_pretrained``).

    Attributes:
        model_config: a config inside the ``sam2`` package.
        checkpoint: a local ``.pt`` or a hub id; None: random weights (tests, benchmarks).
        image_size: the model's input size; None: the config's (1024).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
    """

    model_config: Annotated[str, Field(min_length=1)] = "configs/sam2.1/sam2.1_hiera_t.yaml"
    checkpoint: str | None = None
    image_size: Annotated[int | None, Field(ge=64)] = None
    device: str = "auto"


@strict_config
@dataclass(frozen=True)
class OutputOptions:
    """What the stage writes into the run folder (all written frame by frame, so a run that stops
    early leaves valid files for the frames it processed).

    Attributes:
        boxes: ``<object_id>.txt``, LaSOT ``x,y,w,h`` per frame.
        scores: ``scores.jsonl`` while running, ``scores.json`` at the end.
        masks: ``masks/<frame>.png``, uint16 instance ids.
        video: ``tracking.mp4`` with boxes and masks drawn.
        video_crf: H.264 quality of that video, 0 (lossless) to 51.
    """

    boxes: bool = True
    scores: bool = True
    masks: bool = False
    video: bool = False
    video_crf: Annotated[int, Field(ge=0, le=51)] = 20


@strict_config
@dataclass(frozen=True)
class TrackingOptions:
    """Options of the ``tracking`` stage.

    Attributes:
        backend: a registered candidate backend (:data:`~memstream.tracking.backends.BACKENDS`):
            ``classical`` (weight-free, OpenCV) or ``sam2``.
        selection: ``samurai`` (motion-aware choice and memory gate) or ``affinity`` (plain SAM 2).
        prompts: boxes or points per object and frame.
        gt_objects: ground-truth object ids to prompt from the source's own ground truth on the
            first frame where each is visible (synthetic scenes); ignored when the source has none.
        samurai: SAMURAI's constants.
        sam2: the SAM 2 model (``backend: sam2``).
        classical: the classical backend's settings (``backend: classical``).
        outputs: the files written.
    """

    backend: Annotated[str, registered(BACKENDS)] = "classical"
    selection: SelectionMode = "samurai"
    prompts: tuple[PromptOptions, ...] = ()
    gt_objects: tuple[Annotated[int, Field(ge=1)], ...] = ()
    samurai: SamuraiConfig = field(default_factory=SamuraiConfig)
    sam2: Sam2Options = field(default_factory=Sam2Options)
    classical: ClassicalConfig = field(default_factory=ClassicalConfig)
    outputs: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        keys = [(p.object_id, p.frame) for p in self.prompts]
        if len(set(keys)) != len(keys):
            raise ValueError("an object is prompted twice on the same frame")
        owners: dict[str, int] = {}
        for prompt in self.prompts:
            owner = owners.setdefault(prompt.name, prompt.object_id) if prompt.name is not None else None
            if owner is not None and owner != prompt.object_id:
                raise ValueError(f"the name {prompt.name!r} is given to objects {owners[prompt.name]} and "
                                 f"{prompt.object_id}; give each object its own name")

    def names(self) -> dict[int, str]:
        """Object id -> name, for the prompts that name their object (the latest name wins)."""
        return {p.object_id: p.name for p in self.prompts if p.name is not None}

