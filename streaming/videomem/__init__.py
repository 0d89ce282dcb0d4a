"""Video KV memory (ReKV, Flash-VStream) and Video-LLM adapters.

The public face, importable from here (loaded on first use, so ``import memstream.streaming.videomem``
stays cheap)::

    from memstream.streaming.videomem import ReKVConfig, ReKVMemory, load_video_llm

    memory = ReKVMemory(load_video_llm("llava-hf/llava-onevision-qwen2-0.5b-ov-hf"), ReKVConfig(topk=32))
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use (torch, transformers)
    "Answer": "memstream.streaming.videomem.types",
    "Retrieval": "memstream.streaming.videomem.types",
    "VideoLLMSpec": "memstream.streaming.videomem.types",
    "VideoMemory": "memstream.streaming.videomem.protocol",
    "VIDEO_MEMORIES": "memstream.streaming.videomem.factory",  # where the built-in memories register
    "VideoMemoryOptions": "memstream.streaming.videomem.options",
    "Question": "memstream.streaming.videomem.options",
    "build_memory": "memstream.streaming.videomem.factory",
    "load_model": "memstream.streaming.videomem.factory",
    "memory_for": "memstream.streaming.videomem.factory",
    "SamplingConfig": "memstream.streaming.videomem.generation",
    "HFVideoLLM": "memstream.streaming.videomem.adapters",
    "VideoModelError": "memstream.streaming.videomem.adapters",
    "load_video_llm": "memstream.streaming.videomem.adapters",
    "ReKVConfig": "memstream.streaming.videomem.rekv",
    "ReKVMemory": "memstream.streaming.videomem.rekv",
    "QuestionError": "memstream.streaming.videomem.rekv",
    "RETRIEVAL_POLICIES": "memstream.streaming.videomem.rekv",
    "RetrievalPolicy": "memstream.streaming.videomem.rekv",
    "EVICTION_POLICIES": "memstream.streaming.videomem.store",
    "EvictionPolicy": "memstream.streaming.videomem.store",
    "BlockStore": "memstream.streaming.videomem.store",
    "FlashMemoryConfig": "memstream.streaming.videomem.flash",
    "FlashVStreamConfig": "memstream.streaming.videomem.flash.video_memory",
    "FlashVStreamMemory": "memstream.streaming.videomem.flash.video_memory",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
