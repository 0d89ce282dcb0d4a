"""``memstream vla-collect`` and merging demonstration folders: parallel shares joined in seed order,
byte for byte; refusals before anything is written; the collection itself runs only with the simulator."""

from __future__ import annotations

import filecmp
import importlib.util

import numpy as np
import pytest
from memstream.embodied.envs.mikasa import merge_demonstrations, read_demonstrations
from memstream.embodied.policies.cli import _collect_in_parallel, _shares
from memstream.embodied.policies.memvla.mikasa import load_mikasa_demonstrations
from memstream.streaming.errors import ConfigError, MemstreamError

from tests.embodied.policies.util import down_camera, tiny_demos, vla

needs_sim = pytest.mark.skipif(importlib.util.find_spec("mani_skill") is None or importlib.util.find_spec("mikasa_robo_suite") is None,
                               reason="needs ManiSkill3 and MIKASA-Robo (memstream[mikasa])")


def _video(root, record) -> str:
    reader = read_demonstrations(root)
    index = record["episode_index"]
    return str(root / reader.info["video_path"].format(episode_chunk=index // 1000, video_key="observation.images.base_camera",
                                                       episode_index=index))


def test_merge_renumbers_the_episodes_in_order_and_copies_them_unchanged(tmp_path):
    camera = {"base_camera": down_camera()}
    one = tiny_demos(tmp_path / "a", episodes=2, length=6, seed=1, first_seed=0, camera_params=camera)
    two = tiny_demos(tmp_path / "b", episodes=3, length=5, seed=2, first_seed=2, camera_params=camera)
    info = merge_demonstrations(tmp_path / "m", [one, two])
    assert info["memstream"]["camera_params"] == camera  # what the pointer loss projects through
    merged, sources = read_demonstrations(tmp_path / "m"), [read_demonstrations(one), read_demonstrations(two)]
    assert info["total_episodes"] == 5 and info["total_frames"] == 2 * 6 + 3 * 5 and info["splits"] == {"train": "0:5"}
    assert info["total_videos"] == 5 and info["features"] == sources[0].info["features"]
    assert [r["episode_index"] for r in merged.records] == [0, 1, 2, 3, 4]
    assert [r["seed"] for r in merged.records] == [0, 1, 2, 3, 4] and len(sources[0]) == 2 and len(sources[1]) == 3
    pairs = [(source, i) for source in sources for i in range(len(source))]
    frame = 0
    for k, (source, i) in enumerate(pairs):
        got, want = merged.episode(k), source.episode(i)
        for key in ("actions", "states", "next.reward", "frame_index", "timestamp", "observation.images.base_camera"):
            np.testing.assert_array_equal(got[key], want[key])
        assert got["meta"]["hidden_info"] == want["meta"]["hidden_info"] and got["meta"]["length"] == len(want["actions"])
        assert (got["episode_index"] == k).all()  # the Parquet rows carry the new indices
        np.testing.assert_array_equal(got["index"], frame + np.arange(len(want["actions"])))
        frame += len(want["actions"])
        assert filecmp.cmp(_video(tmp_path / "m", merged.records[k]), _video(source.root, source.records[i]), shallow=False)
    joined, read = load_mikasa_demonstrations([one, two]), load_mikasa_demonstrations(tmp_path / "m")
    for name in ("images", "states", "actions", "episode_index", "episode_bounds", "hidden_info", "reveal_frames"):
        np.testing.assert_array_equal(getattr(read, name), getattr(joined, name))


def test_merge_refuses_repeated_seeds_and_an_existing_dataset_before_writing(tmp_path):
    one = tiny_demos(tmp_path / "a", episodes=2, first_seed=0)
    with pytest.raises(ConfigError, match="simulator seed 1 is in both"):
        merge_demonstrations(tmp_path / "m", [one, tiny_demos(tmp_path / "b", episodes=2, first_seed=1)])
    assert not (tmp_path / "m").exists()
    with pytest.raises(ConfigError, match="already holds a dataset"):
        merge_demonstrations(one, [tiny_demos(tmp_path / "c", episodes=1, first_seed=7)])
    assert len(read_demonstrations(one)) == 2
    with pytest.raises(ConfigError, match="no demonstration folder"):
        merge_demonstrations(tmp_path / "m", [])


