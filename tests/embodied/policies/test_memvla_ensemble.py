"""ACT's temporal ensembling in ``select_action`` (``temporal_ensemble_coeff``, LeRobot ACT's setting):
the running sums equal the average over every chunk's prediction for a step, weighted exp(-m i) with
i = 0 the oldest; slots forget their chunks when their episode starts; the policy feeds it the chunk
it would otherwise queue; settings are checked, saved and loaded."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from memstream.embodied.policies.memvla import MemoryVLAPolicy, config_for, dataset_stats
from memstream.embodied.policies.memvla.modeling_memvla import PolicyInputError, TemporalEnsembler
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.util import TINY_DETERMINISTIC as TINY


@pytest.fixture(scope="module")
def data():
    from memstream.embodied.envs import collect_demonstrations

    return collect_demonstrations("cue_choice", num_episodes=2, seed=0, image_size=32)


def _reference(chunks: list[torch.Tensor], coeff: float) -> list[torch.Tensor]:
    """ACT Algorithm 2 written out: at step t, every chunk c made at s <= t with t - s < K predicted
    ``chunks[s][:, t - s]``; weigh them exp(-coeff * i), i = 0 the oldest, and normalise."""
    size = chunks[0].shape[1]
    out = []
    for t in range(len(chunks)):
        made = list(range(max(0, t - size + 1), t + 1))  # oldest first
        weights = torch.exp(-coeff * torch.arange(len(made), dtype=torch.float64))
        stacked = torch.stack([chunks[s][:, t - s].double() for s in made])
        out.append((weights[:, None, None] * stacked).sum(0) / weights.sum())
    return out


@pytest.mark.parametrize("coeff", [0.0, 0.01, 0.7, -0.5])
def test_the_running_sums_equal_acts_weighted_average_over_every_chunks_prediction(coeff):
    generator = torch.Generator().manual_seed(3)
    chunks = [torch.randn(2, 4, 3, generator=generator) for _ in range(11)]
    ensembler = TemporalEnsembler(coeff, chunk_size=4)
    got = [ensembler.update(chunk) for chunk in chunks]
    for step, (mine, expected) in enumerate(zip(got, _reference(chunks, coeff), strict=True)):
        assert mine.shape == (2, 3)
        torch.testing.assert_close(mine.double(), expected, rtol=1e-5, atol=1e-6, msg=f"step {step}")


def test_the_oldest_prediction_dominates_a_large_coefficient_and_the_newest_a_negative_one():
    chunks = [torch.full((1, 3, 1), float(s)) + torch.arange(3.0)[None, :, None] * 100 for s in range(5)]
    old, new = TemporalEnsembler(50.0, 3), TemporalEnsembler(-50.0, 3)
    for step, chunk in enumerate(chunks):
        oldest = max(0, step - 2)  # chunk made at `oldest` predicted this step at offset step - oldest
        assert old.update(chunk).item() == pytest.approx(oldest + 100 * (step - oldest))
        assert new.update(chunk).item() == pytest.approx(step)  # the newest chunk's first action


def test_a_slot_whose_episode_starts_forgets_its_chunks_and_the_others_keep_theirs():
    ensembler = TemporalEnsembler(0.0, 3)
    ensembler.update(torch.tensor([[[10.0], [20.0], [30.0]], [[1.0], [2.0], [3.0]]]))
    second = torch.tensor([[[40.0], [50.0], [60.0]], [[4.0], [5.0], [6.0]]])
    action = ensembler.update(second, starts=torch.tensor([True, False]))
    assert action[:, 0].tolist() == [40.0, 3.0]  # slot 0 starts over; slot 1 averages (2 + 4) / 2
    with pytest.raises(PolicyInputError, match="expects chunks of 3 actions, got 4"):
        ensembler.update(torch.zeros(2, 4, 1))


def _observations(data, steps: int) -> list[dict]:
    frames = []
    for t in range(steps):
        frames.append({"observation.image": data.images[t][None], "observation.state": data.states[t][None],
                       "task": [data.tasks[0]],
                       "episode_start": np.array([t == 0]), "frame_index": np.array([t])})
    return frames


def test_select_action_ensembles_the_chunks_the_policy_predicts_each_step(data):
    torch.manual_seed(0)
    plain = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True), dataset_stats(data)).eval()
    ensembled = copy.deepcopy(plain)
    ensembled.config = copy.deepcopy(plain.config)
    ensembled.config.temporal_ensemble_coeff = 0.3
    plain.reset()
    ensembled.reset()
    frames = _observations(data, 7)
    chunks = [plain.predict_action_chunk(frame) for frame in frames]  # same bank updates, deterministic sampler
    actions = [ensembled.select_action(frame) for frame in frames]
    for mine, expected in zip(actions, _reference(chunks, 0.3), strict=True):
        torch.testing.assert_close(mine.double(), expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(actions[-1], chunks[-1][:, 0])  # not plain replanning
    ensembled.reset()  # a new episode starts without the old chunks
    torch.testing.assert_close(ensembled.select_action(frames[0]), chunks[0][:, 0])


def test_the_setting_needs_one_action_per_step_the_flow_head_and_a_finite_value(data):
    for bad in (float("nan"), float("inf"), "0.01", True):
        with pytest.raises(ConfigError, match="temporal_ensemble_coeff must be None or a finite number"):
            config_for(data, **TINY, temporal_ensemble_coeff=bad)
    with pytest.raises(ConfigError, match="needs n_action_steps=1 and the flow head, got 2"):
        config_for(data, **{**TINY, "n_action_steps": 2}, temporal_ensemble_coeff=0.01)
    assert config_for(data, **TINY, temporal_ensemble_coeff=0).temporal_ensemble_coeff == 0.0


def test_the_setting_saves_and_loads_and_an_old_config_has_it_off(data, tmp_path):
    policy = MemoryVLAPolicy(config_for(data, **TINY, temporal_ensemble_coeff=0.01), dataset_stats(data))
    policy.save_pretrained(tmp_path / "p")
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.temporal_ensemble_coeff == 0.01
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    del saved["temporal_ensemble_coeff"]  # a config.json from before the setting
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.temporal_ensemble_coeff is None
