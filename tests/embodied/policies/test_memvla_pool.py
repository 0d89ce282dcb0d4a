"""Perceptual pooling (``perceptual_pool``): max over finer patches keeps a few-pixel cue whole; the
old behaviour stays the default and policies saved before the setting still load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy, config_for, dataset_stats, episode_batch
from memstream.embodied.policies.memvla.encoders import PatchEncoder, SmallCNNEncoder
from memstream.streaming.errors import ConfigError, MemstreamError

TINY = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
            num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=2, bank=MemoryBankConfig(capacity=4))


@pytest.fixture(scope="module")
def data():
    from memstream.embodied.envs import collect_demonstrations

    return collect_demonstrations("cue_choice", num_episodes=4, seed=0, image_size=32)


def _cue(row: int, col: int, size: int = 128) -> torch.Tensor:
    """A grey image with a 3 x 3 px blue square at (row, col)."""
    image = torch.full((1, 3, size, size), 0.5)
    image[0, :, row:row + 3, col:col + 3] = torch.tensor([0.0, 0.0, 1.0])[:, None, None]
    return image


def test_a_max_pooled_token_is_the_maximum_of_its_fine_patches_own_embeddings():
    torch.manual_seed(0)
    encoder = PatchEncoder(128, dim=8, grid=4, pool="max", subgrid=4)
    image = torch.rand(1, 3, 128, 128)
    tokens = encoder(image) - encoder.position
    for row, col in ((0, 0), (1, 2), (3, 3)):  # token (row, col) covers 32 x 32 px: 4 x 4 fine 8 px patches
        fine = [encoder.mlp(encoder.embed(image[:, :, 32 * row + 8 * i: 32 * row + 8 * i + 8,
                                                  32 * col + 8 * j: 32 * col + 8 * j + 8] * 2 - 1)).flatten()
                for i in range(4) for j in range(4)]
        torch.testing.assert_close(tokens[0, 4 * row + col], torch.stack(fine).amax(0))


def test_max_pooling_keeps_a_small_cue_whatever_fine_patch_of_the_token_it_falls_in():
    torch.manual_seed(0)
    pooled = PatchEncoder(128, dim=8, grid=4, pool="max", subgrid=4)
    blank = pooled(torch.full((1, 3, 128, 128), 0.5))
    # the same cue at the same offset inside two different fine patches of token (2, 1): same token;
    # the tokens the cue does not touch are those of a blank image
    a, b = pooled(_cue(64 + 2, 32 + 2)), pooled(_cue(64 + 26, 32 + 18))
    torch.testing.assert_close(a, b)
    changed = (a - blank).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [i == 2 * 4 + 1 for i in range(16)]
    # one linear embedding of the whole 32 px patch (the old behaviour) tells the two places apart
    torch.manual_seed(0)
    whole = PatchEncoder(128, dim=8, grid=4)
    assert not torch.allclose(whole(_cue(64 + 2, 32 + 2)), whole(_cue(64 + 26, 32 + 18)))


def test_the_cnn_max_pools_its_map_when_asked():
    torch.manual_seed(0)
    average = SmallCNNEncoder(128, dim=8, grid=4)
    torch.manual_seed(0)
    maximum = SmallCNNEncoder(128, dim=8, grid=4, pool="max")
    image = torch.rand(2, 3, 128, 128)
    feature_map = maximum.trunk[:-1](image * 2 - 1)  # (2, 64, 16, 16) before pooling
    assert isinstance(maximum.trunk[-1], torch.nn.AdaptiveMaxPool2d) and isinstance(average.trunk[-1], torch.nn.AdaptiveAvgPool2d)
    torch.testing.assert_close(maximum.trunk(image * 2 - 1), torch.nn.functional.max_pool2d(feature_map, 4))
    assert maximum(image).shape == average(image).shape == (2, 16, 8)


def test_a_max_pooled_policy_trains_saves_and_loads(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, perceptual_pool="max", perceptual_subgrid=2), dataset_stats(data))
    assert policy.perceptual_encoder.embed.kernel_size == (8, 8)  # 32 px / (2 tokens x 2 fine patches)
    policy.train()
    loss, _ = policy(episode_batch(data, np.arange(2), 4))
    loss.backward()
    assert policy.perceptual_encoder.embed.weight.grad.abs().sum() > 0
    policy.eval()
    policy.save_pretrained(tmp_path / "p")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config.perceptual_pool == "max" and loaded.config.perceptual_subgrid == 2
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_a_policy_saved_before_the_setting_loads_with_the_old_pooling(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY), dataset_stats(data))
    policy.save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    del saved["perceptual_pool"], saved["perceptual_subgrid"]  # what a config.json from before holds
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "old")
    assert loaded.config.perceptual_pool == "avg" and loaded.perceptual_encoder.embed.kernel_size == (16, 16)
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    # the same weights under a config that claims max pooling: one clear error, not a silent mix
    saved["perceptual_pool"] = "max"
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(MemstreamError, match="do not match its config"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "old")


def test_bad_pooling_settings_are_refused(data):
    with pytest.raises(ConfigError, match="perceptual_pool must be one of"):
        config_for(data, perceptual_pool="median")
    with pytest.raises(ConfigError, match="perceptual_subgrid must be >= 1"):
        config_for(data, perceptual_pool="max", perceptual_subgrid=0)
    with pytest.raises(ConfigError, match="not 'hf'"):
        MemoryVLAConfig(perceptual_encoder="hf", vision_model="x", perceptual_pool="max")
    with pytest.raises(MemstreamError, match="not a multiple of 12 patches per side"):
        PatchEncoder(32, dim=8, grid=4, pool="max", subgrid=3)


def _two_cubes(blue_left: bool) -> torch.Tensor:
    """A grey image with a blue and a red 3 x 3 px square in two fine patches of token (2, 2)."""
    image = torch.full((1, 3, 128, 128), 0.5)
    blue, red = torch.tensor([0.0, 0.0, 1.0])[:, None, None], torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    image[0, :, 66:69, 66:69], image[0, :, 66:69, 90:93] = (blue, red) if blue_left else (red, blue)
    return image


def test_the_fine_position_embedding_keeps_where_in_its_token_each_colour_was():
    torch.manual_seed(0)
    plain = PatchEncoder(128, dim=8, grid=4, pool="max", subgrid=4)
    torch.manual_seed(0)
    placed = PatchEncoder(128, dim=8, grid=4, pool="max", subgrid=4, fine_position=True)
    assert placed.fine_position.shape == (1, 16, 16, 16) and placed.fine_position.abs().sum() == 0
    # zero at initialisation and drawn from no RNG: the same seed gives the same encoder as without it
    for key, value in plain.state_dict().items():
        assert torch.equal(value, placed.state_dict()[key]), key
    image = torch.rand(2, 3, 128, 128)
    torch.testing.assert_close(placed(image), plain(image))
    # the maximum alone: blue-left-of-red and red-left-of-blue in one token are the same token
    torch.testing.assert_close(plain(_two_cubes(True)), plain(_two_cubes(False)))
    # with a (here random, in training learned) embedding per fine patch the two layouts differ,
    # in that token only
    torch.manual_seed(1)
    with torch.no_grad():
        placed.fine_position.normal_(std=0.1)  # small beside the colours', as the maximum needs
    left, right = placed(_two_cubes(True)), placed(_two_cubes(False))
    gap = (left - right).abs().amax(-1)[0]
    assert gap[2 * 4 + 2] > 1e-2 and gap.sum() == gap[2 * 4 + 2]


def test_a_fine_position_policy_learns_the_embedding_saves_and_loads(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, perceptual_pool="max", perceptual_subgrid=2,
                                        perceptual_fine_position=True), dataset_stats(data))
    policy.train()
    loss, _ = policy(episode_batch(data, np.arange(2), 4))
    loss.backward()
    assert policy.perceptual_encoder.fine_position.grad.abs().sum() > 0
    policy.save_pretrained(tmp_path / "p")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config.perceptual_fine_position
    torch.testing.assert_close(loaded.perceptual_encoder.fine_position, policy.perceptual_encoder.fine_position)
    # a max-pooled policy saved before the setting existed loads without it
    plain = MemoryVLAPolicy(config_for(data, **TINY, perceptual_pool="max", perceptual_subgrid=2), dataset_stats(data))
    plain.save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    del saved["perceptual_fine_position"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    old = MemoryVLAPolicy.from_pretrained(tmp_path / "old")
    assert old.config.perceptual_fine_position is False and old.perceptual_encoder.fine_position is None
    # the fine policy's weights under a config without the setting: one clear error
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    saved["perceptual_fine_position"] = False
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(MemstreamError, match="do not match its config"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "p")


def test_a_fine_position_needs_the_max_pooled_patch_encoder(data):
    with pytest.raises(ConfigError, match="perceptual_fine_position applies to the 'patch' encoder"):
        config_for(data, perceptual_fine_position=True)
    with pytest.raises(ConfigError, match="perceptual_fine_position applies to the 'patch' encoder"):
        config_for(data, perceptual_encoder="cnn", perceptual_pool="max", perceptual_fine_position=True)
    with pytest.raises(MemstreamError, match="a fine position embedding needs pool='max'"):
        PatchEncoder(32, dim=8, grid=4, fine_position=True)
