"""Tiered store of video KV blocks: device cache, RAM and memory-mapped disk (ReKV-style).

``BlockStore`` is the facade; ``BlockPool`` (pure bookkeeping), the tier modules (``ram``,
``device``, ``disk``) and eviction policies sit behind it. See :mod:`.store` for an example.
"""

from memstream.streaming.videomem.store.disk import StoreCheck, check_store
from memstream.streaming.videomem.store.policies import EVICTION_POLICIES, EvictionPolicy, FIFOEviction, LRUEviction
from memstream.streaming.videomem.store.pool import AccessStats, BlockPool
from memstream.streaming.videomem.store.spec import BlockMeta, BlockSpec, StoreError
from memstream.streaming.videomem.store.store import BlockStore

__all__ = [
    "EVICTION_POLICIES",
    "AccessStats",
    "BlockMeta",
    "BlockPool",
    "BlockSpec",
    "BlockStore",
    "EvictionPolicy",
    "FIFOEviction",
    "LRUEviction",
    "StoreCheck",
    "StoreError",
    "check_store",
]