def _recorded(root, key, value):
    """A demonstration folder whose ``meta/info.json`` ``memstream`` entry records ``key: value``, as a
    collection with other settings would have written it."""
    import json

    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["memstream"][key] = value
    info_path.write_text(json.dumps(info))
    return root


@pytest.mark.parametrize("key, record, says", [
    ("dagger", {"policy": "/runs/im", "expert_mix": 0.0}, "were driven differently"),
    # DAgger rounds labelled before and after the intercept expert learnt to slide low (stop 50): the same
    # push demonstrated, other labels where a policy strays, so one merged folder could not say which
    ("expert_labels", {"low_clear_m": 0.055}, "were labelled differently"),
])
def test_folders_merge_only_with_folders_driven_and_labelled_the_same_way_and_keep_the_record(tmp_path, key, record,
                                                                                              says):
    a = _recorded(tiny_demos(tmp_path / "a", episodes=1, first_seed=0), key, record)
    b = _recorded(tiny_demos(tmp_path / "b", episodes=1, first_seed=1), key, record)
    plain = tiny_demos(tmp_path / "plain", episodes=1, first_seed=2)
    assert merge_demonstrations(tmp_path / "ab", [a, b])["memstream"][key] == record
    with pytest.raises(ConfigError, match=says) as caught:
        merge_demonstrations(tmp_path / "mixed", [a, plain])
    assert "vla-train --demos A B" in caught.value.one_line() and not (tmp_path / "mixed").exists()
    assert load_mikasa_demonstrations([a, plain]).num_episodes == 2  # training joins them side by side


def test_folders_of_experts_that_stop_at_other_heights_do_not_join_and_a_merge_keeps_the_height(tmp_path):
    def with_expert(root, height):
        return _recorded(root, "expert", {"touch_height_m": height})

    one = with_expert(tiny_demos(tmp_path / "a", episodes=1, first_seed=0), 0.028)
    two = with_expert(tiny_demos(tmp_path / "b", episodes=1, first_seed=1), 0.035)
    with pytest.raises(ConfigError, match="differ in expert"):
        merge_demonstrations(tmp_path / "m", [one, two])
    assert not (tmp_path / "m").exists()
    with pytest.raises(ConfigError, match="differ in expert"):  # nor with a folder collected before it was recorded
        load_mikasa_demonstrations([one, tiny_demos(tmp_path / "c", episodes=1, first_seed=2)])
    three = with_expert(tiny_demos(tmp_path / "d", episodes=1, first_seed=3), 0.028)
    assert merge_demonstrations(tmp_path / "m", [one, three])["memstream"]["expert"] == {"touch_height_m": 0.028}


def test_shares_are_contiguous_in_seed_order_and_cover_every_episode():
    assert _shares(0, 10, 3) == [(0, 4), (4, 3), (7, 3)]
    assert _shares(250, 4, 4) == [(250, 1), (251, 1), (252, 1), (253, 1)]
    for seed, episodes, workers in ((5, 17, 2), (0, 250, 7)):
        shares = _shares(seed, episodes, workers)
        assert sum(n for _, n in shares) == episodes and shares[0][0] == seed
        assert all(a + n == b for (a, n), (b, _) in zip(shares, shares[1:], strict=False))


@pytest.mark.parametrize(("extra", "says"), [
    (["--task", "Nope"], "unknown MIKASA-Robo task 'Nope'"),
    (["--task", "ShellGameTouch"], "the ShellGame tasks need ManiSkill's YCB object assets"),
    (["--task", "RememberColor3", "--episodes", "0"], "--episodes must be >= 1"),
    (["--task", "RememberColor3", "--workers", "0"], "--workers must be >= 1"),
    (["--task", "RememberColor3", "--threads", "0"], "--threads must be >= 1"),
    (["--task", "RememberColor3", "--seed", "4242424200"], "overlap the evaluation seeds"),
    (["--task", "RememberColor3", "--cameras", "top_camera"], "unknown camera 'top_camera'"),
])
def test_collect_refusals_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, says):
    out = tmp_path / "demos"
    assert vla(["vla-collect", *extra, "--out", str(out), "--no-progress"]) == 2
    line = capsys.readouterr().out.strip()
    assert line.startswith("error: ") and says in line and len(line.splitlines()) == 1
    assert not out.exists()


