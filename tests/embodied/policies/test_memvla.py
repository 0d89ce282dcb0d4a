"""The memory-conditioned policy: LeRobot interface, the bank seeing every frame, per-slot episode
resets, training lowering the loss, save/load, a transformers vision backbone, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.envs import collect_demonstrations, make_env
from memstream.embodied.policies.memvla import (MemoryVLAConfig, MemoryVLAPolicy, PolicyInputError, as_policy_fn, config_for,
                                      dataset_stats, episode_batch, train)
from memstream.streaming.errors import ConfigError, MemstreamError

TINY = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
            num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=2,
            bank=MemoryBankConfig(capacity=4))


@pytest.fixture(scope="module")
def data():
    return collect_demonstrations("cue_choice", num_episodes=12, seed=0, image_size=32)


def _policy(data, **overrides):
    torch.manual_seed(0)
    return MemoryVLAPolicy(config_for(data, **{**TINY, **overrides}), dataset_stats(data))


def test_the_policy_has_lerobots_surface(data):
    policy = _policy(data)
    assert policy.name == "memvla" and policy.config_class is MemoryVLAConfig
    for method in ("reset", "select_action", "predict_action_chunk", "forward", "get_optim_params",
                   "save_pretrained", "from_pretrained", "drop_queued_actions"):
        assert callable(getattr(policy, method))
    assert policy.config.action_delta_indices == [0, 1, 2, 3] and policy.config.observation_delta_indices is None


def test_the_bank_sees_every_frame_and_chunks_are_queued(data):
    policy = _policy(data)
    env = make_env("cue_choice", num_envs=3, seed=5, image_size=32)
    obs = env.reset()
    policy.reset()
    predictions = []
    original = policy._sample

    def counting(*args):
        predictions.append(1)
        return original(*args)

    policy._sample = counting
    for step in range(5):
        action = policy.select_action(obs)
        assert action.shape == (3, 2)
        assert policy.memory.bank_lengths.tolist() == [min(step + 1, 4)] * 3  # stored on every step, capped
        obs, *_ = env.step(action.numpy())
    assert len(predictions) == 3  # steps 0, 2, 4: n_action_steps = 2


def test_an_episode_start_clears_only_that_slots_bank_and_the_queue(data):
    policy = _policy(data)
    env = make_env("cue_choice", num_envs=2, seed=5, image_size=32)
    obs = env.reset()
    policy.reset()
    policy.select_action(obs)
    obs = env.step(np.zeros((2, 2), np.float32))[0]
    policy.select_action(obs)
    ids = policy.memory.episode_ids
    obs = dict(obs, episode_start=np.array([True, False]), frame_index=np.array([0, 2]))
    policy.select_action(obs)
    assert policy.memory.bank_lengths.tolist() == [1, 3]
    assert policy.memory.episode_ids[0] != ids[0] and policy.memory.episode_ids[1] == ids[1]
    assert len(policy._queue) == 1  # re-planned on the reset: a fresh chunk of 2, one taken


def test_training_lowers_the_loss_and_reaches_every_part(data):
    policy = _policy(data)
    before = {name: p.detach().clone() for name, p in policy.named_parameters()}
    losses = train(policy, data, steps=30, batch_episodes=6, seed=0)
    assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5])
    moved = {name.split(".")[0] for name, p in policy.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {"perceptual_encoder", "cognitive_encoder", "memory", "head"}
    assert not policy.training and policy.memory.episode_ids is None  # evaluation starts clean


def test_training_shows_its_progress_and_loss_on_stderr(data, capsys, monkeypatch):
    policy = _policy(data)
    train(policy, data, steps=3, batch_episodes=2)  # stderr is not a terminal here: quiet
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MEMSTREAM_PROGRESS", "1")  # forced, as in a log
    logged = []
    losses = train(policy, data, steps=3, batch_episodes=2, log=lambda *row: logged.append(row), log_every=2)
    err = capsys.readouterr().err
    assert "train MemoryVLA" in err and "3/3" in err and f"loss {np.mean(losses):.4f}" in err and "None" not in err
    assert [row[0] for row in logged] == [0, 2] and logged[1][1] == pytest.approx(np.mean(losses[-2:]))


def test_the_bank_changes_what_the_policy_sees(data):
    policy = _policy(data)
    batch = episode_batch(data, np.arange(4), policy.config.chunk_size)
    torch.manual_seed(1)
    with_memory, _ = policy(batch)
    ablated = _policy(data, memory="none")
    ablated.load_state_dict({k: v for k, v in policy.state_dict().items() if not k.startswith("memory.")})
    torch.manual_seed(1)
    without, _ = ablated(batch)
    assert ablated.memory is None and not torch.allclose(with_memory, without)


def test_group_size_clears_the_bank_at_group_boundaries(data):
    policy = _policy(data, group_size=3)
    seen = []
    original = policy.memory.reset

    def spy(*args, **kwargs):
        seen.append(kwargs.get("batch_size"))
        return original(*args, **kwargs)

    policy.memory.reset = spy
    batch = episode_batch(data, np.arange(2), policy.config.chunk_size)
    policy(batch)
    steps = batch["valid"].shape[1]
    assert seen.count(2) == -(-steps // 3)  # one reset per group, plus the final clean-up (None)


def test_loss_frames_puts_only_that_many_valid_frames_of_each_sequence_in_the_action_loss(data):
    policy = _policy(data, loss_frames=3)
    batch = episode_batch(data, np.arange(4), policy.config.chunk_size)
    seen = []
    original = policy.head.loss

    def spy(actions, *args, **kwargs):
        seen.append(actions.shape[0])
        return original(actions, *args, **kwargs)

    policy.head.loss = spy
    loss, _ = policy(batch)
    assert seen == [4 * 3] and torch.isfinite(loss)
    valid = torch.zeros(2, 6, dtype=torch.bool)
    valid[0, :2] = True  # a sequence with fewer valid frames keeps them all, and never a padded one
    valid[1, :5] = True
    chosen = policy._loss_frames(valid)
    assert chosen[0].tolist() == [True, True, False, False, False, False] and int(chosen[1].sum()) == 3
    assert not (chosen & ~valid).any()
    assert _policy(data)._loss_frames(valid) is valid  # None: every valid frame
    with pytest.raises(ConfigError, match="loss_frames"):
        config_for(data, loss_frames=0)


def test_zero_inference_noise_gives_the_same_chunk_every_time(data):
    obs = {"observation.image": data.images[:2], "observation.state": data.states[:2], "task": ["t", "t"]}
    chunks = []
    for noise, seed in ((0.0, 1), (0.0, 2), (1.0, 1), (1.0, 2)):
        policy = _policy(data, memory="none", inference_noise=noise)
        torch.manual_seed(seed)
        chunks.append(policy.predict_action_chunk(obs))
    assert torch.equal(chunks[0], chunks[1]) and not torch.allclose(chunks[2], chunks[3])
    with pytest.raises(ConfigError, match="inference_noise"):
        config_for(data, inference_noise=1.5)


def test_save_and_load_round_trip(data, tmp_path):
    policy = _policy(data)
    train(policy, data, steps=2, batch_episodes=4)
    policy.save_pretrained(tmp_path / "policy")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "policy")
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert loaded.config == policy.config
    obs = make_env("cue_choice", num_envs=2, seed=3, image_size=32).reset()
    torch.manual_seed(7)
    a = policy.predict_action_chunk(obs)
    torch.manual_seed(7)
    b = loaded.predict_action_chunk(obs)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)  # the bank's projection cache reorders float sums


def test_loading_weights_of_another_config_is_one_clear_error(data, tmp_path):
    _policy(data).save_pretrained(tmp_path / "p")
    other = config_for(data, **{**TINY, "hidden_dim": 64})
    (tmp_path / "p" / "config.json").write_text(__import__("json").dumps(other.to_dict()))
    with pytest.raises(MemstreamError, match="do not match its config"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    with pytest.raises(MemstreamError, match="has no config.json"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "missing")


def test_the_policy_plays_the_env_through_evaluate(data):
    from memstream.embodied.envs import evaluate

    result = evaluate(as_policy_fn(_policy(data)), "cue_choice", num_episodes=4, seed=9, num_envs=4, image_size=32)
    assert result["episodes"] == 4 and result["success_rate"] + result["failure_rate"] + result["truncation_rate"] == 1


def test_a_transformers_vision_backbone_feeds_the_bank(data, tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    config = Dinov2Config(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48,
                          patch_size=8, image_size=32)
    torch.manual_seed(0)
    Dinov2Model(config).save_pretrained(tmp_path / "dino")
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(tmp_path / "dino")
    policy = _policy(data, perceptual_encoder="hf", vision_model=str(tmp_path / "dino"))
    frozen = {n: p.clone() for n, p in policy.perceptual_encoder.backbone.named_parameters()}
    train(policy, data, steps=2, batch_episodes=2)
    assert all(torch.equal(p, frozen[n]) for n, p in policy.perceptual_encoder.backbone.named_parameters())
    obs = make_env("cue_choice", num_envs=2, seed=3, image_size=32).reset()
    assert policy.select_action(obs).shape == (2, 2)
    with pytest.raises(MemstreamError, match="cannot load the vision model"):
        _policy(data, perceptual_encoder="hf", vision_model=str(tmp_path / "nothing"))


def test_bad_input_is_refused(data):
    policy = _policy(data)
    obs = make_env("cue_choice", num_envs=2, seed=3, image_size=32).reset()
    with pytest.raises(PolicyInputError, match="observation.state"):
        policy.select_action({k: v for k, v in obs.items() if k != "observation.state"})
    with pytest.raises(PolicyInputError, match="4 dimensions"):
        policy.select_action(dict(obs, **{"observation.image": obs["observation.image"][0]}))
    with pytest.raises(ConfigError, match="n_action_steps"):
        dataclasses.replace(policy.config, n_action_steps=9)
    with pytest.raises(ConfigError, match="memory must be one of"):
        MemoryVLAConfig(memory="lstm")
    with pytest.raises(ConfigError, match="needs vision_model"):
        MemoryVLAConfig(perceptual_encoder="hf")


def test_a_video_llm_hidden_state_is_the_cognitive_token(data, tmp_path):
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    build_tiny_llava_onevision(tmp_path / "llava", image_size=32, patch_size=8)
    policy = _policy(data, cognitive_encoder="video_llm", language_model=str(tmp_path / "llava"))
    encoder = policy.cognitive_encoder
    images = torch.as_tensor(data.images[:2]).permute(0, 3, 1, 2).float() / 255
    # The token is the LLM's last hidden state at the prompt's end, per sample, padding or not.
    both = encoder.hidden_states(images, ["reach the red goal", "go"])
    alone = encoder.hidden_states(images[1:], ["go"])
    torch.testing.assert_close(both[1], alone[0], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both[0], both[1])
    train(policy, data, steps=1, batch_episodes=2)
    policy.save_pretrained(tmp_path / "policy")
    assert not any(k.startswith("cognitive_encoder.llm") for k in policy.state_dict())  # the LLM is loaded, not saved
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "policy")
    torch.testing.assert_close(loaded.cognitive_encoder.project.weight, encoder.project.weight)
    with pytest.raises(ConfigError, match="needs language_model"):
        MemoryVLAConfig(cognitive_encoder="video_llm")


def test_the_policy_runs_as_a_habitat_style_agent(data):
    from memstream.embodied.envs import run_agent
    from memstream.embodied.policies.memvla import MemoryAgent

    agent = MemoryAgent(_policy(data))
    result = run_agent(agent, make_env("cue_choice", num_envs=1, seed=4, image_size=32), episodes=2)
    assert result["episodes"] == 2
    assert agent.policy.memory.bank_lengths.tolist() == [min(agent._steps, 4)]  # one slot, reset per episode


@pytest.mark.parametrize("bank_gradients", [False, True])
def test_bank_gradients_carry_the_last_frames_loss_back_to_the_first_frame(data, bank_gradients):
    policy = _policy(data, bank_gradients=bank_gradients)
    policy.train()
    batch = episode_batch(data, np.arange(2), policy.config.chunk_size)
    images = batch["observation.image"].permute(0, 1, 4, 2, 3).float().div(255).requires_grad_(True)
    batch["observation.image"] = images
    last = torch.zeros_like(batch["valid"])
    last[:, -1] = True
    policy._loss_frames = lambda valid: valid & last  # the loss of the last frame only; every frame enters the bank
    loss, _ = policy(batch)
    loss.backward()
    first_frame = float(images.grad[:, 0].abs().sum())
    assert float(images.grad[:, -1].abs().sum()) > 0
    assert (first_frame > 0) == bank_gradients  # detached entries: the first frame gets no gradient at all
    assert policy.memory.store_gradients is False and policy.memory.bank_lengths is None  # nothing leaks out
    with torch.no_grad():  # inference is the same either way: the flag only changes training
        plain = _policy(data)
        plain._loss_frames = policy._loss_frames
        torch.manual_seed(1)
        reference = plain(batch)[0]
        torch.manual_seed(1)
        assert torch.allclose(policy(batch)[0], reference)


def test_random_shift_translates_each_frame_and_repeats_the_border():
    from memstream.embodied.policies.memvla.modeling_memvla import random_shift

    images = torch.arange(4 * 3 * 8 * 8, dtype=torch.float32).reshape(4, 3, 8, 8)
    torch.manual_seed(0)
    shifted = random_shift(images, 2)
    assert shifted.shape == images.shape
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="replicate")
    for n in range(4):  # each frame is one crop of its padded copy, the same for every channel
        crops = [(dy, dx) for dy in range(5) for dx in range(5)
                 if torch.equal(padded[n, :, dy:dy + 8, dx:dx + 8], shifted[n])]
        assert len(crops) == 1
    assert torch.equal(random_shift(images, 0), images)


def test_augmentation_changes_training_batches_only(data):
    batch = episode_batch(data, np.arange(2), 4)
    plain, augmented = _policy(data), _policy(data, augment_shift=3, augment_state_noise=0.5)
    for policy in (plain, augmented):
        policy.train()
    torch.manual_seed(2)
    base = plain(batch)[0]
    torch.manual_seed(2)
    assert not torch.allclose(augmented(batch)[0], base)  # same weights and noise, other inputs
    plain.eval(), augmented.eval()
    torch.manual_seed(2)
    base = plain(batch)[0]
    torch.manual_seed(2)
    assert torch.allclose(augmented(batch)[0], base)  # evaluation sees the frames as they are
    with pytest.raises(ConfigError, match="augment_shift"):
        config_for(data, augment_shift=-1)
