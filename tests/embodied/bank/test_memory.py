"""The two-stream module: batched retrieval equals MemoryVLA's per-sample loop, episodes stay apart,
gradients reach the layers but not the bank, state round-trips exactly."""

from __future__ import annotations

import io

import pytest
import torch

from memstream.embodied.bank import MemoryBankConfig, PerceptualCognitiveMemory
from memstream.embodied.bank.reference import ReferenceBank, reference_read


CP, DC, N = 16, 24, 3


def make(config: MemoryBankConfig | None = None, **kwargs) -> PerceptualCognitiveMemory:
    torch.manual_seed(0)
    return PerceptualCognitiveMemory(CP, DC, config or MemoryBankConfig(capacity=4), **kwargs).eval()


def frames(steps: int, batch: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, N, CP, generator=generator), torch.randn(batch, 1, DC, generator=generator))
            for _ in range(steps)]


@pytest.mark.parametrize("config", [
    MemoryBankConfig(capacity=4),
    MemoryBankConfig(capacity=3, consolidation="fifo", fusion="add", num_heads=2),
    MemoryBankConfig(capacity=4, update_fused=True, merge_timesteps="average", use_timestep_pe=False),
], ids=["openvla", "fifo-add-2heads", "dexbotic-like-no-pe"])
def test_batched_step_equals_memoryvla_per_sample_loop(config: MemoryBankConfig) -> None:
    memory = make(config)
    memory.reset(batch_size=3)
    banks = {name: [ReferenceBank(config) for _ in range(3)] for name in ("perceptual", "cognitive")}
    clock = [0, 0, 0]
    for step, (perceptual, cognitive) in enumerate(frames(9, 3)):
        active = torch.tensor([True, step % 2 == 0, step % 3 != 1])  # different episode lengths per slot
        with torch.no_grad():
            out = memory.step(perceptual, cognitive, torch.tensor(clock), active=active)
            for row in range(3):
                for name, current in (("perceptual", perceptual), ("cognitive", cognitive)):
                    fused, retrieved = reference_read(getattr(memory, name), current[row], banks[name][row])
                    assert torch.allclose(getattr(out, name)[row], fused, atol=1e-5)
                    assert torch.allclose(getattr(out, f"retrieved_{name}")[row], retrieved, atol=1e-5)
                    if active[row]:
                        stored = fused if config.update_fused else current[row]
                        banks[name][row].append(stored, clock[row])
                clock[row] += int(active[row])
        assert memory.bank_lengths.tolist() == [len(b.entries) for b in banks["perceptual"]]


def test_empty_bank_retrieves_the_working_memory() -> None:
    memory = make()
    memory.reset(batch_size=2)
    perceptual, cognitive = frames(1, 2)[0]
    with torch.no_grad():
        out = memory(perceptual, cognitive, 0)
    assert torch.equal(out.retrieved_perceptual, perceptual) and torch.equal(out.retrieved_cognitive, cognitive)
    assert torch.allclose(out.perceptual, perceptual, atol=1e-6)  # g * x + (1 - g) * x
    assert out.bank_lengths.tolist() == [0, 0]
    assert float((out.perceptual_gate - 0.5).abs().max()) < 0.02  # gate starts near 0.5


def test_a_timestep_changes_retrieval_only_with_the_pe() -> None:
    for use_pe in (True, False):
        memory = make(MemoryBankConfig(use_timestep_pe=use_pe))
        memory.reset(batch_size=2)
        (p0, c0), (p1, c1), (query, cq) = frames(3, 1)
        # the same two entries in both slots, stored at different timesteps
        memory.update(p0.expand(2, -1, -1), c0.expand(2, -1, -1), torch.tensor([0, 0]))
        memory.update(p1.expand(2, -1, -1), c1.expand(2, -1, -1), torch.tensor([1, 40]))
        with torch.no_grad():
            out = memory(query.expand(2, -1, -1), cq.expand(2, -1, -1), 41)
        same = torch.allclose(out.retrieved_perceptual[0], out.retrieved_perceptual[1], atol=1e-6)
        assert same != use_pe


def test_reset_isolates_episodes_and_a_reset_slot_behaves_like_a_fresh_bank() -> None:
    memory = make()
    memory.reset(batch_size=2)
    history = frames(6, 2)
    for perceptual, cognitive in history:
        memory.step(perceptual, cognitive)
    ids = memory.episode_ids
    slot1 = memory._storage["perceptual"].entries(1)
    memory.reset(slots=[0])
    assert memory.episode_ids[0] != ids[0] and memory.episode_ids[1] == ids[1]
    assert memory.bank_lengths.tolist() == [0, 4]
    assert all(torch.equal(a, b) for a, b in zip(memory._storage["perceptual"].entries(1), slot1))

    fresh = make()
    fresh.reset(batch_size=2)
    for perceptual, cognitive in frames(3, 2, seed=1):
        with torch.no_grad():
            out, expected = memory.step(perceptual, cognitive), fresh.step(perceptual, cognitive)
        assert torch.allclose(out.perceptual[0], expected.perceptual[0], atol=1e-6)
        assert torch.allclose(out.cognitive[0], expected.cognitive[0], atol=1e-6)
        assert out.timestep[0] == expected.timestep[0]  # the step counter restarted at 0


