"""Symmetric int8 quantisation with Triton kernels; same signatures and results as reference.py.

The tensor is seen as rows along ``reduce_dim``: with ``x`` viewed as ``(outer, R, inner)`` (R the
size of ``reduce_dim``), row ``r`` is ``x[r // inner, :, r % inner]``. This is the "move
``reduce_dim`` last and view as rows" layout, addressed through strides so no transposed copy is
made. One program handles ``BLOCK_ROWS`` rows, walking R in tiles of ``BLOCK_R``: quantisation
takes two passes (absmax, then quantise), dequantisation one. Offsets are int64: rows and columns
both (column times stride passed 2**31 along a long reduced dim, an illegal access on an H200).

Exactness: quantisation matches the reference bit for bit for float32, float16 and bfloat16 inputs
(both compute in float32 from the exact input values, with IEEE division ``div_rn`` and an exact
round-half-to-even built from ``floor``; libdevice's ``rint`` is not available in the Triton
interpreter). Dequantisation matches bit for bit for float32 and float16 outputs, and for bfloat16
on CUDA; the Triton interpreter truncates float32 -> bfloat16 instead of rounding to nearest, so
under ``TRITON_INTERPRET=1`` a bfloat16 output can be one bfloat16 ulp (2**-8 relative) off.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .._dispatch import check_kernel_can_run
from .reference import Q_MAX, check_dequantize_inputs, check_quantize_inputs

_TILE_ELEMENTS = 4096  # elements per program tile (BLOCK_ROWS * BLOCK_R)


@triton.jit
def _quantize_kernel(
    x_ptr,
    q_ptr,
    scale_ptr,
    n_rows,
    reduce_len,
    inner,
    x_stride_outer,
    x_stride_reduce,
    x_stride_inner,
    Q_LIMIT: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """q, scale of BLOCK_ROWS rows; q and scale are contiguous (outer, R, inner) / (outer, 1, inner)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = rows < n_rows
    outer = rows // inner
    within = rows % inner
    x_rows = x_ptr + outer * x_stride_outer + within * x_stride_inner
    q_rows = q_ptr + outer * reduce_len * inner + within

    absmax = tl.zeros([BLOCK_ROWS], dtype=tl.float32)
    for start in range(0, reduce_len, BLOCK_R):
        cols = (start + tl.arange(0, BLOCK_R)).to(tl.int64)  # cols * stride passes 2**31 on big tensors
        mask = row_mask[:, None] & (cols < reduce_len)[None, :]
        x = tl.load(x_rows[:, None] + cols[None, :] * x_stride_reduce, mask=mask, other=0.0)
        absmax = tl.maximum(absmax, tl.max(tl.abs(x.to(tl.float32)), axis=1))
    # div_rn: IEEE division, as torch does it (a plain `/` is approximate on CUDA).
    scale = tl.math.div_rn(absmax, tl.full([BLOCK_ROWS], Q_LIMIT, dtype=tl.float32))
    scale = tl.where(scale == 0.0, 1.0, scale)
    tl.store(scale_ptr + rows, scale, mask=row_mask)

    for start in range(0, reduce_len, BLOCK_R):
        cols = (start + tl.arange(0, BLOCK_R)).to(tl.int64)  # cols * stride passes 2**31 on big tensors
        mask = row_mask[:, None] & (cols < reduce_len)[None, :]
        x = tl.load(x_rows[:, None] + cols[None, :] * x_stride_reduce, mask=mask, other=0.0)
        y = tl.math.div_rn(x.to(tl.float32), scale[:, None])
        # Round half to even, exact for |y| < 2**22 (here |y| <= 127 + rounding): y - floor(y) is
        # exact, and a tie rounds up only from an odd floor.
        below = tl.floor(y)
        fraction = y - below
        below_is_odd = (below - 2.0 * tl.floor(below * 0.5)) != 0.0
        round_up = (fraction > 0.5) | ((fraction == 0.5) & below_is_odd)
        rounded = tl.where(round_up, below + 1.0, below)
        rounded = tl.minimum(tl.maximum(rounded, -Q_LIMIT), Q_LIMIT)
        tl.store(q_rows[:, None] + cols[None, :] * inner, rounded.to(tl.int8), mask=mask)


