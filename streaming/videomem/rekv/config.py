"""ReKV's settings, with the released code's defaults (Becomebright/ReKV ``load_model`` and README)."""

from __future__ import annotations

from dataclasses import dataclass

CODECS = ("none", "int8-channel", "int8-token")


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
        retrieval: retrieval policy: ``internal`` (ReKV), ``external`` (an image-text model picks the
            frames for all layers), ``recent``, ``uniform``, ``random``, ``all``.
        external_embedder: the CLIP / SigLIP model of ``external`` retrieval (path or hub id).
        topk: frames retrieved per layer (ReKV's ``retrieve_size``: 64).
        group_size: consecutive frames retrieved as one group (ReKV's ``retrieve_chunk_size``: 1).
        codec: block storage: ``none`` (model dtype), ``int8-channel`` (keys per channel, values per
            token, as KIVI), ``int8-token``.
        store_dir: directory of the disk tier; a session with the same directory resumes where the
            last one stopped. None keeps blocks in RAM only.
        ram_budget_mb: cap on the RAM tier; older blocks stay on disk only (needs ``store_dir``).
        device_cache_blocks: per-layer blocks cached on the model's device, LRU (ReKV: 128).
        max_blocks: keep at most this many frames, deleting the oldest (None: keep all).
        max_question_tokens: longer questions are refused.
        kernel_backend: ``auto``, ``torch`` or ``triton`` for block scoring and int8 coding.
    """

    window_frames: int = 76
    chunk_frames: int = 1
    retrieval: str = "internal"
    external_embedder: str | None = None
    topk: int = 64
    group_size: int = 1
    codec: str = "none"
    store_dir: str | None = None
    ram_budget_mb: float | None = None
    device_cache_blocks: int = 128
    max_blocks: int | None = None
    max_question_tokens: int = 512
    kernel_backend: str = "auto"

    def __post_init__(self) -> None:
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
        if self.kernel_backend not in ("auto", "torch", "triton"):
            raise ValueError(f"kernel_backend must be auto, torch or triton, got {self.kernel_backend!r}")
