"""ReKV: sliding-window encoding into per-frame KV blocks, question-driven retrieval per layer."""

from memstream.streaming.videomem.rekv.config import ReKVConfig
from memstream.streaming.videomem.rekv.external import ExternalRetrieval, FrameTextEmbedder, HFDualEncoder  # registers "external"
from memstream.streaming.videomem.questions import QuestionError
from memstream.streaming.videomem.rekv.memory import ReKVMemory
from memstream.streaming.videomem.rekv.retrieval import (
    RETRIEVAL_POLICIES,
    AllRetrieval,
    InternalRetrieval,
    RandomRetrieval,
    RecentRetrieval,
    RetrievalPolicy,
    UniformRetrieval,
    make_retrieval,
    retrieval_for,
)

__all__ = [
    "RETRIEVAL_POLICIES",
    "AllRetrieval",
    "ExternalRetrieval",
    "FrameTextEmbedder",
    "HFDualEncoder",
    "InternalRetrieval",
    "QuestionError",
    "RandomRetrieval",
    "ReKVConfig",
    "ReKVMemory",
    "RecentRetrieval",
    "RetrievalPolicy",
    "UniformRetrieval",
    "make_retrieval",
    "retrieval_for",
]
