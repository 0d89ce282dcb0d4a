"""Token-by-token answer generation on a memory-built context, greedy or sampled, streamed.

``model.generate`` assumes the prompt's positions follow the cache's tokens and that the prompt
holds the whole conversation; an answer built from retrieved frames has neither, so the loop is
ours (as ReKV's is). Sampling reuses transformers' own logits warpers, configured like
``GenerationConfig``: ``do_sample``, ``temperature``, ``top_k``, ``top_p``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import torch
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import MemstreamError
from memstream.streaming.videomem.adapters.hf import HFVideoLLM
from pydantic import Field
from transformers.cache_utils import Cache
from transformers.generation.logits_process import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

#: Called with each new piece of answer text as soon as it is decoded.
TokenCallback = Callable[[str], None]


class GenerationCancelled(MemstreamError):
    """The answer was abandoned (its ``cancel`` event was set, e.g. the client disconnected)."""


@strict_config
@dataclass(frozen=True)
class SamplingConfig:
    """How answers are generated (the names of ``transformers.GenerationConfig``).

    Attributes:
        max_new_tokens: answer length cap, tokens.
        do_sample: sample instead of taking the most likely token (greedy, ReKV's default).
        temperature, top_k, top_p: sampling warpers, applied in this order when ``do_sample``.
        seed: seeds the sampler; None draws from torch's global generator.
    """

    max_new_tokens: Annotated[int, Field(ge=1)] = 128
    do_sample: bool = False
    temperature: Annotated[float, Field(gt=0)] = 1.0
    top_k: Annotated[int, Field(ge=1)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    seed: int | None = None

    def __post_init__(self) -> None:  # a config built in Python; parse() checks the fields first
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def warpers(self) -> LogitsProcessorList:
        warpers = LogitsProcessorList()
        if self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k:
            warpers.append(TopKLogitsWarper(self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(self.top_p))
        return warpers


@dataclass
class Generated:
    """Tokens generated for one answer and when the first one came (``time.perf_counter`` seconds).

    ``finished_by_eos`` is False when generation stopped at ``max_new_tokens``; ``prompt_tokens``
    counts the context the answer attended to (memory tokens in the cache plus the prompt).
    """

    token_ids: list[int]
    first_token_at: float
    finished_by_eos: bool
    prompt_tokens: int


def generate(
    llm: HFVideoLLM,
    cache: Cache,
    prompt_ids: torch.Tensor,
    start: int,
    sampling: SamplingConfig,
    on_text: TokenCallback | None = None,
    cancel: threading.Event | None = None,
) -> Generated:
    """Prefill ``prompt_ids`` after the context in ``cache`` and generate the answer.

    Args:
        llm: the model.
        cache: the answer's context (sinks and retrieved frames), extended in place.
        prompt_ids: int64 ``(n,)`` the text that precedes the answer.
        start: position of the first prompt token (the context's length in positions).
        sampling: greedy or sampled decoding settings.
        on_text: receives each newly decoded piece of text.
        cancel: when set (from another thread), generation stops before its next decoding step.

    Raises:
        GenerationCancelled: ``cancel`` was set.
    """
    eos = llm.eos_token_ids
    warpers = sampling.warpers()
    generator = None
    if sampling.do_sample and sampling.seed is not None:
        generator = torch.Generator(device=llm.device).manual_seed(sampling.seed)
    ids: list[int] = []
    text_sent = ""
    embeds = llm.embed_text(prompt_ids)
    positions, cursor = llm.text_positions(start, len(prompt_ids))
    first_at = 0.0
    prompt_tokens = cache.get_seq_length() + len(prompt_ids)

    def finish(by_eos: bool) -> Generated:
        if on_text is not None:  # what was held back waiting for the rest of a character
            text = llm.decode(ids)
            if text.startswith(text_sent) and len(text) > len(text_sent):
                on_text(text[len(text_sent) :])
        return Generated(ids, first_at, by_eos, prompt_tokens)

    for step in range(sampling.max_new_tokens):
        if cancel is not None and cancel.is_set():
            raise GenerationCancelled(f"the answer was cancelled after {len(ids)} tokens", "Ask again if it is still wanted")
        hidden = llm.run(embeds, positions, cache).hidden[-1]
        logits = llm.logits(hidden)[None]
        if sampling.do_sample:
            context = torch.tensor([ids or [0]], device=logits.device)
            scores = warpers(context, logits)
            token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        else:
            token = int(logits.argmax(-1))
        if step == 0:
            first_at = time.perf_counter()
        if token in eos:
            return finish(True)
        ids.append(token)
        if on_text is not None:
            text = llm.decode(ids)
            if len(text) > len(text_sent) and not text.endswith("\ufffd"):
                on_text(text[len(text_sent) :])
                text_sent = text
        embeds = llm.embed_text(torch.tensor([token], device=llm.device))
        positions, cursor = llm.text_positions(cursor, 1)
    return finish(False)
