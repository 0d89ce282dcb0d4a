"""Open-loop metrics of a policy on stored demonstrations (``open_loop_metrics``): the heading error at
the first move is the angle between the policy's and the expert's planar displacement over the chunk
predicted at that frame, the same chunk ``predict_action_chunk`` gives when the episode is streamed."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from memstream.embodied.policies.memvla import MemoryVLAPolicy, config_for, dataset_stats
from memstream.embodied.policies.memvla.mikasa import first_move_frame, heading_error_deg, open_loop_metrics

from tests.embodied.policies.util import TINY_DETERMINISTIC as TINY


@pytest.mark.parametrize(("predicted", "expert", "degrees"), [
    ((1.0, 0.0), (2.0, 0.0), 0.0), ((1.0, 0.0), (0.0, 3.0), 90.0), ((1.0, 0.0), (-1.0, 0.0), 180.0),
    ((1.0, 1.0), (1.0, 0.0), 45.0), ((-1.0, 1.0), (0.0, -1.0), 135.0)])
def test_the_heading_error_is_the_angle_between_the_displacements(predicted, expert, degrees):
    assert heading_error_deg(np.array(predicted), np.array(expert)) == pytest.approx(degrees)


def test_a_displacement_of_zero_has_no_heading():
    assert math.isnan(heading_error_deg(np.zeros(2), np.array([1.0, 0.0])))
    assert math.isnan(heading_error_deg(np.array([0.5, 0.5]), np.zeros(2)))


def test_open_loop_metrics_score_the_chunk_predicted_at_the_first_move():
    from memstream.embodied.envs import collect_demonstrations

    data = collect_demonstrations("cue_choice", num_episodes=3, seed=0, image_size=32)
    actions = data.actions.copy()
    for episode in range(3):  # the arm is held for the first 2 frames, as in RememberColor's cue phase
        actions[data.episode_bounds[episode]: data.episode_bounds[episode] + 2] = 0.0
    data = dataclasses.replace(data, actions=actions)
    assert [first_move_frame(data, e) for e in range(3)] == [2, 2, 2]
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True), dataset_stats(data)).eval()
    metrics = open_loop_metrics(policy, data, [0, 1, 2])
    expected = []
    for episode in range(3):
        low, high = int(data.episode_bounds[episode]), int(data.episode_bounds[episode + 1])
        first = first_move_frame(data, episode)
        policy.reset()
        for t in range(first + 1):  # stream the episode up to its first move, as an evaluation does
            chunk = policy.predict_action_chunk({
                "observation.image": data.images[low + t][None], "observation.state": data.states[low + t][None],
                "task": [data.tasks[int(data.task_index[low + t])]], "episode_start": np.array([t == 0]),
                "frame_index": np.array([t])})[0].numpy()
        k = min(len(chunk), high - low - first)
        expected.append(heading_error_deg(chunk[:k, :2].sum(0), data.actions[low + first: low + first + k, :2].sum(0)))
    assert metrics["episodes"] == 3
    assert metrics["heading_error_deg_median"] == pytest.approx(float(np.nanmedian(expected)), abs=1e-3)
    assert metrics["heading_within_20deg"] == pytest.approx(float(np.mean(np.array(expected) < 20.0)))
    assert 0.0 <= metrics["heading_error_deg_median"] <= 180.0


def test_the_pointer_score_is_where_the_first_readout_head_looks_at_the_first_move():
    from memstream.embodied.envs import collect_demonstrations

    data = collect_demonstrations("cue_choice", num_episodes=3, seed=0, image_size=32)
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=2), dataset_stats(data)).eval()
    looked = []
    for episode in range(3):  # the first head's largest weight at each episode's first move, streamed as an evaluation
        low, first = int(data.episode_bounds[episode]), first_move_frame(data, episode)
        policy.reset()
        for t in range(first + 1):
            seen = []
            hook = policy.prior.readout.score.register_forward_hook(lambda m, a, out, seen=seen: seen.append(out))
            policy.predict_action_chunk({
                "observation.image": data.images[low + t][None], "observation.state": data.states[low + t][None],
                "task": [data.tasks[0]], "episode_start": np.array([t == 0]), "frame_index": np.array([t])})
            hook.remove()
        looked.append(int(seen[-1][0, :, 0].argmax()))
    other = [(token + 1) % 4 for token in looked]
    assert open_loop_metrics(policy, data, [0, 1, 2], pointer_tokens=np.array(looked))["pointer_on_target"] == 1.0
    assert open_loop_metrics(policy, data, [0, 1, 2], pointer_tokens=np.array(other))["pointer_on_target"] == 0.0
    # an end point outside the image is left out; without tokens, or without a readout, no score
    mixed = np.array([looked[0], -1, other[2]])
    assert open_loop_metrics(policy, data, [0, 1, 2], pointer_tokens=mixed)["pointer_on_target"] == 0.5
    assert "pointer_on_target" not in open_loop_metrics(policy, data, [0, 1, 2])
    assert not policy.prior.readout.score._forward_hooks  # the metric's hook is gone
