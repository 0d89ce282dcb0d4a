"""Video-LLM adapters: a transformers model seen by the video memory as layers of un-rotated KV."""

from memstream.streaming.videomem.adapters.hf import HFVideoLLM, PromptFormat, RunOutput, cache_kwargs, cache_keyword
from memstream.streaming.videomem.adapters.loading import VideoModelError, load_video_llm

__all__ = ["HFVideoLLM", "PromptFormat", "RunOutput", "VideoModelError", "cache_keyword", "cache_kwargs", "load_video_llm"]
