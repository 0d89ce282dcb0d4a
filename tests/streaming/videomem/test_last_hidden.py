"""The video memory's newest frame in the decoder's space (``last_hidden``), which the
``video_memory`` stage hands on as the bank's cognitive token: exact against the plain model."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from memstream.streaming.pipeline import RunContext, Upstream
from memstream.streaming.types import SourceInfo
from memstream.streaming.videomem.adapters import cache_kwargs
from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig, FlashVStreamMemory
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from memstream.streaming.videomem.stage import VideoMemoryStage
from tests.streaming.videomem.util import make_frames


def test_rekv_last_hidden_is_the_decoders_last_hidden_state_of_the_newest_frame(tiny_llava):
    llm, frames = tiny_llava, make_frames(4, seed=5)
    memory = ReKVMemory(llm, ReKVConfig(window_frames=64, topk=4, device_cache_blocks=0))
    assert memory.last_hidden is None
    for frame in frames:
        memory.update(frame)
    # with a window longer than the stream ReKV is full attention: the plain decoder on [sink, frames]
    sink = llm.embed_text(llm.tokenize(llm.prompt.sink))
    video = llm.embed_frames([f.rgb for f in frames])
    embeds = torch.cat([sink, video.reshape(-1, llm.spec.hidden_size)])[None]
    with torch.inference_mode():
        cache = DynamicCache(config=llm.decoder.config)
        out = llm.decoder(inputs_embeds=embeds, use_cache=True, **cache_kwargs(llm.decoder, cache))
    expected = out.last_hidden_state[0, -video.shape[1] :].float().mean(dim=0)
    assert memory.last_hidden.shape == (llm.spec.hidden_size,)
    torch.testing.assert_close(memory.last_hidden, expected, rtol=0, atol=1e-4)


def test_flash_vstream_last_hidden_is_the_newest_frames_mean_visual_token(tiny_llava):
    memory = FlashVStreamMemory(tiny_llava, FlashVStreamConfig())
    frames = make_frames(3, seed=6)
    for frame in frames:
        memory.update(frame)
    expected = tiny_llava.embed_frames([frames[-1].rgb])[0].float().mean(dim=0)
    torch.testing.assert_close(memory.last_hidden, expected, rtol=0, atol=1e-5)


def test_the_stage_hands_the_hidden_state_on_and_repeats_it_between_stored_frames(tiny_llava_dir):
    stage = VideoMemoryStage(
        "video_memory", {"model": str(tiny_llava_dir), "device": "cpu", "sample_fps": 1.0}
    )
    stage.open(RunContext(SourceInfo(uri="x"), None))
    steps = [stage.update(frame, Upstream()) for frame in make_frames(5, seed=7, fps=2.0)]  # 0, 0.5, ... 2 s
    stage.close()
    assert [s.stored for s in steps] == [True, False, True, False, True]
    assert [s.frame_index for s in steps] == [0, 1, 2, 3, 4] and all(s.answers == () for s in steps)
    assert steps[1].hidden is steps[0].hidden and steps[3].hidden is steps[2].hidden
    assert not torch.equal(steps[0].hidden, steps[2].hidden)
