"""Video KV memory (ReKV, Flash-VStream) and Video-LLM adapters.

The public face, importable from here (loaded on first use, so ``import memstream.streaming.videomem``
stays cheap)::

    from memstream.streaming.videomem import ReKVConfig, ReKVMemory, load_video_llm

    memory = ReKVMemory(load_video_llm("llava-hf/llava-onevision-qwen2-0.5b-ov-hf"), ReKVConfig(topk=32))
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Answer": "types",
    "Retrieval": "types",
    "VideoLLMSpec": "types",
    "VideoMemory": "protocol",
    "VIDEO_MEMORIES": "protocol",
    "VideoMemoryOptions": "options",
    "Question": "options",
    "build_memory": "factory",
    "load_model": "factory",
    "memory_for": "factory",
    "SamplingConfig": "generation",
    "HFVideoLLM": "adapters",
    "VideoModelError": "adapters",
    "load_video_llm": "adapters",
    "ReKVConfig": "rekv",
    "ReKVMemory": "rekv",
    "QuestionError": "rekv",
    "RETRIEVAL_POLICIES": "rekv",
    "RetrievalPolicy": "rekv",
    "EVICTION_POLICIES": "store",
    "EvictionPolicy": "store",
    "BlockStore": "store",
    "FlashMemoryConfig": "flash",
    "FlashVStreamConfig": "flash.video_memory",
    "FlashVStreamMemory": "flash.video_memory",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from memstream.streaming.videomem.adapters import HFVideoLLM, VideoModelError, load_video_llm
    from memstream.streaming.videomem.factory import build_memory, load_model, memory_for
    from memstream.streaming.videomem.flash import FlashMemoryConfig
    from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig, FlashVStreamMemory
    from memstream.streaming.videomem.generation import SamplingConfig
    from memstream.streaming.videomem.options import Question, VideoMemoryOptions
    from memstream.streaming.videomem.protocol import VIDEO_MEMORIES, VideoMemory
    from memstream.streaming.videomem.rekv import RETRIEVAL_POLICIES, QuestionError, ReKVConfig, ReKVMemory, RetrievalPolicy
    from memstream.streaming.videomem.store import EVICTION_POLICIES, BlockStore, EvictionPolicy
    from memstream.streaming.videomem.types import Answer, Retrieval, VideoLLMSpec


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
