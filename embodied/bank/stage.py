"""The ``bank`` stage of ``memstream run``: the perceptual-cognitive memory bank over the stream.

MemoryVLA's bank steps once per control step with perceptual tokens (the vision encoder's patches)
and one cognitive token (the VLM's last hidden state). Over a stream, at ``sample_fps``:

* **perceptual tokens**: the frame resized to ``grid x grid`` patches of ``patch_px`` pixels, each
  patch's RGB values in [-0.5, 0.5] flattened: ``(1, grid^2, 3 patch_px^2)``, weight-free;
* **cognitive token**: the ``video_memory`` stage's newest frame in its decoder's space
  (:class:`~memstream.streaming.videomem.types.VideoMemoryStep` ``hidden``) when that stage runs
  before this one, otherwise the frame's own summary (the mean perceptual token): ``(1, 1, D)``.
  With ``cognitive: auto`` the bank waits for the video memory's first encoded frame.

The bank's retrieval and fusion layers are MemoryVLA's, randomly initialised from ``seed`` (no
trained weights exist for these tokens): the stage exercises the bank's bounded storage and
consolidation on a real stream, its readouts are not yet meaningful. Each step appends a line to
``OUT/bank.jsonl`` (frame, time, bank entries, mean gates, the objects the tracker sees on the frame
with their names); ``OUT/bank_state.pt`` holds the bank (weights and entries) at the end.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import cv2
import numpy as np
import torch
from pydantic import Field

from memstream.embodied.bank.config import MemoryBankConfig
from memstream.embodied.bank.memory import PerceptualCognitiveMemory
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import FrameSchedule
from memstream.streaming.types import Frame

CognitiveSource = Literal["auto", "video_memory", "frame"]


@strict_config
@dataclass(frozen=True)
class BankStageOptions:
    """Options of the ``bank`` stage (see the module docstring).

    Attributes:
        bank: the bank's settings (MemoryVLA's defaults: 16 entries, token-merge consolidation).
        sample_fps: bank steps per second of stream time (the sources' ``target_fps`` rule); None:
            every frame.
        grid: perceptual tokens per side (``grid^2`` tokens).
        patch_px: pixels per patch side (a token has ``3 patch_px^2`` channels).
        cognitive: ``video_memory`` (its hidden state; the stage must run before), ``frame`` (the mean
            perceptual token), or ``auto`` (the video memory's when it runs, else the frame's).
        seed: seed of the layers' random initialisation.
        log_file: ``OUT/<log_file>``, one JSON line per step.
    """

    bank: MemoryBankConfig = field(default_factory=MemoryBankConfig)
    sample_fps: Annotated[float, Field(gt=0)] | None = 1.0
    grid: Annotated[int, Field(ge=1, le=32)] = 4
    patch_px: Annotated[int, Field(ge=1, le=32)] = 8
    cognitive: CognitiveSource = "auto"
    seed: Annotated[int, Field(ge=0)] = 0
    log_file: Annotated[str, Field(min_length=1)] = "bank.jsonl"


@dataclass(frozen=True)
class BankStep:
    """One step of the bank on a frame (the stage's result on the frames it steps on, else None).

    Attributes:
        frame_index, timestamp_s: the frame.
        timestep: the bank's step index (0 on the first step).
        entries: entries the bank held when read (before this step's update), at most ``capacity``.
        cognitive_source: ``video_memory`` or ``frame``.
        perceptual_gate, cognitive_gate: mean weight of the current tokens in the fusion, in (0, 1).
        fused_cognitive: float32 ``(D,)`` the fused cognitive token.
        objects: ``(id, name or None)`` of the objects the tracker reports on the frame.
    """

    frame_index: int
    timestamp_s: float
    timestep: int
    entries: int
    cognitive_source: str
    perceptual_gate: float | None
    cognitive_gate: float | None
    fused_cognitive: torch.Tensor
    objects: tuple[tuple[int, str | None], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame_index,
            "t": round(self.timestamp_s, 6),
            "timestep": self.timestep,
            "entries": self.entries,
            "cognitive": self.cognitive_source,
            "perceptual_gate": _round(self.perceptual_gate),
            "cognitive_gate": _round(self.cognitive_gate),
            "objects": [{"id": i, "name": n} for i, n in self.objects],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def perceptual_tokens(rgb: np.ndarray, grid: int, patch_px: int) -> torch.Tensor:
    """float32 ``(1, grid^2, 3 patch_px^2)``: the image as ``grid x grid`` patches, values in [-0.5, 0.5]."""
    side = grid * patch_px
    small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0 - 0.5
    patches = (
        small.reshape(grid, patch_px, grid, patch_px, 3).transpose(0, 2, 1, 3, 4).reshape(grid * grid, -1)
    )
    return torch.from_numpy(np.ascontiguousarray(patches))[None]


class BankStage:
    """Steps the perceptual-cognitive bank over the stream; see the module docstring."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options = parse_options(BankStageOptions, name, options)
        self.bank: PerceptualCognitiveMemory | None = None  # built on the first step: D is known then
        self._schedule = FrameSchedule(SourceOptions(target_fps=self.options.sample_fps))
        self._steps = 0
        self._source: str | None = None
        self._log: Path | None = None
        self._out: Path | None = None

    def open(self, context: RunContext) -> None:
        names = [st.get("name") for st in context.config.get("stages", []) if st.get("enabled", True)]
        before = names[: names.index(self.name)] if self.name in names else names
        if self.options.cognitive == "video_memory" and names and "video_memory" not in before:
            raise ConfigError(
                f"stages.{self.name}.options.cognitive is video_memory, but no video_memory stage runs before it",
                "Enable the video_memory stage before the bank (configs/scene.yaml), or use cognitive: frame",
            )
        if context.out_dir is not None:
            self._out = Path(context.out_dir)
            self._log = self._out / self.options.log_file
            self._log.write_text("")

    def update(self, frame: Frame, upstream: Upstream) -> BankStep | None:
        due = self._schedule.keep(frame.timestamp_s)
        if not due:
            return None
        perceptual = perceptual_tokens(frame.rgb, self.options.grid, self.options.patch_px)
        cognitive, source = self._cognitive(perceptual, upstream)
        if cognitive is None:  # auto: the video memory has encoded nothing yet
            return None
        if self.bank is None:
            torch.manual_seed(self.options.seed)
            self.bank = PerceptualCognitiveMemory(
                perceptual.shape[-1], cognitive.shape[-1], self.options.bank
            ).eval()
            self.bank.reset(batch_size=1)
            self._source = source
        with torch.no_grad():
            readout = self.bank.step(perceptual, cognitive)
        tracking = upstream.get("tracking")
        objects = (
            tuple((s.object_id, tracking.name_of(s.object_id)) for s in tracking.states if s.present)
            if tracking
            else ()
        )
        step = BankStep(
            frame.index,
            frame.timestamp_s,
            self._steps,
            int(readout.bank_lengths[0]),
            source,
            _mean(readout.perceptual_gate),
            _mean(readout.cognitive_gate),
            readout.cognitive[0, 0].clone(),
            objects,
        )
        self._steps += 1
        if self._log is not None:
            with self._log.open("a") as handle:
                handle.write(json.dumps(step.as_dict()) + "\n")
        return step

    def _cognitive(self, perceptual: torch.Tensor, upstream: Upstream) -> tuple[torch.Tensor | None, str]:
        choice = self.options.cognitive
        video = upstream.get("video_memory")
        if choice == "video_memory" and "video_memory" not in upstream:
            raise ConfigError(
                f"stages.{self.name}.options.cognitive is video_memory, but no video_memory stage ran before it",
                "Enable the video_memory stage before the bank, or use cognitive: frame",
            )
        if choice == "frame" or (choice == "auto" and "video_memory" not in upstream):
            return perceptual.mean(dim=1, keepdim=True), "frame"
        hidden = getattr(video, "hidden", None)
        return (None if hidden is None else hidden.float().reshape(1, 1, -1)), "video_memory"

    def close(self) -> None:
        if self._out is not None and self.bank is not None:
            torch.save(
                {
                    "weights": self.bank.state_dict(),
                    "bank": self.bank.bank_state_dict(),
                    "options": {
                        "grid": self.options.grid,
                        "patch_px": self.options.patch_px,
                        "cognitive": self._source,
                    },
                },
                self._out / "bank_state.pt",
            )

    def summary(self) -> dict[str, Any]:
        lengths = self.bank.bank_lengths if self.bank is not None else None
        files = [self.options.log_file] + (["bank_state.pt"] if self.bank is not None else [])
        return {
            "steps": self._steps,
            "entries": int(lengths[0]) if lengths is not None else 0,
            "capacity": self.options.bank.capacity,
            "cognitive": self._source,
            "files": files if self._out is not None else [],
        }


def _mean(gate: torch.Tensor | None) -> float | None:
    return None if gate is None else float(gate.mean())


def make_stage(name: str, options: Mapping[str, Any]) -> BankStage:
    """Entry point of the ``memstream.stages`` group."""
    return BankStage(name, options)
