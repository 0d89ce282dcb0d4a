"""Int8 quantisation: exact values, round-trip bound, edge cases, errors, Triton vs reference."""

from __future__ import annotations

import pytest
import torch

from memstream.kernels import dequantize_int8, int8_error, quantize_int8
from memstream.kernels.quant8 import reference
from tests.kernels import TRITON_DEVICE

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
BACKENDS = ("torch", "triton")


def device_for(backend: str) -> str:
    return TRITON_DEVICE if backend == "triton" else "cpu"


def random_block(
    shape: tuple[int, ...] = (2, 63, 60), dtype: torch.dtype = torch.float32, seed: int = 0
) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=generator) * 3).to(dtype)


# Per-token rows: amax 127 -> scale 1 (63.5 -> 64 and 2.5 -> 2: half to even), all zero -> scale 1,
# amax 254 -> scale 2 (3/2 = 1.5 -> 2, -5/2 = -2.5 -> -2, 1/2 = 0.5 -> 0).
HAND_X = [[127.0, 63.5, -0.5, 1.5, 2.5, -126.6], [0.0] * 6, [254.0, 3.0, -5.0, 1.0, -254.0, 0.0]]
HAND_Q = [[127, 64, 0, 2, 2, -127], [0] * 6, [127, 2, -2, 0, -127, 0]]
HAND_SCALE = [[1.0], [1.0], [2.0]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_values(backend: str) -> None:
    x = torch.tensor(HAND_X, device=device_for(backend))
    q, scale = quantize_int8(x, -1, backend=backend)
    assert q.dtype == torch.int8 and scale.dtype == torch.float32
    assert q.cpu().tolist() == HAND_Q and scale.cpu().tolist() == HAND_SCALE
    # The same data laid out per channel: (tokens, channels) = x.T, scales shared over tokens.
    q_t, scale_t = quantize_int8(x.T.contiguous(), -2, backend=backend)
    assert q_t.T.cpu().tolist() == HAND_Q and scale_t.T.cpu().tolist() == HAND_SCALE
    restored = dequantize_int8(q, scale, torch.float32, backend=backend).cpu()
    assert restored.tolist() == [[127.0, 64, 0, 2, 2, -127], [0.0] * 6, [254.0, 4, -4, 0, -254, 0]]


@pytest.mark.parametrize("reduce_dim", [-1, -2, 0])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_round_trip_error_is_at_most_half_a_step(reduce_dim: int, dtype: torch.dtype) -> None:
    x = random_block(dtype=dtype)
    q, scale = reference.quantize_int8(x, reduce_dim)
    expected_scale_shape = list(x.shape)
    expected_scale_shape[reduce_dim] = 1
    assert q.shape == x.shape and list(scale.shape) == expected_scale_shape
    assert q.min() >= -127 and q.max() <= 127
    # Every row reaches +-127 at its largest |x|.
    assert torch.equal(q.abs().amax(dim=reduce_dim, keepdim=True).int(), torch.full_like(scale, 127).int())
    error = (x.float() - reference.dequantize_int8(q, scale, torch.float32)).abs()
    # Half a step, plus float32 rounding of x / scale and of q * scale (each <= 127 * 2**-24 steps).
    assert (error <= scale * (0.5 + 2e-5)).all()
    stats = int8_error(x, reduce_dim, backend="torch")
    assert stats["max_abs"] == pytest.approx(error.max().item())
    assert 0 < stats["rel_rms"] < 0.01


def test_zero_and_tiny_rows_get_scale_one() -> None:
    x = random_block((2, 5, 8))
    x[0, :, 3] = 0.0  # one all-zero channel
    x[1, :, 6] = torch.tensor([1e-44, -1e-44, 0, 0, 0])  # subnormal: amax / 127 underflows to 0
    q, scale = reference.quantize_int8(x, -2)
    assert scale[0, 0, 3] == 1.0 and scale[1, 0, 6] == 1.0
    assert (q[0, :, 3] == 0).all() and (q[1, :, 6] == 0).all()
    assert torch.isfinite(scale).all()
    zeros = torch.zeros(3, 4)
    q, scale = reference.quantize_int8(zeros, -1)
    assert (scale == 1).all() and (q == 0).all()
    assert int8_error(zeros, -1, backend="torch") == {"max_abs": 0.0, "rel_rms": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("shape", "reduce_dim", "scale_shape"),
    [((2, 0, 4), -2, (2, 1, 4)), ((2, 0, 4), -1, (2, 0, 1)), ((0, 3), 0, (1, 3)), ((5, 0), 1, (5, 1))],
)
def test_empty_tensors(
    backend: str, shape: tuple[int, ...], reduce_dim: int, scale_shape: tuple[int, ...]
) -> None:
    x = torch.empty(shape, device=device_for(backend))
    q, scale = quantize_int8(x, reduce_dim, backend=backend)
    assert q.shape == shape and q.dtype == torch.int8
    assert scale.shape == scale_shape and (scale == 1).all()
    restored = dequantize_int8(q, scale, torch.float16, backend=backend)
    assert restored.shape == shape and restored.dtype == torch.float16
    assert int8_error(x, reduce_dim, backend=backend) == {"max_abs": 0.0, "rel_rms": 0.0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend: str) -> None:
    base = random_block((2, 60, 126)).to(device_for(backend))
    views = [base.transpose(-1, -2), base[:, :, ::2], base[1:, 3:50]]
    for x in views:
        for reduce_dim in (-1, -2):
            q, scale = quantize_int8(x, reduce_dim, backend=backend)
            q_ref, scale_ref = reference.quantize_int8(x.contiguous().cpu(), reduce_dim)
            assert torch.equal(q.cpu(), q_ref) and torch.equal(scale.cpu(), scale_ref)
            strided_q = q.transpose(0, 1).contiguous().transpose(0, 1)
            restored = dequantize_int8(strided_q, scale, torch.float32, backend=backend)
            assert torch.equal(restored.cpu(), reference.dequantize_int8(q_ref, scale_ref, torch.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_dequantize_rounds_once_to_the_output_dtype(dtype: torch.dtype) -> None:
    q, scale = reference.quantize_int8(random_block(), -1)
    restored = reference.dequantize_int8(q, scale, dtype)
    assert restored.dtype == dtype and torch.equal(restored, (q.float() * scale).to(dtype))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_arguments(backend: str) -> None:
    device = device_for(backend)
    x = torch.ones(2, 3, device=device)
    q, scale = quantize_int8(x, -1, backend=backend)
    bad_quantize = [
        (x.int(), -1, "cannot quantise dtype"),
        (x.double(), -1, "cannot quantise dtype"),
        (torch.tensor(1.0, device=device), 0, "out of range"),
        (x, 2, "out of range"),
        (x, -3, "out of range"),
    ]
    for tensor, reduce_dim, message in bad_quantize:
        with pytest.raises(ValueError, match=message):
            quantize_int8(tensor, reduce_dim, backend=backend)
    bad_dequantize = [
        (q.int(), scale, torch.float32, "expected int8 q"),
        (q, scale.half(), torch.float32, "float32 scale"),
        (q, scale, torch.int32, "cannot dequantise"),
        (q, torch.ones(2, 3, 1, device=device), torch.float32, "does not fit"),
        (q, torch.ones(1, 1, device=device), torch.float32, "does not fit"),
        (q, torch.ones(2, 2, device=device), torch.float32, "does not fit"),
        (q, torch.ones(2, 3, device=device), torch.float32, "does not fit"),
        (q, scale.to("meta"), torch.float32, "move them together"),
    ]
    for q_arg, scale_arg, dtype, message in bad_dequantize:
        with pytest.raises(ValueError, match=message):
            dequantize_int8(q_arg, scale_arg, dtype, backend=backend)


# --- Triton vs reference --------------------------------------------------------------------------


def test_triton_runs_in_the_interpreter_without_a_gpu() -> None:
    from triton.runtime.interpreter import InterpretedFunction

    from memstream.kernels.quant8 import triton_impl

    for kernel in (triton_impl._quantize_kernel, triton_impl._dequantize_kernel):
        assert isinstance(kernel, InterpretedFunction) == (TRITON_DEVICE == "cpu")


@pytest.mark.parametrize(
    ("shape", "reduce_dim"),
    [((2, 63, 60), -1), ((2, 63, 60), -2), ((2, 63, 60), 0), ((3, 700), -1), ((3, 700), 0)],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_matches_reference(shape: tuple[int, ...], reduce_dim: int, dtype: torch.dtype) -> None:
    x = random_block(shape, dtype=dtype, seed=len(shape) + reduce_dim)
    x.view(-1)[::17] = 0.0  # scattered exact zeros
    x[..., 5] = 0.0  # an all-zero row when the scale is shared over a dim other than the last
    q_ref, scale_ref = reference.quantize_int8(x, reduce_dim)
    q, scale = quantize_int8(x.to(TRITON_DEVICE), reduce_dim, backend="triton")
    assert torch.equal(q.cpu(), q_ref) and torch.equal(scale.cpu(), scale_ref)  # bit for bit, every dtype
    for out_dtype in DTYPES:
        expected = reference.dequantize_int8(q_ref, scale_ref, out_dtype)
        restored = dequantize_int8(q, scale, out_dtype, backend="triton").cpu()
        assert restored.dtype == out_dtype
        if out_dtype == torch.bfloat16 and TRITON_DEVICE == "cpu":
            # The Triton interpreter truncates float32 -> bfloat16 (CUDA rounds to nearest even).
            torch.testing.assert_close(restored, expected, rtol=2**-7, atol=0)
        else:
            assert torch.equal(restored, expected)


def test_triton_zero_and_tiny_rows() -> None:
    x = torch.tensor([[1e-44, -1e-44, 0.0], [0.0, 0.0, 0.0], [1.0, -3.0, 0.25]])
    q_ref, scale_ref = reference.quantize_int8(x, -1)
    q, scale = quantize_int8(x.to(TRITON_DEVICE), -1, backend="triton")
    assert torch.equal(q.cpu(), q_ref) and torch.equal(scale.cpu(), scale_ref)
    assert scale.cpu().tolist()[:2] == [[1.0], [1.0]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("reduce_dim", [-1, 0])
def test_triton_offsets_past_int32(reduce_dim: int) -> None:
    """2**31 + 163,843 elements: the last rows and columns sit past the int32 offset range."""
    x = torch.zeros(2**16 + 3, 2**15 + 1, dtype=torch.float16, device="cuda")
    x[-2:] = torch.randn(2, x.shape[1], device="cuda").half()
    x[:, -2:] = torch.randn(x.shape[0], 2, device="cuda").half()
    q, scale = quantize_int8(x, reduce_dim, backend="triton")
    q_ref, scale_ref = reference.quantize_int8(x.cpu(), reduce_dim)
    assert torch.equal(q[-2:].cpu(), q_ref[-2:]) and torch.equal(q[:, -2:].cpu(), q_ref[:, -2:])
    assert torch.equal(scale.cpu(), scale_ref)
    restored = dequantize_int8(q, scale, torch.float16, backend="triton")
    expected = reference.dequantize_int8(q_ref, scale_ref, torch.float16)
    assert torch.equal(restored[-2:].cpu(), expected[-2:])
    assert torch.equal(restored[:, -2:].cpu(), expected[:, -2:])
