"""ReKV on a tiny random-weight LLaVA-OneVision: exactness against full attention, the sliding
window, per-layer retrieval against brute force, answers, errors, resume and threads."""

from __future__ import annotations

import threading

import pytest
import torch
from transformers import DynamicCache

from memstream.streaming.videomem.adapters import cache_kwargs
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.rekv import AllRetrieval, QuestionError, ReKVConfig, ReKVMemory
from memstream.streaming.videomem.rekv.retrieval import InternalRetrieval
from tests.streaming.videomem.util import make_frames

QUESTION = "What is the color of the ball?"


def _memory(llm, frames, **config):
    memory = ReKVMemory(llm, ReKVConfig(**{"window_frames": 64, "topk": 4, "device_cache_blocks": 0, **config}))
    for frame in frames:
        memory.update(frame)
    return memory


def _full_context_logits(llm, frames):
    """First-answer-token logits of the plain model on [sink, every frame, answer prompt]."""
    sink = llm.embed_text(llm.tokenize(llm.prompt.sink))
    video = llm.embed_frames([f.rgb for f in frames]).reshape(-1, llm.spec.hidden_size)
    prompt = llm.embed_text(llm.tokenize(llm.prompt.answer.format(question=QUESTION)))
    embeds = torch.cat([sink, video, prompt])[None]
    with torch.inference_mode():
        out = llm.decoder(inputs_embeds=embeds, use_cache=True, **cache_kwargs(llm.decoder, DynamicCache(config=llm.decoder.config)))
    return llm.logits(out.last_hidden_state[0, -1]), embeds


def _first_logits(memory, policy=None):
    llm = memory.llm
    context = memory.answer_context(QUESTION, policy)
    ids = llm.tokenize(llm.prompt.answer.format(question=QUESTION))
    hidden = llm.run(llm.embed_text(ids), llm.text_positions(context.length, len(ids))[0], context.cache).hidden[-1]
    return llm.logits(hidden)


def test_with_a_window_longer_than_the_stream_rekv_is_exactly_full_attention(tiny_llava):
    frames = make_frames(6)
    memory = _memory(tiny_llava, frames, retrieval="all")
    expected, _ = _full_context_logits(tiny_llava, frames)
    torch.testing.assert_close(_first_logits(memory), expected, rtol=0, atol=1e-4)


def test_greedy_answers_match_transformers_generate_on_the_full_context(tiny_llava):
    frames = make_frames(5, seed=3)
    memory = _memory(tiny_llava, frames, retrieval="all")
    _, embeds = _full_context_logits(tiny_llava, frames)
    expected = tiny_llava.model.generate(inputs_embeds=embeds, max_new_tokens=6, do_sample=False, eos_token_id=None, pad_token_id=0)
    answer = memory.ask(QUESTION, SamplingConfig(max_new_tokens=6))
    eos = tiny_llava.eos_token_ids
    expected_ids = []
    for token in expected[0].tolist():
        if token in eos:
            break
        expected_ids.append(token)
    assert answer.token_ids.tolist() == expected_ids


def test_chunks_of_frames_encode_like_single_frames_when_the_window_covers_them(tiny_llava):
    frames = make_frames(6, seed=1)
    one = _memory(tiny_llava, frames, chunk_frames=1)
    three = _memory(tiny_llava, frames, chunk_frames=3)
    assert len(one.store) == len(three.store) == 6
    ids = one.store.live_ids()
    torch.testing.assert_close(one.store.get_blocks(ids), three.store.get_blocks(ids), rtol=0, atol=1e-5)


def test_the_sliding_window_holds_the_sinks_and_the_last_frames_only(tiny_llava):
    llm = tiny_llava
    frames = make_frames(10, seed=2)
    memory = _memory(llm, frames, window_frames=3)
    assert memory.memory_summary()["window_frames"] == 3
    # Re-encode frame 9 by hand from the stored KV of the sinks and frames 6, 7, 8.
    sink = memory._sink()
    past = torch.cat([sink, memory.store.get_blocks(memory.store.live_ids()[6:9]).permute(1, 2, 3, 0, 4, 5).flatten(3, 4)], dim=3)
    positions, cursor = llm.text_positions(0, past.shape[3])
    from memstream.streaming.videomem.adapters.context import context_cache

    rotated = llm.rotate(past[:, 0], positions)
    cache = context_cache([(rotated[i][None], past[i, 1][None]) for i in range(llm.spec.n_layers)])
    embeds = llm.embed_frames([frames[9].rgb])[0]
    out = llm.run(embeds, llm.frame_positions(cursor, 1, (2, 2))[0], cache, capture_kv=True)
    stored = memory.store.get_blocks([memory.store.live_ids()[9]])[0]
    torch.testing.assert_close(stored[:, 0], out.keys, rtol=0, atol=1e-6)
    torch.testing.assert_close(stored[:, 1], out.values, rtol=0, atol=1e-6)


class _Recording(InternalRetrieval):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.queries = {}

    def select(self, layer, query, block_keys):
        self.queries[layer] = query.clone()
        return super().select(layer, query, block_keys)


def test_internal_retrieval_is_each_layers_topk_of_mean_query_dot_mean_key(tiny_llava):
    frames = make_frames(12, seed=4)
    memory = _memory(tiny_llava, frames, window_frames=4)
    policy = _Recording(topk=3)
    retrieval = memory.answer_context(QUESTION, policy).retrieval
    blocks = memory.store.get_blocks(memory.store.live_ids())  # (N, L, 2, Hkv, T, D)
    mean_keys = blocks[:, :, 0].float().mean(dim=3).flatten(2)  # (N, L, Hkv*D)
    for layer in range(tiny_llava.spec.n_layers):
        scores = mean_keys[:, layer] @ policy.queries[layer]
        brute = sorted(scores.topk(3).indices.tolist())
        assert retrieval.block_ids[layer].tolist() == brute
        assert retrieval.frame_indices[layer].tolist() == sorted(retrieval.frame_indices[layer].tolist())


