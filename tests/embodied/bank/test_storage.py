"""Batched bank storage: MemoryVLA's consolidation rules, exactly, for many episodes at once."""

from __future__ import annotations

import pytest
import torch

from memstream.embodied.bank.config import MemoryBankConfig
from memstream.embodied.bank.reference import ReferenceBank
from memstream.embodied.bank.storage import BankStorage
from memstream.embodied.bank.types import BankInputError


def entry(direction: list[float], tokens: int = 2) -> torch.Tensor:
    """(tokens, D) entry whose every token points along ``direction``."""
    return torch.tensor(direction, dtype=torch.float32).repeat(tokens, 1)


def fill(storage: BankStorage, feats: list[torch.Tensor], row_count: int = 1) -> None:
    for t, feat in enumerate(feats):
        storage.append(feat.expand(row_count, *feat.shape), torch.full((row_count,), float(t)),
                       torch.ones(row_count, dtype=torch.bool))


def test_tome_merges_exactly_the_most_similar_adjacent_pair() -> None:
    # Adjacent cosines: (0,1) = 0, (1,2) = 0.6, (2,3) = 0.96 (most similar), (3,4) = 0.
    feats = [entry([1, 0, 0]), entry([0, 1, 0]), entry([0, 0.6, 0.8]), entry([0, 0.28, 0.96]), entry([1, 0, 0]) * 3]
    storage = BankStorage(1, 2, 3, MemoryBankConfig(capacity=4))
    fill(storage, feats)
    timesteps, stored = storage.entries(0)
    assert timesteps.tolist() == [0, 1, 2, 4]  # keep_first: the merged entry keeps timestep 2
    expected = torch.stack([feats[0], feats[1], 0.5 * (feats[2] + feats[3]), feats[4]])
    assert torch.equal(stored, expected)


def test_tome_averages_timesteps_when_asked() -> None:
    feats = [entry([1, 0, 0]), entry([0, 1, 0]), entry([0, 0.6, 0.8]), entry([0, 0.28, 0.96]), entry([1, 0, 0])]
    storage = BankStorage(1, 2, 3, MemoryBankConfig(capacity=4, merge_timesteps="average"))
    fill(storage, feats)
    assert storage.entries(0)[0].tolist() == [0, 1, 2.5, 4]


def test_tome_ties_merge_the_first_pair_and_the_per_token_mean_decides() -> None:
    # Token 0 identical everywhere; token 1 decides. Pair (1,2): cos 1 on both tokens -> mean 1.
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    storage = BankStorage(1, 2, 2, MemoryBankConfig(capacity=2))
    fill(storage, [a, b, b.clone()])
    assert storage.entries(0)[0].tolist() == [0, 1]
    tie = BankStorage(1, 2, 2, MemoryBankConfig(capacity=2))
    fill(tie, [a, a * 2, a * 3])  # every pair has cosine 1: the first pair merges
    assert tie.entries(0)[0].tolist() == [0, 2] and torch.equal(tie.entries(0)[1][0], a * 1.5)


def test_fifo_keeps_the_last_capacity_entries() -> None:
    feats = [torch.full((2, 3), float(t)) for t in range(10)]
    storage = BankStorage(1, 2, 3, MemoryBankConfig(capacity=4, consolidation="fifo"))
    fill(storage, feats)
    timesteps, stored = storage.entries(0)
    assert timesteps.tolist() == [6, 7, 8, 9]
    assert torch.equal(stored, torch.stack(feats[6:]))


@pytest.mark.parametrize("consolidation", ["tome", "fifo"])
def test_capacity_is_never_exceeded_over_100_random_steps(consolidation: str) -> None:
    torch.manual_seed(0)
    config = MemoryBankConfig(capacity=5, consolidation=consolidation)
    storage = BankStorage(6, 3, 4, config)
    counts = torch.zeros(6, dtype=torch.long)
    for step in range(100):
        active = torch.rand(6) < 0.8
        storage.append(torch.randn(6, 3, 4), torch.full((6,), float(step)), active)
        counts += active
        if step % 37 == 36:
            storage.reset(torch.tensor([step % 6]))
            counts[step % 6] = 0
        assert int(storage.lengths.max()) <= config.capacity
        assert torch.equal(storage.lengths, counts.clamp(max=config.capacity))
        assert storage.view()[2].sum(1).tolist() == storage.lengths.tolist()  # valid slots match lengths


def run_both(config: MemoryBankConfig, steps: int = 60, batch: int = 5, seed: int = 0) -> tuple:
    """Drive the batched storage and one reference bank per row with the same random stream of tokens,
    activity masks and resets (so rows hold episodes of different lengths)."""
    generator = torch.Generator().manual_seed(seed)
    storage = BankStorage(batch, 3, 8, config)
    references = [ReferenceBank(config) for _ in range(batch)]
    clock = [0] * batch
    for step in range(steps):
        tokens = torch.randn(batch, 3, 8, generator=generator)
        active = torch.rand(batch, generator=generator) < 0.75
        storage.append(tokens, torch.tensor(clock, dtype=torch.float32), active)
        for row in range(batch):
            if active[row]:
                references[row].append(tokens[row], clock[row])
                clock[row] += 1
        if step in (25, 40):
            row = step % batch
            storage.reset(torch.tensor([row]))
            references[row], clock[row] = ReferenceBank(config), 0
    return storage, references


