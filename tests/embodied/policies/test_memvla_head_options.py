"""The action head's options: FiLM conditioning of its perceptual context (``head_film``, zero-initialised,
so a new head starts as the unmodulated one) and the regressed chunk prior whose residual the flow
models (``chunk_prior``), the training-only goal loss (``goal_loss_weight``: every frame predicts its
demonstration's last state), the onset weight of the prior's loss (``onset_loss_weight``) and the
training-only pointer loss (``pointer_loss_weight``: the prior readout's first head learns which image
token to look at). All train, save and load; policies saved before them load without them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.policies.memvla import MemoryVLAPolicy, config_for, dataset_stats, episode_batch
from memstream.embodied.policies.memvla.action_head import ChunkPrior, ContextFiLM, DiscreteActionHead, FlowMatchingHead
from memstream.streaming.errors import ConfigError, MemstreamError

TINY = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
            num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=2, bank=MemoryBankConfig(capacity=4))


@pytest.fixture(scope="module")
def data():
    from memstream.embodied.envs import collect_demonstrations

    return collect_demonstrations("cue_choice", num_episodes=4, seed=0, image_size=32)


def test_film_scales_and_shifts_each_channel_by_the_condition():
    film = ContextFiLM(condition_dim=3, dim=2)
    context, condition = torch.randn(2, 5, 2), torch.randn(2, 3)
    assert torch.equal(film(context, condition), context)  # zero-initialised: the identity
    with torch.no_grad():
        film.project.bias.copy_(torch.tensor([1.0, -0.5, 0.25, 2.0]))  # gamma (1, -0.5), beta (0.25, 2)
    expected = context * torch.tensor([2.0, 0.5]) + torch.tensor([0.25, 2.0])
    assert torch.allclose(film(context, condition), expected)
    with torch.no_grad():
        film.project.weight[0, 0] = 1.0  # gamma of channel 0 now follows condition[:, 0]
    out = film(context, condition)
    assert torch.allclose(out[..., 0], context[..., 0] * (2.0 + condition[:, :1]) + 0.25)


@pytest.mark.parametrize("head_class, actions", [(FlowMatchingHead, torch.randn(3, 4, 2)),
                                                 (DiscreteActionHead, torch.randint(0, 4, (3, 4, 1)).float())])
def test_a_new_film_head_equals_the_plain_head_until_it_trains(head_class, actions):
    action_dim = 4 if head_class is DiscreteActionHead else 2
    torch.manual_seed(0)
    plain = head_class(action_dim, 4, 8, 8, 2, dim=16, layers=1, heads=2)
    torch.manual_seed(0)
    film = head_class(action_dim, 4, 8, 8, 2, dim=16, layers=1, heads=2, film=True)
    film.load_state_dict(plain.state_dict(), strict=False)
    condition, context = torch.randn(3, 10), torch.randn(3, 6, 8)
    torch.manual_seed(1)
    loss_plain = plain.loss(actions, condition, context)
    torch.manual_seed(1)
    loss_film = film.loss(actions, condition, context)
    assert torch.allclose(loss_plain, loss_film)
    loss_film.backward()
    assert film.film.project.weight.grad.abs().sum() > 0  # the modulation gets a gradient from the start


def test_a_film_policy_trains_saves_and_loads(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, head_film=True), dataset_stats(data))
    policy.train()
    loss, _ = policy(episode_batch(data, np.arange(2), 4))
    loss.backward()
    assert policy.head.film.project.weight.grad.abs().sum() > 0
    policy.eval()
    policy.save_pretrained(tmp_path / "p")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config.head_film and loaded.head.film is not None
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_a_policy_saved_before_the_setting_loads_without_film(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY), dataset_stats(data))
    policy.save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    del saved["head_film"], saved["chunk_prior"]  # what a config.json from before holds
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "old")
    assert not loaded.config.head_film and loaded.head.film is None and loaded.prior is None
    saved["head_film"] = True  # the same weights under a config that claims FiLM: one clear error
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(MemstreamError, match="do not match its config"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "old")


def test_the_prior_regresses_the_chunk_and_the_flow_learns_only_the_residual(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True), dataset_stats(data))
    batch = episode_batch(data, np.arange(2), 4)
    policy.train()
    loss, info = policy(batch)
    assert np.isclose(info["loss"], info["flow_loss"] + info["prior_loss"], rtol=1e-5)
    loss.backward()
    assert policy.prior.mlp[0].weight.grad.abs().sum() > 0
    # the flow's target (action - prior) carries no gradient back to the prior
    seen = []
    flow_loss = policy.head.loss

    def spy(actions, *args, **kwargs):
        seen.append(actions.requires_grad)
        return flow_loss(actions, *args, **kwargs)

    policy.head.loss = spy
    policy(batch)
    assert seen == [False]


def test_the_prior_learns_from_every_valid_frame_and_the_flow_from_the_drawn_ones(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, loss_frames=2), dataset_stats(data))
    batch = episode_batch(data, np.arange(2), 4)
    sizes = {}
    prior_forward, flow_loss = policy.prior.forward, policy.head.loss
    policy.prior.forward = lambda condition, *rest: (sizes.setdefault("prior", len(condition)), prior_forward(condition, *rest))[1]
    policy.head.loss = lambda actions, *rest: (sizes.setdefault("flow", len(actions)), flow_loss(actions, *rest))[1]
    policy.train()
    policy(batch)
    assert sizes == {"prior": int(np.asarray(batch["valid"]).sum()), "flow": 2 * 2}


def test_a_sampled_chunk_is_the_prior_plus_the_flows_residual(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, inference_noise=0.0), dataset_stats(data)).eval()
    with torch.no_grad():  # a known prior: every entry 0.5 (normalised units)
        policy.prior.mlp[-1].weight.zero_()
        policy.prior.mlp[-1].bias.fill_(0.5)
    obs = {"observation.image": data.images[:1], "observation.state": data.states[:1], "task": [data.tasks[0]]}
    chunk = policy.predict_action_chunk(obs)
    policy.reset()
    policy.prior = None  # the same policy without its prior: the flow's residual alone
    residual = policy.predict_action_chunk(obs)
    assert torch.allclose(chunk, residual + 0.5 * policy.action_std, atol=1e-5)


def test_the_prior_least_squares_fits_a_fixed_chunk():
    torch.manual_seed(0)
    prior = ChunkPrior(condition_dim=3, perceptual_dim=2, num_tokens=4, chunk_size=2, action_dim=2, hidden=16)
    condition, context = torch.randn(16, 3), torch.randn(16, 4, 2)
    target = condition[:, :2, None].expand(-1, 2, 2) * 0.5
    pad = torch.zeros(16, 2, dtype=torch.bool)
    pad[:, 1] = True  # the second step is past the episodes' end: not in the loss
    optimizer = torch.optim.Adam(prior.parameters(), 1e-2)
    for _ in range(300):
        loss = prior.loss(prior(condition, context), target, pad)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        fitted = prior(condition, context)
        assert float(prior.loss(fitted, target, pad)) < 1e-3
        # padded steps are out of the loss whatever their targets
        assert torch.equal(prior.loss(fitted, target + 5.0 * pad[..., None].float(), pad), prior.loss(fitted, target, pad))


def test_the_prior_needs_the_flow_head(data):
    from memstream.embodied.policies.memvla import MemoryVLAConfig

    with pytest.raises(ConfigError, match="chunk_prior needs the flow head"):
        MemoryVLAConfig(chunk_prior=True, action_head="discrete", output_features={"action": (1,)})


# ---------------------------------------------------------------- goal loss (goal_loss_weight)

def test_a_batch_names_each_episodes_last_state_as_its_goal(data):
    batch = episode_batch(data, np.array([2, 0]), 4)
    ends = data.episode_bounds[[3, 1]] - 1
    assert torch.equal(batch["goal_state"], torch.from_numpy(data.states[ends]))


def test_the_goal_loss_is_its_weight_times_the_mse_of_the_last_state_over_every_valid_frame(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, goal_loss_weight=0.5), dataset_stats(data))
    batch = episode_batch(data, np.arange(3), 4)
    seen = {}
    goal_forward = policy.goal.forward

    def spy(condition, context):
        seen["predicted"] = goal_forward(condition, context)
        return seen["predicted"]

    policy.goal.forward = spy
    policy.train()
    loss, info = policy(batch)
    valid = np.asarray(batch["valid"])
    assert seen["predicted"].shape == (int(valid.sum()), 1, data.states.shape[1])  # every valid frame, one state each
    target = (batch["goal_state"] - policy.state_mean) / policy.state_std
    rows = torch.cat([target[b].expand(int(valid[b].sum()), -1) for b in range(3)])
    expected = 0.5 * (seen["predicted"][:, 0] - rows).pow(2).mean()
    assert np.isclose(info["goal_loss"], expected.item(), rtol=1e-5)
    assert np.isclose(info["loss"], info["action_loss"] + info["goal_loss"], rtol=1e-5)
    loss.backward()
    assert policy.goal.mlp[0].weight.grad.abs().sum() > 0
    assert policy.perceptual_encoder.position.grad.abs().sum() > 0  # the fused tokens it reads get its gradient


def test_the_goal_predictor_is_training_only_and_changes_no_action(data, tmp_path):
    torch.manual_seed(0)
    with_goal = MemoryVLAPolicy(config_for(data, **TINY, goal_loss_weight=1.0, inference_noise=0.0), dataset_stats(data)).eval()
    without = MemoryVLAPolicy(config_for(data, **TINY, inference_noise=0.0), dataset_stats(data)).eval()
    without.load_state_dict({k: v for k, v in with_goal.state_dict().items() if not k.startswith("goal.")})
    obs = {"observation.image": data.images[:1], "observation.state": data.states[:1], "task": [data.tasks[0]]}
    assert torch.equal(with_goal.predict_action_chunk(obs), without.predict_action_chunk(obs))
    with_goal.save_pretrained(tmp_path / "g")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "g")
    assert loaded.config.goal_loss_weight == 1.0 and loaded.goal is not None
    saved = json.loads((tmp_path / "g" / "config.json").read_text())
    saved["goal_loss_weight"] = 0.0  # the weights hold a goal predictor its config does not claim: one clear error
    (tmp_path / "g" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(MemstreamError, match="do not match its config"):
        MemoryVLAPolicy.from_pretrained(tmp_path / "g")


def test_the_goal_loss_needs_its_target_a_state_and_a_sane_weight(data):
    from memstream.embodied.policies.memvla import MemoryVLAConfig
    from memstream.embodied.policies.memvla.modeling_memvla import PolicyInputError

    policy = MemoryVLAPolicy(config_for(data, **TINY, goal_loss_weight=1.0), dataset_stats(data)).train()
    batch = episode_batch(data, np.arange(2), 4)
    del batch["goal_state"]
    with pytest.raises(PolicyInputError, match="goal_state"):
        policy(batch)
    for weight in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="goal_loss_weight must be >= 0"):
            MemoryVLAConfig(goal_loss_weight=weight)
    with pytest.raises(ConfigError, match="no state feature"):
        MemoryVLAConfig(goal_loss_weight=1.0, input_features={"observation.image": (3, 32, 32)})


# ---------------------------------------------------------------- onset weight (onset_loss_weight)

def test_a_batch_marks_the_first_two_frames_from_each_episodes_first_action(data):
    from memstream.embodied.policies.memvla.configuration_memvla import ONSET_FRAMES

    batch = episode_batch(data, np.arange(4), 4)
    for b in range(4):
        low, high = data.episode_bounds[b], data.episode_bounds[b + 1]
        acting = np.nonzero(np.abs(data.actions[low:high]).sum(1) > 0)[0]
        expected = np.zeros(batch["valid"].shape[1], bool)
        if len(acting):
            expected[acting[0]: min(acting[0] + ONSET_FRAMES, high - low)] = True
        assert np.array_equal(np.asarray(batch["action_onset"][b]), expected), b


def test_a_weighted_masked_mean_weighs_rows_and_still_drops_padded_steps():
    from memstream.embodied.policies.memvla.action_head import masked_mean

    error = torch.tensor([[1.0, 2.0], [3.0, 100.0]])
    pad = torch.tensor([[False, False], [False, True]])
    assert float(masked_mean(error, pad)) == pytest.approx((1 + 2 + 3) / 3)
    assert float(masked_mean(error, pad, torch.tensor([1.0, 4.0]))) == pytest.approx((1 + 2 + 4 * 3) / (2 + 4))
    assert float(masked_mean(error, None, torch.tensor([0.0, 1.0]))) == pytest.approx((3 + 100) / 2)


def test_the_onset_weight_multiplies_the_onset_frames_in_the_prior_loss(data):
    torch.manual_seed(0)
    base = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True), dataset_stats(data)).train()
    weighted = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, onset_loss_weight=5.0), dataset_stats(data)).train()
    weighted.load_state_dict(base.state_dict())
    batch = episode_batch(data, np.arange(3), 4)
    seen = {}
    loss_of = base.prior.loss

    def spy(prior, actions, pad=None, weight=None):
        seen["args"] = (prior.detach(), actions, pad)
        return loss_of(prior, actions, pad, weight)

    base.prior.loss = spy
    torch.manual_seed(1)
    base(batch)
    prior, actions, pad = seen["args"]
    onset = np.asarray(batch["action_onset"])[np.asarray(batch["valid"])]
    assert onset.sum() > 0
    torch.manual_seed(1)
    _, info = weighted(batch)
    per_chunk_sum = ((prior - actions).pow(2).mean(-1) * (~pad).float()).sum(1)
    per_chunk_steps = (~pad).float().sum(1)
    w = torch.where(torch.from_numpy(onset), 5.0, 1.0)
    assert info["prior_loss"] == pytest.approx(float((w * per_chunk_sum).sum() / (w * per_chunk_steps).sum()), rel=1e-5)


def test_the_onset_weight_needs_the_prior_and_a_positive_value(data):
    from memstream.embodied.policies.memvla import MemoryVLAConfig

    with pytest.raises(ConfigError, match="chunk_prior is off"):
        MemoryVLAConfig(onset_loss_weight=10.0)
    for weight in (0.0, float("nan")):
        with pytest.raises(ConfigError, match="onset_loss_weight must be > 0"):
            MemoryVLAConfig(onset_loss_weight=weight, chunk_prior=True)


# ---------------------------------------------------------------- hue turn per sequence (augment_hue)

def test_a_third_of_a_turn_permutes_the_channels_and_greys_stay():
    from memstream.embodied.policies.memvla.modeling_memvla import rotate_hue

    colours = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5], [0.2, 0.4, 0.9]])
    images = colours.T.reshape(1, 1, 3, 5, 1)  # (B, T, 3, H, W)
    turned = rotate_hue(images, torch.tensor([1 / 3]))[0, 0, :, :, 0].T
    assert torch.allclose(turned, colours[:, [2, 0, 1]], atol=1e-6)  # red -> green -> blue -> red
    for turns in (0.0, 1.0, -1.0):
        assert torch.allclose(rotate_hue(images, torch.tensor([turns])), images, atol=1e-6)
    greys = torch.rand(2, 3, 1, 4, 4).expand(2, 3, 3, 4, 4)
    assert torch.allclose(rotate_hue(greys, torch.tensor([0.17, -0.4])), greys, atol=1e-6)


def test_each_sample_gets_its_own_turn_and_a_turn_back_undoes_it_inside_the_cube():
    from memstream.embodied.policies.memvla.modeling_memvla import rotate_hue

    images = 0.5 + 0.1 * (torch.rand(3, 4, 3, 6, 6) - 0.5)  # near grey: no turn leaves the cube
    turns = torch.tensor([0.1, -0.25, 0.45])
    turned = rotate_hue(images, turns)
    assert torch.allclose(rotate_hue(turned, -turns), images, atol=1e-5)
    for b in range(3):  # every frame of a sample turned by the sample's turn, and only by it
        assert torch.allclose(turned[b], rotate_hue(images[b:b + 1], turns[b:b + 1])[0], atol=1e-6)
    assert torch.allclose(turned.mean(-3), images.mean(-3), atol=1e-5)  # a turn about the grey axis keeps brightness


def test_training_turns_each_sequence_once_and_inference_never(data, monkeypatch):
    from memstream.embodied.policies.memvla import modeling_memvla

    policy = MemoryVLAPolicy(config_for(data, **TINY, augment_hue=0.5), dataset_stats(data)).train()
    calls, seen = [], []
    real = modeling_memvla.rotate_hue

    def spy(images, turns):
        calls.append((images.clone(), turns.clone()))
        return real(images, turns)

    monkeypatch.setattr(modeling_memvla, "rotate_hue", spy)
    encode = policy.perceptual_encoder.forward
    monkeypatch.setattr(policy.perceptual_encoder, "forward", lambda x: seen.append(x.clone()) or encode(x))
    batch = episode_batch(data, np.arange(3), 4)
    policy(batch)
    (images, turns), = calls
    assert turns.shape == (3,) and bool((turns.abs() <= 0.5).all()) and len(set(turns.tolist())) == 3
    assert torch.allclose(seen[0], real(images, turns).flatten(0, 1))  # the encoder reads the turned frames
    policy.eval()
    policy.reset()
    policy.select_action({policy.config.image_key: np.asarray(batch["observation.image"])[:, 0],
                          "observation.state": np.asarray(batch["observation.state"])[:, 0], "task": list(batch["task"])})
    assert len(calls) == 1  # no turn at inference


def test_the_hue_turn_is_bounded_and_old_configs_load_without_it(data, tmp_path):
    from memstream.embodied.policies.memvla import MemoryVLAConfig

    for turns in (-0.1, 0.6, float("nan")):
        with pytest.raises(ConfigError, match=r"augment_hue must be in \[0, 0.5\]"):
            MemoryVLAConfig(augment_hue=turns)
    policy = MemoryVLAPolicy(config_for(data, **TINY), dataset_stats(data))
    policy.save_pretrained(tmp_path / "old")
    saved = json.loads((tmp_path / "old" / "config.json").read_text())
    saved.pop("augment_hue")
    (tmp_path / "old" / "config.json").write_text(json.dumps(saved))
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "old").config.augment_hue == 0.0


# ---------------------------------------------------------------- the prior's spatial readout (prior_readout_heads)

def _marked_tokens(places: list[int], generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """16 tokens of 4 channels on a 4 x 4 grid, noise except one marked token (channel 0 = 3) per
    sample, and the marked token's grid coordinates (x, y in [-1, 1]) as the chunk to regress."""
    context = 0.1 * torch.randn(len(places), 16, 4, generator=generator)
    context[torch.arange(len(places)), torch.tensor(places), 0] = 3.0
    side = torch.linspace(-1.0, 1.0, 4)
    target = torch.stack([side[torch.tensor(places) % 4], side[torch.tensor(places) // 4]], dim=-1)
    return context, target[:, None, :]


def _fit(prior: ChunkPrior, context: torch.Tensor, target: torch.Tensor, steps: int = 300) -> None:
    optimizer = torch.optim.Adam(prior.parameters(), 1e-2)
    condition = torch.zeros(len(context), 1)
    for _ in range(steps):
        loss = prior.loss(prior(condition, context), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_the_readout_finds_a_marked_token_at_places_it_never_saw_and_the_flat_prior_does_not():
    generator = torch.Generator().manual_seed(0)
    seen = [p for p in range(16) if p not in (5, 10)] * 8
    context, target = _marked_tokens(seen, generator)
    test_context, test_target = _marked_tokens([5, 10] * 8, generator)
    errors = {}
    for heads in (0, 2):
        torch.manual_seed(0)
        prior = ChunkPrior(condition_dim=1, perceptual_dim=4, num_tokens=16, chunk_size=1, action_dim=2, hidden=32,
                           readout_heads=heads)
        _fit(prior, context, target)
        with torch.no_grad():
            assert float(prior.loss(prior(torch.zeros(len(context), 1), context), target)) < 0.01  # both fit what they saw
            errors[heads] = float(prior.loss(prior(torch.zeros(len(test_context), 1), test_context), test_target))
    # the shared scorer learned "the marked token" once and the pooled coordinates say where it is;
    # the flattened MLP has no weights trained for the two unseen places (the targets' variance is ~0.3)
    assert errors[2] < 0.01 < 0.1 < errors[0]


def test_the_readout_pools_by_a_softmax_over_the_tokens_and_replaces_the_flattened_input(data):
    kw = dict(**TINY, chunk_prior=True)
    torch.manual_seed(0)
    plain = MemoryVLAPolicy(config_for(data, **kw), dataset_stats(data))
    torch.manual_seed(0)
    readout = MemoryVLAPolicy(config_for(data, **kw, prior_readout_heads=3), dataset_stats(data))
    own = plain.state_dict()
    # everything built before the prior has the same initial weights
    for key, value in own.items():
        if not key.startswith(("prior.", "goal.")):
            assert torch.equal(value, readout.state_dict()[key]), key
    condition_dim = plain.prior.mlp[0].in_features - 4 * 16  # 4 tokens of 16 channels, flattened
    assert readout.prior.mlp[0].in_features == condition_dim + 3 * (16 + 2)
    module = readout.prior.readout
    context = torch.randn(5, 4, 16)
    weights = module.weights(context)
    assert weights.shape == (5, 4, 3)
    torch.testing.assert_close(weights.sum(1), torch.ones(5, 3))
    features = module(context).view(5, 3, 18)
    torch.testing.assert_close(features[..., :16], torch.einsum("bnh,bnd->bhd", weights, module.value(context)))
    torch.testing.assert_close(features[..., 16:], torch.einsum("bnh,nc->bhc", weights, module.coords))
    assert module.coords.tolist() == [[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]]  # (x, y), row by row
    # moving the tokens moves the pooled place with them, and nothing else
    swapped = context[:, [3, 2, 1, 0]]
    moved = module(swapped).view(5, 3, 18)
    torch.testing.assert_close(moved[..., :16], features[..., :16])
    torch.testing.assert_close(moved[..., 16:], -features[..., 16:])
    readout.train()
    loss, _ = readout(episode_batch(data, np.arange(2), 4))
    loss.backward()
    assert module.score[0].weight.grad.abs().sum() > 0 and module.value.weight.grad.abs().sum() > 0


def test_a_readout_policy_saves_and_loads_and_an_old_config_has_none(data, tmp_path):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=2), dataset_stats(data))
    policy.save_pretrained(tmp_path / "p")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config.prior_readout_heads == 2
    for key, value in policy.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    del saved["prior_readout_heads"]  # a config.json from before the setting
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    with pytest.raises(MemstreamError, match="do not match its config"):  # these weights have a readout
        MemoryVLAPolicy.from_pretrained(tmp_path / "p")


def test_the_readout_needs_the_prior_and_a_head_count(data):
    with pytest.raises(ConfigError, match="prior_readout_heads is a part of the chunk prior"):
        config_for(data, prior_readout_heads=2)
    for bad in (-1, True, 1.5):
        with pytest.raises(ConfigError, match="prior_readout_heads must be an int >= 0"):
            config_for(data, chunk_prior=True, prior_readout_heads=bad)


# ---------------------------------------------------------------- where to look (pointer_loss_weight)

def _pointer_batch(data, targets: list[int]) -> dict:
    """A batch of the first len(targets) episodes, each pointing at its token from frame 1 on."""
    batch = episode_batch(data, np.arange(len(targets)), 4)
    pointer = np.full(batch["valid"].shape, -1, np.int64)
    pointer[:, 1:] = np.asarray(targets)[:, None]
    batch["pointer_target"] = torch.from_numpy(pointer)
    return batch


def test_the_pointer_loss_is_the_cross_entropy_of_the_first_readout_head_at_the_frames_with_a_target(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=2, pointer_loss_weight=0.5),
                             dataset_stats(data)).train()
    batch = _pointer_batch(data, [3, 0, 2])
    seen = {}
    readout = policy.prior.readout
    log_weights = readout.log_weights

    def spy(context):
        seen["log_weights"] = log_weights(context)
        return seen["log_weights"]

    readout.log_weights = spy
    _, info = policy(batch)
    valid = np.asarray(batch["valid"])
    chosen = valid & (np.asarray(batch["pointer_target"]) >= 0)
    assert seen["log_weights"].shape == (int(chosen.sum()), 4, 2)  # the frames with a target: tokens x heads
    rows = torch.from_numpy(np.asarray(batch["pointer_target"])[chosen])
    expected = -0.5 * seen["log_weights"].detach()[torch.arange(len(rows)), rows, 0].mean()
    assert info["pointer_loss"] == pytest.approx(float(expected), rel=1e-5)
    torch.testing.assert_close(seen["log_weights"].exp().sum(1), torch.ones(len(rows), 2))  # a log-softmax over the tokens
    assert np.isclose(info["loss"], info["prior_loss"] + info["flow_loss"] + info["pointer_loss"], rtol=1e-5)
    alone = policy._pointer_loss(batch, *_fused(policy, batch))  # the pointer term alone, unweighted
    assert float(alone.detach()) == pytest.approx(info["pointer_loss"] / 0.5, rel=1e-5)
    alone.backward()
    score = readout.score[2].weight.grad  # the last scoring layer: the pointer loss reaches the first head only
    assert score[0].abs().sum() > 0 and score[1].abs().sum() == 0
    assert policy.perceptual_encoder.position.grad.abs().sum() > 0  # it reaches the tokens it scores


def _fused(policy, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused perceptual tokens of every frame ``(B * T, N, Cp)`` and the valid frames, as forward makes them."""
    images = policy._images(batch["observation.image"], time_axis=True)
    b, t = images.shape[:2]
    states = policy._state(batch, time_axis=True)
    perceptual = policy.perceptual_encoder(images.flatten(0, 1))
    cognitive = policy.cognitive_encoder(images.flatten(0, 1), perceptual, states.flatten(0, 1), list(batch["task"]) * t)
    fused, _ = policy._unroll(perceptual.unflatten(0, (b, t)), cognitive.unflatten(0, (b, t)),
                              torch.as_tensor(batch["frame_index"]), torch.as_tensor(batch["valid"]))
    return fused.flatten(0, 1), torch.as_tensor(batch["valid"]).flatten()


def test_pointer_frames_without_a_target_add_nothing_and_a_batch_without_any_adds_zero(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=1, pointer_loss_weight=1.0),
                             dataset_stats(data)).train()
    batch = _pointer_batch(data, [1, 2])
    torch.manual_seed(1)
    _, info = policy(batch)
    more = dict(batch)
    pointer = np.asarray(batch["pointer_target"]).copy()
    pointer[~np.asarray(batch["valid"])] = 3  # past an episode's end a target is not used
    more["pointer_target"] = torch.from_numpy(pointer)
    torch.manual_seed(1)
    assert policy(more)[1]["pointer_loss"] == pytest.approx(info["pointer_loss"], rel=1e-6)
    none = dict(batch, pointer_target=torch.full(batch["valid"].shape, -1))
    loss, info = policy(none)
    assert info["pointer_loss"] == 0.0
    loss.backward()  # the same graph: nothing to skip


def test_the_pointer_loss_teaches_the_head_where_to_look(data):
    torch.manual_seed(0)
    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=1, pointer_loss_weight=1.0,
                                        augment_shift=0), dataset_stats(data)).train()
    batch = _pointer_batch(data, [3, 3, 3])
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(40):
        loss, info = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert info["pointer_loss"] < 0.2  # from ln 4 = 1.39: the first head's softmax sits on token 3


def test_the_pointer_loss_needs_its_targets_the_readout_and_a_sane_weight(data, tmp_path):
    from memstream.embodied.policies.memvla import MemoryVLAConfig
    from memstream.embodied.policies.memvla.modeling_memvla import PolicyInputError

    policy = MemoryVLAPolicy(config_for(data, **TINY, chunk_prior=True, prior_readout_heads=1, pointer_loss_weight=1.0),
                             dataset_stats(data)).train()
    with pytest.raises(PolicyInputError, match="needs the batch's 'pointer_target'"):
        policy(episode_batch(data, np.arange(2), 4))
    with pytest.raises(PolicyInputError, match=r"outside -1 .. 3 \(the image tokens\)"):
        policy(_pointer_batch(data, [4, 0]))
    with pytest.raises(PolicyInputError, match="entries for"):
        policy(dict(episode_batch(data, np.arange(2), 4), pointer_target=torch.zeros(2, 1, dtype=torch.long)))
    for weight in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="pointer_loss_weight must be a finite number >= 0"):
            MemoryVLAConfig(pointer_loss_weight=weight, chunk_prior=True, prior_readout_heads=1)
    with pytest.raises(ConfigError, match="the prior has no readout"):
        MemoryVLAConfig(pointer_loss_weight=1.0, chunk_prior=True)
    policy.save_pretrained(tmp_path / "p")  # training only: no weights of its own, so an old config loads these weights
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.pointer_loss_weight == 1.0
    saved = json.loads((tmp_path / "p" / "config.json").read_text())
    del saved["pointer_loss_weight"]
    (tmp_path / "p" / "config.json").write_text(json.dumps(saved))
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "p").config.pointer_loss_weight == 0.0
