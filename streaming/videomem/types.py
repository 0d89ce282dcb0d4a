"""The objects the video KV memory produces.

Shapes use ``L`` decoder layers, ``Hkv`` key/value heads, ``D`` head size, ``T`` tokens of one
frame (one KV block), ``k`` retrieved blocks per layer. Stream time is in seconds, taken from the
frames' timestamps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class VideoLLMSpec:
    """What the memory needs to know about a Video-LLM's decoder.

    Attributes:
        model_type: the transformers ``model_type`` (``"llava_onevision"``, ``"qwen2_5_vl"``).
        n_layers: decoder layers ``L``.
        n_heads: query heads per layer.
        n_kv_heads: key/value heads per layer ``Hkv`` (grouped-query attention when smaller).
        head_dim: ``D``.
        hidden_size: width of the decoder's input embeddings.
        position_rows: rows of a position-id tensor: 1 for 1-D RoPE, 3 for M-RoPE (t, h, w).
        dtype: dtype of the decoder's keys and values.
        fingerprint: identifies the weights and config, so a KV store written by one model is never
            read by another (hash of the config and the checkpoint's name and size).
    """

    model_type: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden_size: int
    position_rows: int
    dtype: torch.dtype
    fingerprint: str

    @property
    def group_size(self) -> int:
        """Query heads sharing one key/value head."""
        return self.n_heads // self.n_kv_heads


@dataclass(frozen=True)
class Retrieval:
    """Which stored frames a question was answered from.

    Attributes:
        block_ids: int64 ``(L, k)``: per layer, the retrieved blocks in time order. With external
            retrieval every row is the same.
        frame_indices: int64 ``(L, k)``: the stream frame index of each retrieved block.
        timestamps_s: float64 ``(L, k)``: the stream time of each retrieved block, seconds.
        method: ``"internal"`` (question queries vs block keys, per layer), ``"external"`` (a
            frame/text embedder), ``"recent"`` or ``"all"``.
    """

    block_ids: torch.Tensor
    frame_indices: torch.Tensor
    timestamps_s: torch.Tensor
    method: str

    def frames(self) -> list[int]:
        """Every frame index retrieved by at least one layer, ascending."""
        return sorted({int(i) for i in self.frame_indices.flatten().tolist()})


@dataclass(frozen=True)
class Answer:
    """A question answered from the video memory.

    Attributes:
        question: the question as asked.
        text: the generated answer (special tokens removed).
        token_ids: int64 ``(n,)`` generated tokens, the end-of-turn token excluded.
        covered_until_s: stream time of the newest frame the answer could see, seconds; the answer is
            "as of" this moment even if frames kept arriving while it was generated.
        frames_seen: frames stored when the question was taken.
        retrieval: which frames the answer was built from.
        time_to_first_token_s: wall time from the question to the first generated token.
        total_s: wall time from the question to the last generated token.
        prompt_tokens: tokens the answer attended to: memory (sinks, frames) plus the prompt.
        finished_by_eos: the model ended the answer; False when it was cut at ``max_new_tokens``.
    """

    question: str
    text: str
    token_ids: torch.Tensor
    covered_until_s: float
    frames_seen: int
    retrieval: Retrieval
    time_to_first_token_s: float
    total_s: float
    prompt_tokens: int
    finished_by_eos: bool
    timings_s: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VideoMemoryStep:
    """What the ``video_memory`` stage hands to later stages for one frame.

    Attributes:
        frame_index: the frame.
        stored: whether this frame was given to the memory (``sample_fps``) and is now encoded.
        hidden: float32 ``(hidden_size,)``: the memory's newest encoded frame in the decoder's space
            (the mean of its tokens' last hidden states for ReKV, of its visual tokens for
            Flash-VStream), or None before any and for memories that do not offer one. Later frames
            repeat the latest until a newer frame is encoded.
        answers: the questions answered on this frame.
    """

    frame_index: int
    stored: bool
    hidden: torch.Tensor | None = None
    answers: tuple[Answer, ...] = ()
