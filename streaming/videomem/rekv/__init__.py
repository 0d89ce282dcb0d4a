"""ReKV: sliding-window encoding into per-frame KV blocks, question-driven retrieval per layer."""

from streaming.videomem.rekv.config import ReKVConfig
from streaming.videomem.rekv.memory import QuestionError, ReKVMemory
from streaming.videomem.rekv.retrieval import (
    RETRIEVAL_POLICIES,
    AllRetrieval,
    InternalRetrieval,
    RandomRetrieval,
    RecentRetrieval,
    RetrievalPolicy,
    UniformRetrieval,
    make_retrieval,
)

__all__ = [
    "RETRIEVAL_POLICIES",
    "AllRetrieval",
    "InternalRetrieval",
    "QuestionError",
    "RandomRetrieval",
    "ReKVConfig",
    "ReKVMemory",
    "RecentRetrieval",
    "RetrievalPolicy",
    "UniformRetrieval",
    "make_retrieval",
]
