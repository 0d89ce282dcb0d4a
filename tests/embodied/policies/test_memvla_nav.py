"""The discrete (habitat) action head of the memory policy and its navigation agent: config checks,
the same initial weights across memory variants, training lowering the loss, ids in range, save/load,
a habitat agent that sees only rgb + gps + compass, bad input. No simulator: synthetic episodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from memstream.embodied.envs.miniworld_env import ACTIONS
from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy, PolicyInputError, train
from memstream.embodied.policies.memvla.action_head import DiscreteActionHead
from memstream.embodied.policies.memvla.nav_agent import NAV_VARIANTS, NavPolicyAgent, nav_policy
from memstream.streaming.errors import ConfigError, MemstreamError

TINY = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
            vocab_buckets=64)


def cue_episodes(num_episodes: int = 12, length: int = 8, size: int = 16) -> EpisodeDataset:
    """A tiny memory task: frame 0 is red or blue, the rest grey; the expert moves forward and, on the
    last frame, turns left after red and right after blue (habitat ids)."""
    rng = np.random.default_rng(0)
    cues = rng.integers(2, size=num_episodes)
    images = np.full((num_episodes, length, size, size, 3), 128, dtype=np.uint8)
    images[cues == 0, 0] = (255, 0, 0)
    images[cues == 1, 0] = (0, 0, 255)
    actions = np.full((num_episodes, length), ACTIONS.index("move_forward"), dtype=np.float32)
    actions[:, -1] = np.where(cues == 0, ACTIONS.index("turn_left"), ACTIONS.index("turn_right"))
    t = np.arange(length, dtype=np.float32)
    states = np.stack([np.tile(t * 0.25, (num_episodes, 1)), np.zeros((num_episodes, length)),
                       np.ones((num_episodes, length)), np.zeros((num_episodes, length))], -1).astype(np.float32)
    frames = num_episodes * length
    return EpisodeDataset(
        images=images.reshape(frames, size, size, 3), states=states.reshape(frames, 4),
        actions=actions.reshape(frames, 1), episode_index=np.repeat(np.arange(num_episodes), length),
        frame_index=np.tile(np.arange(length), num_episodes), task_index=np.zeros(frames, dtype=np.int64),
        tasks=("remember the colour",), episode_bounds=np.arange(num_episodes + 1) * length,
        success=np.ones(num_episodes, bool), hidden_info=cues[:, None], reveal_frames=np.ones(num_episodes, np.int64),
        task_name="synthetic", seed=0)


@pytest.fixture(scope="module")
def data():
    return cue_episodes()


def test_discrete_head_settings_are_checked():
    features = {"observation.image": (3, 16, 16), "observation.state": (4,)}
    with pytest.raises(ConfigError, match="action_head must be one of"):
        MemoryVLAConfig(input_features=features, output_features={"action": (1,)}, action_head="softmax")
    with pytest.raises(ConfigError, match="output_features action \\(1,\\)"):
        MemoryVLAConfig(input_features=features, output_features={"action": (2,)}, action_head="discrete")
    with pytest.raises(ConfigError, match="num_discrete_actions >= 2"):
        MemoryVLAConfig(input_features=features, output_features={"action": (1,)}, action_head="discrete",
                        num_discrete_actions=1)


def test_the_head_masks_padded_steps_and_samples_the_argmax():
    torch.manual_seed(0)
    head = DiscreteActionHead(4, chunk_size=3, perceptual_dim=8, cognitive_dim=8, state_dim=2, dim=16, layers=1, heads=2)
    condition, context = torch.randn(5, 10), torch.randn(5, 4, 8)
    ids = torch.randint(0, 4, (5, 3, 1)).float()
    pad = torch.zeros(5, 3, dtype=torch.bool)
    pad[:, 2] = True
    other = ids.clone()
    other[:, 2] = (other[:, 2] + 1) % 4  # only padded targets differ: the loss must not see them
    assert torch.allclose(head.loss(ids, condition, context, pad), head.loss(other, condition, context, pad))
    sampled = head.sample(condition, context)
    assert sampled.shape == (5, 3, 1) and sampled.dtype == torch.int64
    assert torch.equal(sampled[..., 0], head.logits(condition, context).argmax(-1))


def test_every_variant_starts_from_the_same_weights_and_only_the_memory_differs(data):
    policies = {name: nav_policy(data, name, **TINY) for name in NAV_VARIANTS}
    bank = policies["bank"].state_dict()
    for name, policy in policies.items():
        state = policy.state_dict()
        shared = [k for k in state if k in bank]
        assert shared and all(torch.equal(state[k], bank[k]) for k in shared), name
    assert policies["no_memory"].memory is None and policies["fifo"].config.bank.consolidation == "fifo"
    assert policies["bank"].config.bank.consolidation == "tome" and policies["bank"].config.bank.fusion == "gate"
    assert set(bank) - set(policies["no_memory"].state_dict()) == {k for k in bank if k.startswith("memory.")}
    with pytest.raises(ConfigError, match="unknown policy variant 'lstm'"):
        nav_policy(data, "lstm")


def test_training_lowers_the_cross_entropy_and_actions_are_habitat_ids(data):
    policy = nav_policy(data, "bank", **TINY)
    losses = train(policy, data, steps=30, batch_episodes=6, progress=False)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    policy.reset()
    batch = {"observation.image": data.images[:2], "observation.state": data.states[:2], "task": ["x", "x"],
             "episode_start": np.array([True, True]), "frame_index": np.array([0, 0])}
    action = policy.select_action(batch)
    assert action.shape == (2, 1) and action.dtype == torch.int64 and 0 <= int(action.min()) <= int(action.max()) < 4


def test_save_load_gives_the_same_actions(data, tmp_path):
    policy = nav_policy(data, "fifo", **TINY)
    policy.save_pretrained(tmp_path / "fifo")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "fifo")
    assert loaded.config.action_head == "discrete" and loaded.config.bank.consolidation == "fifo"
    agents = [NavPolicyAgent(p) for p in (policy, loaded)]
    for agent in agents:
        agent.reset()
    for t in range(8):
        obs = {"rgb": data.images[t], "gps": data.states[t, :2], "compass": np.array([0.0]), "instruction": "x"}
        first, second = (agent.act(obs) for agent in agents)
        assert first == second and first in ACTIONS


def test_the_agent_names_what_its_observations_lack(data):
    agent = NavPolicyAgent(nav_policy(data, "no_memory", **TINY))
    agent.reset()
    with pytest.raises(PolicyInputError, match="rgb images of \\(16, 16\\) pixels, got \\(32, 32, 3\\)"):
        agent.act({"rgb": np.zeros((32, 32, 3), np.uint8), "gps": np.zeros(2), "compass": np.zeros(1)})
    with pytest.raises(MemstreamError, match="no gps"):
        agent.act({"rgb": data.images[0], "compass": np.zeros(1)})
    flow = MemoryVLAPolicy(MemoryVLAConfig(input_features={"observation.image": (3, 16, 16)}, **TINY))
    with pytest.raises(ConfigError, match="action_head='discrete'"):
        NavPolicyAgent(flow)
