"""``memstream vla-train`` / ``vla-eval``: training on stored MIKASA-Robo demonstrations, checkpoints and
resume, variants, refusals of foreign checkpoints; the rollout test runs only with the simulator."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re

import numpy as np
import pytest
import torch
from memstream.embodied.envs.mikasa.dataset import _DatasetWriter
from memstream.embodied.policies import cli
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy
from memstream.embodied.policies.memvla.mikasa import demonstration_seeds, load_mikasa_demonstrations, mikasa_policy
from memstream.streaming.errors import MemstreamError
from safetensors.torch import load_file

from tests.embodied.policies.util import SIZE, down_camera, tiny_demos, vla

TINY = ["--steps", "4", "--batch-episodes", "2", "--threads", "1", "--no-progress"]


def test_demonstrations_load_as_one_camera_episode_dataset(tmp_path):
    data = load_mikasa_demonstrations(tiny_demos(tmp_path / "d", episodes=3, length=6))
    assert data.num_episodes == 3 and data.images.shape == (18, SIZE, SIZE, 3) and data.task_name == "RememberColor3"
    assert list(data.episode_bounds) == [0, 6, 12, 18] and data.actions.shape == (18, 7) and data.hidden_info.shape == (3, 1)
    with pytest.raises(MemstreamError, match="no camera 'hand_camera'.*base_camera"):
        load_mikasa_demonstrations(tmp_path / "d", camera="hand_camera")


def test_folders_collected_in_parallel_load_as_one_dataset_in_the_order_given(tmp_path):
    one = tiny_demos(tmp_path / "a", episodes=2, length=5, seed=1, first_seed=0)
    two = tiny_demos(tmp_path / "b", episodes=3, length=6, seed=2, first_seed=2)
    data = load_mikasa_demonstrations([one, two])
    alone = [load_mikasa_demonstrations(one), load_mikasa_demonstrations(two)]
    assert data.num_episodes == 5 and list(data.episode_bounds) == [0, 5, 10, 16, 22, 28]
    assert list(data.episode_index) == [0] * 5 + [1] * 5 + [2] * 6 + [3] * 6 + [4] * 6
    np.testing.assert_array_equal(data.actions, np.concatenate([d.actions for d in alone]))
    np.testing.assert_array_equal(data.images, np.concatenate([d.images for d in alone]))
    np.testing.assert_array_equal(data.hidden_info, np.concatenate([d.hidden_info for d in alone]))
    three = load_mikasa_demonstrations([one, two], max_episodes=3)  # counts across the folders
    assert three.num_episodes == 3 and list(three.episode_bounds) == [0, 5, 10, 16]
    np.testing.assert_array_equal(three.actions, data.actions[:16])
    assert demonstration_seeds([one, two]) == [0, 4] and demonstration_seeds(two) == [2, 4]


def test_train_on_several_folders_records_them_and_every_seed(tmp_path):
    one = tiny_demos(tmp_path / "a", episodes=2, first_seed=0)
    two = tiny_demos(tmp_path / "b", episodes=2, first_seed=100)
    assert vla(["vla-train", "--demos", str(one), str(two), "--out", str(tmp_path / "run"), *TINY]) == 0
    meta = json.loads((tmp_path / "run" / "mikasa.json").read_text())
    assert meta["demos"] == [str(one), str(two)] and meta["demo_seeds"] == [0, 101] and meta["demonstrations"] == 4


@pytest.mark.parametrize(("second", "message"), [
    ({"first_seed": 11}, "simulator seed 11 is in both .* collect each folder from its own seed range"),
    ({"first_seed": 50, "task": "RememberColor5"}, "differ in task .*'RememberColor3' vs 'RememberColor5'.* same task"),
    ({"first_seed": 50, "size": 16}, r"differ in observation.images.base_camera .*'shape': \[32, 32, 3\]\} vs \{'shape': \[16, 16, 3\]"),
])
def test_folders_that_cannot_train_one_policy_are_refused_with_one_line(tmp_path, capsys, second, message):
    one = tiny_demos(tmp_path / "a", episodes=2)  # seeds 10, 11
    two = tiny_demos(tmp_path / "b", episodes=2, **second)
    out = tmp_path / "run"
    assert vla(["vla-train", "--demos", str(one), str(two), "--out", str(out), *TINY]) != 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("error: ") and len(line.splitlines()) == 1
    assert re.search(message, line, flags=re.IGNORECASE), line
    assert not out.exists()  # refused before anything was written


def test_variants_differ_only_in_memory_and_start_from_the_same_weights(tmp_path):
    data = load_mikasa_demonstrations(tiny_demos(tmp_path / "d", episodes=2))
    bank = mikasa_policy(data, "bank", 16, seed=3)
    fifo = mikasa_policy(data, "fifo", 4, seed=3)
    none = mikasa_policy(data, "no_memory", 16, seed=3)
    long = mikasa_policy(data, "bank", 64, seed=3)
    assert bank.config.bank.capacity == 16 and long.config.bank.capacity == 64 and fifo.config.bank.capacity == 4
    assert fifo.config.bank.consolidation == "fifo" and bank.config.bank.consolidation != "fifo"
    assert none.memory is None and bank.memory is not None
    assert bank.config.image_key == "observation.images.base_camera" and bank.config.action_dim == 7
    heads = mikasa_policy(data, "bank", 16, seed=3, bank_heads=4)  # MemoryVLA's dexbotic retrieval heads
    assert heads.config.bank.num_heads == 4 and bank.config.bank.num_heads == 1
    assert [b.num_heads for s in (heads.memory.perceptual, heads.memory.cognitive) for b in s.retrieval_blocks] == [4] * 4
    reference = bank.state_dict()
    assert heads.state_dict().keys() == reference.keys()  # the head count changes no parameter
    for other in (fifo, none, long, heads):
        shared = [k for k, v in other.state_dict().items() if k in reference and reference[k].shape == v.shape]
        assert len(shared) > 10
        for key in shared:
            torch.testing.assert_close(other.state_dict()[key], reference[key])


def test_train_checkpoints_and_a_resumed_run_ends_with_the_same_weights(tmp_path, capsys, monkeypatch):
    demos = tiny_demos(tmp_path / "d")
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert vla(["vla-train", "--demos", str(demos), "--out", str(straight), "--checkpoint-every", "2", *TINY]) == 0
    meta = json.loads((straight / "mikasa.json").read_text())
    assert meta["task"] == "RememberColor3" and meta["steps"] == 4 and meta["action_dim"] == 7
    assert meta["demo_seeds"] == [10, 12] and meta["control_mode"] == "pd_ee_delta_pose"
    assert (straight / "checkpoint" / "training_state.pt").is_file() and (straight / "model.safetensors").is_file()
    assert "step 2/4" in capsys.readouterr().out

    def stop_at_the_first_checkpoint(text: str) -> None:
        raise KeyboardInterrupt(text)

    monkeypatch.setattr(cli, "print", stop_at_the_first_checkpoint, raising=False)  # the run is killed at step 2
    with pytest.raises(KeyboardInterrupt, match="step 2/4"):
        vla(["vla-train", "--demos", str(demos), "--out", str(split), "--checkpoint-every", "2", *TINY])
    monkeypatch.undo()
    assert not (split / "model.safetensors").exists()
    assert vla(["vla-train", "--demos", str(demos), "--out", str(split), "--checkpoint-every", "2", "--resume", *TINY]) == 0
    one, two = load_file(str(straight / "model.safetensors")), load_file(str(split / "model.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], rtol=0, atol=1e-6)
    state = torch.load(split / "checkpoint" / "training_state.pt", weights_only=False)
    assert state["step"] == 4 and len(state["losses"]) == 4
    # --overwrite replaces an earlier vla-train output (recognised by its mikasa.json)
    assert vla(["vla-train", "--demos", str(demos), "--out", str(split), "--overwrite", "--max-episodes", "2", *TINY]) == 0
    assert json.loads((split / "mikasa.json").read_text())["demonstrations"] == 2


def test_a_finished_run_resumed_with_more_steps_keeps_learning(tmp_path):
    # the cosine schedule ends at lr 0; its recursive update kept it there when only T_max changed,
    # so "resumed" steps moved no weight (found when a 400 -> 600 step run evaluated identically)
    demos = tiny_demos(tmp_path / "d")
    run = tmp_path / "run"
    steps = ["--batch-episodes", "2", "--threads", "1", "--no-progress", "--checkpoint-every", "2"]
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--steps", "4", *steps]) == 0
    before = load_file(str(run / "model.safetensors"))
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--steps", "8", "--resume", *steps]) == 0
    after = load_file(str(run / "model.safetensors"))
    moved = [key for key in before if not torch.equal(before[key], after[key])]
    assert any(key.startswith("head.") for key in moved)
    state = torch.load(run / "checkpoint" / "training_state.pt", weights_only=False)
    assert state["step"] == 8 and state["schedule"]["T_max"] == 8
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-9)  # the new cosine ran to its end


@pytest.mark.parametrize(("extra", "says"), [
    (["--variant", "fifo", "--resume"], "was trained with variant='bank', this run asks for 'fifo'"),
    (["--variant", "lstm"], "unknown policy variant 'lstm'"),
    (["--memory-length", "1"], "--memory-length must be >= 2"),
    (["--bank-heads", "0"], "--bank-heads must be >= 1"),
    (["--bank-heads", "3"], "64 channels cannot be split into 3 attention heads"),
    (["--bank-heads", "4", "--resume"], "was trained with bank_heads=1, this run asks for 4"),
    (["--camera", "hand_camera"], "have no camera 'hand_camera'"),
    (["--loss-frames", "0"], "--loss-frames must be >= 1"),
    (["--inference-noise", "2"], "--inference-noise must be in [0, 1]"),
    (["--augment-shift", "-1"], "--augment-shift and --state-noise must be >= 0"),
    (["--perceptual-grid", "0"], "--perceptual-grid must be >= 1"),
    (["--perceptual-pool", "max", "--resume"], "was trained with perceptual_pool='avg', this run asks for 'max'"),
    (["--head-film", "--resume"], "was trained with head_film=False, this run asks for True"),
    (["--chunk-prior", "--resume"], "was trained with chunk_prior=False, this run asks for True"),
    (["--goal-loss", "1", "--resume"], "was trained with goal_loss_weight=0.0, this run asks for 1.0"),
    (["--goal-loss", "-1"], "--goal-loss must be >= 0"),
    (["--onset-weight", "10"], "--onset-weight weighs the chunk prior's loss"),
    (["--n-action-steps", "9"], "--n-action-steps must be in 1..8 (the chunk size), got 9"),
    (["--augment-hue", "0.7"], "--augment-hue must be in [0, 0.5] (a fraction of a full turn), got 0.7"),
    (["--onset-weight", "0", "--chunk-prior"], "--onset-weight must be > 0"),
    (["--onset-weight", "10", "--chunk-prior", "--resume"], "was trained with chunk_prior=False, this run asks for True"),
    (["--perceptual-pool", "max", "--perceptual-subgrid", "3"], "not a multiple of 12 patches per side"),
    (["--fine-position"], "--fine-position needs --perceptual-pool max"),
    (["--prior-readout", "2"], "--prior-readout is a part of the chunk prior"),
    (["--prior-readout", "-1", "--chunk-prior"], "--prior-readout must be >= 0"),
    (["--prior-readout", "2", "--chunk-prior", "--resume"], "was trained with prior_readout_heads=0, this run asks for 2"),
])
def test_bad_training_settings_exit_2_with_one_line(tmp_path, capsys, extra, says):
    demos = tiny_demos(tmp_path / "d", episodes=2)
    out = tmp_path / "run"
    if "--resume" in extra:
        assert vla(["vla-train", "--demos", str(demos), "--out", str(out), *TINY]) == 0
        capsys.readouterr()
    assert vla(["vla-train", "--demos", str(demos), "--out", str(out), *extra, *TINY]) == 2
    printed = capsys.readouterr().out
    assert says in printed and printed.count("\n") == 1


@pytest.mark.parametrize(("extra", "says"), [
    (["--loss-frames", "0"], "--loss-frames must be >= 1"),
    (["--fine-position"], "--fine-position needs --perceptual-pool max"),
    (["--resume"], "no checkpoint to resume in"),
])
def test_settings_are_refused_before_the_demonstrations_load(tmp_path, capsys, extra, says):
    # loading 1,000 demonstrations takes minutes: a bad setting must not wait for it (the folder here
    # does not exist, so reaching the load would print another error)
    assert vla(["vla-train", "--demos", str(tmp_path / "absent"), "--out", str(tmp_path / "run"), *extra]) == 2
    printed = capsys.readouterr().out
    assert says in printed and printed.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("task", "says"), [
    ("RememberShape3", "'RememberShape3' has no scripted expert"), ("TakeItBack-VLA-v0", "'TakeItBack' has no scripted expert"),
    ("ShellGameTouch", "YCB"), ("RememberShap3", "Did you mean: RememberShape3"),
])
def test_collect_refuses_tasks_without_an_expert_before_writing(tmp_path, capsys, task, says):
    out = tmp_path / "demos"
    assert vla(["vla-collect", "--task", task, "--episodes", "2", "--out", str(out), "--no-progress"]) == 2
    printed = capsys.readouterr().out
    assert says in printed and printed.count("\n") == 1
    assert not out.exists()


def test_eval_refuses_a_checkpoint_of_another_task_or_action_space(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d", episodes=2)
    run = tmp_path / "run"
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    out = tmp_path / "eval"
    assert vla(["vla-eval", "--policy", str(run), "--task", "RememberColor5", "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "trained for 'RememberColor3', not 'RememberColor5'" in printed and printed.count("\n") == 1
    assert vla(["vla-eval", "--policy", str(run), "--task", "RememberShape3", "--out", str(out)]) == 2  # no expert there
    printed = capsys.readouterr().out
    assert "trained for 'RememberColor3', not 'RememberShape3'" in printed and printed.count("\n") == 1
    assert vla(["vla-eval", "--policy", str(run), "--seed", "11", "--episodes", "2", "--out", str(out)]) == 2
    assert "overlap the policy's demonstrations' 10..11" in capsys.readouterr().out
    assert vla(["vla-eval", "--policy", str(run), "--n-action-steps", "0", "--out", str(out)]) == 2
    assert "--n-action-steps must be in 1..8 (the policy's chunk size), got 0" in capsys.readouterr().out
    assert vla(["vla-eval", "--policy", str(run), "--n-action-steps", "2", "--temporal-ensemble", "0.01",
                "--out", str(out)]) == 2
    assert "executes 2 actions of each. Pass --n-action-steps 1" in capsys.readouterr().out
    assert vla(["vla-eval", "--policy", str(run), "--temporal-ensemble", "nan", "--out", str(out)]) == 2
    assert "--temporal-ensemble must be a finite number, got nan" in capsys.readouterr().out
    none = tmp_path / "none"  # a policy without a bank has nothing to wipe
    assert vla(["vla-train", "--demos", str(demos), "--variant", "no_memory", "--out", str(none), *TINY]) == 0
    capsys.readouterr()
    assert vla(["vla-eval", "--policy", str(none), "--wipe-memory", "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "no bank to wipe (variant 'no_memory')" in printed and printed.count("\n") == 1
    intercept = tmp_path / "intercept"  # no frozen cue phase: no step to wipe at
    assert vla(["vla-train", "--demos", str(tiny_demos(tmp_path / "di", episodes=2, task="InterceptMedium")),
                "--out", str(intercept), *TINY]) == 0
    capsys.readouterr()
    assert vla(["vla-eval", "--policy", str(intercept), "--wipe-memory", "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "InterceptMedium has no frozen cue phase" in printed and printed.count("\n") == 1
    # a navigation policy (discrete actions, no mikasa.json) and a MIKASA folder whose policy is not 7-d
    nav = tmp_path / "nav"
    MemoryVLAPolicy(MemoryVLAConfig(input_features={"observation.image": (3, SIZE, SIZE), "observation.state": (2,)},
                                    output_features={"action": (1,)}, action_head="discrete")).save_pretrained(nav)
    assert vla(["vla-eval", "--policy", str(nav), "--out", str(out)]) == 2
    assert "holds no MIKASA-Robo policy" in capsys.readouterr().out
    (nav / "mikasa.json").write_text(json.dumps({"task": "RememberColor3", "control_mode": "pd_ee_delta_pose", "action_dim": 7}))
    assert vla(["vla-eval", "--policy", str(nav), "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert "discrete head, 1-d" in printed and "memstream vla-train" in printed
    assert not out.exists()


needs_sim = pytest.mark.skipif(importlib.util.find_spec("mani_skill") is None or importlib.util.find_spec("mikasa_robo_suite") is None,
                               reason="needs ManiSkill3 and MIKASA-Robo (memstream[mikasa])")


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory):
    """One tiny trained run for the simulator tests (they only read it)."""
    root = tmp_path_factory.mktemp("sim_run")
    run = root / "run"
    assert vla(["vla-train", "--demos", str(tiny_demos(root / "d", episodes=2)), "--out", str(run), "--loss-frames", "2",
                *TINY]) == 0
    return run


@needs_sim
def test_eval_rolls_out_episodes_and_writes_rows_and_videos(sim_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert vla(["vla-eval", "--policy", str(sim_run), "--episodes", "1", "--videos", "1", "--threads", "1",
                "--inference-noise", "0", "--n-action-steps", "1", "--temporal-ensemble", "0.01",
                "--out", str(out), "--no-progress"]) == 0
    result = json.loads((out / "results.json").read_text())
    assert result["complete"] and result["task"] == "RememberColor3" and result["episodes_done"] == 1
    assert result["inference_noise"] == 0.0 and result["n_action_steps"] == 1
    assert result["temporal_ensemble_coeff"] == 0.01
    row = result["episodes"][0]
    assert row["seed"] == 4242424242 and row["length"] == 25 and isinstance(row["success"], bool)
    # the chosen cube apart from the touch's precision: distances from the tip, nearest <= target
    assert 0 < row["tip_to_nearest_m"] <= row["tip_to_target_m"] < 1.0
    assert row["nearest_is_target"] == (row["tip_to_nearest_m"] == row["tip_to_target_m"])
    assert np.linalg.norm(row["tip_offset_m"]) == pytest.approx(row["tip_to_nearest_m"], abs=2e-4)  # rounded to 0.1 mm
    assert (out / "videos" / row["video"]).stat().st_size > 1000
    assert result["chance_success_rate"] == pytest.approx(1 / 3)


@needs_sim
@pytest.mark.parametrize("wipe", [False, True])
def test_eval_drops_the_plans_made_while_the_cue_phase_froze_the_arm(sim_run, monkeypatch, wipe):
    from memstream.embodied.envs.mikasa import MikasaEnv
    from memstream.embodied.policies.memvla.mikasa import evaluate_mikasa, load_mikasa_policy

    policy, meta = load_mikasa_policy(sim_run)
    policy.config.n_action_steps = 4  # a queue that would carry blind actions past the release
    frozen_steps, drops, calls, wipes = [], [], [], []
    step = MikasaEnv.step

    def recording_step(env, actions):
        frozen_steps.append(env.in_cue_phase())
        return step(env, actions)

    monkeypatch.setattr(MikasaEnv, "step", recording_step)
    select, drop = policy.select_action, policy.drop_queued_actions
    monkeypatch.setattr(policy, "select_action", lambda batch: calls.append(len(policy._queue)) or select(batch))
    monkeypatch.setattr(policy, "drop_queued_actions", lambda: drops.append(len(calls)) or drop())
    reset = policy.memory.reset
    monkeypatch.setattr(policy.memory, "reset", lambda *a, **k: wipes.append(len(calls)) or reset(*a, **k))
    row, = evaluate_mikasa(policy, meta, episodes=1, seed=4242424242, wipe_memory=wipe)
    released = frozen_steps.index(False)
    assert 0 < released < row["length"] and not any(frozen_steps[released:])
    assert drops == [released]  # once, just before the first action the arm obeys
    assert calls[released] == 0  # so that step plans afresh instead of popping a blind action
    # the bank is emptied when the episode starts, and with --wipe-memory once more where the arm is
    # released (each empty bank is sized again at its next frame: the second call of each pair); the
    # frames from there on, the release's own included, are all it holds
    assert wipes == ([0, 1, released, released + 1] if wipe else [0, 1]) and released > 1
    assert int(policy.memory._steps[0]) == row["length"] - (released if wipe else 0)


@needs_sim
def test_intercept_rows_say_how_near_the_tip_came_to_the_ball_and_the_ball_to_the_goal(sim_run):
    from memstream.embodied.policies.memvla.mikasa import evaluate_mikasa, load_mikasa_policy

    policy, meta = load_mikasa_policy(sim_run)
    row, = evaluate_mikasa(policy, {**meta, "task": "InterceptMedium"}, episodes=1, seed=4242424242)
    assert row["length"] == 60 and "nearest_is_target" not in row
    assert 0 <= row["closest_tip_to_ball_m"] < 2.0 and 0 < row["ball_to_goal_start_m"] < 2.0
    assert 0 <= row["closest_ball_to_goal_m"] <= row["ball_to_goal_start_m"]
    # where the hand was as the ball reached it (or came closest): never nearer than the closest
    assert np.linalg.norm(row["catch_offset_m"]) >= row["closest_tip_to_ball_m"] - 2e-4
    assert 0 <= row["catch_step"] < 60 and row["catch_ball_speed_m_s"] >= 0
    assert (row["catch_across_m"] is None) == (not row["ball_reached_hand"])
    assert row["catch_across_m"] is None or abs(row["catch_across_m"]) <= np.linalg.norm(row["catch_offset_m"]) + 1e-4


def test_train_backpropagates_through_the_bank_unless_told_not_to(tmp_path):
    demos = tiny_demos(tmp_path / "d")
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "on"), *TINY]) == 0
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "off"), "--no-bank-gradients", *TINY]) == 0
    on = MemoryVLAPolicy.from_pretrained(tmp_path / "on").config
    off = MemoryVLAPolicy.from_pretrained(tmp_path / "off").config
    assert on.bank_gradients is True and off.bank_gradients is False
    assert (on.augment_shift, on.augment_state_noise) == (4, 0.1)  # the CLI's defaults against memorised episodes
    one, two = load_file(str(tmp_path / "on" / "model.safetensors")), load_file(str(tmp_path / "off" / "model.safetensors"))
    encoder = [k for k in one if k.startswith("perceptual_encoder.")]
    assert encoder and any(not torch.equal(one[k], two[k]) for k in encoder)  # the encoder learned differently


def test_train_max_pools_the_perceptual_tokens_when_asked(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d")
    run = tmp_path / "max"
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--perceptual-pool", "max",
                "--perceptual-subgrid", "2", *TINY]) == 0
    policy = MemoryVLAPolicy.from_pretrained(run)
    assert (policy.config.perceptual_pool, policy.config.perceptual_grid, policy.config.perceptual_subgrid) == ("max", 4, 2)
    assert policy.perceptual_encoder.embed.kernel_size == (4, 4)  # 32 px / (4 tokens x 2 fine patches)
    meta = json.loads((run / "mikasa.json").read_text())
    assert (meta["perceptual_pool"], meta["perceptual_subgrid"]) == ("max", 2)
    assert policy.perceptual_encoder.fine_position is None and meta["perceptual_fine_position"] is False
    fine = tmp_path / "fine"
    assert vla(["vla-train", "--demos", str(demos), "--out", str(fine), "--perceptual-pool", "max",
                "--perceptual-subgrid", "2", "--fine-position", *TINY]) == 0
    policy = MemoryVLAPolicy.from_pretrained(fine)
    assert policy.config.perceptual_fine_position and json.loads((fine / "mikasa.json").read_text())["perceptual_fine_position"]
    assert policy.perceptual_encoder.fine_position.abs().sum() > 0  # trained away from its zero start
    steps = [*TINY, "--perceptual-pool", "max", "--perceptual-subgrid", "2", "--resume"]
    capsys.readouterr()
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), *steps, "--fine-position"]) == 2
    assert "was trained with perceptual_fine_position=False, this run asks for True" in capsys.readouterr().out


def test_train_adds_the_film_head_and_the_chunk_prior_when_asked(tmp_path):
    demos = tiny_demos(tmp_path / "d")
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "film"), "--head-film", "--chunk-prior", *TINY]) == 0
    policy = MemoryVLAPolicy.from_pretrained(tmp_path / "film")
    assert policy.config.head_film and policy.head.film is not None and policy.prior is not None
    assert policy.head.film.project.weight.abs().sum() > 0  # trained away from its zero start
    meta = json.loads((tmp_path / "film" / "mikasa.json").read_text())
    assert meta["head_film"] is True and meta["chunk_prior"] is True
    assert meta["prior_readout_heads"] == 0 and policy.prior.readout is None
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "ro"), "--chunk-prior", "--prior-readout", "3",
                *TINY]) == 0
    policy = MemoryVLAPolicy.from_pretrained(tmp_path / "ro")
    assert policy.config.prior_readout_heads == 3 and policy.prior.readout.heads == 3
    assert json.loads((tmp_path / "ro" / "mikasa.json").read_text())["prior_readout_heads"] == 3
    # resuming with another head count is refused
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "ro"), "--chunk-prior", "--prior-readout", "2",
                "--resume", *TINY]) == 2


def test_train_adds_the_goal_loss_and_the_onset_weight_when_asked(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d")
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "goal"), "--goal-loss", "0.5", *TINY]) == 0
    policy = MemoryVLAPolicy.from_pretrained(tmp_path / "goal")
    assert policy.config.goal_loss_weight == 0.5 and policy.goal is not None
    assert json.loads((tmp_path / "goal" / "mikasa.json").read_text())["goal_loss_weight"] == 0.5
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "onset"), "--chunk-prior", "--onset-weight", "10",
                *TINY]) == 0
    onset = MemoryVLAPolicy.from_pretrained(tmp_path / "onset").config
    assert onset.onset_loss_weight == 10.0 and onset.n_action_steps == 1  # vla-train's default: replan every step
    assert onset.augment_hue == 0.0
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "hue"), "--augment-hue", "0.5", *TINY]) == 0
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "hue").config.augment_hue == 0.5
    assert json.loads((tmp_path / "hue" / "mikasa.json").read_text())["augment_hue"] == 0.5
    capsys.readouterr()
    # resuming it without the weight: refused before any step
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "onset"), "--chunk-prior", "--resume",
                "--steps", "8", *TINY[2:]]) == 2
    assert "was trained with onset_loss_weight=10.0, this run asks for 1.0" in capsys.readouterr().out


def _cuetiny_demos(root, episodes: int = 18, length: int = 6):
    """Episodes whose frame 0 shows a 4 px square of colour ``hidden_info[0] = i % 3`` on grey; every later
    frame is plain grey with a zero state, and the arm first moves at frame 3."""
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    writer = _DatasetWriter(root, "RememberColor3", "touch the cube", SIZE, cameras=("base_camera",))
    for i in range(episodes):
        video = np.full((length, SIZE, SIZE, 3), 128, np.uint8)
        video[0, 14:18, 14:18] = colours[i % 3]
        actions = np.zeros((length, 7), np.float32)
        actions[3:, 1] = 0.5
        writer.add({"frames": {"observation.images.base_camera": video}, "states": np.zeros((length, 7), np.float32),
                    "actions": actions, "rewards": np.zeros(length, np.float32), "success": True, "seed": 10 + i,
                    "hidden_info": [i % 3], "reveal_frames": 1})
    return root


def test_the_cue_probe_finds_the_colour_where_it_is_and_not_where_it_is_not(tmp_path):
    from memstream.embodied.policies.memvla.mikasa import cue_probe, first_move_frame

    data = load_mikasa_demonstrations(_cuetiny_demos(tmp_path / "d"))
    assert first_move_frame(data, 0) == 3
    bank = mikasa_policy(data, "bank", perceptual_pool="max", perceptual_subgrid=2)
    scores = cue_probe(bank, data, range(12), range(12, 18), probe_steps=200)
    assert set(scores) == {"cue_frame_perceptual", "retrieved_perceptual", "retrieved_cognitive", "fused_perceptual",
                           "fused_cognitive"}
    assert scores["cue_frame_perceptual"] == 1.0  # the tokens written at the cue frame hold its colour
    assert scores["retrieved_perceptual"] == 1.0  # an untrained bank's read-out already carries it
    # without memory the first-move frame is the same grey for every episode: a constant guess, 2 of 6
    scores = cue_probe(mikasa_policy(data, "no_memory"), data, range(12), range(12, 18), probe_steps=200)
    assert set(scores) == {"cue_frame_perceptual", "fused_perceptual", "fused_cognitive"}
    assert scores["fused_perceptual"] == scores["fused_cognitive"] == pytest.approx(1 / 3)


def test_train_names_demonstrations_stored_inter_coded(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d")
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "new"), *TINY]) == 0
    assert "inter-coded" not in capsys.readouterr().err  # written now: every frame a key frame
    info_path = demos / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    del info["features"]["observation.images.base_camera"]["info"]["video.g"]  # as datasets written before
    info_path.write_text(json.dumps(info))
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "old"), *TINY]) == 0  # still trains
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "inter-coded" in err and "write_demonstrations" in err


def test_every_vla_command_refuses_a_folder_another_command_is_writing_into(tmp_path, capsys):
    from memstream.streaming.paths import output_lock

    demos = tiny_demos(tmp_path / "d", episodes=2)
    run = tmp_path / "run"
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--checkpoint-every", "2", *TINY]) == 0
    busy = tmp_path / "busy"
    busy.mkdir()
    commands = [["vla-collect", "--task", "RememberColor3", "--episodes", "2", "--out", str(busy), "--no-progress"],
                ["vla-export", "--demos", str(demos), "--out", str(busy)],
                ["vla-relabel", "--demos", str(demos), "--out", str(busy), "--no-progress"],
                ["vla-train", "--demos", str(demos), "--out", str(busy), *TINY],
                ["vla-eval", "--policy", str(run), "--episodes", "1", "--out", str(busy)]]
    capsys.readouterr()
    with output_lock(busy):  # two commands started at once into one new folder: the second to lock is refused
        for argv in commands:
            assert vla(argv) == 2, argv[0]
            assert capsys.readouterr().out == (f"error: another memstream command is writing into {busy}. "
                                               "Wait for it to end, or choose another --out\n"), argv[0]
            assert not any(busy.iterdir()), argv[0]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with output_lock(run):  # a second --resume into a training that is still running
        assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--resume", *TINY[:1], "8", *TINY[2:]]) == 2
        assert "another memstream command is writing into" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # released when a command ends, also when it fails: the same commands go on afterwards
    assert vla(["vla-export", "--demos", str(demos), "--out", str(busy)]) == 0
    assert vla(["vla-train", "--demos", str(demos), "--out", str(run), "--resume", *TINY[:1], "8", *TINY[2:]]) == 0


# ---------------------------------------------------------------- the pointer loss's targets (--pointer-loss)

def test_world_points_project_into_the_token_they_fall_in_and_points_outside_have_none():
    from memstream.embodied.policies.memvla.mikasa import project_to_tokens

    camera = down_camera(32)
    k, e = np.asarray(camera["intrinsic_cv"]), np.asarray(camera["extrinsic_cv"])
    points = np.array([[0.0, 0.0, 0.0],      # the image centre: pixel (16, 16), the bottom-right token of 2 x 2
                       [-0.1, 0.1, 0.02],    # up-left: pixel (12.7, 12.7)
                       [0.1, 0.1, 0.0],      # up-right: pixel (19.2, 12.8)
                       [-0.3, -0.3, 0.0],    # down-left on an 8 x 8 grid: pixel (6.4, 25.6) -> column 1, row 6
                       [0.6, 0.0, 0.0],      # right of the image (pixel 35.2)
                       [0.0, 0.0, 1.5]])     # behind the camera
    assert project_to_tokens(points, k, e, 32, 2).tolist() == [3, 0, 1, 2, -1, -1]
    assert project_to_tokens(points, k, e, 32, 8)[3] == 6 * 8 + 1


def test_each_demonstration_points_at_the_object_under_its_last_tip_position(tmp_path):
    from memstream.embodied.policies.memvla.mikasa import demonstration_camera, end_point_tokens, project_to_tokens

    demos = tiny_demos(tmp_path / "d", episodes=4, length=6, camera_params={"base_camera": down_camera(SIZE)})
    data = load_mikasa_demonstrations(demos)
    camera = demonstration_camera(demos)
    assert camera["intrinsic"].shape == (3, 3) and camera["extrinsic"].shape == (3, 4)
    tokens = end_point_tokens(data, camera, 4)
    last = data.episode_bounds[1:] - 1
    # the tip's x, y at the last frame, on the objects' centre height (0.02 m), not the tip's own height
    at_objects = np.concatenate([data.states[last, :2], np.full((4, 1), 0.02)], axis=1)
    np.testing.assert_array_equal(tokens, project_to_tokens(at_objects, camera["intrinsic"], camera["extrinsic"], SIZE, 4))
    assert tokens.dtype == np.int64 and len(tokens) == 4


def test_a_batch_points_at_the_end_token_from_the_first_moving_frame_on(tmp_path):
    from memstream.embodied.policies.memvla.mikasa import _batch

    data = load_mikasa_demonstrations(_cuetiny_demos(tmp_path / "d", episodes=3, length=6))  # the arm moves at frame 3
    policy = mikasa_policy(data, "bank", memory_length=4, chunk_prior=True, prior_readout_heads=1, pointer_loss_weight=1.0)
    batch = _batch(policy, data, np.array([2, 0]), np.array([5, 6, -1]))  # episode 2 leaves the image: no target
    assert batch["pointer_target"].tolist() == [[-1] * 6, [-1, -1, -1, 5, 5, 5]]
    assert "pointer_target" not in _batch(policy, data, np.array([2, 0]))


def test_the_camera_comes_from_the_folders_and_they_must_agree(tmp_path, monkeypatch):
    from memstream.embodied.envs import mikasa as mikasa_envs
    from memstream.embodied.policies.memvla.mikasa import demonstration_camera

    one = tiny_demos(tmp_path / "a", episodes=1, first_seed=0, camera_params={"base_camera": down_camera(SIZE)})
    old = tiny_demos(tmp_path / "b", episodes=1, first_seed=5)  # collected before the parameters were recorded
    other = tiny_demos(tmp_path / "c", episodes=1, first_seed=9, camera_params={"base_camera": down_camera(SIZE, 2.0)})
    assert demonstration_camera([old, one])["extrinsic"][2, 3] == 1.0  # the folder that records them answers
    with pytest.raises(MemstreamError, match="record different base_camera parameters"):
        demonstration_camera([one, other])
    with pytest.raises(MemstreamError, match="hand camera moves with the arm"):
        demonstration_camera(one, "hand_camera")

    def no_simulator(*args, **kwargs):
        raise MemstreamError("the MIKASA-Robo simulator is not installed", "pip install 'memstream[mikasa]'")

    monkeypatch.setattr(mikasa_envs, "make_mikasa_env", no_simulator)
    with pytest.raises(MemstreamError, match="collected before the camera parameters were recorded.*not installed") as caught:
        demonstration_camera(old)
    assert "collect the demonstrations again" in caught.value.one_line()


def test_train_with_the_pointer_loss_records_it_and_refuses_what_cannot_work(tmp_path, capsys):
    # the tiny states are N(0, 1) metres: a camera 20 m up sees them all, one 1 m up none
    demos = tiny_demos(tmp_path / "d", camera_params={"base_camera": down_camera(SIZE, 20.0)})
    pointer = ["--chunk-prior", "--prior-readout", "2", "--pointer-loss", "0.5"]
    blind = tiny_demos(tmp_path / "blind", camera_params={"base_camera": down_camera(SIZE, 1.0)})
    assert vla(["vla-train", "--demos", str(blind), "--out", str(tmp_path / "none"), *pointer, *TINY]) == 2
    assert "no demonstration's end point falls inside the base_camera image" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
    assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "run"), *pointer, *TINY]) == 0
    assert MemoryVLAPolicy.from_pretrained(tmp_path / "run").config.pointer_loss_weight == 0.5
    assert json.loads((tmp_path / "run" / "mikasa.json").read_text())["pointer_loss_weight"] == 0.5
    assert "pointer targets: 3 of 3 demonstrations end inside the base_camera image" in capsys.readouterr().err
    for extra, says in ((["--pointer-loss", "1"], "--pointer-loss trains the chunk prior's readout"),
                        ([*pointer[:3], "--pointer-loss", "-1"], "--pointer-loss must be a finite number >= 0"),
                        ([*pointer, "--camera", "hand_camera"], "the hand camera moves"),
                        ([*pointer[:3], "--resume", "--steps", "8"], "was trained with pointer_loss_weight=0.5, this run asks for 0.0")):
        assert vla(["vla-train", "--demos", str(demos), "--out", str(tmp_path / "run"), *TINY, *extra]) == 2, extra
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed


def test_a_prefix_batch_ends_each_episode_at_its_first_move():
    from memstream.embodied.envs import collect_demonstrations
    from memstream.embodied.policies.memvla.mikasa import _batch, first_move_frame

    data = collect_demonstrations("cue_choice", num_episodes=3, seed=0, image_size=32)
    actions = data.actions.copy()
    for episode, held in enumerate((2, 4, 3)):  # the arm waits 2, 4 and 3 frames
        actions[data.episode_bounds[episode]: data.episode_bounds[episode] + held] = 0.0
    data = dataclasses.replace(data, actions=actions)
    assert [first_move_frame(data, e) for e in range(3)] == [2, 4, 3]
    policy = mikasa_policy(data, "bank", memory_length=4, camera="x", chunk_prior=True, prior_readout_heads=1,
                           pointer_loss_weight=1.0)
    whole = _batch(policy, data, np.array([0, 1, 2]), np.array([1, 2, 3]))
    cut = _batch(policy, data, np.array([0, 1, 2]), np.array([1, 2, 3]), prefix=True)
    assert cut["observation.images.x"].shape[1] == 5  # the longest prefix: frames 0 .. 4
    assert cut["valid"].tolist() == [[True] * 3 + [False] * 2, [True] * 5, [True] * 4 + [False]]
    # the frames kept are the whole episode's, with the targets they had there: the chunk (of later actions too)
    for key in ("observation.images.x", "observation.state", "action", "action_is_pad", "frame_index", "action_onset"):
        torch.testing.assert_close(cut[key], whole[key][:, :5])
    assert cut["pointer_target"].tolist() == [[-1, -1, 1, 1, 1], [-1, -1, -1, -1, 2], [-1, -1, -1, 3, 3]]
    torch.testing.assert_close(cut["goal_state"], whole["goal_state"])  # per episode: kept whole
    assert set(cut) == set(whole)
    # a per-episode entry is never cut, even where its width equals the batch's length in frames
    width = int(data.lengths[0])  # states as wide as episode 0 is long
    wide = dataclasses.replace(data, states=np.repeat(data.states[:, :1], width, axis=1))
    short = _batch(mikasa_policy(wide, "bank", memory_length=4, camera="x"), wide, np.array([0]), prefix=True)  # episode 0: the longest prefix is 3 frames
    assert short["goal_state"].shape == (1, width) and short["observation.state"].shape[:3] == (1, 3, width)
    _, info = policy.train()(cut)  # one decision frame an episode carries the pointer loss
    assert info["pointer_loss"] > 0


def test_train_adds_prefix_episodes_to_each_step_and_a_resume_must_keep_them(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d", episodes=4, camera_params={"base_camera": down_camera(SIZE, 20.0)})
    common = ["--demos", str(demos), "--chunk-prior", "--prior-readout", "2", "--pointer-loss", "1", *TINY]
    assert vla(["vla-train", *common, "--out", str(tmp_path / "run"), "--prefix-episodes", "3"]) == 0
    meta = json.loads((tmp_path / "run" / "mikasa.json").read_text())
    assert meta["prefix_episodes"] == 3 and meta["batch_episodes"] == 2
    assert vla(["vla-train", *common, "--out", str(tmp_path / "plain")]) == 0
    assert json.loads((tmp_path / "plain" / "mikasa.json").read_text())["prefix_episodes"] == 0
    changed = [a for a in load_file(tmp_path / "run" / "model.safetensors").items()
               if not torch.equal(a[1], load_file(tmp_path / "plain" / "model.safetensors")[a[0]])]
    assert changed  # the extra episodes moved the weights
    capsys.readouterr()
    assert vla(["vla-train", *common[:-len(TINY)], "--steps", "8", *TINY[2:], "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "was trained with prefix_episodes=3, this run asks for 0" in capsys.readouterr().out
    assert vla(["vla-train", *common, "--out", str(tmp_path / "bad"), "--prefix-episodes", "-1"]) == 2
    assert "--prefix-episodes must be >= 0, got -1" in capsys.readouterr().out


def test_train_can_start_from_a_trained_policys_weights(tmp_path, capsys):
    from memstream.embodied.policies.memvla.mikasa import init_from_trained

    demos = tiny_demos(tmp_path / "d", episodes=4, camera_params={"base_camera": down_camera(SIZE, 20.0)})
    readout = ["--demos", str(demos), "--chunk-prior", "--prior-readout", "2"]
    assert vla(["vla-train", *readout, *TINY, "--out", str(tmp_path / "a")]) == 0
    trained = load_file(tmp_path / "a" / "model.safetensors")
    data = load_mikasa_demonstrations(demos)
    fresh = mikasa_policy(data, "bank", seed=5, chunk_prior=True, prior_readout_heads=2, pointer_loss_weight=1.0)
    meta = json.loads((tmp_path / "a" / "mikasa.json").read_text())
    assert init_from_trained(fresh, tmp_path / "a", meta)["steps"] == 4
    for key, value in fresh.state_dict().items():  # weights and normalisation statistics
        assert torch.equal(value, trained[key]), key
    # go on with the pointer loss and extra episodes, from its weights: recorded, and kept through a resume
    more = [*readout, "--pointer-loss", "1", "--prefix-episodes", "2", "--out", str(tmp_path / "b")]
    assert vla(["vla-train", *more, *TINY, "--init-from", str(tmp_path / "a" / "checkpoint")]) == 0
    meta = json.loads((tmp_path / "b" / "mikasa.json").read_text())
    assert meta["init_from"] == {"folder": str(tmp_path / "a" / "checkpoint"), "steps": 4} and meta["pointer_loss_weight"] == 1
    assert vla(["vla-train", *more, "--steps", "6", *TINY[2:], "--resume"]) == 0
    assert json.loads((tmp_path / "b" / "mikasa.json").read_text())["init_from"]["steps"] == 4
    capsys.readouterr()
    for extra, says in (([*readout[:2], "--out", str(tmp_path / "c")], "do not fit this policy"),  # no prior readout
                        ([*readout, "--camera", "hand_camera", "--out", str(tmp_path / "c")], "no camera 'hand_camera'"),
                        ([*more[:-1], str(tmp_path / "b"), "--resume"], "--init-from starts a new run"),
                        ([*readout, "--out", str(tmp_path / "c")], "holds no policy written by vla-train")):
        source = tmp_path / ("d" if "holds no policy" in says else "a")
        assert vla(["vla-train", *extra, *TINY, "--init-from", str(source)]) == 2, says
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed
    assert not (tmp_path / "c").exists()


def test_train_runs_the_binding_warm_start_first_records_it_and_keeps_it_through_a_resume(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d", episodes=4, camera_params={"base_camera": down_camera(SIZE, 20.0)})
    readout = ["--demos", str(demos), "--chunk-prior", "--prior-readout", "2"]
    assert vla(["vla-train", *readout, *TINY, "--binding-warmup", "3", "--out", str(tmp_path / "warm")]) == 0
    meta = json.loads((tmp_path / "warm" / "mikasa.json").read_text())
    warm = meta["binding_warmup"]
    assert warm["steps"] == 3 and warm["batch"] == 4 and warm["scored_demonstrations"] == 4
    assert warm["modules"] == ["perceptual_encoder", "memory.perceptual", "prior.readout"]
    assert "binding warm start: 3 steps" in capsys.readouterr().err
    assert meta["pointer_loss_weight"] == 0.0  # the warm start's own pointer loss is not the training's
    # the same run without it differs exactly by what the warm start trained before the first step
    assert vla(["vla-train", *readout, *TINY, "--out", str(tmp_path / "cold")]) == 0
    warm_w, cold_w = load_file(tmp_path / "warm" / "model.safetensors"), load_file(tmp_path / "cold" / "model.safetensors")
    assert any(not torch.equal(warm_w[k], cold_w[k]) for k in warm_w if k.startswith("perceptual_encoder."))
    assert vla(["vla-train", *readout, "--steps", "6", *TINY[2:], "--out", str(tmp_path / "warm"), "--resume"]) == 0
    assert json.loads((tmp_path / "warm" / "mikasa.json").read_text())["binding_warmup"] == warm
    capsys.readouterr()
    for extra, says in (([*readout[:2], "--binding-warmup", "3"], "--binding-warmup trains the bank's perceptual stream"),
                        ([*readout, "--variant", "no_memory", "--binding-warmup", "3"], "--binding-warmup trains the bank"),
                        ([*readout, "--binding-warmup", "3", "--camera", "hand_camera"], "the hand camera moves"),
                        ([*readout, "--binding-warmup", "-1"], "--binding-warmup must be >= 0, got -1"),
                        ([*readout, "--binding-warmup", "3", "--resume"], "Drop --binding-warmup when resuming")):
        assert vla(["vla-train", *extra, *TINY, "--out", str(tmp_path / "warm")]) == 2, says
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed
    blind = tiny_demos(tmp_path / "blind", camera_params={"base_camera": down_camera(SIZE, 1.0)})
    assert vla(["vla-train", "--demos", str(blind), *readout[2:], *TINY, "--binding-warmup", "3", "--out", str(tmp_path / "none")]) == 2
    assert "so --binding-warmup has nothing to train" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()