def test_answers_are_stamped_with_the_stream_time_they_cover(tiny_llava):
    frames = make_frames(7, fps=4.0)
    memory = _memory(tiny_llava, frames, window_frames=2)
    pieces = []
    answer = memory.ask(QUESTION, SamplingConfig(max_new_tokens=5), on_text=pieces.append)
    assert answer.covered_until_s == pytest.approx(6 / 4.0)
    assert answer.frames_seen == 7
    assert "".join(pieces) == answer.text
    assert answer.retrieval.block_ids.shape == (tiny_llava.spec.n_layers, 4)
    assert 0 < answer.time_to_first_token_s <= answer.total_s


def test_sampling_is_reproducible_with_a_seed(tiny_llava):
    memory = _memory(tiny_llava, make_frames(4))
    sampling = SamplingConfig(max_new_tokens=8, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, seed=7)
    first, second = memory.ask(QUESTION, sampling), memory.ask(QUESTION, sampling)
    assert first.token_ids.tolist() == second.token_ids.tolist()


@pytest.mark.parametrize(
    ("question", "message"),
    [("", "the question is empty"), ("   ", "the question is empty"), ("why " * 600, "over the limit")],
)
def test_bad_questions_are_refused_with_one_clear_error(tiny_llava, question, message):
    memory = _memory(tiny_llava, make_frames(2))
    with pytest.raises(QuestionError, match=message):
        memory.ask(question)
    assert len(memory.store) == 2  # nothing stored is lost


def test_a_question_before_any_frame_is_refused(tiny_llava):
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=2))
    with pytest.raises(QuestionError, match="no frame has been seen yet"):
        memory.ask(QUESTION)


def test_a_session_resumes_from_its_store_directory(tiny_llava, tmp_path):
    frames = make_frames(9, seed=5)
    config = dict(window_frames=3, store_dir=str(tmp_path / "store"))
    uninterrupted = _memory(tiny_llava, frames, window_frames=3)
    first = _memory(tiny_llava, frames[:6], **config)
    first.close()
    resumed = _memory(tiny_llava, [], **config)
    assert resumed.frames_seen == 6
    for frame in frames[6:]:
        resumed.update(frame)
    assert resumed.frames() == list(range(9))  # the stream's own clock continues
    ids = uninterrupted.store.live_ids()
    torch.testing.assert_close(resumed.store.get_blocks(resumed.store.live_ids()), uninterrupted.store.get_blocks(ids), rtol=0, atol=1e-6)
    torch.testing.assert_close(_first_logits(resumed), _first_logits(uninterrupted), rtol=0, atol=1e-5)


def test_a_resumed_source_whose_clock_restarts_is_appended_after_the_stored_frames(tiny_llava, tmp_path):
    config = dict(window_frames=3, store_dir=str(tmp_path / "store"))
    _memory(tiny_llava, make_frames(4), **config).close()
    resumed = _memory(tiny_llava, make_frames(2, seed=1), **config)
    assert resumed.frames() == [0, 1, 2, 3, 4, 5]
    assert resumed.covered_until_s > 1.5  # frame 3 was at 1.5 s


def test_a_store_written_by_another_model_is_refused(tiny_llava, tmp_path):
    from memstream.streaming.videomem.adapters import load_video_llm
    from memstream.streaming.videomem.store import StoreError
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    store = str(tmp_path / "store")
    _memory(tiny_llava, make_frames(3), store_dir=store).close()
    other = load_video_llm(str(build_tiny_llava_onevision(tmp_path / "other", seed=9)), device="cpu")
    with pytest.raises(StoreError, match="was written by model"):
        ReKVMemory(other, ReKVConfig(window_frames=4, store_dir=store))


def test_int8_blocks_keep_the_answer_distribution_close(tiny_llava):
    frames = make_frames(6, seed=6)
    exact = _memory(tiny_llava, frames, retrieval="all")
    int8 = _memory(tiny_llava, frames, retrieval="all", codec="int8-channel")
    p = torch.softmax(_first_logits(exact).double(), -1)
    q = torch.softmax(_first_logits(int8).double(), -1)
    assert float((p * (p.log() - q.log())).sum()) < 1e-3


def test_questions_can_be_answered_while_frames_keep_arriving(tiny_llava):
    frames = make_frames(24, seed=7)
    memory = _memory(tiny_llava, frames[:4], window_frames=4, topk=3)
    errors, answers = [], []

    def ingest():
        try:
            for frame in frames[4:]:
                memory.update(frame)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=ingest)
    thread.start()
    while thread.is_alive() or not answers:
        answers.append(memory.ask(QUESTION, SamplingConfig(max_new_tokens=3)))
    thread.join()
    assert not errors
    stamps = [a.covered_until_s for a in answers]
    assert stamps == sorted(stamps) and stamps[0] >= 3 / 2.0
    assert memory.frames_seen == 24
    for answer in answers:  # every retrieved frame existed when the question was taken
        assert max(answer.retrieval.frames()) < answer.frames_seen


def test_all_retrieval_equals_retrieving_every_frame_internally(tiny_llava):
    memory = _memory(tiny_llava, make_frames(3))
    internal = memory.answer_context(QUESTION, InternalRetrieval(topk=8)).retrieval
    assert internal.block_ids.tolist() == memory.answer_context(QUESTION, AllRetrieval()).retrieval.block_ids.tolist()
