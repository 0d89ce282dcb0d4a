"""The keypoint loss (``MemoryVLAConfig.keypoint_loss_weight``): the chunk prior readout's last head's
pooled place (its spatial soft-argmax) is regressed onto a place per frame; for the Intercept tasks the
rolling ball, found in the stored frames by its colour (``ball_pixels``). The targets, the loss, its
training through ``vla-train`` and its refusals, and the readout's per-token offsets
(``prior_readout_offsets``: a place finer than a token); the simulator check of ``ball_pixels`` is in
tests/embodied/envs/test_mikasa_sim.py."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from memstream.embodied.envs.mikasa.dataset import _DatasetWriter
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy, config_for, dataset_stats, episode_batch
from memstream.embodied.policies.memvla.action_head import SpatialReadout
from memstream.embodied.policies.memvla.mikasa import (_batch, ball_pixels, keypoint_rms_px, load_mikasa_demonstrations,
                                                       mikasa_policy, pixels_to_grid)
from memstream.embodied.policies.memvla.modeling_memvla import PolicyInputError
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.test_memvla_head_options import TINY, _fused
from tests.embodied.policies.util import vla

WOOD, RING, BALL = (230, 140, 90), (204, 71, 76), (190, 2, 2)  # the Intercept scene's colours (128 px renders)


def _scene(size: int, ball: tuple[float, float] | None, radius: float = 1.3, seed: int = 0) -> np.ndarray:
    """A table of noisy wood with the target's red and white rings at a fixed place and, at ``ball``
    (u, v pixels, centres at +0.5), a red disc drawn with 8x8 supersampling."""
    rng = np.random.default_rng(seed)
    image = np.clip(np.asarray(WOOD, np.float64) + rng.normal(0, 12, (size, size, 1)), 0, 255)
    vs, us = np.mgrid[0:size, 0:size] + 0.5
    rings = np.hypot(us - size * 0.7, vs - size * 0.3)
    image[rings < size * 0.08] = RING
    image[rings < size * 0.05] = 255
    image[rings < size * 0.025] = RING
    if ball is not None:
        sub = (np.arange(8) + 0.5) / 8
        su, sv = us[..., None, None] - 0.5 + sub[None, None, :, None], vs[..., None, None] - 0.5 + sub[None, None, None, :]
        cover = (np.hypot(su - ball[0], sv - ball[1]) < radius).mean(axis=(2, 3))[..., None]
        image = image * (1 - cover) + np.asarray(BALL, np.float64) * cover
    return image.round().astype(np.uint8)


# ---------------------------------------------------------------- the targets

def test_ball_pixels_finds_the_ball_to_a_fraction_of_a_pixel_and_nothing_where_there_is_none():
    rng = np.random.default_rng(1)
    places = rng.uniform(4, 60, size=(12, 2))
    frames = np.stack([_scene(64, tuple(p), seed=i) for i, p in enumerate(places)] + [_scene(64, None, seed=99)])
    found = ball_pixels(frames, chunk=5)  # chunks of 5: the chunking changes nothing
    assert np.abs(found[:-1] - places).max() < 0.25  # a quarter pixel; the rings' red and the wood never pull it off
    assert np.isnan(found[-1]).all()  # no ball: no place
    np.testing.assert_array_equal(found, ball_pixels(frames))
    edge = ball_pixels(_scene(64, (0.6, 30.0))[None])[0]  # half out of view: the part in view
    assert 0.0 < edge[0] < 1.5 and abs(edge[1] - 30.0) < 0.2
    with pytest.raises(ConfigError, match=r"needs RGB frames \(N, H, W, 3\)"):
        ball_pixels(frames[0])


def test_pixel_places_map_onto_the_readouts_grid():
    # 128 px, 8 tokens of 16 px: token centres at 8, 24, .., 120 px are -1, -1 + 2/7, .., 1
    centres = np.stack([np.arange(8) * 16 + 8.0, np.full(8, 8.0)], axis=1)
    np.testing.assert_allclose(pixels_to_grid(centres, 128, 8)[:, 0], np.linspace(-1, 1, 8))
    np.testing.assert_allclose(pixels_to_grid(centres, 128, 8)[:, 1], -1.0)
    assert pixels_to_grid([[16.0, 64.0]], 128, 8)[0].tolist() == pytest.approx([-1 + 1 / 7, 0.0])  # between tokens 0 and 1
    assert pixels_to_grid([[2.0, 127.0]], 128, 8)[0].tolist() == [-1.0, 1.0]  # an edge token's outer half: its centre
    assert np.isnan(pixels_to_grid([[np.nan, np.nan], [-3.0, 10.0]], 128, 8)).all()
    # a crop (top 32, left 16, 64 px) seen as the whole 128 px image
    cropped = pixels_to_grid([[16 + 4.0, 32 + 60.0], [10.0, 40.0]], 128, 8, crop=(32, 16, 64))
    assert cropped[0].tolist() == pytest.approx([-1.0, 1.0]) and np.isnan(cropped[1]).all()
    with pytest.raises(ConfigError, match="at least 2 x 2 tokens"):
        pixels_to_grid(centres, 128, 1)


def test_the_readouts_place_is_the_one_its_forward_pools():
    torch.manual_seed(0)
    readout = SpatialReadout(dim=6, num_tokens=9, heads=2)
    context = torch.randn(3, 9, 6)
    where = readout.where(context)
    assert where.shape == (3, 2, 2) and bool((where.abs() <= 1).all())
    torch.testing.assert_close(where, readout(context).view(3, 2, 8)[..., 6:])


# ---------------------------------------------------------------- the loss

@pytest.fixture(scope="module")
def data():
    from memstream.embodied.envs import collect_demonstrations

    return collect_demonstrations("cue_choice", num_episodes=4, seed=0, image_size=32)


def _keypoint_batch(data, places: list[tuple[float, float] | None]) -> dict:
    """A batch of the first len(places) episodes, each with its place from frame 1 on (None: no place)."""
    batch = episode_batch(data, np.arange(len(places)), 4)
    target = np.full((*batch["valid"].shape, 2), np.nan, np.float32)
    for row, place in enumerate(places):
        if place is not None:
            target[row, 1:] = place
    batch["keypoint_target"] = torch.from_numpy(target)
    return batch


def test_the_keypoint_loss_is_the_squared_distance_in_tokens_of_the_last_heads_place(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=2, keypoint_loss_weight=0.5),
                             dataset_stats(data)).train()
    batch = _keypoint_batch(data, [(0.5, -1.0), None, (-0.25, 0.75)])
    _, info = policy(batch)
    fused, every = _fused(policy, batch)
    target = batch["keypoint_target"].reshape(-1, 2)
    chosen = every & torch.isfinite(target).all(1)
    assert int(chosen.sum()) == int(batch["valid"][[0, 2], 1:].sum())
    where = policy.prior.readout.where(fused[chosen])[:, -1]
    expected = ((where - target[chosen]) / 2.0).pow(2).sum(1).mean().detach()  # a 2 x 2 grid: token centres 2 apart
    assert info["keypoint_loss"] == pytest.approx(0.5 * float(expected), rel=1e-5)
    assert np.isclose(info["loss"], info["prior_loss"] + info["flow_loss"] + info["keypoint_loss"], rtol=1e-5)
    alone = policy._keypoint_loss(batch, fused, every)
    alone.backward()
    score = policy.prior.readout.score[2].weight.grad  # the last scoring layer: the loss reaches the last head only
    assert score[0].abs().sum() == 0 and score[1].abs().sum() > 0
    assert policy.perceptual_encoder.position.grad.abs().sum() > 0  # and the tokens it scores
    # frames past an episode's end and a batch without any place add nothing
    more = dict(batch, keypoint_target=torch.where(batch["valid"][..., None], batch["keypoint_target"], torch.tensor(0.9)))
    assert float(policy._keypoint_loss(more, fused, every).detach()) == pytest.approx(float(alone.detach()), rel=1e-6)
    none = _keypoint_batch(data, [None, None])
    loss, info = policy(none)
    assert info["keypoint_loss"] == 0.0
    loss.backward()  # the same graph: nothing to skip


def test_the_keypoint_loss_teaches_the_head_to_follow_a_red_dot(data):
    before, after = _red_dot_training(data, offsets=False)
    assert before > 6.0 and after < before / 3, (before, after)  # 8 px tokens: from a guess to within a token


def test_a_batch_carries_each_frames_place_and_a_prefix_keeps_it(data):
    from memstream.embodied.policies.memvla.mikasa import first_move_frame

    policy = mikasa_policy(data, "bank", memory_length=4, camera="x", chunk_prior=True, prior_readout_heads=1,
                           keypoint_loss_weight=1.0, augment_shift=0)
    keypoints = np.stack([np.linspace(-1, 1, len(data.images)), np.zeros(len(data.images))], axis=1)
    keypoints[3] = np.nan
    batch = _batch(policy, data, np.array([2, 0]), keypoints=keypoints)
    target, valid = batch["keypoint_target"].numpy(), batch["valid"].numpy()
    for row, episode in enumerate((2, 0)):
        start, length = data.episode_bounds[episode], data.lengths[episode]
        np.testing.assert_allclose(target[row, :length], keypoints[start:start + length].astype(np.float32))
        assert np.isnan(target[row, length:]).all() and not valid[row, length:].any()
    cut = _batch(policy, data, np.array([2, 0]), keypoints=keypoints, prefix=True)
    keep = cut["valid"].shape[1]
    assert keep == max(first_move_frame(data, e) for e in (2, 0)) + 1
    np.testing.assert_array_equal(cut["keypoint_target"].numpy(), target[:, :keep])


def test_the_keypoint_loss_needs_its_targets_the_readout_a_still_image_and_a_sane_weight(data, tmp_path):
    from memstream.embodied.policies.memvla.mikasa import train_with_checkpoints

    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=1, keypoint_loss_weight=1.0),
                             dataset_stats(data)).train()
    with pytest.raises(PolicyInputError, match="needs the batch's 'keypoint_target'"):
        policy(episode_batch(data, np.arange(2), 4))
    with pytest.raises(PolicyInputError, match=r"outside -1 .. 1 \(the readout's grid\)"):
        policy(_keypoint_batch(data, [(1.5, 0.0), None]))
    with pytest.raises(PolicyInputError, match="has shape"):
        policy(dict(episode_batch(data, np.arange(2), 4), keypoint_target=torch.zeros(2, 1, 2)))
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="keypoint_loss_weight must be a finite number >= 0"):
            MemoryVLAConfig(keypoint_loss_weight=weight, chunk_prior=True, prior_readout_heads=1)
    with pytest.raises(ConfigError, match="the prior has no readout"):
        MemoryVLAConfig(keypoint_loss_weight=1.0, chunk_prior=True)
    with pytest.raises(ConfigError, match="augment_shift moves the image under them"):
        MemoryVLAConfig(keypoint_loss_weight=1.0, chunk_prior=True, prior_readout_heads=1, augment_shift=4)
    with pytest.raises(ConfigError, match="one \\(x, y\\) grid place per demonstration frame"):
        train_with_checkpoints(policy, data, tmp_path / "run", 1, {"task": "x"}, keypoints=np.zeros((3, 2)))
    assert not (tmp_path / "run").exists()
    plain = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=1), dataset_stats(data))
    with pytest.raises(ConfigError, match="its keypoint_loss_weight is 0"):
        keypoint_rms_px(plain, data, np.zeros((len(data.images), 2)), np.arange(2))
    policy.save_pretrained(tmp_path / "p")  # training only: no weights of its own, so an old config loads these weights
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.keypoint_loss_weight == 1.0
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    del saved["keypoint_loss_weight"]
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.keypoint_loss_weight == 0.0


# ---------------------------------------------------------------- vla-train --keypoint-loss

def _intercept_demos(root, episodes: int = 3, length: int = 6, size: int = 64, ball: bool = True, task: str = "InterceptMedium"):
    """A real demonstration folder (Parquet + H.264) of a ball (4 px across) rolling across the wood."""
    rng = np.random.default_rng(0)
    writer = _DatasetWriter(root, task, "intercept the ball", size, cameras=("base_camera",))
    for i in range(episodes):
        start = rng.uniform(8, 24, size=2)
        video = np.stack([_scene(size, tuple(start + 4.0 * t) if ball else None, radius=2.0, seed=t) for t in range(length)])
        writer.add({"frames": {"observation.images.base_camera": video},
                    "states": rng.normal(size=(length, 7)).astype(np.float32),
                    "actions": rng.uniform(-1, 1, size=(length, 7)).astype(np.float32),
                    "rewards": np.zeros(length, np.float32), "success": True, "seed": 10 + i,
                    "hidden_info": [], "reveal_frames": length})
    return root


FLAGS = ["--steps", "4", "--batch-episodes", "2", "--threads", "1", "--no-progress", "--chunk-prior",
         "--prior-readout", "2", "--augment-shift", "0"]


def test_train_with_the_keypoint_loss_records_it_and_refuses_what_cannot_work(tmp_path, capsys):
    demos = _intercept_demos(tmp_path / "d")
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "run"), *FLAGS, "--keypoint-loss", "1"]) == 0
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "run").config.keypoint_loss_weight == 1.0
    meta = json.loads((tmp_path / "run" / "mikasa.json").read_text())
    assert meta["keypoint_loss_weight"] == 1.0 and meta["keypoint_frames"] == 18
    assert 0.0 < meta["keypoint_rms_px"] < 64 * 1.5
    printed = capsys.readouterr()
    assert "keypoint targets: the ball in 18 of 18 demonstration frames" in printed.err
    assert re.search(r"step 4/4 loss [\d.]+ \([\d.]+ steps/s\), keypoint [\d.]+ px rms, checkpoint saved", printed.out)
    empty = _intercept_demos(tmp_path / "empty", ball=False)
    colours = _intercept_demos(tmp_path / "colours", task="RememberColor3")
    for demos_, extra, says in (
            (demos, ["--keypoint-loss", "1", "--prior-readout", "0"], "--keypoint-loss trains the chunk prior's readout"),
            (demos, ["--keypoint-loss", "nan"], "--keypoint-loss must be a finite number >= 0"),
            (demos, ["--keypoint-loss", "1", "--augment-shift", "4"], "--augment-shift moves the image under them"),
            (empty, ["--keypoint-loss", "1"], "the ball was found in none of the 18 demonstration frames"),
            (colours, ["--keypoint-loss", "1"], "RememberColor3 has none"),
            (demos, ["--resume", "--steps", "8"], "was trained with keypoint_loss_weight=1.0, this run asks for 0.0")):
        out = tmp_path / ("run" if "--resume" in extra else "refused")
        assert vla(["vla-train", "--demos", str(demos_), "--out", str(out), *FLAGS, *extra]) == 2, extra
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed
        assert not (tmp_path / "refused").exists()



# ---------------------------------------------------------------- offsets: a place finer than a token

def test_a_readout_with_offsets_starts_as_one_without_and_moves_its_place_by_up_to_a_spacing():
    torch.manual_seed(0)
    plain = SpatialReadout(dim=6, num_tokens=9, heads=2)
    moved = SpatialReadout(dim=6, num_tokens=9, heads=2, offsets=True)
    moved.load_state_dict({**plain.state_dict(), **{k: v for k, v in moved.state_dict().items() if k.startswith("offset.")}})
    context = torch.randn(3, 9, 6)
    torch.testing.assert_close(moved(context), plain(context))  # zero offsets: the same readout
    with torch.no_grad():
        moved.offset.bias.copy_(torch.tensor([30.0, 0.0, 0.0, -30.0]))  # head 0 right, head 1 up: tanh ~ 1
    shift = moved.where(context) - plain.where(context)
    torch.testing.assert_close(shift, torch.tensor([[1.0, 0.0], [0.0, -1.0]]).expand(3, 2, 2), atol=1e-6, rtol=0)  # spacing 1
    torch.testing.assert_close(moved(context).view(3, 2, 8)[..., 6:], moved.where(context))


def _red_dot_training(data, offsets: bool, steps: int = 60) -> tuple[float, float]:
    """The keypoint head's pixel error before and after ``steps`` steps on frames of the wood with a
    red ball at a random place (32 px, 4 x 4 tokens of 8 px)."""
    rng = np.random.default_rng(0)
    places = rng.uniform(3, 29, size=(len(data.images), 2))
    images = np.stack([_scene(32, tuple(place), radius=1.5, seed=frame) for frame, place in enumerate(places)])
    moving = dataclasses.replace(data, images=images)
    found = ball_pixels(images)
    assert np.abs(found - places).max() < 0.25
    keypoints = pixels_to_grid(found, 32, 4)
    torch.manual_seed(0)
    policy = mikasa_policy(moving, "bank", memory_length=4, camera="x", perceptual_dim=16, perceptual_grid=4,
                           perceptual_pool="max", perceptual_subgrid=2, perceptual_fine_position=True,
                           cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2, num_inference_steps=2,
                           chunk_size=4, chunk_prior=True, prior_readout_heads=2, prior_readout_offsets=offsets,
                           keypoint_loss_weight=1.0, augment_shift=0)
    episodes = np.arange(moving.num_episodes)
    before = keypoint_rms_px(policy, moving, keypoints, episodes)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    policy.train()
    for _ in range(steps):
        loss, _ = policy(_batch(policy, moving, episodes, keypoints=keypoints))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = keypoint_rms_px(policy, moving, keypoints, episodes)
    assert policy.training  # the probe leaves the mode it found
    return before, after


def test_train_adds_readout_offsets_to_a_trained_policy_which_starts_as_it_was(tmp_path, capsys):
    from memstream.embodied.policies.memvla.mikasa import init_from_trained

    demos = _intercept_demos(tmp_path / "d")
    keypoint = ["--demos", str(demos), *FLAGS, "--keypoint-loss", "1"]
    assert vla(["vla-train", *keypoint, "--out", str(tmp_path / "a")]) == 0
    assert vla(["vla-train", *keypoint, "--readout-offsets", "--init-from", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    meta = json.loads((tmp_path / "b" / "mikasa.json").read_text())
    assert meta["prior_readout_offsets"] is True and MemoryVLAPolicy.from_pretrained(tmp_path / "b").config.prior_readout_offsets
    # the offsets start at zero: the policy they are added to reads its tokens exactly as before
    data = load_mikasa_demonstrations([demos])
    trained = MemoryVLAPolicy.from_pretrained(tmp_path / "a")
    grown = mikasa_policy(data, "bank", chunk_prior=True, prior_readout_heads=2, prior_readout_offsets=True,
                          keypoint_loss_weight=1.0, augment_shift=0)
    init_from_trained(grown, tmp_path / "a", json.loads((tmp_path / "a" / "mikasa.json").read_text()))
    context = torch.randn(2, trained.perceptual_encoder.num_tokens, trained.config.perceptual_dim)
    torch.testing.assert_close(grown.prior.readout(context), trained.prior.readout(context))
    capsys.readouterr()
    # a policy with offsets does not load into one without; a resume must keep them; they need a readout
    assert vla(["vla-train", *keypoint, "--init-from", str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 2
    assert "do not fit this policy" in capsys.readouterr().out
    assert vla(["vla-train", *keypoint, "--out", str(tmp_path / "b"), "--resume", "--steps", "8"]) == 2
    assert "was trained with prior_readout_offsets=True, this run asks for False" in capsys.readouterr().out
    assert vla(["vla-train", *keypoint, "--readout-offsets", "--prior-readout", "0", "--keypoint-loss", "0",
                "--out", str(tmp_path / "d2")]) == 2
    assert "--readout-offsets is a part of the chunk prior's readout" in capsys.readouterr().out