def test_gradients_reach_the_layers_but_the_bank_stores_no_graph() -> None:
    memory = make(MemoryBankConfig(capacity=4, update_fused=True)).train()
    memory.reset(batch_size=2)
    for perceptual, cognitive in frames(3, 2):
        memory.step(perceptual, cognitive)
    perceptual = torch.randn(2, N, CP, requires_grad=True)
    out = memory.step(perceptual, torch.randn(2, 1, DC))
    (out.perceptual.sum() + out.cognitive.sum()).backward()
    for name in ("perceptual", "cognitive"):
        stream = getattr(memory, name)
        grads = [stream.retrieval_blocks[0].k_proj.weight.grad, stream.timestep_encoder.mlp[0].weight.grad,
                 stream.gate_fusion_blocks.proj.weight.grad]
        assert all(g is not None and float(g.abs().sum()) > 0 for g in grads)
        storage = memory._storage[name]
        assert not storage.feats.requires_grad and storage.feats.grad_fn is None
    assert perceptual.grad is not None and float(perceptual.grad.abs().sum()) > 0


def test_weights_and_bank_state_round_trip_exactly() -> None:
    memory = make()
    memory.reset(batch_size=2)
    for perceptual, cognitive in frames(7, 2):
        memory.step(perceptual, cognitive, active=torch.tensor([True, False]) if perceptual[0, 0, 0] > 0 else None)
    buffer = io.BytesIO()
    torch.save({"weights": memory.state_dict(), "bank": memory.bank_state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)
    torch.manual_seed(5)
    other = PerceptualCognitiveMemory(CP, DC, MemoryBankConfig(capacity=4)).eval()
    other.load_state_dict(saved["weights"])
    other.load_bank_state_dict(saved["bank"])
    assert torch.equal(other.episode_ids, memory.episode_ids)
    for perceptual, cognitive in frames(3, 2, seed=2):
        with torch.no_grad():
            a, b = memory.step(perceptual, cognitive), other.step(perceptual, cognitive)
        assert torch.equal(a.perceptual, b.perceptual) and torch.equal(a.cognitive, b.cognitive)
    again = other.bank_state_dict()
    for name in ("perceptual", "cognitive"):
        for key, value in memory.bank_state_dict()["storage"][name].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(again["storage"][name][key]))


@pytest.mark.parametrize("kept", ["perceptual", "cognitive"])
def test_a_switched_off_stream_passes_its_tokens_through(kept: str) -> None:
    memory = make(streams=(kept,))
    memory.reset()
    for perceptual, cognitive in frames(3, 2):
        out = memory.step(perceptual, cognitive)
    off = "cognitive" if kept == "perceptual" else "perceptual"
    current = {"perceptual": perceptual, "cognitive": cognitive}
    assert getattr(memory, off) is None and memory._storage[off] is None
    assert getattr(out, off) is current[off] and getattr(out, f"{off}_gate") is None
    assert not torch.allclose(getattr(out, kept), current[kept])
    assert memory.bank_lengths.tolist() == [3, 3]


def test_reset_without_batch_size_sizes_on_first_use_and_counts_steps() -> None:
    memory = make()
    memory.reset()
    assert memory.episode_ids is None
    out = None
    for perceptual, cognitive in frames(3, 4):
        out = memory.step(perceptual, cognitive)
    assert memory.episode_ids.tolist() == [0, 1, 2, 3]
    assert out.timestep.tolist() == [2.0] * 4 and out.bank_lengths.tolist() == [2] * 4
    memory.reset(slots=torch.tensor([False, True, False, False]))
    assert memory.episode_ids.tolist() == [0, 4, 2, 3]
    assert memory(*frames(1, 4)[0]).timestep.tolist() == [3.0, 0.0, 3.0, 3.0]


@pytest.mark.parametrize("consolidation", ["tome", "fifo", "none"])
def test_cached_projections_match_recomputing_them_even_after_weight_updates(consolidation: str) -> None:
    config = MemoryBankConfig(capacity=3, consolidation=consolidation, max_entries=64)
    cached = make(config)
    plain = make(MemoryBankConfig(capacity=3, consolidation=consolidation, max_entries=64, cache_projections=False))
    for memory in (cached, plain):
        memory.reset(batch_size=3)
    for step, (perceptual, cognitive) in enumerate(frames(12, 3)):
        active = torch.tensor([True, step % 3 != 0, True])
        if step == 5:  # a new episode in slot 2
            cached.reset(slots=[2]), plain.reset(slots=[2])
        if step in (4, 8):  # weights change, as after an optimizer step: the cache must notice
            with torch.no_grad():
                for module in (cached, plain):
                    for parameter in module.parameters():
                        parameter.add_(0.01)
        with torch.no_grad():
            a = cached.step(perceptual, cognitive, active=active)
            b = plain.step(perceptual, cognitive, active=active)
        assert torch.allclose(a.perceptual, b.perceptual, atol=1e-5)
        assert torch.allclose(a.cognitive, b.cognitive, atol=1e-5)
    assert plain._storage["perceptual"]._projections is None  # the uncached path never builds one


def test_a_loss_summed_over_steps_backpropagates_once_the_bank_is_full() -> None:
    # MemoryVLA trains on groups of consecutive frames: the bank is written in place between the steps
    # whose outputs the loss sums, so the retrieval must not keep views of the storage for backward.
    memory = make(MemoryBankConfig(capacity=2)).train()
    memory.reset(batch_size=2)
    loss = torch.zeros(())
    for perceptual, cognitive in frames(6, 2):
        out = memory.step(perceptual, cognitive)
        loss = loss + out.perceptual.square().mean() + out.cognitive.square().mean()
    loss.backward()
    grad = memory.perceptual.retrieval_blocks[0].v_proj.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0


def test_an_inference_mode_rollout_can_be_followed_by_training_steps() -> None:
    memory = make()
    memory.reset()
    with torch.inference_mode():
        for perceptual, cognitive in frames(6, 2):
            memory.step(perceptual, cognitive)
        memory.reset(slots=[0])
    memory.train()
    out = memory.step(*frames(1, 2, seed=3)[0])
    out.perceptual.sum().backward()
    memory.reset(slots=[1])
    assert memory.bank_lengths.tolist() == [1, 0]
