"""Typed options of the video memory (``stages.video_memory.options`` and ``memstream ask``).

Values live in ``configs/*.yaml`` (``configs/rekv_llava_ov.yaml`` holds ReKV's published settings);
every key is validated here and a bad one is named with its dotted path.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from memstream.streaming.videomem.rekv.config import ReKVConfig

#: ``model: tiny-random`` builds a random-weight LLaVA-OneVision in code (answers are noise): it
#: runs the whole machinery on a machine with no checkpoint.
TINY_RANDOM = "tiny-random"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReKVOptions(_Strict):
    """:class:`~memstream.streaming.videomem.rekv.config.ReKVConfig`'s fields, with its defaults."""

    window_frames: int = Field(76, ge=1)
    chunk_frames: int = Field(1, ge=1)
    retrieval: Literal["internal", "external", "recent", "uniform", "random", "all"] = "internal"
    external_embedder: str | None = None  # CLIP / SigLIP path or hub id, for retrieval: external
    topk: int = Field(64, ge=1)
    group_size: int = Field(1, ge=1)
    codec: Literal["none", "int8-channel", "int8-token"] = "none"
    store_dir: str | None = None
    ram_budget_mb: float | None = Field(None, gt=0)
    device_cache_blocks: int = Field(128, ge=0)
    max_blocks: int | None = Field(None, ge=1)
    max_question_tokens: int = Field(512, ge=1)
    kernel_backend: Literal["auto", "torch", "triton"] = "auto"

    def to_config(self) -> ReKVConfig:
        try:
            return ReKVConfig(**{f.name: getattr(self, f.name) for f in fields(ReKVConfig)})
        except ValueError as exc:
            from memstream.streaming.errors import ConfigError

            raise ConfigError(f"invalid rekv options: {exc}", "See streaming/videomem/rekv/config.py") from None


class FlashVStreamOptions(_Strict):
    """Flash-VStream's memory (anchor defaults: 60 CSM centroids, 30 DAM frames)."""

    csm_clusters: int = Field(60, ge=1)
    dam_frames: int = Field(30, ge=0)
    kmeans_iterations: int = Field(10, ge=1)
    kmeans_init: Literal["farthest_point", "random"] = "farthest_point"
    distance: Literal["l2", "cos"] = "l2"
    keep_all_frames: bool = False
    candidates_per_cluster: int = Field(4, ge=1)
    low_res_pool: int = Field(2, ge=1)
    max_question_tokens: int = Field(512, ge=1)

    def to_config(self):
        from memstream.streaming.videomem.flash import FlashMemoryConfig
        from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig

        memory = self.model_dump(exclude={"low_res_pool", "max_question_tokens"})
        try:
            flash = FlashMemoryConfig(**memory)
        except ValueError as exc:
            from memstream.streaming.errors import ConfigError

            raise ConfigError(f"invalid flash_vstream options: {exc}", "See streaming/videomem/flash/config.py") from None
        return FlashVStreamConfig(memory=flash, low_res_pool=self.low_res_pool, max_question_tokens=self.max_question_tokens)


class QuestionOptions(_Strict):
    """A question asked when the stream reaches ``at_s`` seconds."""

    at_s: float = Field(ge=0)
    text: str = Field(min_length=1)


class GenerationOptions(_Strict):
    """How answers are generated (``transformers.GenerationConfig`` names)."""

    max_new_tokens: int = Field(128, ge=1)
    do_sample: bool = False
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None


class VideoMemoryOptions(_Strict):
    """Options of the ``video_memory`` stage."""

    model: str = Field(min_length=1)  # local directory, hub id, or tiny-random
    device: str = "auto"
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    memory: Literal["rekv", "flash_vstream"] = "rekv"
    sample_fps: float | None = Field(1.0, gt=0)  # frames per second given to the memory; null = every frame
    rekv: ReKVOptions = ReKVOptions()
    flash_vstream: FlashVStreamOptions = FlashVStreamOptions()
    generation: GenerationOptions = GenerationOptions()
    questions: list[QuestionOptions] = []
    answers_file: str = "answers.jsonl"
