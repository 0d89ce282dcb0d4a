"""Every input the caller controls is checked, with a message that says what to do."""

from __future__ import annotations

import pytest
import torch

from memstream.embodied.bank import BankInputError, MemoryBankConfig, PerceptualCognitiveMemory
from memstream.streaming.errors import ConfigError, MemstreamError


CP, DC = 8, 12


@pytest.fixture
def memory() -> PerceptualCognitiveMemory:
    torch.manual_seed(0)
    memory = PerceptualCognitiveMemory(CP, DC, MemoryBankConfig(capacity=2))
    memory.reset(batch_size=2)
    return memory


def tokens(batch: int = 2, count: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(batch, count, CP), torch.randn(batch, 1, DC)


@pytest.mark.parametrize("settings, match", [
    ({"capacity": 1}, "capacity must be an int >= 2"),
    ({"capacity": 2.5}, "capacity"),
    ({"retrieval_layers": 0}, "retrieval_layers"),
    ({"num_heads": 0}, "num_heads"),
    ({"dropout": 1.0}, "dropout"),
    ({"fusion": "concat"}, "fusion must be one of"),
    ({"consolidation": "lru"}, "consolidation must be one of"),
    ({"merge_timesteps": "last"}, "merge_timesteps"),
    ({"frequency_dim": 1}, "frequency_dim"),
    ({"max_period": 0}, "max_period"),
    ({"use_timestep_pe": 1}, "use_timestep_pe"),
    ({"max_entries": 1}, "max_entries"),
])
def test_bad_config_values_are_refused(settings: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MemoryBankConfig(**settings)


def test_bad_construction_is_refused() -> None:
    with pytest.raises(ConfigError, match="attention heads"):
        PerceptualCognitiveMemory(CP, 10, MemoryBankConfig(num_heads=4))
    with pytest.raises(ConfigError, match="frequency_dim"):
        PerceptualCognitiveMemory(4, DC)  # 4 // 4 = 1 sinusoid feature
    with pytest.raises(BankInputError, match="streams"):
        PerceptualCognitiveMemory(CP, DC, streams=("vision",))


def test_stepping_before_any_reset_says_to_reset() -> None:
    memory = PerceptualCognitiveMemory(CP, DC)
    with pytest.raises(BankInputError, match=r"no started episode.*reset\(\)"):
        memory.step(*tokens())


def test_unstarted_slots_and_stale_episode_ids_are_refused() -> None:
    memory = PerceptualCognitiveMemory(CP, DC)
    with pytest.raises(BankInputError, match="batch size"):
        memory.reset(slots=[0])
    memory.reset(slots=[0, 2], batch_size=3)
    with pytest.raises(BankInputError, match=r"slots \[1\] were never started.*reset\(slots=\[1\]\)"):
        memory.step(*tokens(3))
    memory.reset(slots=1)
    ids = memory.episode_ids
    memory.step(*tokens(3), episode_ids=ids)  # matching ids pass
    memory.reset(slots=[2])  # a new episode in slot 2 that the caller did not notice
    with pytest.raises(BankInputError, match=r"slots \[2\] run episodes .* but episode_ids says"):
        memory.step(*tokens(3), episode_ids=ids)
    with pytest.raises(BankInputError, match="out of range"):
        memory.reset(slots=[3])
    with pytest.raises(BankInputError, match="bank has 3 slots"):
        memory.reset(slots=[0], batch_size=4)


@pytest.mark.parametrize("perceptual, cognitive, match", [
    (torch.randn(2, 3, CP).numpy(), torch.randn(2, 1, DC), "must be a torch.Tensor"),
    (torch.randn(2, 3 * CP), torch.randn(2, 1, DC), r"perceptual must have shape \(B, N, 8\)"),
    (torch.randn(2, 3, CP), torch.randn(2, DC), r"unsqueeze\(1\)"),
    (torch.randn(2, 3, CP + 1), torch.randn(2, 1, DC), "9 channels but the bank was built for 8"),
    (torch.randn(2, 3, CP), torch.randn(2, 1, DC - 1), "11 channels"),
    (torch.ones(2, 3, CP, dtype=torch.long), torch.randn(2, 1, DC), r"dtype torch.int64.*float\(\)"),
    (torch.randn(2, 0, CP), torch.randn(2, 1, DC), "at least one slot and one token"),
    (torch.randn(2, 3, CP), torch.randn(3, 1, DC), "batch size 3 but the other tokens have 2"),
    (torch.randn(3, 3, CP), torch.randn(3, 1, DC), "batch of 3 but the bank was started with 2"),
])
def test_bad_tokens_are_refused(memory: PerceptualCognitiveMemory, perceptual, cognitive, match: str) -> None:
    for call in (memory.forward, memory.update, memory.step):
        with pytest.raises(BankInputError, match=match):
            call(perceptual, cognitive, 0)


@pytest.mark.parametrize("timestep, match", [
    (-1, "finite and >= 0"),
    (torch.tensor([0.0, float("nan")]), "finite and >= 0"),
    (torch.tensor([0, 1, 2]), r"shape \(2,\)"),
    (torch.tensor([True, False]), "real scalar"),
    ("soon", "number or a"),
])
def test_bad_timesteps_are_refused(memory: PerceptualCognitiveMemory, timestep, match: str) -> None:
    with pytest.raises(BankInputError, match=match):
        memory.step(*tokens(), timestep)


def test_other_bad_update_inputs_are_refused(memory: PerceptualCognitiveMemory) -> None:
    with pytest.raises(BankInputError, match="active must be a bool"):
        memory.update(*tokens(), 0, active=torch.tensor([1, 0]))
    memory.step(*tokens(count=3))
    with pytest.raises(BankInputError, match="2 tokens per slot but the bank holds 3-token entries"):
        memory.step(*tokens(count=2))
    memory.reset()  # a full reset forgets the token count
    memory.step(*tokens(count=2))
    fused = PerceptualCognitiveMemory(CP, DC, MemoryBankConfig(update_fused=True))
    fused.reset()
    with pytest.raises(BankInputError, match="update_fused=True"):
        fused.update(*tokens(), 0)


def test_bad_bank_states_are_refused(memory: PerceptualCognitiveMemory) -> None:
    memory.step(*tokens())
    with pytest.raises(BankInputError, match="not a memory-bank state"):
        memory.load_bank_state_dict(memory.state_dict())
    other = PerceptualCognitiveMemory(CP, DC, MemoryBankConfig(capacity=3))
    with pytest.raises(BankInputError, match="capacity=2 but this memory has 3"):
        other.load_bank_state_dict(memory.bank_state_dict())


def test_errors_are_memstream_and_value_errors(memory: PerceptualCognitiveMemory) -> None:
    with pytest.raises(BankInputError) as info:
        memory.step(*tokens(), -3)
    assert isinstance(info.value, MemstreamError) and isinstance(info.value, ValueError)
    assert info.value.fix  # every message names a fix
