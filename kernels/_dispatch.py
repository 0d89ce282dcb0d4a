"""Choosing between the pure-torch reference and the Triton kernel of an op.

Every op in :mod:`kernels` takes ``backend="auto" | "torch" | "triton"`` and asks
:func:`resolve_backend` which one to run:

* ``"torch"`` always runs the reference (any device).
* ``"triton"`` runs the kernel; it needs the ``triton`` package and CUDA tensors, or the Triton
  interpreter (environment variable ``TRITON_INTERPRET=1``), which runs the kernels on CPU tensors
  with numpy. The tests use the interpreter to compare kernels and references on machines without
  a GPU. Triton reads the variable when a kernel module is imported (``@triton.jit`` builds an
  interpreted function then), so it must be set before the first ``backend="triton"`` call.
* ``"auto"`` picks ``"triton"`` when every tensor is on CUDA and triton imports, ``"torch"``
  otherwise.

Whether triton imports is checked once per process. Kernel launches are never wrapped in a broad
``except``: a failing kernel raises its own error.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

BACKENDS = ("auto", "torch", "triton")


@functools.cache
def triton_import_error() -> str | None:
    """Why ``import triton`` fails in this process, or None when it works (checked once)."""
    try:
        import triton  # noqa: F401
    except ImportError as error:
        return f"{type(error).__name__}: {error}"
    return None


def triton_interpreter_enabled() -> bool:
    """Whether ``TRITON_INTERPRET`` is set (read now, with Triton's own parsing: 1, true, on, yes)."""
    if triton_import_error() is not None:
        return False
    import triton

    return bool(triton.knobs.runtime.interpret)


def resolve_backend(backend: str, *tensors: torch.Tensor) -> Literal["torch", "triton"]:
    """Decide which implementation of an op runs on ``tensors``.

    Args:
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.
        *tensors: the op's tensor inputs (any shapes and dtypes); only their devices matter.

    Returns:
        ``"torch"`` or ``"triton"``.

    Raises:
        ValueError: ``backend`` is not one of the three names, or ``"triton"`` was asked for and
            cannot run here (triton does not import, or a tensor is off CUDA without
            ``TRITON_INTERPRET=1``); the message says what to do.
        TypeError: one of ``tensors`` is not a ``torch.Tensor``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}. Choose one of: {', '.join(BACKENDS)}")
    for tensor in tensors:
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"expected torch.Tensor inputs, got {type(tensor).__name__}")
    if backend == "torch":
        return "torch"
    on_cuda = bool(tensors) and all(tensor.device.type == "cuda" for tensor in tensors)
    if backend == "auto":
        return "triton" if on_cuda and triton_import_error() is None else "torch"
    import_error = triton_import_error()
    if import_error is not None:
        raise ValueError(
            f"backend='triton' needs the triton package, which does not import ({import_error}). "
            "Install triton or pass backend='torch'"
        )
    if not on_cuda and not triton_interpreter_enabled():
        devices = sorted({str(tensor.device) for tensor in tensors})
        raise ValueError(
            f"backend='triton' needs CUDA tensors, got tensors on {', '.join(devices) or 'no device'}. "
            "Move them to a GPU, pass backend='torch', or set TRITON_INTERPRET=1 before the first "
            "Triton call to run the kernels in the (slow) Triton interpreter"
        )
    return "triton"


def check_kernel_can_run(kernel: Any, device: torch.device) -> None:
    """Check that a ``@triton.jit`` kernel can launch on tensors of ``device``.

    Compiled kernels need CUDA tensors, interpreted ones CUDA or CPU tensors. A kernel module
    imported while ``TRITON_INTERPRET`` was unset holds compiled kernels even if the variable is set
    later; this turns that case into a clear error.

    Args:
        kernel: a function decorated with ``@triton.jit``.
        device: the device of the tensors it is about to be launched on.

    Raises:
        ValueError: ``device`` is neither CUDA nor CPU, or is CPU and ``kernel`` is compiled.
    """
    from triton.runtime.interpreter import InterpretedFunction

    name = getattr(kernel, "__name__", type(kernel).__name__)
    if device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"the Triton kernel {name} runs on CUDA tensors (or CPU ones in the interpreter), got "
            f"{device}. Move the tensors or pass backend='torch'"
        )
    if device.type == "cpu" and not isinstance(kernel, InterpretedFunction):
        raise ValueError(
            f"the Triton kernel {name} was compiled for CUDA but the tensors are on {device}. Set "
            "TRITON_INTERPRET=1 before the first Triton call of the process (the kernel module reads "
            "it when imported), or pass backend='torch'"
        )
