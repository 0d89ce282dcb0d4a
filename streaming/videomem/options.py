"""Options of the ``video_memory`` stage (``stages.video_memory.options``) and of ``memstream ask``.

The components' own config dataclasses are the definition: ``rekv`` is
:class:`~memstream.streaming.videomem.rekv.config.ReKVConfig`, ``flash_vstream``
:class:`~memstream.streaming.videomem.flash.video_memory.FlashVStreamConfig` (its Flash Memory
under ``memory``), ``generation``
:class:`~memstream.streaming.videomem.generation.SamplingConfig`; their defaults are the stage's.
Values live in ``configs/videoqa.yaml`` (ReKV's released settings for LLaVA-OneVision); every key is
validated by :func:`memstream.streaming.configtypes.parse` and a bad one is named with its dotted
path. ``memory`` and ``rekv.retrieval`` name registry entries, checked when the options are parsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import Field

from memstream.streaming.configtypes import registered, strict_config
from memstream.streaming.videomem.factory import VIDEO_MEMORIES  # registers rekv, flash_vstream
from memstream.streaming.videomem.model_paths import TINY_RANDOM
from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.rekv.config import ReKVConfig

__all__ = ["TINY_RANDOM", "Question", "VideoMemoryOptions"]


@strict_config
@dataclass(frozen=True)
class Question:
    """A question asked when the stream reaches ``at_s`` seconds."""

    at_s: Annotated[float, Field(ge=0)]
    text: Annotated[str, Field(min_length=1)]


@strict_config
@dataclass(frozen=True)
class VideoMemoryOptions:
    """Options of the ``video_memory`` stage.

    Attributes:
        model: a local folder (``save_pretrained`` layout), a hub id, or ``tiny-random``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:N``.
        dtype: ``auto`` is bfloat16 on CUDA, float32 on CPU.
        memory: a name in :data:`~memstream.streaming.videomem.protocol.VIDEO_MEMORIES`
            (``rekv``, ``flash_vstream``, or one registered by the user).
        sample_fps: frames per second given to the memory (ReKV evaluates at 0.5-1 fps), by the
            sources' own ``target_fps`` rule; None gives it every frame.
        rekv, flash_vstream: the settings of each memory.
        generation: how answers are generated.
        questions: asked when the stream reaches their time; those after the last frame at the end.
        answers_file: ``OUT/<answers_file>``, one JSON line per answer.
    """

    model: Annotated[str, Field(min_length=1)]
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    memory: Annotated[str, registered(VIDEO_MEMORIES)] = "rekv"
    sample_fps: Annotated[float, Field(gt=0)] | None = 1.0
    rekv: ReKVConfig = field(default_factory=ReKVConfig)
    flash_vstream: FlashVStreamConfig = field(default_factory=FlashVStreamConfig)
    generation: SamplingConfig = field(default_factory=SamplingConfig)
    questions: tuple[Question, ...] = ()
    answers_file: str = "answers.jsonl"
