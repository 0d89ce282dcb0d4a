"""Build the configured video memory: load the Video-LLM, then the memory registered under
``options.memory`` around it (the stage, ``memstream ask`` and ``memstream serve`` share this).

Example::

    options = parse(VideoMemoryOptions, {"model": "tiny-random", "memory": "flash_vstream"}, "")
    memory = build_memory(options)
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from memstream.streaming.videomem.model_paths import TINY_RANDOM, check_model_paths
from memstream.streaming.videomem.protocol import VIDEO_MEMORIES, VideoMemory

if TYPE_CHECKING:
    from memstream.streaming.videomem.adapters.hf import HFVideoLLM
    from memstream.streaming.videomem.options import VideoMemoryOptions

log = logging.getLogger(__name__)


@VIDEO_MEMORIES.register("rekv")
def rekv_memory(llm: HFVideoLLM, options: VideoMemoryOptions) -> VideoMemory:
    """ReKV: every frame's KV in a tiered store, retrieved per question (``options.rekv``)."""
    from memstream.streaming.videomem.rekv import ReKVMemory

    return ReKVMemory(llm, options.rekv)


@VIDEO_MEMORIES.register("flash_vstream")
def flash_vstream_memory(llm: HFVideoLLM, options: VideoMemoryOptions) -> VideoMemory:
    """Flash-VStream: a fixed token budget of clustered frames (``options.flash_vstream``)."""
    from memstream.streaming.videomem.flash.video_memory import FlashVStreamMemory

    return FlashVStreamMemory(llm, options.flash_vstream)


def check_paths(options: VideoMemoryOptions) -> None:
    """Fail at once when the model or the retrieval embedder is a local path that does not exist
    (before a loader takes it for a hub id and retries the hub for half a minute)."""
    external = options.memory == "rekv" and options.rekv.retrieval == "external"
    check_model_paths(options.model, options.rekv.external_embedder if external else None)


def load_model(options: VideoMemoryOptions) -> HFVideoLLM:
    """The Video-LLM of the options (``tiny-random`` is built in a temporary directory).

    Models that time frames by their rate (Qwen2.5-VL spaces temporal positions by seconds) are
    told the rate the memory samples at, ``sample_fps``.
    """
    from memstream.streaming.videomem.adapters import load_video_llm

    model = options.model
    if model == TINY_RANDOM:
        from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

        log.warning("model tiny-random has random weights: its answers are noise")
        model = str(build_tiny_llava_onevision(Path(tempfile.mkdtemp(prefix="memstream-tiny-"))))
    llm = load_video_llm(model, device=options.device, dtype=options.dtype)
    if options.sample_fps is not None and hasattr(llm, "frames_per_second"):
        llm.frames_per_second = float(options.sample_fps)
    return llm


def memory_for(llm: HFVideoLLM, options: VideoMemoryOptions) -> VideoMemory:
    """The memory registered as ``options.memory``, around an already loaded model (``serve``
    builds one per stream on one model)."""
    return VIDEO_MEMORIES.get(options.memory)(llm, options)


def build_memory(options: VideoMemoryOptions) -> VideoMemory:
    """The configured memory around a freshly loaded model; paths are checked before loading."""
    check_paths(options)
    return memory_for(load_model(options), options)
