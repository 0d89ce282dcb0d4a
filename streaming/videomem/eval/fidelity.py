"""Weight-independent fidelity of retrieval: how much of exact attention and of the exact answer
distribution survives when a question sees only the retrieved frames.

Both measures hold for any weights, so they are meaningful on random-weight models:

* :func:`attention_mass` / :func:`attention_recall`: under the *full* context (sinks, every stored
  frame at contiguous positions, then the question), the share of the question tokens' attention to
  video tokens that falls on each frame; the recall of a retrieval is the share that falls on the
  frames it retrieved, per layer. 1.0 means retrieval lost nothing the question attends to.
* :func:`evaluate_policy`'s ``kl``: KL(P_full || P_retrieved) of the first answer token, where
  P_full is the answer prompt prefilled on all frames and P_retrieved on the retrieved ones.
* :func:`needle_embeds`: a frame block planted at a known time that a question is known to attend
  to, without any trained weights (the needle test).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from memstream.streaming.videomem.rekv.memory import ReKVMemory
from memstream.streaming.videomem.rekv.retrieval import AllRetrieval, RetrievalPolicy
from memstream.streaming.videomem.types import Retrieval


@dataclass(frozen=True)
class FidelityReport:
    """Fidelity of one retrieval policy on one question.

    Attributes:
        policy: the retrieval policy's name.
        recall_per_layer: float64 ``(L,)`` attention-mass recall of each layer's retrieved frames.
        recall: mean over layers.
        kl: KL divergence (nats) of the first answer token, full context vs retrieved.
        top1_agrees: whether both contexts give the same most likely first token.
    """

    policy: str
    recall_per_layer: torch.Tensor
    recall: float
    kl: float
    top1_agrees: bool


def _question_states(memory: ReKVMemory, question: str):
    """Full-context cache and the question's un-rotated per-token queries and keys in every layer."""
    llm = memory.llm
    context = memory.answer_context(question, AllRetrieval())
    past_keys = [layer.keys[0].clone() for layer in context.cache.layers]  # (Hkv, P, D), rotated
    ids = llm.tokenize(llm.prompt.retrieval.format(question=question.strip()))
    queries: dict[int, torch.Tensor] = {}
    hooks = []
    for index, layer in enumerate(llm.decoder.layers):
        def hook(module, inputs, output, index=index):
            queries[index] = output[0].view(output.shape[1], llm.spec.n_heads, llm.spec.head_dim).transpose(0, 1)

        hooks.append(layer.self_attn.q_proj.register_forward_hook(hook))
    positions, _ = llm.text_positions(context.length, len(ids))
    try:
        out = llm.run(llm.embed_text(ids), positions, context.cache, capture_kv=True)
    finally:
        for handle in hooks:
            handle.remove()
    return context, past_keys, queries, out.keys, positions


def attention_mass(memory: ReKVMemory, question: str) -> torch.Tensor:
    """Share of the question's full-context attention to video that falls on each stored frame.

    Returns:
        float64 ``(L, N)``: per layer, rows sum to 1 over the ``N`` stored frames (in id order).
        Attention is averaged over the question's tokens and all query heads.
    """
    llm, spec = memory.llm, memory.llm.spec
    context, past_keys, queries, question_keys, positions = _question_states(memory, question)
    n_sink = memory._sink().shape[3]
    tokens = memory.tokens_per_frame
    n_frames = (context.length - n_sink) // tokens
    masses = []
    for layer in range(spec.n_layers):
        q = llm.rotate(queries[layer], positions).float()  # (H, n, D), RoPE as for keys
        k_new = llm.rotate(question_keys[layer], positions).float()
        keys = torch.cat([past_keys[layer].float(), k_new], dim=1)  # (Hkv, P + n, D)
        keys = keys.repeat_interleave(spec.group_size, dim=0)  # (H, P + n, D)
        scores = q @ keys.transpose(1, 2) / spec.head_dim**0.5
        n, past = q.shape[1], past_keys[layer].shape[1]
        causal = torch.ones(n, n, dtype=torch.bool).triu(1)
        scores[:, :, past:] = scores[:, :, past:].masked_fill(causal, float("-inf"))
        weights = torch.softmax(scores, dim=-1)[:, :, n_sink:past]  # (H, n, frames * T)
        per_frame = weights.reshape(weights.shape[0], n, n_frames, tokens).sum(-1).mean((0, 1))
        masses.append((per_frame / per_frame.sum()).double())
    return torch.stack(masses)


