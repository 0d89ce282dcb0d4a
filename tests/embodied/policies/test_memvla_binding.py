"""The binding warm start (``memstream.embodied.policies.memvla.binding``): the samples it cuts from
each demonstration, that it trains the policy's own image encoder, perceptual bank stream and prior
readout and nothing else, that it learns a colour binding on a synthetic cue task with exact ground
truth, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla import MemoryVLAPolicy, config_for, dataset_stats
from memstream.embodied.policies.memvla.binding import WARMED_MODULES, binding_samples, binding_warmup
from memstream.streaming.errors import ConfigError

SIZE, GRID, CELL = 32, 4, 8  # 32 px frames, 4 x 4 tokens of 8 px
COLOURS = np.array([[230, 40, 40], [40, 200, 40], [40, 70, 230], [220, 210, 40]], np.uint8)
WAIT, LENGTH = 3, 5  # frames 0 .. 2 still (cue at 0), the arm moves from frame 3 on


def cue_scenes(episodes: int, seed: int = 0) -> EpisodeDataset:
    """A RememberColor in miniature with exact ground truth: frame 0 shows the cue colour at the
    centre, frames 1-2 are empty, from frame 3 (the first move) three patches of different colours,
    one of them the cue's, stand in three random cells; the last state's x, y is the centre of the
    cue-coloured patch's cell (in cells), as a RememberColor expert ends above the cued cube."""
    rng = np.random.default_rng(seed)
    images = np.zeros((episodes * LENGTH, SIZE, SIZE, 3), np.uint8)
    states = rng.normal(0, 0.1, (episodes * LENGTH, 2)).astype(np.float32)
    actions = np.zeros((episodes * LENGTH, 2), np.float32)
    hidden = np.zeros((episodes, 1), np.int64)
    for e in range(episodes):
        row = e * LENGTH
        colours = rng.choice(len(COLOURS), 3, replace=False)
        cells = rng.choice(GRID * GRID, 3, replace=False)
        cue = colours[0]
        hidden[e] = cue
        images[row, 12:20, 12:20] = COLOURS[cue]
        for t in range(WAIT, LENGTH):
            for colour, cell in zip(colours, cells, strict=True):
                y, x = divmod(int(cell), GRID)
                images[row + t, y * CELL + 1: y * CELL + 7, x * CELL + 1: x * CELL + 7] = COLOURS[colour]
        actions[row + WAIT:row + LENGTH] = 0.5
        y, x = divmod(int(cells[0]), GRID)
        states[row + LENGTH - 1] = [x + 0.5, y + 0.5]
    frame = np.tile(np.arange(LENGTH), episodes)
    return EpisodeDataset(images=images, states=states, actions=actions, episode_index=np.repeat(np.arange(episodes), LENGTH),
                          frame_index=frame, task_index=np.zeros(episodes * LENGTH, np.int64), tasks=("touch the cued cube",),
                          episode_bounds=np.arange(episodes + 1) * LENGTH, success=np.ones(episodes, bool),
                          hidden_info=hidden, reveal_frames=np.ones(episodes, np.int64), task_name="cue_scenes", seed=seed)


def targets(data: EpisodeDataset) -> np.ndarray:
    """The cell each episode ends over, row-major: the token the pointer loss aims at."""
    last = data.states[data.episode_bounds[1:] - 1]
    return (np.floor(last[:, 1]) * GRID + np.floor(last[:, 0])).astype(np.int64)


def policy_for(data: EpisodeDataset, **overrides) -> MemoryVLAPolicy:
    settings = dict(perceptual_dim=32, perceptual_grid=GRID, perceptual_pool="max", perceptual_subgrid=2,
                    perceptual_fine_position=True, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
                    num_inference_steps=2, vocab_buckets=64, chunk_size=4, chunk_prior=True, prior_readout_heads=2,
                    bank=MemoryBankConfig(capacity=4))
    torch.manual_seed(0)
    return MemoryVLAPolicy(config_for(data, **{**settings, **overrides}), dataset_stats(data))