@triton.jit
def _dequantize_kernel(
    q_ptr,
    scale_ptr,
    out_ptr,
    n_rows,
    reduce_len,
    inner,
    q_stride_outer,
    q_stride_reduce,
    q_stride_inner,
    scale_stride_outer,
    scale_stride_inner,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_R: tl.constexpr,
):
    """out = (q * scale).to(out dtype) for BLOCK_ROWS rows; out is contiguous (outer, R, inner)."""
    rows = tl.program_id(0).to(tl.int64) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_mask = rows < n_rows
    outer = rows // inner
    within = rows % inner
    scale = tl.load(scale_ptr + outer * scale_stride_outer + within * scale_stride_inner, mask=row_mask)
    q_rows = q_ptr + outer * q_stride_outer + within * q_stride_inner
    out_rows = out_ptr + outer * reduce_len * inner + within
    for start in range(0, reduce_len, BLOCK_R):
        cols = (start + tl.arange(0, BLOCK_R)).to(tl.int64)  # cols * stride passes 2**31 on big tensors
        mask = row_mask[:, None] & (cols < reduce_len)[None, :]
        q = tl.load(q_rows[:, None] + cols[None, :] * q_stride_reduce, mask=mask, other=0)
        values = q.to(tl.float32) * scale[:, None]
        tl.store(out_rows[:, None] + cols[None, :] * inner, values.to(out_ptr.dtype.element_ty), mask=mask)


def _rows_view(shape: torch.Size, dim: int) -> tuple[int, int, int]:
    """``(outer, R, inner)`` sizes of ``shape`` around ``dim``."""
    return math.prod(shape[:dim]), shape[dim], math.prod(shape[dim + 1 :])


def _block_sizes(n_rows: int, reduce_len: int) -> tuple[int, int]:
    block_r = min(256, triton.next_power_of_2(reduce_len))
    block_rows = max(1, min(triton.next_power_of_2(n_rows), _TILE_ELEMENTS // block_r))
    return block_rows, block_r


def quantize_int8(x: torch.Tensor, reduce_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax int8 quantisation along ``reduce_dim`` (Triton kernel).

    Args:
        x: float16/bfloat16/float32, at least one dim, finite, any strides (a layout that cannot
            be viewed as ``(outer, R, inner)`` is copied first).
        reduce_dim: the dim a scale is shared over (``-2``: per channel, ``-1``: per token).

    Returns:
        ``(q, scale)``: int8 of ``x``'s shape and float32 of ``x``'s shape with size 1 at
        ``reduce_dim``, both contiguous, bit-identical to :func:`reference.quantize_int8`.

    Raises:
        ValueError: bad dtype, ``reduce_dim`` or device.
    """
    dim = check_quantize_inputs(x, reduce_dim)
    check_kernel_can_run(_quantize_kernel, x.device)
    outer, reduce_len, inner = _rows_view(x.shape, dim)
    q = torch.empty(x.shape, dtype=torch.int8, device=x.device)
    scale = torch.ones(x.shape[:dim] + (1,) + x.shape[dim + 1 :], dtype=torch.float32, device=x.device)
    if x.numel() == 0:
        return q, scale
    x_rows = x.reshape(outer, reduce_len, inner)  # a view when the strides allow it
    n_rows = outer * inner
    block_rows, block_r = _block_sizes(n_rows, reduce_len)
    _quantize_kernel[(triton.cdiv(n_rows, block_rows),)](
        x_rows,
        q,
        scale,
        n_rows,
        reduce_len,
        inner,
        *x_rows.stride(),
        Q_LIMIT=float(Q_MAX),
        BLOCK_ROWS=block_rows,
        BLOCK_R=block_r,
    )
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(q.float() * scale).to(dtype)`` (Triton kernel).

    Args:
        q: int8, any shape and strides.
        scale: float32, ``q``'s shape with size 1 at the reduced dim, same device.
        dtype: float16, bfloat16 or float32.

    Returns:
        Contiguous ``dtype`` tensor of ``q``'s shape; see the module docstring for exactness.

    Raises:
        ValueError: bad dtypes, shapes or device.
    """
    dim = check_dequantize_inputs(q, scale, dtype)
    check_kernel_can_run(_dequantize_kernel, q.device)
    out = torch.empty(q.shape, dtype=dtype, device=q.device)
    if q.numel() == 0:
        return out
    outer, reduce_len, inner = _rows_view(q.shape, dim)
    q_rows = q.reshape(outer, reduce_len, inner)
    scale_rows = scale.reshape(outer, 1, inner)
    n_rows = outer * inner
    block_rows, block_r = _block_sizes(n_rows, reduce_len)
    _dequantize_kernel[(triton.cdiv(n_rows, block_rows),)](
        q_rows,
        scale_rows,
        out,
        n_rows,
        reduce_len,
        inner,
        *q_rows.stride(),
        scale_rows.stride(0),
        scale_rows.stride(2),
        BLOCK_ROWS=block_rows,
        BLOCK_R=block_r,
    )
    return out
