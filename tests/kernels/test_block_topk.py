"""Block scoring and top-k: reference vs brute force, Triton vs reference, dispatch, errors."""

from __future__ import annotations

import pytest
import torch

from memstream.kernels import block_scores, block_topk
from memstream.kernels import _dispatch
from memstream.kernels._dispatch import check_kernel_can_run, resolve_backend
from memstream.kernels.block_topk import reference
from tests.kernels import TRITON_DEVICE

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# atol of the float32 scores against exact scores of the float32 data BEFORE the cast to `dtype`,
# for unit-normal data and C = 60: what storing keys in half precision costs.
CAST_ATOL = {torch.float32: 1e-4, torch.float16: 3e-2, torch.bfloat16: 0.25}


def random_inputs(
    n_layers: int = 3,
    n_blocks: int = 63,
    channels: int = 60,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(n_layers, channels, generator=generator)
    keys = torch.randn(n_layers, n_blocks, channels, generator=generator)
    return query.to(dtype), keys.to(dtype)


def brute_scores(query: torch.Tensor, keys: torch.Tensor) -> list[list[float]]:
    """Python-float (float64) dot products, one loop per index."""
    q, k = query.double().tolist(), keys.double().tolist()
    return [[sum(a * b for a, b in zip(q[l], k[l][n])) for n in range(len(k[l]))] for l in range(len(q))]


def brute_topk(query: torch.Tensor, keys: torch.Tensor, k: int, group_size: int) -> list[list[int]]:
    """The selection rules written out with loops: end-aligned groups, ties to the newer group."""
    chosen = []
    for scores in brute_scores(query, keys):
        n_blocks = len(scores)
        if n_blocks <= k:
            chosen.append(list(range(n_blocks)))
            continue
        n_groups = n_blocks // group_size
        first = n_blocks - n_groups * group_size
        means = [
            sum(scores[first + g * group_size + j] for j in range(group_size)) / group_size
            for g in range(n_groups)
        ]
        best = sorted(range(n_groups), key=lambda g: (-means[g], -g))[: k // group_size]
        chosen.append([first + g * group_size + j for g in sorted(best) for j in range(group_size)])
    return chosen


# --- reference vs brute force ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_scores_match_brute_force(dtype: torch.dtype) -> None:
    query, keys = random_inputs(dtype=dtype)
    scores = reference.block_scores(query, keys)
    assert scores.dtype == torch.float32 and scores.shape == (3, 63)
    # Same input values, float32 accumulation: tight whatever the dtype.
    exact = torch.tensor(brute_scores(query, keys), dtype=torch.float64)
    torch.testing.assert_close(scores.double(), exact, rtol=1e-5, atol=1e-4)
    # Against the float32 data before the cast: the input rounding of each dtype.
    query32, keys32 = random_inputs(dtype=torch.float32)
    exact32 = torch.tensor(brute_scores(query32, keys32), dtype=torch.float64)
    torch.testing.assert_close(scores.double(), exact32, rtol=0, atol=CAST_ATOL[dtype])


def test_scores_accumulate_in_float32() -> None:
    """4096 products of 1.0 * 1.0 in float16 inputs: float16 accumulation would stall at 2048."""
    query = torch.ones(1, 4096, dtype=torch.float16)
    keys = torch.ones(1, 2, 4096, dtype=torch.float16)
    assert reference.block_scores(query, keys).tolist() == [[4096.0, 4096.0]]


@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [8, 13])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_topk_matches_brute_force(group_size: int, k: int, dtype: torch.dtype) -> None:
    query, keys = random_inputs(dtype=dtype, seed=group_size * 100 + k)
    chosen = reference.block_topk(query, keys, k, group_size=group_size)
    assert chosen.dtype == torch.int64
    assert chosen.shape == (3, (k // group_size) * group_size)
    assert chosen.tolist() == brute_topk(query, keys, k, group_size)


@pytest.mark.parametrize(("n_blocks", "k", "group_size"), [(5, 5, 1), (5, 8, 1), (4, 6, 3), (1, 1, 1)])
def test_all_blocks_when_there_are_at_most_k(n_blocks: int, k: int, group_size: int) -> None:
    query, keys = random_inputs(n_layers=2, n_blocks=n_blocks, channels=6)
    chosen = reference.block_topk(query, keys, k, group_size=group_size)
    assert chosen.tolist() == [list(range(n_blocks))] * 2


def test_no_blocks() -> None:
    query, keys = random_inputs(n_layers=2, n_blocks=0, channels=6)
    chosen = reference.block_topk(query, keys, 4, group_size=2)
    assert chosen.shape == (2, 0) and chosen.dtype == torch.int64
    assert reference.block_scores(query, keys).shape == (2, 0)


def test_ties_go_to_the_newer_block() -> None:
    # Scores per block: [1, 3, 3, 2, 3, 0]; three blocks tie at 3, the two newest (2, 4) win.
    keys = torch.tensor([1.0, 3, 3, 2, 3, 0]).reshape(1, 6, 1)
    query = torch.ones(1, 1)
    assert reference.block_topk(query, keys, 2).tolist() == [[2, 4]]
    # All equal: the newest k, every time.
    query, keys = torch.ones(2, 8), torch.ones(2, 10, 8)
    for _ in range(3):
        assert reference.block_topk(query, keys, 4).tolist() == [[6, 7, 8, 9]] * 2
        assert reference.block_topk(query, keys, 4, group_size=2).tolist() == [[6, 7, 8, 9]] * 2


def test_oldest_partial_group_is_never_selected() -> None:
    # N = 7, group_size = 3: groups are (1, 2, 3) and (4, 5, 6); block 0 is left out despite its score.
    keys = torch.tensor([100.0, 1, 1, 1, 0, 0, 0]).reshape(1, 7, 1)
    chosen = reference.block_topk(torch.ones(1, 1), keys, 3, group_size=3)
    assert chosen.tolist() == [[1, 2, 3]]
    # Group means, not sums of the best members: (5, -5, 0) has mean 0 < (1, 1, 1).
    keys = torch.tensor([9.0, 5, -5, 0, 1, 1, 1]).reshape(1, 7, 1)
    assert reference.block_topk(torch.ones(1, 1), keys, 3, group_size=3).tolist() == [[4, 5, 6]]


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "group_size", "message"),
    [(0, 1, "k must be"), (-3, 1, "k must be"), (4, 0, "group_size must be"), (2, 3, "selects no group")],
)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_k_or_group_size(k: int, group_size: int, message: str, backend: str) -> None:
    query, keys = random_inputs(n_layers=1, n_blocks=4, channels=4)
    with pytest.raises(ValueError, match=message):
        block_topk(query.to(TRITON_DEVICE), keys.to(TRITON_DEVICE), k, group_size=group_size, backend=backend)


@pytest.mark.parametrize(
    ("query", "keys", "message"),
    [
        (torch.ones(2, 4), torch.ones(2, 4), "expected query"),
        (torch.ones(2, 4), torch.ones(3, 5, 4), "does not match"),
        (torch.ones(2, 4), torch.ones(2, 5, 3), "does not match"),
        (torch.ones(2, 4, dtype=torch.int32), torch.ones(2, 5, 4), "dtype"),
        (torch.ones(2, 4), torch.ones(2, 5, 4, dtype=torch.float64), "dtype"),
        (torch.ones(2, 4), torch.ones(2, 5, 4, device="meta"), "move them together"),
    ],
)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_bad_inputs(query: torch.Tensor, keys: torch.Tensor, message: str, backend: str) -> None:
    from memstream.kernels.block_topk import triton_impl

    impl = reference if backend == "torch" else triton_impl
    if query.device.type == "cpu" and keys.device.type == "cpu":
        query, keys = query.to(TRITON_DEVICE), keys.to(TRITON_DEVICE)
    with pytest.raises(ValueError, match=message):
        impl.block_topk(query, keys, 2)
    with pytest.raises(ValueError, match=message):
        impl.block_scores(query, keys)


def test_backend_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.ones(1)
    assert resolve_backend("auto", cpu) == "torch"
    assert resolve_backend("torch", cpu) == "torch"
    with pytest.raises(ValueError, match="unknown backend 'cuda'"):
        resolve_backend("cuda", cpu)
    with pytest.raises(TypeError, match="torch.Tensor"):
        resolve_backend("auto", [1.0])  # type: ignore[arg-type]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve_backend("triton", cpu) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(ValueError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        resolve_backend("triton", cpu)
    monkeypatch.setattr(_dispatch, "triton_import_error", lambda: "ImportError: no module named 'triton'")
    with pytest.raises(ValueError, match="needs the triton package.*backend='torch'"):
        resolve_backend("triton", cpu)


def test_compiled_kernel_refuses_cpu_tensors() -> None:
    """A kernel imported without TRITON_INTERPRET is not an interpreted function: clear error."""
    with pytest.raises(ValueError, match="compiled for CUDA.*TRITON_INTERPRET=1"):
        check_kernel_can_run(lambda: None, torch.device("cpu"))
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        check_kernel_can_run(lambda: None, torch.device("meta"))


# --- Triton vs reference --------------------------------------------------------------------------


def test_triton_runs_in_the_interpreter_without_a_gpu() -> None:
    from triton.runtime.interpreter import InterpretedFunction

    from memstream.kernels.block_topk import triton_impl

    interpreted = isinstance(triton_impl._group_scores_kernel, InterpretedFunction)
    assert interpreted == (TRITON_DEVICE == "cpu")
    assert resolve_backend("triton", torch.ones(1, device=TRITON_DEVICE)) == "triton"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_scores_match_reference(dtype: torch.dtype) -> None:
    query, keys = random_inputs(dtype=dtype)
    expected = reference.block_scores(query, keys)
    got = block_scores(query.to(TRITON_DEVICE), keys.to(TRITON_DEVICE), backend="triton")
    assert got.dtype == torch.float32 and got.device.type == TRITON_DEVICE
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("group_size", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_topk_matches_reference(group_size: int, dtype: torch.dtype) -> None:
    query, keys = random_inputs(dtype=dtype, seed=group_size)
    expected = reference.block_topk(query, keys, 10, group_size=group_size)
    query, keys = query.to(TRITON_DEVICE), keys.to(TRITON_DEVICE)
    got = block_topk(query, keys, 10, group_size=group_size, backend="triton")
    assert got.dtype == torch.int64 and torch.equal(got.cpu(), expected)


def test_triton_takes_strided_inputs() -> None:
    """Keys stored (N, L, C) and viewed (L, N, C); a query with a channel stride of 2."""
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(37, 2, 130, generator=generator).to(TRITON_DEVICE).transpose(0, 1)
    query = torch.randn(2, 260, generator=generator).to(TRITON_DEVICE)[:, ::2]
    assert not keys.is_contiguous() and not query.is_contiguous()
    expected = reference.block_scores(query.cpu(), keys.cpu())
    got = block_scores(query, keys, backend="triton").cpu()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    chosen = block_topk(query, keys, 6, group_size=2, backend="triton").cpu()
    assert torch.equal(chosen, reference.block_topk(query.cpu(), keys.cpu(), 6, group_size=2))


def test_triton_edge_sizes() -> None:
    def ones(*shape: int) -> torch.Tensor:
        return torch.ones(shape, device=TRITON_DEVICE)

    empty = block_topk(ones(2, 4), ones(2, 0, 4), 3, backend="triton")
    assert empty.shape == (2, 0) and empty.dtype == torch.int64
    few = block_topk(ones(2, 4), ones(2, 3, 4), 3, backend="triton")
    assert few.cpu().tolist() == [[0, 1, 2]] * 2
    no_channels = block_scores(ones(2, 0), ones(2, 5, 0), backend="triton")
    assert no_channels.cpu().tolist() == [[0.0] * 5] * 2
    no_layers = block_topk(ones(0, 4), ones(0, 9, 4), 2, backend="triton")
    assert no_layers.shape == (0, 2)


def test_triton_breaks_ties_like_the_reference() -> None:
    keys = torch.tensor([1.0, 3, 3, 2, 3, 0, 3, 3]).reshape(1, 8, 1).repeat(2, 1, 3)
    query = torch.ones(2, 3)
    for group_size, k in [(1, 2), (1, 3), (2, 4), (3, 3)]:
        expected = reference.block_topk(query, keys, k, group_size=group_size)
        on_device = query.to(TRITON_DEVICE), keys.to(TRITON_DEVICE)
        got = block_topk(*on_device, k, group_size=group_size, backend="triton")
        assert torch.equal(got.cpu(), expected), (group_size, k)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_triton_offsets_past_int32() -> None:
    """keys with 2**31 + 384 elements: the last blocks sit past the int32 offset range."""
    n_blocks, channels = 2**24 + 3, 128
    keys = torch.zeros(1, n_blocks, channels, dtype=torch.float16, device="cuda")
    keys[0, -3:] = torch.rand(3, channels, device="cuda").half() + 0.1  # positive: the best blocks
    query = torch.rand(1, channels, device="cuda") + 0.1
    scores = block_scores(query, keys, backend="triton")
    expected = reference.block_scores(query.cpu(), keys[:, -3:].cpu())
    torch.testing.assert_close(scores[:, -3:].cpu(), expected, rtol=1e-5, atol=1e-3)
    assert scores[:, :-3].abs().max().item() == 0.0
    best = block_topk(query, keys, 1, backend="triton").item()
    assert best == n_blocks - 3 + expected.argmax().item()
