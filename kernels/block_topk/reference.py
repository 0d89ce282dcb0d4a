"""Block scoring and top-k selection in pure torch: the specification of :mod:`memstream.kernels.block_topk`.

ReKV retrieval (Di et al., 2025, "Streaming Video Question-Answering with In-context Video KV-Cache
Retrieval") keeps one representative key per stored frame block and, per layer, scores every block
by the plain dot product of the question's mean query with that key (no normalisation, no softmax),
then loads the top-k blocks back into attention, in time order.

Rules of the selection, shared by both backends:

* ``N <= k``: every block is selected (``M = N``), including ``N == 0``.
* Otherwise the blocks form groups of ``group_size`` consecutive blocks aligned to the END: the
  newest block ``N - 1`` closes the last group, and the ``N % group_size`` oldest blocks that do not
  fill a group are never selected. Aligning to the end keeps the newest blocks eligible and gives
  every layer the same count ``M = (k // group_size) * group_size``.
* A group's score is the mean of its blocks' scores; the ``k // group_size`` best groups win.
* Ties go to the newer group: the order is a stable sort of the groups from newest to oldest, so
  the result is deterministic on every device. Scores must be finite (a NaN sorts as the best).
* The selected block indices are returned sorted ascending (time order).
"""

from __future__ import annotations

import operator

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


def check_block_inputs(query: torch.Tensor, keys: torch.Tensor) -> None:
    """Validate the shapes, dtypes and devices of a block-scoring call.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32, the question's mean query per layer.
        keys: ``(L, N, C)`` float16/bfloat16/float32, one representative key per block and layer.

    Raises:
        ValueError: wrong number of dims, mismatched L or C, unsupported dtype, or different devices.
    """
    if query.ndim != 2 or keys.ndim != 3:
        raise ValueError(
            f"expected query (L, C) and keys (L, N, C), got query {tuple(query.shape)} and keys "
            f"{tuple(keys.shape)}. Stack per-layer tensors along a leading layer dim"
        )
    if query.shape[0] != keys.shape[0] or query.shape[1] != keys.shape[2]:
        raise ValueError(
            f"query {tuple(query.shape)} does not match keys {tuple(keys.shape)}: "
            "L (dim 0) and C (last dim) must be equal"
        )
    for name, tensor in (("query", query), ("keys", keys)):
        if tensor.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{name} has dtype {tensor.dtype}; use float16, bfloat16 or float32")
    if query.device != keys.device:
        raise ValueError(f"query is on {query.device} but keys are on {keys.device}; move them together")


def check_topk_args(k: int, group_size: int) -> int:
    """Validate ``k`` and ``group_size`` and return the number of groups to select.

    Args:
        k: number of blocks asked for.
        group_size: blocks per group.

    Returns:
        ``k // group_size``, >= 1.

    Raises:
        ValueError: ``k <= 0``, ``group_size <= 0`` or ``k < group_size``.
    """
    k, group_size = operator.index(k), operator.index(group_size)
    if k <= 0:
        raise ValueError(f"k must be >= 1, got {k}")
    if group_size <= 0:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if k // group_size == 0:
        raise ValueError(f"k={k} selects no group of group_size={group_size}; use k >= group_size")
    return k // group_size


def all_blocks(n_layers: int, n_blocks: int, device: torch.device) -> torch.Tensor:
    """Every block index for every layer: int64 ``(n_layers, n_blocks)``, rows ``0..n_blocks-1``."""
    return torch.arange(n_blocks, dtype=torch.int64, device=device).repeat(n_layers, 1)


def select_groups(group_scores: torch.Tensor, n_select: int, group_size: int, n_blocks: int) -> torch.Tensor:
    """Turn group scores into the sorted block indices of the ``n_select`` best groups.

    Args:
        group_scores: float32 ``(L, G)`` with ``G = n_blocks // group_size``; group ``g`` covers blocks
            ``n_blocks - (G - g) * group_size`` up to the next group (groups aligned to the end).
        n_select: how many groups to keep, ``1 <= n_select <= G``.
        group_size: blocks per group.
        n_blocks: N, the number of blocks the groups were built from.

    Returns:
        int64 ``(L, n_select * group_size)``, ascending block indices per layer. Ties between groups
        go to the newer one.
    """
    n_layers, n_groups = group_scores.shape
    first_block = n_blocks - n_groups * group_size
    # Newest group first + stable descending sort = ties resolved towards newer groups. torch.topk
    # does not promise any order among equal values, so it is not used here.
    newest_first = group_scores.flip(-1)
    order = torch.sort(newest_first, dim=-1, descending=True, stable=True).indices[:, :n_select]
    groups = torch.sort(n_groups - 1 - order, dim=-1).values
    offsets = torch.arange(group_size, dtype=torch.int64, device=group_scores.device)
    blocks = first_block + groups[:, :, None] * group_size + offsets
    return blocks.reshape(n_layers, n_select * group_size)


def block_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Dot product of each layer's query with each block's key, in float32.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32.
        keys: ``(L, N, C)`` float16/bfloat16/float32, same device as ``query``.

    Returns:
        float32 ``(L, N)``: ``scores[l, n] = sum_c query[l, c] * keys[l, n, c]``, products and sums in
        float32 whatever the input dtypes.
    """
    check_block_inputs(query, keys)
    return torch.einsum("lnc,lc->ln", keys.float(), query.float())


def group_means(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Mean score of each end-aligned group of ``group_size`` consecutive blocks.

    Args:
        scores: float32 ``(L, N)``.
        group_size: blocks per group, >= 1.

    Returns:
        float32 ``(L, N // group_size)``; the ``N % group_size`` oldest blocks are left out.
    """
    n_layers, n_blocks = scores.shape
    n_groups = n_blocks // group_size
    grouped = scores[:, n_blocks - n_groups * group_size :].reshape(n_layers, n_groups, group_size)
    return grouped.mean(dim=-1)


def block_topk(query: torch.Tensor, keys: torch.Tensor, k: int, *, group_size: int = 1) -> torch.Tensor:
    """Indices of the ``k`` best-scoring blocks per layer (in groups), in time order.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32, the question's mean query per layer.
        keys: ``(L, N, C)`` float16/bfloat16/float32, representative key of each block.
        k: number of blocks to retrieve, >= 1.
        group_size: consecutive blocks selected together (>= 1, <= k); see the module docstring
            for the end-aligned grouping and the tie rule.

    Returns:
        int64 ``(L, M)`` on ``keys``' device, ascending per layer: ``M = N`` when ``N <= k``, else
        ``M = (k // group_size) * group_size``.

    Raises:
        ValueError: invalid ``k``/``group_size`` or inputs (see :func:`check_block_inputs`).
    """
    n_select = check_topk_args(k, group_size)
    check_block_inputs(query, keys)
    n_layers, n_blocks = keys.shape[0], keys.shape[1]
    if n_blocks <= k:
        return all_blocks(n_layers, n_blocks, keys.device)
    means = group_means(block_scores(query, keys), group_size)
    return select_groups(means, n_select, group_size, n_blocks)
