"""Weighted k-means ordered by time: the clustering behind Flash-VStream's Context Synopsis Memory.

Facts verified in ``IVGSZ/Flash-VStream`` @ ``8f6bde2``, file
``Flash-VStream-Qwen/models/compress_functions.py``, function ``weighted_kmeans_ordered_feature``
(the ``'kmeans_ordered'`` entry of ``temporal_compress``, the default ``temporal_method``):

* Precision: features are cast to fp32 (``img_feature.float()``), clustered, and the centroids cast
  back to the input dtype (``.to(dtype)``). We do the same.
* Granularity: each row is one temporal grid with all its tokens flattened (``view(T, -1)``), so
  the distance is taken between whole ``P * D`` feature maps. Callers here pass ``(N, P * D)``.
* Distance: Euclidean, as ``sqrt(|a|^2 + |b|^2 - 2 a.b)`` (``efficient_euclidean_distance``); only
  ``'euclidean'`` is implemented. The expansion can go slightly negative and the ``sqrt`` then
  gives NaN; we clamp the squared distance at 0 (arg-min of squared distance = arg-min of distance).
* Initialisation: ``torch.unique(X, dim=0)`` then ``torch.randperm(...)[:K]`` rows, unseeded, so
  the anchor is not deterministic. If fewer than K unique rows exist it returns the unique rows with
  weights 1 and pads with the first input rows. We offer ``init="random"`` (same rule, seeded
  generator; with fewer than K distinct rows it draws among all rows and the empty-cluster rule
  below splits the duplicates, so weights stay member sums) and default to ``"farthest_point"``
  (deterministic). Why: in streaming N = K + 1, and
  random seeding leaves out a uniformly random row, which then merges into its nearest centroid, at
  every step; on 10 synthetic 500-frame streams (5 scenes + a 3-frame needle, K=60) the anchor's
  rule kept the needle as its own cluster in 5 and fused two scenes into one centroid in 4, while
  farthest-point (the left-out row is the most redundant one) kept it in 10 and fused none.
* Iterations: ``max_iter=10``, ``tol=1e-4`` on ``sum_k |c_k - c'_k|``; it breaks *before* adopting
  the new centroids, so on early exit it returns the previous ones. We always return the weighted
  mean of the final members (they differ by less than ``tol`` in that case).
* Update: centroid = ``sum(w_i x_i) / sum(w_i)`` over members; cluster weight = sum of member
  weights (``weights_sum``), so weights count frames when every frame enters with weight 1.
* Empty clusters: re-seeded with a uniformly random row (Python ``random``, unseeded) and no point
  is moved to them; an empty cluster left at the last iteration is returned with weight 0 and the
  timestamp step then divides by ``len([]) == 0`` (``ZeroDivisionError``). Fixed-up equivalent
  here: each empty cluster takes the point farthest from its own centroid among clusters with at
  least 2 members, so all K clusters are non-empty whenever N >= K.
* Timestamps: the code computes ``sum(t_i w_i) / sum(w_i)`` per cluster, then *overwrites* it with
  ``sum(indices) / len(indices)``, the unweighted mean of member *row indices*. Offline (weights 1,
  times = ``arange``) the two agree; in streaming (``vstream_qwen2vl_realtime.py``,
  ``embed_new_video_clip``) rows are old centroids + new grids, so the anchor's timestamps collapse
  to row positions in ``[0, K + t)``. We keep the weighted mean of member timestamps, the code's
  evident intent.
* Order: ``torch.argsort(centroids_timestamp)`` (not stable; ties arbitrary). We sort stably by
  timestamp, so ties keep the initialisation order.
* N <= K: ``temporal_compress`` returns the input unchanged (weights 1, timestamps ``arange``); we
  return the input rows with their own weights/timestamps, stably sorted by time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

METRICS = ("l2", "cos")


@dataclass(frozen=True)
class KMeansResult:
    """Output of :func:`weighted_kmeans_ordered`, clusters in time order.

    Attributes:
        centroids: ``(K', D)`` in the input dtype, ``K' = min(N, K)``.
        weights: float64 ``(K',)``: sum of member weights.
        timestamps: float64 ``(K',)``: weighted mean of member timestamps, non-decreasing.
        labels: int64 ``(N,)``: output row of each input row.
        iterations: Lloyd iterations run (0 when N <= K).
    """

    centroids: torch.Tensor
    weights: torch.Tensor
    timestamps: torch.Tensor
    labels: torch.Tensor
    iterations: int


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Distances between every row of ``a`` ``(n, D)`` and of ``b`` ``(m, D)``, fp32 ``(n, m)``.

    ``"l2"`` is Euclidean via the expansion, clamped at 0; ``"cos"`` is ``1 - cosine similarity``.
    """
    a, b = a.float(), b.float()
    if metric == "l2":
        sq = (a * a).sum(1, keepdim=True) + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
        return sq.clamp_min_(0.0).sqrt_()
    if metric == "cos":
        a_unit = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        b_unit = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return 1.0 - a_unit @ b_unit.T
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def paired_distances(a: torch.Tensor, b: torch.Tensor, metric: str = "l2") -> torch.Tensor:
    """Distance between row i of ``a`` and row i of ``b`` (both ``(n, D)``), fp32 ``(n,)``.

    Same formulas as :func:`pairwise_distances`, so rankings agree with it.
    """
    a, b = a.float(), b.float()
    if metric == "l2":
        sq = (a * a).sum(1) + (b * b).sum(1) - 2.0 * (a * b).sum(1)
        return sq.clamp_min_(0.0).sqrt_()
    if metric == "cos":
        denom = a.norm(dim=1).clamp_min(1e-12) * b.norm(dim=1).clamp_min(1e-12)
        return 1.0 - (a * b).sum(1) / denom
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")


def weighted_mean_by_label(
    values: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, num_groups: int
) -> torch.Tensor:
    """Per-group weighted mean of ``values`` ``(N,)``; float64 ``(num_groups,)``, 0 for empty groups."""
    w = weights.double()
    zeros = torch.zeros(num_groups, dtype=torch.float64, device=values.device)
    num = zeros.clone().index_add_(0, labels, values.double() * w)
    den = zeros.index_add_(0, labels, w)
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))


def _farthest_point_seeds(x: torch.Tensor, weights: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of K seeds: the heaviest row, then repeatedly the row farthest from the chosen ones.

    Ties go to the lowest index (``argmax`` returns the first maximum). The loop runs in NumPy on
    the ``(N, N)`` distance matrix: N = K + 1 in streaming, and per-op torch overhead dominated.
    """
    dmat = pairwise_distances(x, x).cpu().numpy()
    chosen = [int(torch.argmax(weights))]
    nearest = dmat[chosen[0]].copy()
    for _ in range(k - 1):
        nearest[chosen[-1]] = -1.0  # chosen rows are never picked again, even among duplicates
        chosen.append(int(np.argmax(nearest)))
        np.minimum(nearest, dmat[chosen[-1]], out=nearest)
    return torch.tensor(chosen, dtype=torch.long, device=x.device)


def _random_seeds(x: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """Anchor's rule: K rows drawn uniformly among the distinct rows (all rows if too few distinct)."""
    _, inverse = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), x.shape[0], dtype=torch.long, device=x.device)
    first = first.scatter_reduce(0, inverse, torch.arange(x.shape[0], device=x.device), reduce="amin")
    pool = first if first.numel() >= k else torch.arange(x.shape[0], device=x.device)
    perm = torch.randperm(pool.numel(), generator=generator).to(x.device)
    return pool[perm[:k]]


