"""Tiny random-weight Video-LLMs of the real architectures, saved once per session and loaded through
the same loader users call."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny-llava-ov"))


@pytest.fixture(scope="session")
def tiny_llava(tiny_llava_dir):
    from memstream.streaming.videomem.adapters import load_video_llm

    return load_video_llm(str(tiny_llava_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    from memstream.streaming.videomem.tiny import build_tiny_qwen2_5_vl

    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny-qwen2.5-vl"))


@pytest.fixture(scope="session")
def tiny_qwen(tiny_qwen_dir):
    from memstream.streaming.videomem.adapters import load_video_llm

    return load_video_llm(str(tiny_qwen_dir), device="cpu", dtype="float32")
