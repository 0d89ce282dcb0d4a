"""Flash-VStream's Flash Memory (v2, ICCV 2025) on feature tensors: CSM centroids and DAM frame picks.

Facts verified in ``IVGSZ/Flash-VStream`` @ ``8f6bde2``, ``Flash-VStream-Qwen/models/``:

* Low-resolution path: see ``types.py`` (``temporal_pool``). The CSM and the DAM search use the
  small features; the DAM then takes the full-resolution features of the chosen grids.
* Streaming update (``vstream_qwen2vl_realtime.py``, ``embed_new_video_clip``): the new grids enter
  with weight 1 and timestamp ``arange(start_idx, start_idx + t)``; old centroids, weights and
  timestamps are concatenated in front; ``temporal_compress`` re-clusters when rows exceed K, else
  returns the rows as they are (weights reset to 1, timestamps to ``arange(t)``).
  ``cli_server_2gpu.py`` (``video_stream_similator``) sends 120 frames first, then one frame per
  call, which the processor tiles to a 2-frame grid (``vstream_qwen2vl_processor.py``): the unit is
  one temporal grid with its tokens flattened. Here one ``update`` = one grid ``(P, D)``. (There
  ``start_idx`` is the *frame* count while ``t`` counts grids: the first 60 grids get 0..59, the
  next grid 120.)
* DAM (``FlashMemory.spatial_enhance``, ``'klarge_retrieve'``): if grids seen <= ``spatial_length``
  all grids are taken (positions ``arange(t)``); else ``argsort(tem_weights, descending=True)`` (not
  stable) picks the heaviest clusters, and for each the grid with the smallest Euclidean distance
  (flattened ``P * D``) among *all* grids' small features is taken, ``argmin`` (first on ties),
  duplicates allowed, kept in weight order. ``'klarge_retrieve_cos'`` takes ``argmin`` of cosine
  *similarity*, i.e. the least similar grid (a defect; we use ``1 - cos``). Here: stable descending
  sort (ties: earlier cluster), ``argmin`` (ties: earlier frame), output sorted by frame id.
* Feature bank: ``x`` and ``small_x`` of every grid are concatenated on every call and written to
  shared CPU memory, growing with the stream (the complaint of issue #9, there about v1's
  ``img_feature_buffer``). ``keep_all_frames=True`` keeps every small feature: the anchor's rule.
* AM-RoPE (``calc_am_rope``): see ``types.py`` and :meth:`FlashReadout.am_rope_temporal_ids`.

Bounded mode (default) keeps, for each cluster, the ``m = candidates_per_cluster`` member frames
nearest its centroid. On every re-clustering the candidates of the rows merged into one new cluster
are pooled and re-ranked against the new centroid (only clusters with more than m candidates drop
any), and the DAM searches this pool of at most ``K * m`` frames with the anchor's global rule.
Approximation: a frame dropped when its cluster's centroid was elsewhere never comes back, so the
pick can differ from the exact nearest frame; the CSM itself is identical in both modes, and with
``m >= frames seen`` the two modes agree exactly. Measured (tests, 500 frames, 5 scenes + noise,
K=60, 30 DAM frames, m=4): 29 of 30 picks identical, the miss in the same scene and 0.05 % farther
from its centroid. :meth:`FlashMemory.retained_frame_ids` tells the caller which full-resolution
frames it may still be asked for.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any

import torch

from .config import FlashMemoryConfig
from .kmeans import paired_distances, pairwise_distances, weighted_kmeans_ordered, weighted_mean_by_label
from .types import FlashReadout

_F64, _I64 = torch.float64, torch.int64
_SEARCH_CHUNK = 256  # kept frames compared per matmul in the DAM search
# state_dict key -> attribute; the pool's per-frame list is saved stacked as "pool_features".
_STATE_ATTRS = {
    "frames_seen": "_frames_seen", "last_frame_id": "_last_frame_id", "last_timestamp_s": "_last_timestamp_s",
    "csm_features": "_csm", "csm_weights": "_csm_weights", "csm_timestamps_s": "_csm_timestamps",
    "csm_frame_positions": "_csm_positions", "pool_frame_ids": "_pool_ids",
    "pool_timestamps_s": "_pool_timestamps", "pool_clusters": "_pool_clusters",
}


def _nbytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def _append(tensor: torch.Tensor, value: float, dtype: torch.dtype) -> torch.Tensor:
    return torch.cat([tensor, torch.tensor([value], dtype=dtype)])


class FlashMemory:
    """Context Synopsis Memory (weighted k-means by time) plus Detail Augmentation Memory picks.

    Example:
        >>> mem = FlashMemory(FlashMemoryConfig(csm_clusters=4, dam_frames=2))
        >>> for i in range(10):
        ...     mem.update(torch.full((3, 8), float(i // 5)), frame_id=i, timestamp_s=i / 2)
        >>> out = mem.readout()
        >>> out.csm_features.shape, float(out.csm_weights.sum()), len(out.dam_frame_ids)
        (torch.Size([4, 3, 8]), 10.0, 2)
    """

    def __init__(self, config: FlashMemoryConfig | None = None) -> None:
        self.config = config if config is not None else FlashMemoryConfig()
        self.reset()

    def reset(self) -> None:
        """Forget every frame."""
        self._frames_seen = 0
        self._last_frame_id: int | None = None
        self._last_timestamp_s: float | None = None
        self._csm: torch.Tensor | None = None  # (k, P, D)
        self._csm_weights = torch.zeros(0, dtype=_F64)
        self._csm_timestamps = torch.zeros(0, dtype=_F64)
        self._csm_positions = torch.zeros(0, dtype=_F64)
        self._pool: list[torch.Tensor] = []  # (P, D) per kept frame, arrival order
        self._pool_ids = torch.zeros(0, dtype=_I64)
        self._pool_timestamps = torch.zeros(0, dtype=_F64)
        self._pool_clusters = torch.zeros(0, dtype=_I64)

    def __len__(self) -> int:
        """Frames seen since the last reset."""
        return self._frames_seen

    def update(self, small: torch.Tensor, frame_id: int, timestamp_s: float) -> None:
        """Add one grid's low-resolution features and re-cluster if more than K rows.

        Args:
            small: ``(P, D)`` float, the same shape and dtype for every frame.
            frame_id: strictly increasing int, the key of the caller's full-resolution store.
            timestamp_s: non-decreasing stream time, seconds.

        Raises:
            ValueError: bad shape/dtype, non-finite values, or ids/times going backwards.
        """
        small = self._check_frame(small, frame_id, timestamp_s)
        row = 0 if self._csm is None else self._csm.shape[0]
        self._csm = small[None] if self._csm is None else torch.cat([self._csm, small[None]])
        self._csm_weights = _append(self._csm_weights, 1.0, _F64)
        self._csm_timestamps = _append(self._csm_timestamps, float(timestamp_s), _F64)
        self._csm_positions = _append(self._csm_positions, float(frame_id), _F64)
        self._pool.append(small)
        self._pool_ids = _append(self._pool_ids, int(frame_id), _I64)
        self._pool_timestamps = _append(self._pool_timestamps, float(timestamp_s), _F64)
        self._pool_clusters = _append(self._pool_clusters, row, _I64)
        self._frames_seen += 1
        self._last_frame_id, self._last_timestamp_s = int(frame_id), float(timestamp_s)
        if self._csm.shape[0] > self.config.csm_clusters:
            self._recluster()

    def readout(self) -> FlashReadout:
        """The CSM centroids and the DAM frames to fetch, see :class:`FlashReadout`."""
        cfg, empty_i, empty_f = self.config, torch.zeros(0, dtype=_I64), torch.zeros(0, dtype=_F64)
        if self._csm is None:
            return FlashReadout(torch.zeros(0, 0, 0), empty_f, empty_f, empty_f, empty_i, empty_f, empty_i, 0)
        if cfg.dam_frames == 0:
            ids, times, clusters = empty_i, empty_f, empty_i
        elif self._frames_seen <= cfg.dam_frames:  # anchor: every grid (no frame was dropped yet)
            ids, times, clusters = self._pool_ids, self._pool_timestamps, self._pool_clusters
        else:
            top = torch.sort(self._csm_weights, descending=True, stable=True).indices[: cfg.dam_frames]
            clusters = top.sort().values
            ids, times = self.select_frames(clusters)
            order = torch.sort(ids, stable=True).indices
            ids, times, clusters = ids[order], times[order], clusters[order]
        return FlashReadout(
            csm_features=self._csm.clone(), csm_weights=self._csm_weights.clone(),
            csm_timestamps_s=self._csm_timestamps.clone(), csm_frame_positions=self._csm_positions.clone(),
            dam_frame_ids=ids.clone(), dam_timestamps_s=times.clone(), dam_cluster_indices=clusters.clone(),
            frames_seen=self._frames_seen,
        )

    def select_frames(self, cluster_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept frame nearest each given CSM centroid (the DAM rule for any clusters).

        Args:
            cluster_indices: int64 ``(n,)`` rows of ``readout().csm_features``.

        Returns:
            ``(frame_ids int64 (n,), timestamps_s float64 (n,))``, in the order asked.
        """
        if self._csm is None:
            raise ValueError("the memory is empty")
        idx = torch.as_tensor(cluster_indices, dtype=_I64)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= len(self._csm)):
            raise ValueError(f"cluster_indices must lie in [0, {len(self._csm)}), got {idx.tolist()}")
        centroids = self._csm[idx].flatten(1)
        chunks = range(0, len(self._pool), _SEARCH_CHUNK)  # bounds the fp32 copy in exact mode
        metric = self.config.distance
        dist = torch.cat([
            pairwise_distances(centroids, torch.stack(self._pool[i : i + _SEARCH_CHUNK]).flatten(1), metric)
            for i in chunks
        ], dim=1)
        nearest = torch.argmin(dist, dim=1).cpu()  # ties: earliest kept frame
        return self._pool_ids[nearest], self._pool_timestamps[nearest]

    def retained_frame_ids(self) -> torch.Tensor:
        """int64 ``(F,)`` ascending: the only frames a later readout can ask for (bounded mode).

        Frames dropped from the pool never come back, so the caller may evict their features.
        """
        return self._pool_ids.clone()

    def memory_summary(self) -> dict[str, int]:
        """Bytes held: CSM centroids and their metadata, kept frames' features and metadata, total."""
        csm, pool = _nbytes(self._csm), _nbytes(*self._pool)
        csm_meta = _nbytes(self._csm_weights, self._csm_timestamps, self._csm_positions)
        pool_meta = _nbytes(self._pool_ids, self._pool_timestamps, self._pool_clusters)
        return {"csm_bytes": csm, "csm_metadata_bytes": csm_meta, "pool_feature_bytes": pool,
                "pool_metadata_bytes": pool_meta, "total_bytes": csm + csm_meta + pool + pool_meta}

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors, numbers and the config as a dict; ``load_state_dict`` restores it exactly."""
        state: dict[str, Any] = {"format_version": 1, "config": dataclasses.asdict(self.config)}
        for key, attr in _STATE_ATTRS.items():
            value = getattr(self, attr)
            state[key] = value.clone() if isinstance(value, torch.Tensor) else value
        state["pool_features"] = torch.stack(self._pool) if self._pool else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the config must equal this memory's."""
        if state.get("format_version") != 1:
            raise ValueError(f"unsupported format_version {state.get('format_version')!r}")
        missing = [key for key in (*_STATE_ATTRS, "pool_features") if key not in state]
        if missing:
            raise ValueError(f"state is missing {missing}")
        saved = state["config"]
        diff = {k: (saved.get(k), v) for k, v in dataclasses.asdict(self.config).items() if saved.get(k) != v}
        if diff:
            raise ValueError(f"state was saved with another config (saved, current): {diff}")
        self.reset()
        for key, attr in _STATE_ATTRS.items():
            value = state[key]
            setattr(self, attr, value.clone() if isinstance(value, torch.Tensor) else value)
        pool = state["pool_features"]
        self._pool = [] if pool is None else [frame.clone() for frame in pool.unbind(0)]

    def _check_frame(self, small: torch.Tensor, frame_id: int, timestamp_s: float) -> torch.Tensor:
        is_tensor = isinstance(small, torch.Tensor)
        if not is_tensor or small.ndim != 2 or not small.is_floating_point() or small.numel() == 0:
            got = (tuple(small.shape), small.dtype) if is_tensor else type(small)
            raise ValueError(f"small must be a non-empty floating (P, D) tensor, got {got}")
        if self._csm is not None and (small.shape != self._csm.shape[1:] or small.dtype != self._csm.dtype):
            raise ValueError(f"frame is {tuple(small.shape)} {small.dtype}, earlier frames "
                             f"{tuple(self._csm.shape[1:])} {self._csm.dtype}")
        if not bool(torch.isfinite(small).all()):
            raise ValueError("small contains NaN or inf")
        if not isinstance(frame_id, numbers.Integral) or isinstance(frame_id, bool):
            raise ValueError(f"frame_id must be an int, got {frame_id!r}")
        if self._last_frame_id is not None and frame_id <= self._last_frame_id:
            raise ValueError(f"frame_id must increase: {frame_id} after {self._last_frame_id}")
        real = isinstance(timestamp_s, numbers.Real) and not isinstance(timestamp_s, bool)
        if not real or not math.isfinite(timestamp_s):
            raise ValueError(f"timestamp_s must be a finite number, got {timestamp_s!r}")
        if self._last_timestamp_s is not None and timestamp_s < self._last_timestamp_s:
            raise ValueError(f"timestamp_s must not decrease: {timestamp_s} after {self._last_timestamp_s}")
        device = small.device if self._csm is None else self._csm.device
        return small.detach().to(device).clone()  # own copy: never pins a caller's larger buffer

    def _recluster(self) -> None:
        cfg, rows = self.config, self._csm.shape[0]
        generator = None
        if cfg.kmeans_init == "random":  # seeded by the frame count: a restored state continues identically
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self._frames_seen)
        result = weighted_kmeans_ordered(
            self._csm.reshape(rows, -1), self._csm_weights, self._csm_timestamps, cfg.csm_clusters,
            max_iterations=cfg.kmeans_iterations, tolerance=cfg.kmeans_tolerance,
            init=cfg.kmeans_init, generator=generator,
        )
        k = result.centroids.shape[0]
        labels = result.labels.to(self._csm_positions.device)
        self._csm_positions = weighted_mean_by_label(self._csm_positions, self._csm_weights, labels, k)
        self._csm = result.centroids.reshape(k, *self._csm.shape[1:])
        self._csm_weights, self._csm_timestamps = result.weights.cpu(), result.timestamps.cpu()
        self._pool_clusters = labels.cpu()[self._pool_clusters]
        if not cfg.keep_all_frames:
            self._prune_pool()

    def _prune_pool(self) -> None:
        """Keep the m frames nearest their centroid in every cluster holding more than m."""
        m, clusters = self.config.candidates_per_cluster, self._pool_clusters
        counts = torch.bincount(clusters, minlength=self._csm.shape[0])
        crowded = torch.nonzero(counts[clusters] > m).flatten()
        if crowded.numel() == 0:
            return
        feats = torch.stack([self._pool[i] for i in crowded.tolist()]).flatten(1)
        dist = paired_distances(feats, self._csm[clusters[crowded]].flatten(1), self.config.distance).cpu()
        by_dist = crowded[torch.sort(dist, stable=True).indices]  # ties: earlier frame first
        grouped = by_dist[torch.sort(clusters[by_dist], stable=True).indices]
        first = torch.ones_like(grouped, dtype=torch.bool)
        first[1:] = clusters[grouped[1:]] != clusters[grouped[:-1]]
        position = torch.arange(len(grouped))
        starts = torch.cummax(torch.where(first, position, torch.zeros_like(position)), 0).values
        drop = grouped[position - starts >= m]  # rank within its cluster >= m
        keep = torch.ones(len(self._pool), dtype=torch.bool)
        keep[drop] = False
        self._pool = [f for f, k in zip(self._pool, keep.tolist()) if k]
        self._pool_ids, self._pool_timestamps = self._pool_ids[keep], self._pool_timestamps[keep]
        self._pool_clusters = clusters[keep]
