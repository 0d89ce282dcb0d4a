"""What the Flash Memory hands to a Video-LLM adapter.

Shapes: ``K'`` CSM centroids (``min(frames seen, csm_clusters)``), ``P`` low-resolution tokens of
one grid (``T_small``), ``D`` feature width, ``S`` DAM frames (``min(frames seen, dam_frames)``).
Times are seconds, taken from the ``timestamp_s`` given to ``FlashMemory.update``.

What the adapter must reproduce, verified in ``IVGSZ/Flash-VStream`` @ ``8f6bde2``,
``Flash-VStream-Qwen/models/vstream_qwen2vl_model.py``:

* ``FlashMemory.temporal_pool``: the low-resolution path is a 2x2 average pool in *pixel* space
  before the ViT (asserts ``temporal_poolsize == 2``), so a grid has 1/4 of the tokens (448 px:
  256 merged tokens at full resolution, 64 small). ``small`` given to ``update`` is that path.
* ``FlashMemory.cat_spa_tem``: the visual tokens are DAM grids (full resolution) then CSM grids.
* ``FlashMemory.calc_am_rope``: temporal id of a DAM grid = its grid index (``spa_positions``), of
  a CSM grid = ``tem_timestamp.round()``; h/w ids are the merged-grid coordinates; every CSM id
  (t, h and w) is then offset by the DAM token count, and everything by the first visual position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FlashReadout:
    """The memory's content at one moment: CSM synopsis plus the frames the DAM asks for.

    Attributes:
        csm_features: ``(K', P, D)`` in the dtype of the frames given to ``update``: the centroids
            of the low-resolution features, in time order.
        csm_weights: float64 ``(K',)``: frames each centroid stands for; sums to ``frames_seen``.
        csm_timestamps_s: float64 ``(K',)``: weight-averaged member timestamps, non-decreasing.
        csm_frame_positions: float64 ``(K',)``: weight-averaged member frame ids (what the anchor
            calls ``tem_timestamp`` and rounds into AM-RoPE temporal ids).
        dam_frame_ids: int64 ``(S,)``: frames whose full-resolution features the caller should
            fetch from its own store, ascending (time order). A frame may appear twice when it is
            the nearest frame of two selected centroids, as in the anchor.
        dam_timestamps_s: float64 ``(S,)``: their timestamps, seconds.
        dam_cluster_indices: int64 ``(S,)``: the CSM row each DAM frame was chosen for (with
            ``frames_seen <= dam_frames`` every frame is taken, each for the row it belongs to).
        frames_seen: frames given to ``update`` since the last ``reset``.
    """

    csm_features: torch.Tensor
    csm_weights: torch.Tensor
    csm_timestamps_s: torch.Tensor
    csm_frame_positions: torch.Tensor
    dam_frame_ids: torch.Tensor
    dam_timestamps_s: torch.Tensor
    dam_cluster_indices: torch.Tensor
    frames_seen: int

    @property
    def num_clusters(self) -> int:
        """``K'``, CSM rows."""
        return int(self.csm_features.shape[0])

    def am_rope_temporal_ids(self) -> torch.Tensor:
        """Temporal position of every grid in the anchor's token order, int64 ``(S + K',)``.

        ``FlashMemory.calc_am_rope`` (``vstream_qwen2vl_model.py``) puts DAM grids first, then CSM
        grids; a DAM grid's temporal id is its frame index, a CSM grid's is
        ``round(tem_timestamp)``. Here: ``dam_frame_ids`` then ``round(csm_frame_positions)``
        (``torch.round``: halves to even). The adapter adds the text offset and the h/w ids.
        """
        return torch.cat([self.dam_frame_ids, self.csm_frame_positions.round().long()])