def test_each_demonstration_gives_its_cue_frame_its_last_still_frame_its_first_move_and_its_end_point():
    data = cue_scenes(3)
    samples = binding_samples(data)
    assert samples["memory"].shape == (3, 2, SIZE, SIZE, 3) and samples["query"].shape == (3, SIZE, SIZE, 3)
    for e in range(3):
        row = e * LENGTH
        np.testing.assert_array_equal(samples["memory"][e, 0], data.images[row])
        np.testing.assert_array_equal(samples["memory"][e, 1], data.images[row + WAIT - 1])
        np.testing.assert_array_equal(samples["query"][e], data.images[row + WAIT])
        np.testing.assert_array_equal(samples["goal"][e], data.states[row + LENGTH - 1])


def test_the_warm_start_trains_the_image_path_and_the_readout_and_nothing_else():
    data = cue_scenes(8)
    policy = policy_for(data)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    policy.eval()
    lines: list[str] = []
    record = binding_warmup(policy, data, targets(data), steps=3, batch=4, log=lines.append, log_every=2)
    assert not policy.training  # the mode it had
    assert len(lines) == 2 and lines[0].startswith("binding warm start step 2/3 loss ")
    assert "of the last 8 training samples" in lines[0] and "of the last 4 training samples" in lines[1]
    after = policy.state_dict()
    assert set(after) == set(before)  # the regression head is not kept in the policy
    for key, value in after.items():
        warmed = any(key.startswith(module + ".") for module in WARMED_MODULES)
        if not warmed:
            assert torch.equal(value, before[key]), key
    moved = [k for k in after if not torch.equal(after[k], before[k])]
    assert {next(m for m in WARMED_MODULES if k.startswith(m + ".")) for k in moved} == set(WARMED_MODULES)
    assert record["steps"] == 3 and record["batch"] == 4 and record["modules"] == list(WARMED_MODULES)
    assert record["scored_demonstrations"] == 8 and 0.0 <= record["pointer_on_target"] <= 1.0
    # the same seed, the same weights
    again = policy_for(data)
    binding_warmup(again, data, targets(data), steps=3, batch=4)
    for key, value in again.state_dict().items():
        assert torch.equal(value, after[key]), key


def test_the_warm_start_learns_which_patch_has_the_remembered_colour():
    """Three colours of four shown after the cue, at random cells: pointing at the right one needs the
    memory (chance 1/3 among the patches, 1/16 among the tokens). Scored on scenes it never saw."""
    data, held = cue_scenes(192, seed=0), cue_scenes(64, seed=1)
    torch.set_num_threads(1)
    policy = policy_for(data)
    record = binding_warmup(policy, data, targets(data), steps=400, batch=32, lr=3e-3)
    check = policy_for(held)
    check.load_state_dict(policy.state_dict())
    from memstream.embodied.policies.memvla.binding import policy_binding_model

    model = policy_binding_model(check).eval()
    samples = binding_samples(held)
    with torch.no_grad():
        model(samples["memory"], samples["query"])
    pointed = model.pointer.argmax(dim=1).numpy()
    assert record["pointer_on_target"] >= 0.9, record
    assert np.mean(pointed == targets(held)) >= 0.8
    # with the memory's cue frame blanked the pointer can only guess among the three patches
    blank = samples["memory"].clone()
    blank[:, 0] = 0
    with torch.no_grad():
        model(blank, samples["query"])
    assert np.mean(model.pointer.argmax(dim=1).numpy() == targets(held)) < 0.6


@pytest.mark.parametrize("change, says", [
    (dict(memory="none"), "no bank"),
    (dict(prior_readout_heads=0), "no prior readout"),
])
def test_a_policy_without_the_modules_is_refused(change, says):
    data = cue_scenes(4)
    with pytest.raises(ConfigError, match=says):
        binding_warmup(policy_for(data, **change), data, targets(data), steps=1)


def test_bad_steps_and_targets_are_refused():
    data = cue_scenes(4)
    policy = policy_for(data)
    for steps, tokens, says in ((0, targets(data), "steps >= 1"), (2, targets(data)[:3], "one end-point token"),
                                (2, np.full(4, GRID * GRID), "one end-point token"),
                                (2, np.full(4, -1), "no demonstration's end point falls inside the image")):
        with pytest.raises(ConfigError, match=says):
            binding_warmup(policy, data, tokens, steps=steps)
