"""Shared by the video QA benchmarks: random-weight Video-LLMs of a given shape, streams, timing."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

#: A small but not tiny LLaVA-OneVision for CPU runs: 4 layers, hidden 256, GQA 4/2 heads of 64,
#: 64 px frames in 8 px patches -> 8x8 patches -> 4x4 = 16 tokens per frame after pooling.
CPU_SHAPE = dict(layers=4, hidden_size=256, heads=4, kv_heads=2, intermediate_size=512, image_size=64, patch_size=8)

#: LLaVA-OneVision-0.5B's decoder (Qwen2-0.5B: 24 layers, hidden 896, 14/2 heads of 64, MLP 4864)
#: with a SigLIP-sized vision tower at 384 px / 14 px patches -> 27x27 -> 14x14 = 196 tokens per
#: frame, random weights. Used on CUDA only.
GPU_SHAPE = dict(layers=24, hidden_size=896, heads=14, kv_heads=2, intermediate_size=4864, image_size=384, patch_size=14)

QUESTION = "What did the person pick up after opening the door?"


def build_llm(shape: dict, *, device: str = "cpu", dtype: str = "float32", directory: Path | None = None):
    """Save a random-weight LLaVA-OneVision of ``shape`` and load it as users load checkpoints."""
    from memstream.streaming.videomem.adapters import load_video_llm
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    directory = directory or Path(tempfile.mkdtemp(prefix="memstream-bench-"))
    path = build_tiny_llava_onevision(directory, **shape)
    return load_video_llm(str(path), device=device, dtype=dtype)


def frames(n: int, size: int, *, seed: int = 0, fps: float = 1.0):
    """``n`` random frames ``size`` px square, ``fps`` apart, as streaming Frames."""
    from memstream.streaming.types import Frame

    rng = np.random.default_rng(seed)
    return [Frame(index=i, timestamp_s=i / fps, rgb=rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for i in range(n)]


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def reencode_first_token_s(llm, stream) -> float:
    """Time to the first answer token when the whole stream is re-encoded for the question (what a
    Video-LLM without a streaming memory does): vision tower on every frame, then one prefill of
    ``[sink, every frame, question]``."""
    sync(llm.device)
    start = time.perf_counter()
    with torch.inference_mode():
        video = llm.embed_frames([f.rgb for f in stream]).reshape(-1, llm.spec.hidden_size)
        sink = llm.embed_text(llm.tokenize(llm.prompt.sink))
        prompt = llm.embed_text(llm.tokenize(llm.prompt.answer.format(question=QUESTION)))
        hidden = llm.decoder(inputs_embeds=torch.cat([sink, video, prompt])[None]).last_hidden_state
        int(llm.logits(hidden[0, -1]).argmax())
    sync(llm.device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return float(np.median(values))
