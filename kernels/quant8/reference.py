"""Symmetric int8 quantisation in pure torch: the specification of :mod:`memstream.kernels.quant8`.

KIVI (Liu et al., 2024, "KIVI: A Tuning-Free Asymmetric 2bit Quantization for KV Cache") observed
that keys have outlier channels and values do not, so keys are quantised per channel (one scale per
channel, shared over the block's tokens) and values per token. For a KV block ``(H, T, D)`` that is
``reduce_dim=-2`` for keys and ``reduce_dim=-1`` for values. Unlike KIVI we use symmetric absmax
int8 (no zero point), which is plenty at 8 bits:

* ``scale = amax(|x|, reduce_dim, keepdim=True) / 127`` in float32 (IEEE division),
* ``scale = 1`` where it would be 0 (an all-zero row; also a row so tiny that ``amax / 127``
  underflows), so nothing is ever divided by zero,
* ``q = clamp(round_half_to_even(x / scale), -127, 127)`` as int8 (-128 is never produced),
* ``dequantised = (q.float() * scale).to(dtype)``.

Everything is computed in float32 from the exact float32 value of the input, so float16 and
bfloat16 inputs follow the same rule. Inputs must be finite.
"""

from __future__ import annotations

import torch

SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
Q_MAX = 127


def check_quantize_inputs(x: torch.Tensor, reduce_dim: int) -> int:
    """Validate a quantisation call and return ``reduce_dim`` as a non-negative dim.

    Args:
        x: float16/bfloat16/float32 tensor with at least one dim.
        reduce_dim: the dim the scale is shared over, in ``[-x.ndim, x.ndim)``.

    Returns:
        ``reduce_dim % x.ndim``.

    Raises:
        ValueError: unsupported dtype, a 0-dim tensor, or ``reduce_dim`` out of range.
    """
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"cannot quantise dtype {x.dtype}; use float16, bfloat16 or float32")
    if x.ndim == 0 or not -x.ndim <= reduce_dim < x.ndim:
        raise ValueError(
            f"reduce_dim={reduce_dim} is out of range for a tensor of shape {tuple(x.shape)}; "
            "use -2 for per-channel key scales of an (H, T, D) block, -1 for per-token"
        )
    return reduce_dim % x.ndim


def check_dequantize_inputs(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> int:
    """Validate a dequantisation call and return the dim the scale is shared over.

    Args:
        q: int8 tensor, as returned by :func:`quantize_int8`.
        scale: float32, ``q``'s shape with size 1 at (at most) one dim, same device as ``q``.
        dtype: float16, bfloat16 or float32, the output dtype.

    Returns:
        The non-negative dim where ``scale`` has size 1 and ``q`` does not; when there is none
        (``q`` also has size 1 there), the last dim where both have size 1.

    Raises:
        ValueError: wrong dtypes, mismatched shapes or devices.
    """
    if q.dtype != torch.int8 or scale.dtype != torch.float32:
        raise ValueError(f"expected int8 q and float32 scale, got {q.dtype} and {scale.dtype}")
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"cannot dequantise to {dtype}; use float16, bfloat16 or float32")
    if q.device != scale.device:
        raise ValueError(f"q is on {q.device} but scale is on {scale.device}; move them together")
    same_rank = scale.ndim == q.ndim > 0
    differ = [d for d in range(q.ndim) if same_rank and scale.shape[d] != q.shape[d]]
    ones = [d for d in range(q.ndim) if same_rank and scale.shape[d] == 1]
    if not ones or len(differ) > 1 or not set(differ) <= set(ones):
        raise ValueError(
            f"scale {tuple(scale.shape)} does not fit q {tuple(q.shape)}: it must be q's shape with "
            "size 1 at the reduced dim, as quantize_int8 returns it"
        )
    return differ[0] if differ else ones[-1]


def quantize_int8(x: torch.Tensor, reduce_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax int8 quantisation with one scale per row along ``reduce_dim``.

    Args:
        x: float16/bfloat16/float32, any shape with at least one dim, finite values.
        reduce_dim: the dim a scale is shared over: ``-2`` (tokens) for per-channel key scales of an
            ``(H, T, D)`` block, ``-1`` (channels) for per-token value scales.

    Returns:
        ``(q, scale)``: int8 ``q`` of ``x``'s shape with values in [-127, 127], and float32 ``scale``
        of ``x``'s shape with size 1 at ``reduce_dim``, such that ``x ~= q * scale`` with
        ``|x - q * scale| <= scale / 2`` (up to float32 rounding).

    Raises:
        ValueError: see :func:`check_quantize_inputs`.
    """
    dim = check_quantize_inputs(x, reduce_dim)
    scale_shape = x.shape[:dim] + (1,) + x.shape[dim + 1 :]
    if x.numel() == 0:
        # An empty row is (vacuously) all zero: scale 1.
        scale = torch.ones(scale_shape, dtype=torch.float32, device=x.device)
        return torch.empty_like(x, dtype=torch.int8), scale
    values = x.float()
    scale = values.abs().amax(dim=dim, keepdim=True) / Q_MAX
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.round(values / scale).clamp_(-Q_MAX, Q_MAX).to(torch.int8)  # round: half to even
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Undo :func:`quantize_int8`: ``(q.float() * scale).to(dtype)``.

    Args:
        q: int8, any shape.
        scale: float32, ``q``'s shape with size 1 at the reduced dim.
        dtype: output dtype, float16, bfloat16 or float32.

    Returns:
        ``dtype`` tensor of ``q``'s shape (the product is rounded once, float32 -> ``dtype``).

    Raises:
        ValueError: see :func:`check_dequantize_inputs`.
    """
    check_dequantize_inputs(q, scale, dtype)
    return (q.float() * scale).to(dtype)
