"""SAM 2 as a streaming candidate backend for the :class:`~memstream.tracking.Tracker`.

``backend.py`` holds :class:`Sam2Backend` (frames pushed one at a time, the image encoded once for
every object, objects batched through memory attention and the mask decoder), ``bank.py`` each
object's bounded memory (:class:`ObjectMemory`: prompt frames, the gated recent frames, object
pointers; constant size on an endless stream), ``heads.py`` the decoder and memory-attention calls,
``loading.py`` the model built from the ``sam2`` package with a checkpoint checked against its
config (:class:`CheckpointError` names both). Needs torch and ``sam2`` (the ``sam2`` extra); names
are loaded on first use.

Example (needs a SAM 2.1 checkpoint, downloaded from the hub or a local path)::

    from memstream.tracking import Tracker
    from memstream.tracking.sam2_stream import Sam2Backend

    backend = Sam2Backend.from_pretrained("facebook/sam2.1-hiera-tiny")
    tracker = Tracker(backend, selection="samurai")
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use (torch, sam2)
    "Sam2Backend": "memstream.tracking.sam2_stream.backend",
    "ObjectMemory": "memstream.tracking.sam2_stream.bank",
    "CheckpointError": "memstream.tracking.sam2_stream.loading",
    "build_model": "memstream.tracking.sam2_stream.loading",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
