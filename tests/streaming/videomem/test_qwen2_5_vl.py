"""The Qwen2.5-VL adapter on a tiny random-weight model: M-RoPE keys bit for bit, positions equal to
transformers' ``get_rope_index``, ReKV exactly full attention, retrieval of whole blocks, loading."""

from __future__ import annotations

import contextlib
import json
import shutil

import pytest
import torch
from transformers import DynamicCache

from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.adapters import cache_kwargs, PromptFormat, VideoModelError, load_video_llm
from memstream.streaming.videomem.adapters.context import context_cache
from memstream.streaming.videomem.adapters.qwen2_5_vl import QWEN2_5_VL_PROMPT, Qwen2_5_VLAdapter
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
from tests.streaming.videomem.util import make_frames

QUESTION = "What is the color of the ball?"
SIZE = (56, 56)  # 4x4 patches of 14 px -> 2x2 merged tokens per block


@contextlib.contextmanager
def _fps(llm, frames_per_second):
    """Temporarily sample the session's adapter at another frame rate."""
    kept, llm.frames_per_second = llm.frames_per_second, frames_per_second
    try:
        yield
    finally:
        llm.frames_per_second = kept


def _processor_inputs(llm, frames):
    """What a user feeds the plain model: [sink, the video's pad tokens, answer prompt] and pixels."""
    text = llm.prompt.sink + llm.processor.video_token + llm.prompt.answer.format(question=QUESTION)
    metadata = [{"total_num_frames": len(frames), "fps": llm.frames_per_second}]
    videos = [[f.rgb for f in frames]]
    return llm.processor(text=[text], videos=videos, video_metadata=metadata, return_tensors="pt")


def _our_positions(llm, n_blocks, tokens):
    """Positions the adapter gives [sink, ``n_blocks`` blocks, answer prompt], int64 ``(3, n)``."""
    sink, cursor = llm.text_positions(0, len(llm.tokenize(llm.prompt.sink)))
    video, cursor = llm.frame_positions(cursor, n_blocks, llm.frame_grid(tokens))
    answer, _ = llm.text_positions(cursor, len(llm.tokenize(llm.prompt.answer.format(question=QUESTION))))
    return torch.cat([sink, video, answer], dim=1)


def _memory(llm, frames, **config):
    config = {"window_frames": 64, "topk": 8, "device_cache_blocks": 0, **config}
    memory = ReKVMemory(llm, ReKVConfig(**config))
    for frame in frames:
        memory.update(frame)
    return memory


def _first_logits(memory):
    llm = memory.llm
    context = memory.answer_context(QUESTION)
    ids = llm.tokenize(llm.prompt.answer.format(question=QUESTION))
    positions, _ = llm.text_positions(context.length, len(ids))
    hidden = llm.run(llm.embed_text(ids), positions, context.cache).hidden[-1]
    return llm.logits(hidden)


def test_rotating_captured_keys_at_mrope_positions_gives_the_models_cached_keys_bit_for_bit(tiny_qwen):
    llm = tiny_qwen
    video = llm.embed_frames([f.rgb for f in make_frames(6, size=SIZE)]).reshape(-1, llm.spec.hidden_size)
    text = torch.randn(5, llm.spec.hidden_size)
    embeds = torch.cat([text, video, text])
    before, cursor = llm.text_positions(1000, 5)  # far from 0: RoPE angles are large
    frames, cursor = llm.frame_positions(cursor, 3, (2, 2))
    after, _ = llm.text_positions(cursor, 5)
    positions = torch.cat([before, frames, after], dim=1)
    assert not torch.equal(positions[0], positions[1])  # the temporal and spatial rows differ
    cache = DynamicCache(config=llm.decoder.config)
    with torch.inference_mode():
        llm.decoder(
            inputs_embeds=embeds[None], position_ids=positions[:, None], use_cache=True, **cache_kwargs(llm.decoder, cache)
        )
    out = llm.run(embeds, positions, context_cache([None] * llm.spec.n_layers), capture_kv=True)
    for layer in range(llm.spec.n_layers):
        assert torch.equal(llm.rotate(out.keys[layer], positions), cache.layers[layer].keys[0])
        assert torch.equal(out.values[layer], cache.layers[layer].values[0])
    stacked = llm.rotate(out.keys, positions)  # all layers at once, as the memory rotates its past
    assert torch.equal(stacked[1], cache.layers[1].keys[0])


def _hf_positions(llm, inputs):
    positions, _ = llm.model.model.get_rope_index(
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        video_grid_thw=inputs["video_grid_thw"],
        second_per_grid_ts=inputs["second_per_grid_ts"],
    )
    return positions[:, 0]


def _qwen_positions(llm, inputs):
    """Qwen's own rule (transformers 4.x, PR #35569): transformers 5.23's ids for the sink and the
    video, and the text after the video from the largest video id + 1."""
    positions = _hf_positions(llm, inputs).clone()
    video = (inputs["input_ids"][0] == llm.model.config.video_token_id).nonzero()[:, 0]
    after = int(video[-1]) + 1
    start = int(positions[:, video].max()) + 1
    positions[:, after:] = torch.arange(start, start + positions.shape[1] - after)
    return positions


