"""Fidelity measures that hold without pretrained weights: attention-mass recall, first-token KL,
and a needle planted at a known time that retrieval must find."""

from __future__ import annotations

import torch

from memstream.streaming.videomem.eval.fidelity import attention_mass, attention_recall, evaluate_policy, needle_embeds
from memstream.streaming.videomem.rekv import AllRetrieval, InternalRetrieval, RandomRetrieval, ReKVConfig, ReKVMemory
from tests.streaming.videomem.util import make_frames

QUESTION = "Where is the red cube now?"


def _stream_with_needle(llm, n: int, at: int, config: ReKVConfig) -> ReKVMemory:
    memory = ReKVMemory(llm, config)
    for frame in make_frames(n, seed=11):
        if frame.index == at:
            memory.update_embeddings(needle_embeds(llm, QUESTION, 4), [frame])
        else:
            memory.update(frame)
    return memory


def test_a_planted_needle_is_retrieved_where_it_happened(tiny_llava):
    config = ReKVConfig(window_frames=4, topk=3, device_cache_blocks=0)
    memory = _stream_with_needle(tiny_llava, 24, at=7, config=config)
    retrieval = memory.retrieve(QUESTION)
    assert 7 in retrieval.frame_indices[0].tolist()  # layer 0, whose queries the needle was built for
    mass = attention_mass(memory, QUESTION)
    assert int(mass[0].argmax()) == 7  # exact attention agrees: the needle is what layer 0 looks at
    answer_frames = retrieval.frame_indices[0].tolist()
    assert answer_frames == sorted(answer_frames)  # re-inserted in time order


def test_attention_recall_of_retrieving_everything_is_one(tiny_llava):
    memory = ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3, device_cache_blocks=0))
    for frame in make_frames(10, seed=12):
        memory.update(frame)
    mass = attention_mass(memory, QUESTION)
    assert mass.shape == (tiny_llava.spec.n_layers, 10)
    torch.testing.assert_close(mass.sum(1), torch.ones(tiny_llava.spec.n_layers, dtype=torch.float64))
    everything = memory.answer_context(QUESTION, AllRetrieval()).retrieval
    torch.testing.assert_close(attention_recall(mass, everything, memory.store.live_ids()), torch.ones(2, dtype=torch.float64))
    report = evaluate_policy(memory, QUESTION, AllRetrieval(), mass)
    assert report.kl < 1e-9 and report.top1_agrees


def test_internal_retrieval_recalls_more_attention_than_random_on_the_needle_stream(tiny_llava):
    config = ReKVConfig(window_frames=4, topk=3, device_cache_blocks=0)
    memory = _stream_with_needle(tiny_llava, 24, at=15, config=config)
    mass = attention_mass(memory, QUESTION)
    internal = evaluate_policy(memory, QUESTION, InternalRetrieval(topk=3), mass)
    randoms = [evaluate_policy(memory, QUESTION, RandomRetrieval(topk=3, seed=s), mass) for s in range(5)]
    assert internal.recall_per_layer[0] > max(r.recall_per_layer[0] for r in randoms)
    assert internal.kl >= 0 and all(r.kl >= 0 for r in randoms)