@pytest.mark.parametrize("consolidation", ["tome", "fifo", "none"])
@pytest.mark.parametrize("merge_timesteps", ["keep_first", "average"])
def test_batched_storage_equals_the_reference_exactly(consolidation: str, merge_timesteps: str) -> None:
    config = MemoryBankConfig(capacity=6, consolidation=consolidation, merge_timesteps=merge_timesteps)
    storage, references = run_both(config)
    assert len(set(storage.lengths.tolist())) > 1 or consolidation != "none"
    for row, reference in enumerate(references):
        timesteps, feats = storage.entries(row)
        expected_timesteps, expected_feats = reference.stacked()
        assert torch.equal(timesteps, expected_timesteps)
        assert torch.equal(feats, expected_feats)  # zero tolerance: same merges, same values


def test_reset_empties_only_the_given_rows() -> None:
    torch.manual_seed(1)
    storage = BankStorage(3, 2, 4, MemoryBankConfig(capacity=3))
    for t in range(5):
        storage.append(torch.randn(3, 2, 4), torch.full((3,), float(t)), torch.ones(3, dtype=torch.bool))
    before = [storage.entries(row) for row in range(3)]
    storage.reset(torch.tensor([0, 2]))
    assert storage.lengths.tolist() == [0, 3, 0]
    assert all(torch.equal(a, b) for a, b in zip(storage.entries(1), before[1], strict=True))


def test_no_consolidation_grows_until_max_entries_then_raises() -> None:
    config = MemoryBankConfig(capacity=2, consolidation="none", max_entries=5)
    storage = BankStorage(2, 1, 2, config)
    ones = torch.ones(2, dtype=torch.bool)
    for t in range(5):
        storage.append(torch.randn(2, 1, 2), torch.full((2,), float(t)), ones)
    assert storage.lengths.tolist() == [5, 5] and storage.slots == 5
    storage.append(torch.randn(2, 1, 2), torch.zeros(2), torch.zeros(2, dtype=torch.bool))  # nothing stored: fine
    with pytest.raises(BankInputError, match="max_entries=5"):
        storage.append(torch.randn(2, 1, 2), torch.zeros(2), torch.tensor([False, True]))


def test_stored_tensors_are_detached_copies() -> None:
    tokens = torch.randn(2, 3, 4, requires_grad=True)
    storage = BankStorage(2, 3, 4, MemoryBankConfig())
    doubled = tokens * 2
    expected = doubled.detach().clone()
    storage.append(doubled, torch.zeros(2), torch.ones(2, dtype=torch.bool))
    assert not storage.feats.requires_grad
    with torch.no_grad():
        doubled.add_(1.0)  # changing the caller's tensor afterwards does not change the bank
    assert torch.equal(storage.entries(0)[1][0], expected[0])


@pytest.mark.parametrize("consolidation", ["tome", "fifo", "none"])
def test_a_differentiable_storage_keeps_the_same_entries_and_the_tokens_gradients(consolidation) -> None:
    torch.manual_seed(0)
    tokens = torch.randn(7, 2, 3, 4, requires_grad=True)  # (T, B, N, D)
    config = MemoryBankConfig(capacity=3, consolidation=consolidation)
    plain, tracked = BankStorage(2, 3, 4, config), BankStorage(2, 3, 4, config, differentiable=True)
    active = torch.tensor([True, False])
    for t in range(7):
        for storage in (plain, tracked):
            storage.append(tokens[t], torch.full((2,), float(t)), active if t == 3 else torch.ones(2, dtype=torch.bool))
    for row in (0, 1):
        assert plain.entries(row)[0].tolist() == tracked.entries(row)[0].tolist()
        torch.testing.assert_close(plain.entries(row)[1], tracked.entries(row)[1].detach(), rtol=0, atol=0)
    assert not plain.feats.requires_grad
    feats, _, valid = tracked.view()
    (feats * valid[..., None, None]).sum().backward()
    reached = tokens.grad.abs().sum(dim=(2, 3))  # (T, B): which tokens the stored entries still depend on
    for row in (0, 1):
        depends_on = reached[:, row].gt(0).nonzero().flatten().tolist()
        stored_at = sorted(int(t) for t in tracked.entries(row)[0].tolist())
        if consolidation == "tome":  # merged entries depend on every step they absorbed
            assert depends_on == [t for t in range(7) if not (row == 1 and t == 3)]
        else:  # fifo / none: exactly the steps still stored
            assert depends_on == stored_at
    assert float(reached[3, 1]) == 0.0  # an inactive row stores nothing at that step


def test_a_differentiable_storage_resets_rows_without_writing_in_place() -> None:
    tokens = torch.ones(1, 2, 3, requires_grad=True)
    storage = BankStorage(2, 2, 3, MemoryBankConfig(capacity=2), differentiable=True)
    storage.append(tokens.expand(2, 2, 3) * 2, torch.zeros(2), torch.ones(2, dtype=torch.bool))
    before = storage.feats
    storage.reset(torch.tensor([0]))
    assert storage.feats is not before and float(before.detach()[0].abs().sum()) > 0  # the old tensor is untouched
    assert float(storage.feats.detach()[0].abs().sum()) == 0 and int(storage.lengths[0]) == 0
    storage.feats.sum().backward()
    assert float(tokens.grad.sum()) == 2 * 2 * 3  # only row 1's entry (x2) still reaches the tokens