@pytest.mark.parametrize("size", [SIZE, (56, 112)])
# temporal steps 2, 2.67 (fractional) and 0.17 (24 fps: what the processor assumes without metadata)
@pytest.mark.parametrize("frames_per_second", [2.0, 1.5, 24.0])
def test_sink_and_video_positions_equal_transformers_and_the_text_after_follows_qwens_rule(tiny_qwen, size, frames_per_second):
    llm = tiny_qwen
    frames = make_frames(6, size=size)
    with _fps(llm, frames_per_second):
        inputs = _processor_inputs(llm, frames)
        embeds = llm.embed_frames([f.rgb for f in frames])
        ours = _our_positions(llm, embeds.shape[0], embeds.shape[1])
    assert embeds.shape[:2] == (3, inputs["video_grid_thw"][0, 1:].prod() // 4)
    video_end = int((inputs["input_ids"][0] == llm.model.config.video_token_id).nonzero()[-1]) + 1
    hf = _hf_positions(llm, inputs)
    assert torch.equal(ours[:, :video_end], hf[:, :video_end])  # sink and video: transformers' ids
    assert torch.equal(ours, _qwen_positions(llm, inputs))  # text after: largest video id + 1
    sink, answer = llm.tokenize(llm.prompt.sink), llm.tokenize(llm.prompt.answer.format(question=QUESTION))
    pads = torch.full((embeds.shape[0] * embeds.shape[1],), llm.model.config.video_token_id)
    assert torch.equal(inputs["input_ids"][0], torch.cat([sink, pads, answer]))  # same tokens as the memory's


def test_transformers_5_23_starts_the_text_after_a_video_at_its_spatial_extent(tiny_qwen):
    """Pins the transformers behaviour the adapter departs from (see the adapter's docstring): if this
    fails after an upgrade, transformers changed its rule and the adapter's note must be revisited."""
    llm = tiny_qwen
    inputs = _processor_inputs(llm, make_frames(6, size=SIZE))
    hf = _hf_positions(llm, inputs)
    video = (inputs["input_ids"][0] == llm.model.config.video_token_id).nonzero()[:, 0]
    start = int(hf[0, video[0]])
    assert int(hf[0, int(video[-1]) + 1]) == start + 2  # max(2, 2) merged rows/columns, not max id + 1
    assert int(hf[:, video].max()) + 1 > start + 2


@pytest.mark.parametrize("chunk_frames", [1, 4])
def test_with_a_window_longer_than_the_stream_rekv_is_the_plain_models_attention(tiny_qwen, chunk_frames):
    llm = tiny_qwen
    frames = make_frames(6, size=SIZE)
    memory = _memory(llm, frames, retrieval="all", chunk_frames=chunk_frames)
    inputs = _processor_inputs(llm, frames)
    with torch.inference_mode():
        expected = llm.model(**inputs, position_ids=_qwen_positions(llm, inputs)[:, None]).logits[0, -1].float()
    torch.testing.assert_close(_first_logits(memory), expected, rtol=0, atol=1e-4)
    assert len(memory.store) == 3  # 6 frames, 2 per block (chunks of 4 leave the last block to the question)


def test_greedy_answers_match_the_plain_models_greedy_decoding(tiny_qwen):
    llm = tiny_qwen
    frames = make_frames(6, seed=3, size=SIZE)
    memory = _memory(llm, frames, retrieval="all")
    inputs = _processor_inputs(llm, frames)
    positions = _qwen_positions(llm, inputs)
    expected, cache = [], DynamicCache(config=llm.decoder.config)
    with torch.inference_mode():
        out = llm.model(**inputs, position_ids=positions[:, None], use_cache=True, **cache_kwargs(llm.model, cache))
        next_position = int(positions.max()) + 1
        for _ in range(6):
            token = int(out.logits[0, -1].argmax())
            if token in llm.eos_token_ids:
                break
            expected.append(token)
            step = torch.full((3, 1, 1), next_position)
            out = llm.model(input_ids=torch.tensor([[token]]), position_ids=step, use_cache=True, **cache_kwargs(llm.model, cache))
            next_position += 1
    assert memory.ask(QUESTION, SamplingConfig(max_new_tokens=6)).token_ids.tolist() == expected


def test_the_sliding_window_and_the_new_blocks_are_one_video_segment(tiny_qwen):
    llm = tiny_qwen
    frames = make_frames(10, seed=2, size=SIZE)
    memory = _memory(llm, frames, window_frames=2)
    ids = memory.store.live_ids()
    assert len(ids) == 5 and memory.memory_summary()["window_frames"] == 2
    # Re-encode block 4 by hand: the sinks, then blocks 2 and 3 and block 4 as one segment.
    sink = memory._sink()
    window = memory.store.get_blocks(ids[2:4]).permute(1, 2, 3, 0, 4, 5).flatten(3, 4)  # (L, 2, Hkv, 2T, D)
    sink_pos, cursor = llm.text_positions(0, sink.shape[3])
    segment, _ = llm.frame_positions(cursor, 3, (2, 2))
    past_positions = torch.cat([sink_pos, segment[:, :8]], dim=1)
    keys = llm.rotate(torch.cat([sink[:, 0], window[:, 0]], dim=2), past_positions)
    values = torch.cat([sink[:, 1], window[:, 1]], dim=2)
    cache = context_cache([(keys[i][None], values[i][None]) for i in range(llm.spec.n_layers)])
    embeds = llm.embed_frames([f.rgb for f in frames[8:10]])[0]
    out = llm.run(embeds, segment[:, 8:], cache, capture_kv=True)
    stored = memory.store.get_blocks([ids[4]])[0]
    torch.testing.assert_close(stored[:, 0], out.keys, rtol=0, atol=1e-6)
    torch.testing.assert_close(stored[:, 1], out.values, rtol=0, atol=1e-6)


def test_internal_retrieval_past_the_window_answers_from_whole_blocks_in_time_order(tiny_qwen):
    llm = tiny_qwen
    frames = make_frames(16, seed=4, size=SIZE, fps=2.0)
    memory = _memory(llm, frames, window_frames=2, topk=3, retrieval="internal")
    answer = memory.ask(QUESTION, SamplingConfig(max_new_tokens=4))
    assert len(memory.store) == 8 and answer.frames_seen == 16
    assert answer.covered_until_s == pytest.approx(15 / 2.0)
    assert 0 < len(answer.token_ids) <= 4
    retrieval = answer.retrieval
    assert retrieval.block_ids.shape == (llm.spec.n_layers, 3)
    for layer in range(llm.spec.n_layers):
        indices = retrieval.frame_indices[layer].tolist()
        assert indices == sorted(set(indices))  # distinct blocks, oldest first
        assert all(i % 2 == 0 and 0 <= i < 16 for i in indices)  # each names its block's first frame
        assert retrieval.block_ids[layer].tolist() == sorted(retrieval.block_ids[layer].tolist())


def test_frames_of_two_sizes_in_one_call_are_refused(tiny_qwen):
    frames = [f.rgb for f in make_frames(1, size=SIZE) + make_frames(1, size=(56, 112))]
    with pytest.raises(MemstreamError, match="different sizes"):
        tiny_qwen.embed_frames(frames)


def test_load_video_llm_picks_the_qwen_adapter_and_its_chat_prompt(tiny_qwen_dir, tiny_llava_dir):
    from memstream.streaming.videomem.adapters.llava_onevision import REKV_PROMPT

    llm = load_video_llm(str(tiny_qwen_dir), device="cpu")
    assert isinstance(llm, Qwen2_5_VLAdapter) and llm.prompt == QWEN2_5_VL_PROMPT
    assert llm.spec.position_rows == 3
    assert llm.frames_per_block == llm.model.config.vision_config.temporal_patch_size == 2
    assert load_video_llm(str(tiny_llava_dir), device="cpu").prompt == REKV_PROMPT
    custom = PromptFormat(sink="<|im_start|>user\n<|vision_start|>", answer=QWEN2_5_VL_PROMPT.answer)
    assert load_video_llm(str(tiny_qwen_dir), device="cpu", prompt=custom).prompt == custom
    # Before any frame the block grid is unknown.
    positions, cursor = llm.frame_positions(7, 0, (2, 2))
    assert positions.shape == (3, 0) and cursor == 7
    with pytest.raises(RuntimeError, match="embed a frame first"):
        llm.frame_grid(4)
    llm.embed_frames([f.rgb for f in make_frames(2, size=SIZE)])
    with pytest.raises(RuntimeError, match="one size"):
        llm.frame_grid(6)


def test_a_qwen_checkpoint_that_does_not_match_its_config_is_refused(tiny_qwen_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_qwen_dir, broken)
    config = json.loads((broken / "config.json").read_text())
    config["text_config"]["hidden_size"] = 48
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(VideoModelError, match="do not match|cannot load the weights"):
        load_video_llm(str(broken))


def test_an_unsupported_video_llm_names_the_supported_ones(tmp_path):
    from transformers import Qwen2VLConfig

    text = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    Qwen2VLConfig(text_config=text).save_pretrained(tmp_path)
    with pytest.raises(VideoModelError, match="qwen2_vl, which the video memory does not support") as err:
        load_video_llm(str(tmp_path))
    assert "llava_onevision, qwen2_5_vl" in str(err.value)


def test_a_resumed_qwen_session_answers_before_any_new_frame(tiny_qwen, tmp_path):
    frames = make_frames(8, seed=4, size=SIZE)
    store = str(tmp_path / "store")
    first = _memory(tiny_qwen, frames, window_frames=2, topk=2, store_dir=store)
    expected = _first_logits(first)
    first.close()
    resumed = ReKVMemory(tiny_qwen, ReKVConfig(window_frames=2, topk=2, device_cache_blocks=0, store_dir=store))
    assert resumed.frame_grid == (2, 2) and resumed.frames_seen == 8
    torch.testing.assert_close(_first_logits(resumed), expected, rtol=0, atol=1e-5)
