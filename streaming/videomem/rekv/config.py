"""ReKV's settings, with the released code's defaults (Becomebright/ReKV ``load_model`` and README).

:class:`ReKVConfig` is the one definition: ``stages.video_memory.options.rekv`` in YAML and the
flags of ``memstream ask`` are validated into it by :func:`memstream.streaming.configtypes.parse`.
Retrieval and eviction policies are checked against their registries when a config is parsed, so a
policy registered by a user's code is accepted from YAML too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from memstream.streaming.configtypes import registered, strict_config
from memstream.streaming.videomem.rekv.retrieval import RETRIEVAL_POLICIES
from memstream.streaming.videomem.store.policies import EVICTION_POLICIES
from memstream.streaming.videomem.store.spec import CODECS

KERNEL_BACKENDS = ("auto", "torch", "triton")


@strict_config
@dataclass(frozen=True)
class ReKVConfig:
    """How the ReKV video memory encodes, stores and retrieves.

    Counts of frames are counts of KV blocks: one frame for LLaVA-OneVision, one temporal patch (two
    frames) for Qwen2.5-VL.

    Attributes:
        window_frames: frames of the sliding attention window while encoding, after the attention
            sinks. ReKV's window is ``n_local = 15000`` tokens, 76 LLaVA-OneVision frames of 196 tokens.
        chunk_frames: frames per decoder pass while encoding. Every token of a pass sees the sinks,
            the window and the earlier tokens of its own pass; 1 is ReKV's execution block (one frame).
        retrieval: retrieval policy, a name in
            :data:`~memstream.streaming.videomem.rekv.retrieval.RETRIEVAL_POLICIES`: ``internal`` (ReKV),
            ``external`` (an image-text model picks the frames for all layers), ``recent``,
            ``uniform``, ``random``, ``all``, or one registered by the user.
        external_embedder: the CLIP / SigLIP model of ``external`` retrieval (path or hub id).
        topk: frames retrieved per layer (ReKV's ``retrieve_size``: 64).
        group_size: consecutive frames retrieved as one group (ReKV's ``retrieve_chunk_size``: 1).
        codec: block storage: ``none`` (model dtype), ``int8-channel`` (keys per channel, values per
            token, as KIVI), ``int8-token``.
        eviction: eviction policy of the RAM tier and the device caches, a name in
            :data:`~memstream.streaming.videomem.store.EVICTION_POLICIES` (``lru``, ReKV's; ``fifo``).
        store_dir: directory of the disk tier; a session with the same directory resumes where the
            last one stopped. None keeps blocks in RAM only.
        ram_budget_mb: cap on the RAM tier; older blocks stay on disk only (needs ``store_dir``).
        device_cache_blocks: per-layer blocks cached on the model's device, LRU (ReKV: 128).
        max_blocks: keep at most this many frames, deleting the oldest (None: keep all).
        max_question_tokens: longer questions are refused.
        kernel_backend: ``auto``, ``torch`` or ``triton`` for block scoring and int8 coding.
    """

    window_frames: Annotated[int, Field(ge=1)] = 76
    chunk_frames: Annotated[int, Field(ge=1)] = 1
    retrieval: Annotated[str, registered(RETRIEVAL_POLICIES)] = "internal"
    external_embedder: str | None = None
    topk: Annotated[int, Field(ge=1)] = 64
    group_size: Annotated[int, Field(ge=1)] = 1
    codec: Literal[CODECS] = "none"  # the store's codecs (store/spec.py), one list
    eviction: Annotated[str, registered(EVICTION_POLICIES)] = "lru"
    store_dir: str | None = None
    ram_budget_mb: Annotated[float, Field(gt=0)] | None = None
    device_cache_blocks: Annotated[int, Field(ge=0)] = 128
    max_blocks: Annotated[int, Field(ge=1)] | None = None
    max_question_tokens: Annotated[int, Field(ge=1)] = 512
    kernel_backend: Literal[KERNEL_BACKENDS] = "auto"

    def __post_init__(self) -> None:
        # Checks of a config built in Python (parse() applies the field constraints above first and
        # names the YAML key), and the checks across fields.
        for name in ("window_frames", "chunk_frames", "topk", "group_size", "max_question_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.device_cache_blocks < 0:
            raise ValueError(f"device_cache_blocks must be >= 0, got {self.device_cache_blocks}")
        if self.topk < self.group_size:
            raise ValueError(f"topk ({self.topk}) must be >= group_size ({self.group_size})")
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.ram_budget_mb is not None and self.ram_budget_mb <= 0:
            raise ValueError(f"ram_budget_mb must be > 0, got {self.ram_budget_mb}")
        if self.max_blocks is not None and self.max_blocks < self.window_frames:
            raise ValueError(f"max_blocks ({self.max_blocks}) must be >= window_frames ({self.window_frames})")
        if self.retrieval == "external" and not self.external_embedder:
            raise ValueError("retrieval 'external' needs external_embedder (a CLIP or SigLIP model)")
        if self.kernel_backend not in KERNEL_BACKENDS:
            raise ValueError(f"kernel_backend must be one of {KERNEL_BACKENDS}, got {self.kernel_backend!r}")
        if self.retrieval not in RETRIEVAL_POLICIES:
            raise ValueError(f"unknown retrieval policy {self.retrieval!r}; registered: {', '.join(RETRIEVAL_POLICIES.names())}")
        if self.eviction not in EVICTION_POLICIES:
            raise ValueError(f"unknown eviction policy {self.eviction!r}; registered: {', '.join(EVICTION_POLICIES.names())}")
