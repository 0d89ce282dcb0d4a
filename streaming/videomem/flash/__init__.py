"""Flash-VStream (v2, ICCV 2025) Flash Memory on feature tensors, model-agnostic.

A Video-LLM adapter feeds :meth:`FlashMemory.update` one low-resolution feature grid per call and
turns :meth:`FlashMemory.readout` (a :class:`FlashReadout`: CSM centroids plus the ids of the DAM
frames whose full-resolution features it fetches from its own store) into LLM input embeddings
with AM-RoPE positions. ``kmeans.py`` and ``memory.py`` list the anchor facts this follows
(``IVGSZ/Flash-VStream`` @ ``8f6bde2``, ``Flash-VStream-Qwen/models/``) and where it departs.

Example:
    >>> import torch
    >>> mem = FlashMemory(FlashMemoryConfig(csm_clusters=8, dam_frames=4))
    >>> for i in range(20):
    ...     mem.update(torch.randn(4, 16), frame_id=i, timestamp_s=0.5 * i)
    >>> readout = mem.readout()
    >>> readout.csm_features.shape, readout.dam_frame_ids.shape
    (torch.Size([8, 4, 16]), torch.Size([4]))
"""

from .config import FlashMemoryConfig
from .memory import FlashMemory
from .types import FlashReadout

__all__ = ["FlashMemoryConfig", "FlashMemory", "FlashReadout"]