def attention_recall(mass: torch.Tensor, retrieval: Retrieval, live_ids: list[int]) -> torch.Tensor:
    """float64 ``(L,)``: per layer, the attention mass on the frames retrieved by that layer.

    Args:
        mass: ``(L, N)`` from :func:`attention_mass`.
        retrieval: the retrieval to score.
        live_ids: the store's block ids, matching ``mass``'s N axis.
    """
    column = {block: i for i, block in enumerate(live_ids)}
    recall = torch.zeros(mass.shape[0], dtype=torch.float64)
    for layer, row in enumerate(retrieval.block_ids.tolist()):
        recall[layer] = mass[layer, [column[b] for b in row]].sum()
    return recall


def first_token_distribution(memory: ReKVMemory, question: str, policy: RetrievalPolicy) -> torch.Tensor:
    """float64 ``(vocab,)`` probabilities of the first answer token with ``policy``'s frames."""
    llm = memory.llm
    context = memory.answer_context(question, policy)
    ids = llm.tokenize(llm.prompt.answer.format(question=question.strip()))
    positions, _ = llm.text_positions(context.length, len(ids))
    hidden = llm.run(llm.embed_text(ids), positions, context.cache).hidden[-1]
    return torch.softmax(llm.logits(hidden).double(), dim=-1)


def needle_embeds(llm, question: str, tokens: int) -> torch.Tensor:
    """A frame block whose layer-0 keys point along the question's layer-0 mean query.

    Layer 0's queries depend on the question's token embeddings only, so this direction is known
    before any frame: the block's input (after the layer's RMS norm) is chosen to maximise
    mean key . query, the score ReKV ranks by. Plant it with
    :meth:`~memstream.streaming.videomem.rekv.ReKVMemory.update_embeddings`.

    Returns:
        ``(1, tokens, hidden_size)`` decoder input embeddings.
    """
    layer = llm.decoder.layers[0]
    attn, norm, spec = layer.self_attn, layer.input_layernorm, llm.spec
    with torch.no_grad():
        hidden = norm(llm.embed_text(llm.tokenize(question)))
        q = attn.q_proj(hidden).view(-1, spec.n_kv_heads, spec.group_size, spec.head_dim).mean(0).sum(1).reshape(-1)
        direction = (attn.k_proj.weight.T @ q.to(attn.k_proj.weight.dtype)) / norm.weight  # through the norm's gain
    direction = direction / direction.float().pow(2).mean().sqrt()
    return direction.expand(tokens, -1)[None].clone()


def evaluate_policy(memory: ReKVMemory, question: str, policy: RetrievalPolicy, mass: torch.Tensor | None = None) -> FidelityReport:
    """Attention-mass recall and first-token KL of ``policy`` on ``question``."""
    mass = attention_mass(memory, question) if mass is None else mass
    retrieval = memory.answer_context(question, policy).retrieval
    recall = attention_recall(mass, retrieval, memory.store.live_ids())
    full = first_token_distribution(memory, question, AllRetrieval())
    retrieved = first_token_distribution(memory, question, policy)
    kl = float((full * (full.clamp_min(1e-300).log() - retrieved.clamp_min(1e-300).log())).sum())
    return FidelityReport(
        policy=policy.name,
        recall_per_layer=recall,
        recall=float(recall.mean()),
        kl=kl,
        top1_agrees=bool(full.argmax() == retrieved.argmax()),
    )
