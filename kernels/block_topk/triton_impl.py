"""Block scoring and top-k selection with a Triton kernel; same signatures and results as reference.py.

One kernel computes the float32 scores of end-aligned groups of blocks (the per-block scores are the
``group_size == 1`` case): each program takes a tile of ``BLOCK_G`` groups of one layer, walks the
channels in tiles of ``BLOCK_C``, and accumulates ``query . key`` of every block of its groups in
float32. The selection itself (a stable sort over at most a few thousand group scores per layer)
stays in torch, in :func:`reference.select_groups`, so both backends share the tie rule.

Offsets are computed in int64, so inputs with more than 2**31 elements are addressed correctly.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .._dispatch import check_kernel_can_run
from .reference import all_blocks, check_block_inputs, check_topk_args, select_groups

_MAX_GRID_Y = 65535  # CUDA limit on the second grid dimension (here: layers)


@triton.jit
def _group_scores_kernel(
    query_ptr,
    keys_ptr,
    out_ptr,
    n_groups,
    n_channels,
    first_block,
    query_stride_layer,
    query_stride_channel,
    keys_stride_layer,
    keys_stride_block,
    keys_stride_channel,
    GROUP_SIZE: tl.constexpr,
    BLOCK_G: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """out[l, g] = mean over the GROUP_SIZE blocks of group g of query[l] . keys[l, block], float32."""
    groups = tl.program_id(0).to(tl.int64) * BLOCK_G + tl.arange(0, BLOCK_G)
    layer = tl.program_id(1).to(tl.int64)
    group_mask = groups < n_groups
    group_first = first_block + groups * GROUP_SIZE
    query_row = query_ptr + layer * query_stride_layer
    keys_layer = keys_ptr + layer * keys_stride_layer
    total = tl.zeros([BLOCK_G], dtype=tl.float32)
    for c_start in range(0, n_channels, BLOCK_C):
        channels = (c_start + tl.arange(0, BLOCK_C)).to(tl.int64)  # times a stride: int64 offsets
        channel_mask = channels < n_channels
        query = tl.load(query_row + channels * query_stride_channel, mask=channel_mask, other=0.0)
        query = query.to(tl.float32)
        tile_mask = group_mask[:, None] & channel_mask[None, :]
        for j in tl.static_range(GROUP_SIZE):
            blocks = group_first + j
            key_ptrs = keys_layer + blocks[:, None] * keys_stride_block
            key_ptrs += channels[None, :] * keys_stride_channel
            keys = tl.load(key_ptrs, mask=tile_mask, other=0.0).to(tl.float32)
            total += tl.sum(keys * query[None, :], axis=1)
    # div_rn: IEEE division (a plain `/` compiles to an approximate division on CUDA).
    mean = tl.math.div_rn(total, tl.full([BLOCK_G], GROUP_SIZE, dtype=tl.float32))
    tl.store(out_ptr + layer * n_groups + groups, mean, mask=group_mask)


def _group_scores(query: torch.Tensor, keys: torch.Tensor, group_size: int) -> torch.Tensor:
    """Launch the kernel: float32 ``(L, N // group_size)`` group means, end-aligned groups."""
    n_layers, n_blocks, n_channels = keys.shape
    n_groups = n_blocks // group_size
    out = torch.empty(n_layers, n_groups, dtype=torch.float32, device=keys.device)
    if out.numel() == 0:
        return out
    if n_layers > _MAX_GRID_Y:
        raise ValueError(f"at most {_MAX_GRID_Y} layers per call, got {n_layers}; split the call")
    block_g = min(64, triton.next_power_of_2(n_groups))
    block_c = min(128, triton.next_power_of_2(max(n_channels, 1)))
    grid = (triton.cdiv(n_groups, block_g), n_layers)
    _group_scores_kernel[grid](
        query,
        keys,
        out,
        n_groups,
        n_channels,
        n_blocks - n_groups * group_size,
        query.stride(0),
        query.stride(1),
        keys.stride(0),
        keys.stride(1),
        keys.stride(2),
        GROUP_SIZE=group_size,
        BLOCK_G=block_g,
        BLOCK_C=block_c,
    )
    return out


def block_scores(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Dot product of each layer's query with each block's key, in float32 (Triton kernel).

    Args:
        query: ``(L, C)`` float16/bfloat16/float32, any strides.
        keys: ``(L, N, C)`` float16/bfloat16/float32, any strides, same device as ``query``.

    Returns:
        float32 ``(L, N)``, equal to :func:`reference.block_scores` up to float32 summation order.

    Raises:
        ValueError: bad shapes, dtypes or devices (see :func:`reference.check_block_inputs`).
    """
    check_block_inputs(query, keys)
    check_kernel_can_run(_group_scores_kernel, keys.device)
    return _group_scores(query, keys, 1)


def block_topk(query: torch.Tensor, keys: torch.Tensor, k: int, *, group_size: int = 1) -> torch.Tensor:
    """Indices of the ``k`` best-scoring blocks per layer (in groups), in time order (Triton scores).

    Same contract as :func:`reference.block_topk`: int64 ``(L, M)`` ascending, ``M = N`` when
    ``N <= k`` else ``(k // group_size) * group_size``, end-aligned groups, ties to the newer group.
    The group means come from the kernel; the selection is a torch stable sort.

    Args:
        query: ``(L, C)`` float16/bfloat16/float32.
        keys: ``(L, N, C)`` float16/bfloat16/float32, same device as ``query``.
        k: number of blocks to retrieve, >= 1.
        group_size: consecutive blocks selected together, 1 <= group_size <= k.

    Returns:
        int64 ``(L, M)`` on ``keys``' device.

    Raises:
        ValueError: invalid ``k``/``group_size``, shapes, dtypes or devices.
    """
    n_select = check_topk_args(k, group_size)
    check_block_inputs(query, keys)
    check_kernel_can_run(_group_scores_kernel, keys.device)
    n_layers, n_blocks = keys.shape[0], keys.shape[1]
    if n_blocks <= k:
        return all_blocks(n_layers, n_blocks, keys.device)
    return select_groups(_group_scores(query, keys, group_size), n_select, group_size, n_blocks)
