"""The readout track (``MemoryVLAConfig.prior_readout_track``): the chunk prior also reads how far each
readout head's place moved since each of the last K frames. Training builds the earlier places from
the sequence, acting keeps them per slot; the two must give the prior the same numbers, restart
where an episode starts, stay per client on the policy server, and ``vla-train --init-from`` must add
a track to a policy trained without one without changing what it does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy, config_for, dataset_stats, episode_batch
from memstream.embodied.policies.memvla.action_head import ChunkPrior
from memstream.embodied.policies.memvla.mikasa import init_from_trained, load_mikasa_demonstrations, mikasa_policy
from memstream.embodied.policies.serve import _Session
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.test_memvla_head_options import TINY
from tests.embodied.policies.test_memvla_keypoint import FLAGS, _intercept_demos
from tests.embodied.policies.util import vla


@pytest.fixture(scope="module")
def data():
    from memstream.embodied.envs import collect_demonstrations

    return collect_demonstrations("cue_choice", num_episodes=3, seed=0, image_size=32)


def _policy(data, track: int = 3, memory: str = "bank") -> MemoryVLAPolicy:
    torch.manual_seed(0)
    config = config_for(data, **{**TINY, "perceptual_grid": 4}, memory=memory, chunk_prior=True, inference_noise=0.0,
                        prior_readout_heads=2, prior_readout_track=track)
    return MemoryVLAPolicy(config, dataset_stats(data)).eval()


def _frame(batch: dict, t: int, start: bool | list[bool], frame_index: list[int] | None = None) -> dict:
    """Frame ``t`` of every sequence in ``batch`` as an observation to act on."""
    rows = len(batch["task"])
    return {"observation.image": batch["observation.image"][:, t], "observation.state": batch["observation.state"][:, t],
            "task": list(batch["task"]), "episode_start": np.broadcast_to(np.asarray(start), (rows,)).copy(),
            "frame_index": np.array(frame_index if frame_index is not None else [t] * rows)}


def test_past_places_are_the_earlier_frames_and_the_first_where_the_episode_has_none():
    prior = ChunkPrior(3, 4, 4, chunk_size=2, action_dim=2, hidden=8, readout_heads=1, track=3)
    places = torch.arange(5.0).view(1, 5, 1, 1).expand(1, 5, 1, 2)  # frame t's place is (t, t)
    past = prior.past_places(places)
    assert past.shape == (1, 5, 3, 1, 2)
    assert past[0, :, :, 0, 0].tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [2, 1, 0], [3, 2, 1]]


def test_no_past_is_no_motion_and_the_prior_reads_the_displacement():
    torch.manual_seed(0)
    prior = ChunkPrior(3, 6, 9, chunk_size=2, action_dim=2, hidden=8, readout_heads=2, track=2)
    condition, context = torch.randn(4, 3), torch.randn(4, 9, 6)
    where = prior.readout.where(context)
    still = where[:, None].expand(-1, 2, -1, -1)
    torch.testing.assert_close(prior(condition, context), prior(condition, context, still))
    assert not torch.allclose(prior(condition, context), prior(condition, context, still + 0.3))
    # a past of another length than the track, or a track without a readout, is refused
    with pytest.raises(ValueError, match="for a track of 2 frames"):
        prior(condition, context, still[:, :1])
    with pytest.raises(ValueError, match="needs readout heads"):
        ChunkPrior(3, 6, 9, chunk_size=2, action_dim=2, track=2)


@pytest.mark.parametrize("memory", ["bank", "none"])
def test_acting_frame_by_frame_reads_the_places_training_reads(data, memory):
    policy = _policy(data, memory=memory)
    batch = episode_batch(data, np.arange(1), 4)
    seen: list[tuple] = []
    policy.prior.register_forward_hook(lambda module, args, out: seen.append((args[2], out)))
    with torch.no_grad():
        policy(batch)
    (trained_past, trained_prior), = seen
    frames = int(batch["valid"].sum())
    assert trained_past.shape == (frames, 3, 2, 2)
    assert float(trained_past[:, 0].std(dim=0).max()) > 1e-4  # the places move: the comparison is not of constants
    seen.clear()
    policy.reset()
    for t in range(frames):
        policy.predict_action_chunk(_frame(batch, t, start=t == 0))
    torch.testing.assert_close(torch.cat([past for past, _ in seen]), trained_past, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([out for _, out in seen]), trained_prior, atol=1e-5, rtol=1e-4)


def test_an_episode_start_restarts_only_that_slots_track(data):
    policy = _policy(data, track=2)
    batch = episode_batch(data, np.arange(2), 4)
    policy.reset()
    for t in range(3):
        policy.predict_action_chunk(_frame(batch, t, start=t == 0))
    before = policy._places.clone()
    policy.predict_action_chunk(_frame(batch, 3, start=[True, False], frame_index=[0, 3]))
    places = policy._places
    assert places.shape == (2, 3, 2, 2)
    torch.testing.assert_close(places[0], places[0, :1].expand(3, -1, -1))  # restarted: no motion yet
    torch.testing.assert_close(places[1, 1:], before[1, :2])  # went on: its earlier places moved one lag back
    policy.reset()
    assert policy._places is None


def test_each_client_of_the_policy_server_keeps_its_own_track(data):
    policy = _policy(data)
    batch = episode_batch(data, np.arange(2), 4)
    one = {key: batch[key][:1] for key in ("observation.image", "observation.state", "task")}
    two = {key: batch[key][1:2] for key in ("observation.image", "observation.state", "task")}
    policy.reset()
    alone = [policy.predict_action_chunk(_frame(one, t, start=t == 0)) for t in range(4)]
    a, b = _Session(policy), _Session(policy)
    a.reset()
    b.reset()
    together = []
    for t in range(4):  # interleaved with another client's episode
        together.append(a.policy.predict_action_chunk(_frame(one, t, start=t == 0)))
        b.policy.predict_action_chunk(_frame(two, t, start=t == 0))
    for mine, theirs in zip(alone, together, strict=True):
        torch.testing.assert_close(mine, theirs)
    assert a.policy._places is not b.policy._places


def test_the_setting_is_checked():
    features = dict(input_features={"observation.image": (32, 32, 3), "observation.state": (2,)},
                    output_features={"action": (2,)})
    with pytest.raises(ConfigError, match="prior_readout_track reads the places of the prior's readout"):
        MemoryVLAConfig(**features, chunk_prior=True, prior_readout_track=2)
    for bad in (-1, True, 2.0):
        with pytest.raises(ConfigError, match="prior_readout_track must be an int >= 0"):
            MemoryVLAConfig(**features, chunk_prior=True, prior_readout_heads=2, prior_readout_track=bad)


def test_train_adds_a_track_to_a_trained_policy_which_starts_as_it_was(tmp_path, capsys):
    demos = _intercept_demos(tmp_path / "d")
    common = ["--demos", str(demos), *FLAGS]
    assert vla(["vla-train", *common, "--out", str(tmp_path / "a")]) == 0
    assert vla(["vla-train", *common, "--readout-track", "2", "--init-from", str(tmp_path / "a"),
                "--out", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "mikasa.json").read_text())
    assert meta["prior_readout_track"] == 2 and MemoryVLAPolicy.from_pretrained(tmp_path / "b").config.prior_readout_track == 2
    # the track's columns start at zero: whatever the places did, the prior regresses what it did before
    data = load_mikasa_demonstrations([demos])
    trained = MemoryVLAPolicy.from_pretrained(tmp_path / "a")
    grown = mikasa_policy(data, "bank", chunk_prior=True, prior_readout_heads=2, prior_readout_track=2, augment_shift=0)
    init_from_trained(grown, tmp_path / "a", json.loads((tmp_path / "a" / "mikasa.json").read_text()))
    condition = torch.randn(3, trained.prior.mlp[0].in_features - trained.prior.readout.out_dim)
    context = torch.randn(3, trained.perceptual_encoder.num_tokens, trained.config.perceptual_dim)
    torch.testing.assert_close(grown.prior(condition, context, torch.randn(3, 2, 2, 2)), trained.prior(condition, context))
    capsys.readouterr()
    for extra, says in ((["--readout-track", "-1"], "--readout-track must be >= 0 earlier frames"),
                        (["--readout-track", "2", "--prior-readout", "0"], "--readout-track reads the places of the chunk prior's readout"),
                        (["--readout-track", "3", "--resume", "--out", str(tmp_path / "b"), "--steps", "8"],
                         "was trained with prior_readout_track=2, this run asks for 3")):
        out = [] if "--out" in extra else ["--out", str(tmp_path / "refused")]
        assert vla(["vla-train", *common, *out, *extra]) == 2, extra
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed
    assert not (tmp_path / "refused").exists()


def _moving_dots(episodes: int = 8) -> tuple:
    """Episodes of a red dot crossing the wood at its own velocity, which is the action to regress:
    one frame shows where the dot is, not where it goes. States are zero (they tell nothing)."""
    import dataclasses

    from memstream.embodied.envs import collect_demonstrations
    from memstream.embodied.policies.memvla.mikasa import ball_pixels, pixels_to_grid

    from tests.embodied.policies.test_memvla_keypoint import _scene

    base = collect_demonstrations("cue_choice", num_episodes=episodes, seed=0, image_size=32)
    rng = np.random.default_rng(1)
    images, actions = np.empty_like(base.images), np.empty_like(base.actions)
    for i in range(base.num_episodes):
        rows = slice(base.episode_bounds[i], base.episode_bounds[i + 1])
        length = rows.stop - rows.start
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([np.cos(angle), np.sin(angle)])
        start = 16 - 0.6 * direction * length / 2 + rng.uniform(-3, 3, size=2)
        images[rows] = np.stack([_scene(32, tuple(start + 0.6 * direction * t), radius=1.5, seed=t) for t in range(length)])
        actions[rows] = direction
    moving = dataclasses.replace(base, images=images, actions=actions.astype(np.float32),
                                 states=np.zeros_like(base.states))
    return moving, pixels_to_grid(ball_pixels(images), 32, 4)


def _prior_loss_after_training(data, keypoints, track: int, steps: int = 160) -> float:
    from memstream.embodied.policies.memvla.mikasa import _batch

    torch.manual_seed(0)
    policy = mikasa_policy(data, "no_memory", camera="x", perceptual_dim=16, perceptual_grid=4, perceptual_pool="max",
                           perceptual_subgrid=2, perceptual_fine_position=True, cognitive_dim=16, hidden_dim=32,
                           head_layers=1, head_heads=2, num_inference_steps=2, chunk_size=4, chunk_prior=True,
                           prior_readout_heads=2, prior_readout_offsets=True, prior_readout_track=track,
                           keypoint_loss_weight=1.0, augment_shift=0, augment_state_noise=0.0)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    episodes = np.arange(data.num_episodes)
    losses = []
    for _ in range(steps):
        loss, parts = policy(_batch(policy, data, episodes, keypoints=keypoints))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(parts["prior_loss"])
    return float(np.mean(losses[-10:]))


def test_with_a_track_a_memoryless_prior_regresses_a_velocity_one_frame_does_not_show():
    data, keypoints = _moving_dots()
    without, with_track = (_prior_loss_after_training(data, keypoints, track) for track in (0, 4))
    # measured: 0.113 without, 0.016 with (the actions are unit directions, normalised: variance ~1)
    assert with_track < without / 3, (without, with_track)
