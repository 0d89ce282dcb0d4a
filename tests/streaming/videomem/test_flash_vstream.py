"""Flash-VStream on a tiny random-weight LLaVA-OneVision: a fixed token budget, bounded host memory,
answers built from the DAM frames and CSM centroids, state round trip."""

from __future__ import annotations

import torch

from memstream.streaming.videomem.flash import FlashMemoryConfig
from memstream.streaming.videomem.flash.video_memory import FlashVStreamConfig, FlashVStreamMemory
from memstream.streaming.videomem.generation import SamplingConfig
from tests.streaming.videomem.util import make_frames

QUESTION = "What happened first?"


def _memory(llm, n, **memory):
    config = FlashVStreamConfig(memory=FlashMemoryConfig(**{"csm_clusters": 8, "dam_frames": 3, **memory}))
    flash = FlashVStreamMemory(llm, config)
    for frame in make_frames(n, seed=n):
        flash.update(frame)
    return flash


def test_the_token_budget_does_not_grow_with_the_stream(tiny_llava):
    short, long = _memory(tiny_llava, 12), _memory(tiny_llava, 120)
    budget = 3 * 4 + 8 * 1  # 3 DAM frames of 4 tokens + 8 centroids of 4 / (2x2) tokens
    assert short.memory_summary()["visual_tokens_per_answer"] == budget
    assert long.memory_summary()["visual_tokens_per_answer"] == budget
    # host memory is bounded too: full-resolution tokens only for frames the DAM can still pick
    assert long.memory_summary()["full_res_frames_kept"] <= 8 * 4 + 1
    assert long.memory_summary()["full_res_bytes"] <= short.memory_summary()["full_res_bytes"] * 4


def test_an_answer_reads_sinks_dam_frames_then_centroids(tiny_llava):
    llm = tiny_llava
    memory = _memory(llm, 30)
    answer = memory.ask(QUESTION, SamplingConfig(max_new_tokens=4))
    readout = memory.flash.readout()
    # the same context built by hand from the readout gives the same greedy tokens
    dam = [memory._full[int(i)] for i in readout.dam_frame_ids]
    sink = llm.embed_text(llm.tokenize(llm.prompt.sink))
    prompt = llm.embed_text(llm.tokenize(llm.prompt.answer.format(question=QUESTION)))
    embeds = torch.cat([sink, *dam, *readout.csm_features, prompt])[None]
    expected = llm.model.generate(inputs_embeds=embeds, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    expected_ids = []
    for token in expected[0].tolist():
        if token in llm.eos_token_ids:
            break
        expected_ids.append(token)
    assert answer.token_ids.tolist() == expected_ids
    assert answer.retrieval.method == "flash_vstream"
    assert answer.retrieval.frames() == sorted(set(answer.retrieval.frames()))
    assert answer.covered_until_s == 29 / 2.0 and answer.frames_seen == 30


def test_state_dict_round_trip_gives_the_same_answer(tiny_llava):
    memory = _memory(tiny_llava, 20)
    restored = FlashVStreamMemory(tiny_llava, memory.config)
    restored.load_state_dict(memory.state_dict())
    sampling = SamplingConfig(max_new_tokens=3)
    assert restored.ask(QUESTION, sampling).token_ids.tolist() == memory.ask(QUESTION, sampling).token_ids.tolist()


def test_a_question_before_any_frame_is_refused(tiny_llava):
    import pytest

    from memstream.streaming.videomem.questions import QuestionError

    with pytest.raises(QuestionError, match="no frame"):
        FlashVStreamMemory(tiny_llava).ask(QUESTION)


def test_on_qwen_dam_and_csm_grids_get_am_rope_positions(tiny_qwen):
    llm = tiny_qwen
    config = FlashVStreamConfig(memory=FlashMemoryConfig(csm_clusters=3, dam_frames=2))
    memory = FlashVStreamMemory(llm, config)
    for frame in make_frames(12, size=(56, 56)):  # 6 blocks of 2 frames, 2x2 tokens each
        memory.update(frame)
    readout = memory.flash.readout()
    embeds, positions, cursor, *_ = memory._context_embeds()
    n_sink = len(llm.tokenize(llm.prompt.sink))
    assert positions.shape == (3, embeds.shape[0]) and cursor == int(positions.max()) + 1
    dam = positions[:, n_sink : n_sink + 2 * 4]
    csm = positions[:, n_sink + 8 :]
    oldest = int(torch.cat([readout.dam_frame_ids, readout.csm_frame_positions.round().long()]).min())
    step = float(llm.temporal_step)
    # a DAM grid's temporal id is its frame block's, spaced like a video's grid steps
    expected_t = [n_sink + int((int(i) - oldest) * step) for i in readout.dam_frame_ids]
    assert dam[0, ::4].tolist() == expected_t
    assert dam[1, :4].tolist() == [n_sink, n_sink, n_sink + 1, n_sink + 1]  # 2x2 rows
    assert csm.shape[1] == 3 * 1 and int(csm.min()) == int(dam.max()) + 1  # 1x1 pooled grids, after the DAM
    assert memory.ask(QUESTION, SamplingConfig(max_new_tokens=2)).retrieval.method == "flash_vstream"
