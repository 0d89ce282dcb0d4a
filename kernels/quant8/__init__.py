"""Int8 compression of KV blocks, KIVI-style: keys per channel, values per token.

``quantize_int8`` and ``dequantize_int8`` dispatch to the pure-torch specification in
``reference.py`` or to the Triton kernels in ``triton_impl.py`` (see
:func:`memstream.kernels._dispatch.resolve_backend`); ``int8_error`` reports what a round trip loses.

Example:
    >>> import torch
    >>> from memstream.kernels.quant8 import dequantize_int8, quantize_int8
    >>> block = torch.tensor([[[127.0, 63.5], [-1.0, 254.0]]])  # (H=1, T=2, D=2)
    >>> q, scale = quantize_int8(block, reduce_dim=-1)          # per token: scales 1 and 2
    >>> q                                                       # 63.5 -> 64, -0.5 -> 0 (half to even)
    tensor([[[127,  64],
             [  0, 127]]], dtype=torch.int8)
    >>> dequantize_int8(q, scale, torch.float32)
    tensor([[[127.,  64.],
             [  0., 254.]]])
"""

from __future__ import annotations

from typing import TypedDict

import torch

from .._dispatch import resolve_backend
from . import reference

__all__ = ["Int8Error", "dequantize_int8", "int8_error", "quantize_int8"]


class Int8Error(TypedDict):
    """Error of an int8 round trip, in the units of the input.

    Attributes:
        max_abs: largest ``|x - dequantize(quantize(x))|``.
        rel_rms: ``||x - dequantized||_2 / ||x||_2`` (0 when ``x`` is all zero or empty).
    """

    max_abs: float
    rel_rms: float


def quantize_int8(
    x: torch.Tensor, reduce_dim: int, *, backend: str = "auto"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax int8 quantisation with one float32 scale per row along ``reduce_dim``.

    ``scale = amax(|x|, reduce_dim) / 127`` (1 for all-zero rows), ``q = round_half_even(x / scale)``
    clamped to [-127, 127]; see ``reference.py`` for the exact rule.

    Args:
        x: float16/bfloat16/float32, at least one dim, finite values; e.g. a KV block ``(H, T, D)``.
        reduce_dim: the dim a scale is shared over: ``-2`` (tokens) gives per-channel scales, for
            keys; ``-1`` (channels) gives per-token scales, for values.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        ``(q, scale)``: int8 ``q`` of ``x``'s shape, float32 ``scale`` of ``x``'s shape with size 1 at
        ``reduce_dim``; ``|x - q * scale| <= scale / 2`` elementwise (up to float32 rounding).

    Raises:
        ValueError: unsupported dtype, 0-dim ``x``, ``reduce_dim`` out of range, or an unusable
            ``backend``.
    """
    reference.check_quantize_inputs(x, reduce_dim)  # bad input: the same message whatever the backend
    if resolve_backend(backend, x) == "triton":
        from . import triton_impl

        return triton_impl.quantize_int8(x, reduce_dim)
    return reference.quantize_int8(x, reduce_dim)


def dequantize_int8(
    q: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype, *, backend: str = "auto"
) -> torch.Tensor:
    """Undo :func:`quantize_int8`: ``(q.float() * scale).to(dtype)``.

    Args:
        q: int8, any shape.
        scale: float32, ``q``'s shape with size 1 at the reduced dim, same device.
        dtype: output dtype: float16, bfloat16 or float32.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        ``dtype`` tensor of ``q``'s shape.

    Raises:
        ValueError: wrong dtypes, a ``scale`` that does not fit ``q``, different devices, or an
            unusable ``backend``.
    """
    reference.check_dequantize_inputs(q, scale, dtype)  # bad input (devices too): the same message whatever the backend
    if resolve_backend(backend, q, scale) == "triton":
        from . import triton_impl

        return triton_impl.dequantize_int8(q, scale, dtype)
    return reference.dequantize_int8(q, scale, dtype)


def int8_error(x: torch.Tensor, reduce_dim: int, *, backend: str = "auto") -> Int8Error:
    """Error of an int8 round trip of ``x``, for benchmarks and reports.

    Args:
        x: float16/bfloat16/float32, at least one dim.
        reduce_dim: as in :func:`quantize_int8`.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Returns:
        :class:`Int8Error` with python floats, measured against ``x`` in float32 (the round trip is
        dequantised to float32, so only the int8 step is measured).
    """
    q, scale = quantize_int8(x, reduce_dim, backend=backend)
    values = x.float()
    error = values - dequantize_int8(q, scale, torch.float32, backend=backend)
    if error.numel() == 0:
        return Int8Error(max_abs=0.0, rel_rms=0.0)
    norm = torch.linalg.vector_norm(values).item()
    rel_rms = torch.linalg.vector_norm(error).item() / norm if norm > 0 else 0.0
    return Int8Error(max_abs=error.abs().max().item(), rel_rms=rel_rms)
