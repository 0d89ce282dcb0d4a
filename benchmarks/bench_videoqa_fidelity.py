"""Retrieval fidelity without pretrained weights: attention-mass recall, first-token KL, needles.

For each model (the 2-layer test model and ``_videoqa.CPU_SHAPE``) one stream of ``--frames`` frames is
stored with ReKV (window 8 frames); then, for each question, every retrieval policy picks ``--topk``
frames per layer and is scored against the exact full-context answer
(``memstream.streaming.videomem.eval.fidelity``):

* recall: share of the question's exact attention to video that falls on the retrieved frames
  (1.0 = nothing lost), mean over layers;
* KL: KL(P_full || P_retrieved) of the first answer token, nats;
* needle streams: in a second stream, ``--needles`` blocks built to match each question's layer-0
  query are planted at random times (``eval.fidelity.needle_embeds``); layer 0's attention recall
  there, and the share of needles layer 0 retrieves.

Random weights at transformers' default scale (std 0.02) give nearly uniform attention, so every
policy's recall is close to k/N there; the third model draws its weights 10x wider, which peaks
attention as training does, and is where recall tells the policies apart. The needle streams show
whether retrieval finds what a question is built to look for. Policies: ``internal`` (ReKV), ``recent``, ``uniform``, ``random`` (mean of 5 seeds).

    python benchmarks/bench_videoqa_fidelity.py [--frames 64] [--topk 8] [--needles 3]
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from _common import print_table, save
from _videoqa import CPU_SHAPE, build_llm, frames

os.environ.setdefault("COLUMNS", "120")
QUESTIONS = ["What is the color of the ball?", "Where is the red cube now?", "What happened first?"]
TINY_SHAPE = dict(layers=2, hidden_size=32, heads=4, kv_heads=2, intermediate_size=64, image_size=32, patch_size=8)
#: CPU_SHAPE with weights drawn 10x wider than transformers' default (std 0.2 instead of 0.02): its
#: attention is peaked like a trained model's instead of nearly uniform.
PEAKED_SHAPE = dict(CPU_SHAPE, initializer_range=0.2)


def policies(topk: int):
    from memstream.streaming.videomem.rekv import InternalRetrieval, RandomRetrieval, RecentRetrieval, UniformRetrieval

    return {
        "internal": [InternalRetrieval(topk=topk)],
        "recent": [RecentRetrieval(topk=topk)],
        "uniform": [UniformRetrieval(topk=topk)],
        "random": [RandomRetrieval(topk=topk, seed=s) for s in range(5)],
    }


def natural(llm, stream, topk: int) -> dict:
    from memstream.streaming.videomem.eval.fidelity import attention_mass, evaluate_policy
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory

    memory = ReKVMemory(llm, ReKVConfig(window_frames=8, topk=topk, device_cache_blocks=0))
    for frame in stream:
        memory.update(frame)
    scores: dict[str, dict[str, list]] = {}
    for question in QUESTIONS:
        mass = attention_mass(memory, question)
        for name, members in policies(topk).items():
            for policy in members:
                report = evaluate_policy(memory, question, policy, mass)
                scores.setdefault(name, {"recall": [], "kl": []})
                scores[name]["recall"].append(report.recall)
                scores[name]["kl"].append(report.kl)
    return {name: {k: float(np.mean(v)) for k, v in s.items()} for name, s in scores.items()}


def needles(llm, stream, topk: int, n_needles: int, seed: int = 0) -> dict:
    from memstream.streaming.videomem.eval.fidelity import attention_mass, attention_recall, needle_embeds
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory

    rng = np.random.default_rng(seed)
    hits: dict[str, list[float]] = {}
    recall0: dict[str, list[float]] = {}
    for question in QUESTIONS:
        times = sorted(rng.choice(np.arange(len(stream) - 8), n_needles, replace=False).tolist())
        memory = ReKVMemory(llm, ReKVConfig(window_frames=8, topk=topk, device_cache_blocks=0))
        tokens = None
        for frame in stream:
            if frame.index in times and tokens is not None:
                memory.update_embeddings(needle_embeds(llm, question, tokens), [frame])
            else:
                memory.update(frame)
                tokens = memory.tokens_per_frame
        planted = set(times) - {stream[0].index}
        mass = attention_mass(memory, question)
        for name, members in policies(topk).items():
            for policy in members:
                retrieval = memory.answer_context(question, policy).retrieval
                found = set(retrieval.frame_indices[0].tolist())
                hits.setdefault(name, []).append(len(found & planted) / len(planted))
                recall0.setdefault(name, []).append(float(attention_recall(mass, retrieval, memory.store.live_ids())[0]))
    return {name: {"hit_rate": float(np.mean(hits[name])), "layer0_recall": float(np.mean(recall0[name]))} for name in hits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--topk", type=int, default=8)
    parser.add_argument("--needles", type=int, default=3)
    args = parser.parse_args()
    results = {}
    models = (("tiny (2 layers, hidden 32)", TINY_SHAPE), ("cpu (4 layers, hidden 256)", CPU_SHAPE),
              ("cpu, peaked (init std 0.2)", PEAKED_SHAPE))
    for model, shape in models:
        llm = build_llm(shape)
        stream = frames(args.frames, shape["image_size"], seed=3)
        results[model] = {"natural": natural(llm, stream, args.topk), "needle_streams": needles(llm, stream, args.topk, args.needles)}
        print(model, results[model], flush=True)
    payload = {"frames": args.frames, "topk": args.topk, "needles": args.needles, "questions": QUESTIONS,
               "chance_recall": args.topk / args.frames, "results": results}
    path = save("videoqa_fidelity", payload)
    rows = []
    for model, result in results.items():
        for name in ("internal", "recent", "uniform", "random"):
            needle = result["needle_streams"][name]
            rows.append([model, name, result["natural"][name]["recall"], f"{result['natural'][name]['kl']:.2e}", needle["layer0_recall"], needle["hit_rate"]])
    print_table(f"retrieval fidelity, {args.frames} frames, top {args.topk} (chance recall {args.topk / args.frames:.3f})",
                ["model", "policy", "attention recall", "first-token KL", "needle stream: layer-0 recall", "needle hit rate (layer 0)"], rows)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