def test_collect_refuses_a_folder_that_holds_files(tmp_path, capsys):
    out = tiny_demos(tmp_path / "demos", episodes=1)
    assert vla(["vla-collect", "--task", "RememberColor3", "--out", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().out and len(read_demonstrations(out)) == 1


def test_a_failed_share_names_the_shares_that_keep_finished_episodes(tmp_path):
    # each share's folder already holds a dataset, so each worker refuses before it starts the simulator
    shares = [(tiny_demos(tmp_path / f"part-{k}", episodes=1, first_seed=100 + k), k, 1) for k in range(2)]
    with pytest.raises(MemstreamError, match=r"collecting seeds 0..0 failed \(.*already holds a dataset\); the finished "
                                             r"episodes are kept in .*part-0.*part-1") as caught:
        _collect_in_parallel("RememberColor3", shares, {"cameras": ("base_camera",)}, progress=False)
    assert "vla-train --demos A B" in caught.value.one_line()


@needs_sim
def test_two_workers_write_the_same_dataset_as_one(tmp_path, capsys):
    common = ["--task", "RememberColor3", "--episodes", "2", "--seed", "20", "--cameras", "base_camera",
              "--image-size", "64", "--no-progress"]
    assert vla(["vla-collect", *common, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    assert "collected 2 RememberColor3 demonstrations from 2 expert rollouts (seeds 20..21" in capsys.readouterr().out
    assert vla(["vla-collect", *common, "--out", str(tmp_path / "one")]) == 0
    two, one = read_demonstrations(tmp_path / "two"), read_demonstrations(tmp_path / "one")
    assert not (tmp_path / "two" / ".parts").exists()
    assert [r["seed"] for r in two.records] == [20, 21] and two.records == one.records
    assert two.info == one.info
    from memstream.embodied.envs.mikasa.experts import TOUCH_HEIGHT_M

    assert one.info["memstream"]["expert"] == {"touch_height_m": TOUCH_HEIGHT_M}  # where its tip stops: what a policy learns
    for k in range(2):
        a, b = two.episode(k), one.episode(k)
        for key in ("actions", "states", "index", "observation.images.base_camera"):
            np.testing.assert_array_equal(a[key], b[key])
    # --overwrite replaces an earlier collection (recognised by its meta/info.json), never mixes with it
    assert vla(["vla-collect", *common[:3], "1", *common[4:], "--out", str(tmp_path / "one"), "--overwrite"]) == 0
    assert [r["seed"] for r in read_demonstrations(tmp_path / "one").records] == [20]


@needs_sim
def test_intercept_collections_record_how_the_expert_pushes(tmp_path, capsys):
    from memstream.embodied.envs.mikasa.experts import LOW_CLEAR_M, PUSH_SPEED, RUN_UP_M

    assert vla(["vla-collect", "--task", "InterceptMedium", "--episodes", "1", "--cameras", "base_camera",
                "--image-size", "32", "--no-progress", "--out", str(tmp_path / "im")]) == 0
    info = read_demonstrations(tmp_path / "im").info
    # folders of the one-step kick (collected before it was recorded) do not join these
    assert info["memstream"]["expert"] == {"push_run_up_m": RUN_UP_M, "push_speed": PUSH_SPEED}
    assert info["memstream"]["expert_labels"] == {"low_clear_m": LOW_CLEAR_M}
    _labels_come_back_from_the_stored_inputs(tmp_path / "im", tmp_path / "im_relabelled")


def _labels_come_back_from_the_stored_inputs(folder, out) -> None:
    """Every stored label is the expert's action on the stored inputs, bit for bit, so vla-relabel with
    the same expert changes none."""
    from memstream.embodied.envs.mikasa import expert_action, relabel_demonstrations, resolve_task
    from memstream.embodied.envs.mikasa.dataset import ENVIRONMENT_STATE

    reader = read_demonstrations(folder)
    kind = resolve_task(reader.info["memstream"]["task"]).kind
    for episode in reader.episodes():
        inputs = episode[ENVIRONMENT_STATE]
        assert inputs.dtype == np.float64 and len(inputs) == len(episode["actions"])
        want = np.stack([expert_action(kind, row, int(t)) for row, t in zip(inputs, episode["frame_index"], strict=True)])
        np.testing.assert_array_equal(episode["actions"], want)
    assert relabel_demonstrations(out, folder)["changed_frames"] == 0


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    """A tiny RememberColor3 policy on 32 px base-camera images (the DAgger tests drive with it)."""
    root = tmp_path_factory.mktemp("dagger_policy")
    run = root / "run"
    assert vla(["vla-train", "--demos", str(tiny_demos(root / "d", episodes=2)), "--out", str(run), "--steps", "2",
                "--batch-episodes", "2", "--loss-frames", "2", "--threads", "1", "--no-progress"]) == 0
    return run


@pytest.mark.parametrize(("extra", "says"), [
    (["--task", "RememberColor3", "--expert-mix", "0.5"], "--expert-mix needs --policy"),
    (["--task", "RememberColor3", "--policy", "{policy}", "--expert-mix", "1.5"], "--expert-mix must lie in [0, 1]"),
    (["--task", "InterceptMedium", "--policy", "{policy}"], "was trained for 'RememberColor3', not 'InterceptMedium'"),
    (["--task", "RememberColor3", "--policy", "{policy}", "--cameras", "hand_camera"], "Add base_camera to --cameras"),
    (["--task", "RememberColor3", "--policy", "{policy}"], "Pass --image-size 32"),  # collected at 128 px
    (["--task", "RememberColor3", "--policy", "{demos}"], "holds no MIKASA-Robo policy"),
    (["--task", "InterceptMedium", "--expert-catches"], "--expert-catches needs --policy"),
    (["--task", "RememberColor3", "--policy", "{policy}", "--expert-catches"], "RememberColor3 has no ball"),
])
def test_dagger_refusals_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, tiny_policy, extra, says):
    demos = tiny_demos(tmp_path / "d", episodes=1)
    extra = [arg.format(policy=tiny_policy, demos=demos) for arg in extra]
    out = tmp_path / "dagger"
    assert vla(["vla-collect", *extra, "--out", str(out), "--no-progress"]) == 2
    line = capsys.readouterr().out.strip()
    assert line.startswith("error: ") and says in line and len(line.splitlines()) == 1
    assert not out.exists()


class _Lift:
    """A driver that only lifts the hand: what it executes shows in the states, never in the labels."""

    def __init__(self, env):
        self.episodes, self.calls = 0, 0

    def start_episode(self):
        self.episodes += 1

    def __call__(self, obs):
        self.calls += 1
        return np.array([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]], np.float32)


@needs_sim
def test_a_driver_executes_its_actions_while_the_expert_labels_every_state(tmp_path):
    from memstream.embodied.envs.mikasa import write_demonstrations

    drivers = []

    def lift(env):
        drivers.append(_Lift(env))
        return drivers[-1]

    common = dict(num_episodes=1, seed=20, image_size=32, cameras=("base_camera",))
    write_demonstrations(tmp_path / "expert", "RememberColor3", **common)
    info = write_demonstrations(tmp_path / "driven", "RememberColor3", driver=lift, driver_record={"policy": "lift"},
                                **common)
    write_demonstrations(tmp_path / "watched", "RememberColor3", driver=lift, expert_mix=1.0, **common)
    expert, driven, watched = (read_demonstrations(tmp_path / name).episode(0) for name in ("expert", "driven", "watched"))
    assert info["memstream"]["dagger"] == {"policy": "lift", "expert_mix": 0.0}
    assert [(d.episodes, d.calls) for d in drivers] == [(1, 25), (1, 25)]  # called at every step, mixed or not
    # expert_mix 1: the driver only watched, the episode is the expert's own
    for key in ("actions", "states", "observation.images.base_camera"):
        np.testing.assert_array_equal(watched[key], expert[key])
    # driven: the hand rose once the cue phase stopped freezing it, while every label is the expert's:
    # zero while the cue froze the arm, then down toward a cube on the table all the way
    released = int(np.flatnonzero(np.abs(expert["actions"][:, :6]).sum(axis=1))[0])  # the expert's first move
    z = driven["states"][:, 2]
    assert 1 < released < 20 and np.ptp(z[:released + 1]) < 0.01  # frozen while the cue showed
    assert z[-1] > z[released] + 0.2 and z[-1] > expert["states"][-1, 2] + 0.2  # then lifted (to the arm's reach)
    assert not driven["meta"]["success"]  # kept although the driven rollout failed
    _labels_come_back_from_the_stored_inputs(tmp_path / "driven", tmp_path / "driven_relabelled")
    np.testing.assert_array_equal(driven["actions"][:released], expert["actions"][:released])
    assert (driven["actions"][released:, 2] < 0).all() and np.abs(driven["actions"]).max() <= 1.0


@needs_sim
def test_expert_catches_hands_the_episode_to_the_driver_after_the_catch(tmp_path):
    from memstream.embodied.envs.mikasa import catch_geometry, make_mikasa_env, write_demonstrations
    from memstream.embodied.envs.mikasa.dataset import HANDOVER_STEPS

    with pytest.raises(ConfigError, match="expert_catches hands an Intercept episode"):
        write_demonstrations(tmp_path / "none", "InterceptMedium", 1, seed=30, expert_catches=True)
    assert not (tmp_path / "none").exists()
    common = dict(num_episodes=1, seed=30, image_size=32, cameras=("base_camera",))
    write_demonstrations(tmp_path / "expert", "InterceptMedium", **common)
    info = write_demonstrations(tmp_path / "caught", "InterceptMedium", driver=_Lift, driver_record={"policy": "lift"},
                                expert_catches=True, **common)
    assert info["memstream"]["dagger"] == {"policy": "lift", "expert_mix": 0.0, "expert_catches": True}
    expert, caught = (read_demonstrations(tmp_path / name).episode(0) for name in ("expert", "caught"))
    # where the expert alone catches the ball on this seed (its motion is not stored: replayed without cameras)
    env = make_mikasa_env("InterceptMedium", seed=30, render=False)
    try:
        env.reset()
        motion = []
        for _ in range(60):
            motion.append(env.ball_motion())
            env.step(env.expert_actions())
    finally:
        env.close()
    handover = caught["meta"]["handover_step"]
    assert handover == catch_geometry(np.stack(motion))["catch_step"] + HANDOVER_STEPS and 5 < handover < 40
    # the expert acted up to the handover: the same states; then the driver lifted the hand
    np.testing.assert_array_equal(caught["states"][:handover + 1], expert["states"][:handover + 1])
    z = caught["states"][:, 2]
    assert z[-1] > z[handover] + 0.1 and z[-1] > expert["states"][-1, 2] + 0.1
    assert not caught["meta"]["success"]  # the lift pushed nothing home; the episode is kept
    # every label is the expert's: its own up to the handover, then its answers to the lifted hand's states
    np.testing.assert_array_equal(caught["actions"][:handover + 1], expert["actions"][:handover + 1])
    assert (caught["actions"][handover + 1:, 2] < 0.5).any() and np.abs(caught["actions"]).max() <= 1.0


@needs_sim
def test_collect_with_a_policy_keeps_every_episode_and_records_the_policy(tmp_path, capsys, tiny_policy):
    assert vla(["vla-collect", "--task", "RememberColor3", "--episodes", "2", "--seed", "30", "--cameras", "base_camera",
                "--image-size", "32", "--policy", str(tiny_policy), "--workers", "2", "--no-progress",
                "--out", str(tmp_path / "dagger")]) == 0
    assert "from 2 policy-driven rollouts labelled by the expert (seeds 30..31" in capsys.readouterr().out
    data = read_demonstrations(tmp_path / "dagger")
    assert [r["seed"] for r in data.records] == [30, 31]  # both kept, whatever the tiny policy did
    assert data.info["memstream"]["dagger"] == {"policy": str(tiny_policy.resolve()), "expert_mix": 0.0}
    # the folder joins the expert's demonstrations for training (same task, expert and features)
    expert = tmp_path / "expert"
    assert vla(["vla-collect", "--task", "RememberColor3", "--episodes", "1", "--seed", "32", "--cameras", "base_camera",
                "--image-size", "32", "--no-progress", "--out", str(expert)]) == 0
    joined = load_mikasa_demonstrations([tmp_path / "dagger", expert])
    assert joined.num_episodes == 3


@needs_sim
def test_handover_diagnostic_gives_the_episode_to_the_second_actor_after_the_catch(tmp_path):
    # benchmarks/diag_mikasa_push.py handover: who loses InterceptMedium, the catch or the push after it
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "benchmarks"))
    import diag_mikasa_push as diag

    run = tmp_path / "run"
    assert vla(["vla-train", "--demos", str(tiny_demos(tmp_path / "d", episodes=2, task="InterceptMedium")), "--out", str(run),
                "--steps", "2", "--batch-episodes", "2", "--loss-frames", "2", "--threads", "1", "--no-progress"]) == 0
    # the expert catches and never hands over (60 steps an episode): its own episode, the policy only watching
    watched = diag.handover(str(run), "expert-policy", episodes=1, seed=7, after=100, ensemble=0.01)
    row = watched["rows"][0]
    assert row["seed"] == 7 and row["ball_reached_hand"] and row["switch_step"] == row["catch_step"] + 100
    assert row["length"] == 60 and watched["handed_over"] == 0  # past the episode's end: the policy never acted
    assert "after_steps_recorded" not in row  # nothing followed a handover
    assert watched["success_rate"] == 1.0  # as the expert alone on seed 7
    # handed over at the catch, but the expert drives every axis of the policy's half: the expert's own episode
    overruled = diag.handover(str(run), "expert-policy", episodes=1, seed=7, after=0, ensemble=0.01,
                              expert_axes=diag.ACTION_AXES)
    again = overruled["rows"][0]
    assert overruled["expert_axes"] == list(diag.ACTION_AXES) and overruled["handed_over"] == 1
    assert again["success"] and again["catch_step"] == row["catch_step"] and again["switch_step"] == row["catch_step"]
    assert again["after_steps_recorded"] == 60 - row["catch_step"]
    # the policy catches, the expert pushes after it; paired seed by seed with the policy's own evaluation
    own = tmp_path / "eval"
    own.mkdir()
    (own / "results.json").write_text('{"episodes": [{"seed": 7, "success": false}, {"seed": 8, "success": true}]}')
    handed = diag.handover(str(run), "policy-expert", episodes=1, seed=7, after=0, ensemble=None, eval_dir=str(own))
    row = handed["rows"][0]
    assert row["switch_step"] is None or row["switch_step"] == row["catch_step"]  # handed over at the catch itself
    assert handed["handed_over"] == int(row["switch_step"] is not None)
    assert handed["temporal_ensemble_coeff"] is None  # the policy's saved setting
    if row["switch_step"] is not None:  # what followed: every step from the handover, the expert pushing
        assert row["after_steps_recorded"] == row["length"] - row["switch_step"]
        assert (row["after_closest_ball_to_goal_m"] < 0.1) == row["success"]  # the suite's goal circle
    won = int(row["success"])
    assert handed["paired"] == {"episodes": 1, "policy_alone": 0, "both": 0, "only_policy_alone": 0, "only_handover": won}
    # the collection that labels the same split: vla-collect --expert-catches (the expert catches, the policy pushes)
    assert vla(["vla-collect", "--task", "InterceptMedium", "--policy", str(run), "--expert-catches", "--episodes", "1",
                "--seed", "7", "--cameras", "base_camera", "--image-size", "32", "--no-progress",
                "--out", str(tmp_path / "caught")]) == 0
    reader = read_demonstrations(tmp_path / "caught")
    assert reader.info["memstream"]["dagger"]["expert_catches"] is True
    assert reader.records[0]["handover_step"] == watched["rows"][0]["catch_step"] + 2  # the expert's catch, as above