def _fill_empty_clusters(labels: torch.Tensor, own_dist: torch.Tensor, k: int) -> torch.Tensor:
    """Give every empty cluster the worst-fitting point of a cluster that has >= 2 members."""
    counts = torch.bincount(labels, minlength=k)
    if bool((counts > 0).all()):
        return labels
    labels, own_dist = labels.clone(), own_dist.clone()
    for j in torch.nonzero(counts == 0).flatten().tolist():
        movable = counts[labels] >= 2
        i = int(torch.argmax(torch.where(movable, own_dist, torch.full_like(own_dist, -1.0))))
        counts[labels[i]] -= 1
        counts[j] += 1
        labels[i] = j
        own_dist[i] = -1.0  # a sole member never moves again
    return labels


def _weighted_centroids(x: torch.Tensor, w: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32, device=x.device)
    sums.index_add_(0, labels, x * w[:, None])
    totals = torch.zeros(k, dtype=torch.float32, device=x.device).index_add_(0, labels, w)
    return sums / totals[:, None]


def _lloyd(
    x: torch.Tensor, w: torch.Tensor, centroids: torch.Tensor, max_iterations: int, tolerance: float
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Assign / re-centre until the summed centroid shift is below ``tolerance``.

    Returns the centroids (always the weighted means of the returned labels), labels, iterations.
    """
    k = centroids.shape[0]
    for iteration in range(1, max_iterations + 1):
        dist = pairwise_distances(x, centroids)
        labels = torch.argmin(dist, dim=1)  # ties: lowest cluster index
        labels = _fill_empty_clusters(labels, dist.gather(1, labels[:, None])[:, 0], k)
        new = _weighted_centroids(x, w, labels, k)
        shift = float((new - centroids).norm(dim=1).sum())
        centroids = new
        if shift < tolerance:
            break
    return centroids, labels, iteration


def _check_inputs(
    features: torch.Tensor,
    weights: torch.Tensor,
    timestamps: torch.Tensor,
    k: int,
    max_iterations: int,
    init: str,
) -> None:
    if features.ndim != 2 or not features.is_floating_point():
        got = f"{tuple(features.shape)} {features.dtype}"
        raise ValueError(f"features must be a floating (N, D) tensor, got {got}")
    n = features.shape[0]
    if weights.shape != (n,) or timestamps.shape != (n,):
        raise ValueError(
            f"weights and timestamps must be ({n},), got {tuple(weights.shape)} and {tuple(timestamps.shape)}"
        )
    if n and not bool((weights > 0).all()):
        raise ValueError("weights must be > 0")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"num_clusters must be an int >= 1, got {k!r}")
    if not isinstance(max_iterations, int) or max_iterations < 1:
        raise ValueError(f"max_iterations must be an int >= 1, got {max_iterations!r}")
    if init not in ("farthest_point", "random"):
        raise ValueError(f"init must be 'farthest_point' or 'random', got {init!r}")


def weighted_kmeans_ordered(
    features: torch.Tensor,
    weights: torch.Tensor,
    timestamps: torch.Tensor,
    num_clusters: int,
    *,
    max_iterations: int = 10,
    tolerance: float = 1e-4,
    init: str = "farthest_point",
    generator: torch.Generator | None = None,
) -> KMeansResult:
    """Cluster weighted, timestamped rows into K centroids and return them in time order.

    Args:
        features: ``(N, D)`` float (fp16/bf16 are computed in fp32), one flattened grid per row.
        weights: ``(N,)`` > 0, frames each row stands for (1 for a raw frame).
        timestamps: ``(N,)`` any unit (seconds, frame ids).
        num_clusters: K >= 1.
        max_iterations: Lloyd iterations (anchor: 10).
        tolerance: early stop on the summed centroid shift (anchor: 1e-4).
        init: ``"farthest_point"`` (deterministic) or ``"random"`` (anchor, uses ``generator``).
        generator: CPU generator for ``"random"``.

    Returns:
        :class:`KMeansResult`; with N <= K the rows themselves, sorted by time.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
        >>> r = weighted_kmeans_ordered(x, torch.ones(4), torch.arange(4.0), 2)
        >>> r.centroids.flatten().tolist(), r.weights.tolist(), r.timestamps.tolist()
        ([0.5, 10.5], [2.0, 2.0], [0.5, 2.5])
    """
    _check_inputs(features, weights, timestamps, num_clusters, max_iterations, init)
    n, k = features.shape[0], num_clusters
    weights, timestamps = weights.to(features.device), timestamps.to(features.device)
    x, w = features.float(), weights.float()
    if n <= k:
        labels, iterations = torch.arange(n, device=x.device), 0
        centroids = x
    else:
        seeds = _farthest_point_seeds(x, w, k) if init == "farthest_point" else _random_seeds(x, k, generator)
        centroids, labels, iterations = _lloyd(x, w, x[seeds], max_iterations, tolerance)
    k_out = centroids.shape[0]
    cluster_w = torch.zeros(k_out, dtype=torch.float64, device=x.device)
    cluster_w.index_add_(0, labels, weights.double())
    cluster_t = weighted_mean_by_label(timestamps, weights, labels, k_out)
    order = torch.sort(cluster_t, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(k_out, device=order.device)
    return KMeansResult(
        centroids=centroids[order].to(features.dtype),
        weights=cluster_w[order],
        timestamps=cluster_t[order],
        labels=rank[labels],
        iterations=iterations,
    )
