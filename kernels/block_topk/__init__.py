"""ReKV block retrieval: score stored frame blocks against the question and pick the top k.

``block_scores`` and ``block_topk`` dispatch to the pure-torch specification in ``reference.py`` or
to the Triton kernel in ``triton_impl.py`` (see :func:`memstream.kernels._dispatch.resolve_backend`); both give
the same indices. The selection rules (end-aligned groups, ties to the newer group, time order) are
documented in ``reference.py``.

Example:
    >>> import torch
    >>> from memstream.kernels.block_topk import block_topk
    >>> query = torch.tensor([[1.0, 0.0]])                     # (L=1, C=2)
    >>> keys = torch.tensor([[[3.0, 0], [1, 0], [2, 0], [5, 0]]])  # (L=1, N=4, C=2)
    >>> block_topk(query, keys, 2)
    tensor([[0, 3]])
"""

from __future__ import annotations

import torch

from .._dispatch import resolve_backend
from . import reference

__all__ = ["block_scores", "block_topk"]


def block_scores(query: torch.Tensor, keys: torch.Tensor, *, backend: str = "auto") -> torch.Tensor:
    """Dot product of each layer's query with each block's representative key, in float32.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32, the question's mean query per layer.
        keys: ``(L, N, C)`` float16/bfloat16/float32, one key per stored block, same device.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        float32 ``(L, N)``: ``scores[l, n] = query[l] . keys[l, n]`` accumulated in float32, no
        normalisation.

    Raises:
        ValueError: bad shapes, dtypes or devices, or an unusable ``backend``.
    """
    reference.check_block_inputs(query, keys)  # bad input: the same message whatever the backend
    if resolve_backend(backend, query, keys) == "triton":
        from . import triton_impl

        return triton_impl.block_scores(query, keys)
    return reference.block_scores(query, keys)


def block_topk(
    query: torch.Tensor,
    keys: torch.Tensor,
    k: int,
    *,
    group_size: int = 1,
    backend: str = "auto",
) -> torch.Tensor:
    """Indices of the best-scoring blocks per layer, selected in groups, in time order.

    If ``N <= k`` every block is returned. Otherwise blocks form groups of ``group_size``
    consecutive blocks aligned to the end (block ``N - 1`` closes the last group; the
    ``N % group_size`` oldest blocks are not eligible, which keeps the same count for every layer),
    each group scores the mean of its blocks' :func:`block_scores`, and the ``k // group_size`` best
    groups are returned, ties going to the newer group.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32, the question's mean query per layer.
        keys: ``(L, N, C)`` float16/bfloat16/float32, one key per stored block, same device.
        k: number of blocks to retrieve, >= 1.
        group_size: consecutive blocks selected together, 1 <= group_size <= k.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        int64 ``(L, M)`` block indices on ``keys``' device, ascending per layer; ``M = N`` when
        ``N <= k`` (``(L, 0)`` for ``N == 0``), else ``M = (k // group_size) * group_size``.

    Raises:
        ValueError: ``k <= 0``, ``group_size <= 0``, ``k < group_size``, bad inputs, or an
            unusable ``backend``.
    """
    reference.check_block_inputs(query, keys)  # bad input: the same message whatever the backend
    if resolve_backend(backend, query, keys) == "triton":
        from . import triton_impl

        return triton_impl.block_topk(query, keys, k, group_size=group_size)
    return reference.block_topk(query, keys, k, group_size=group_size)
