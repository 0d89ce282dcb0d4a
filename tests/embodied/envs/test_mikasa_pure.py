"""MIKASA-Robo adapter parts that need no simulator: task names, expert logic, the on-disk format."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from memstream.embodied.envs.mikasa import MIKASA_TASKS, NEEDS_ASSETS, MikasaConfig, resolve_task
from memstream.embodied.envs.mikasa.tasks import EXPERT_TASKS
from memstream.embodied.envs.mikasa import experts, sim
from memstream.embodied.envs.mikasa.dataset import (
    CAMERAS,
    EVAL_EPISODES,
    EVAL_SEED,
    _DatasetWriter,
    check_seeds_disjoint,
    read_demonstrations,
    write_demonstrations,
)
from memstream.embodied.envs.mikasa.env import _rotate, catch_geometry, continuous_rpy, quat_wxyz_to_rpy
from memstream.streaming.errors import ConfigError, MemstreamError


def test_names_and_suite_ids_resolve_to_the_vla_benchmark_tasks():
    assert {name for name, task in MIKASA_TASKS.items() if task.expert} == {
        "RememberColor3", "RememberColor5", "RememberColor9", "InterceptMedium"}
    assert resolve_task("RememberColor9").suite_id == "RememberColor9-VLA-v0"
    assert resolve_task("InterceptMedium-VLA-v0").name == "InterceptMedium"
    assert resolve_task("RememberColor5").chance_success_rate == pytest.approx(0.2)
    assert [MIKASA_TASKS[t].max_episode_steps for t in EXPERT_TASKS] == [25, 25, 25, 60]


@pytest.mark.parametrize(("name", "words"), [
    ("ShellGameTouch", "YCB"), ("ShellGamePush-VLA-v0", "YCB"), ("ShellGameShuffleTouch-Long-VLA-v0", "YCB"),
    ("RememberColor3-v0", "never reappear"), ("InterceptMedium-v0", "InterceptMedium-VLA-v0"),
    ("TakeItBack-v0", "TakeItBack-VLA-v0"), ("PickCube", "RememberColor3, RememberColor5"),
    ("RememberShap3", "Did you mean: RememberShape3"),
])
def test_refused_task_ids_name_the_reason_and_the_fix(name, words):
    with pytest.raises(ConfigError) as info:
        resolve_task(name)
    assert words in str(info.value)
    with pytest.raises(ConfigError):
        MikasaConfig(task=name)


def _suite_registry() -> dict:
    """{suite id: (max_episode_steps, asset_download_ids, class)} of mikasa-robo-suite's VLA ids."""
    pytest.importorskip("mani_skill", reason="needs the mikasa extra")
    pytest.importorskip("mikasa_robo_suite", reason="needs mikasa-robo-suite")
    import mani_skill.envs  # noqa: F401
    from mani_skill.utils.registration import REGISTERED_ENVS

    import mikasa_robo_suite.vla.memory_envs  # noqa: F401

    return {i: (spec.max_episode_steps, list(spec.asset_download_ids or ()), spec.cls)
            for i, spec in REGISTERED_ENVS.items() if i.endswith("-VLA-v0") and spec.cls.__module__.startswith("mikasa")}


def _canonical_wrappers() -> dict[str, bool]:
    """{suite id: freezes the cue phase} from the suite's canonical VLA wrapper table, read from its source
    (``apply_wrappers`` imports tensorboard through the suite's baselines, so it is parsed, not imported)."""
    import ast
    import importlib.util
    from pathlib import Path

    path = Path(importlib.util.find_spec("mikasa_robo_suite").origin).parent / "vla" / "utils" / "apply_wrappers.py"
    table = next(node.value for node in ast.parse(path.read_text()).body
                 if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "VLA_WRAPPER_CONFIGS")
    return {key.value: len(value.args) > 1 for key, value in zip(table.keys, table.values, strict=True)}


def test_the_task_table_matches_the_installed_suite():
    registry = _suite_registry()
    canonical = _canonical_wrappers()
    needs_assets = {i for i, (_, assets, _) in registry.items() if assets}
    assert {i.split("-")[0] for i in needs_assets} == set(NEEDS_ASSETS)
    # every VLA id is either in the table or refused for its assets: none falls through as "unknown"
    assert {task.suite_id for task in MIKASA_TASKS.values()} == set(registry) - needs_assets
    for task in MIKASA_TASKS.values():
        steps, _, cls = registry[task.suite_id]
        assert task.max_episode_steps == steps, task.name
        assert task.freeze_cue_phase == canonical.get(task.suite_id, False), task.name
        if task.name.startswith("TimedTransfer"):  # built in __init__ from the class's delay
            assert f"exactly on step {cls.DELAY_STEPS} of" in task.instruction
        else:
            suite_instruction = getattr(cls, "LANGUAGE_INSTRUCTION", None) or cls.LANGUAGE_INSTRUCTION_TEMPLATE
            assert task.instruction == suite_instruction, task.name
        count = getattr(cls, "COLORS", None) or getattr(cls, "SHAPES", None) or getattr(cls, "NUM_SHAPES", None)
        if task.name.startswith(("Remember", "FindImposter")):
            assert count and task.chance_success_rate == pytest.approx(1 / count), task.name
    for suite_id in needs_assets:
        with pytest.raises(ConfigError, match="YCB"):
            resolve_task(suite_id)


def test_lamp_tasks_are_refused_when_the_installed_suite_lacks_the_lamp_mesh(monkeypatch, tmp_path):
    from memstream.embodied.envs.mikasa import tasks

    monkeypatch.setattr(tasks, "lamp_mesh_path", lambda: tmp_path / "low_poly_light_bulb.glb")
    with pytest.raises(ConfigError, match="low_poly_light_bulb.glb.*does not ship"):
        resolve_task("TimedTransferEasy-VLA-v0")
    assert resolve_task("RememberShape3").suite_id == "RememberShape3-VLA-v0"  # no lamp: unaffected
    (tmp_path / "low_poly_light_bulb.glb").write_bytes(b"mesh")
    assert resolve_task("TimedTransferEasy").max_episode_steps == 200


def test_only_tasks_with_experts_can_be_collected(tmp_path):
    assert MIKASA_TASKS["RememberShape3"].chance_success_rate == pytest.approx(1 / 3)
    assert MIKASA_TASKS["RotateStrictPos"].chance_success_rate is None  # no closed form
    assert not MIKASA_TASKS["RememberColor3-Long"].freeze_cue_phase and MIKASA_TASKS["RememberShape5"].freeze_cue_phase
    with pytest.raises(ConfigError, match="no scripted expert"):
        write_demonstrations(tmp_path / "d", "RememberShape3", 2)
    assert not (tmp_path / "d").exists()


def test_missing_simulator_names_the_extra(monkeypatch):
    sim.load_suite.cache_clear()
    monkeypatch.setitem(sys.modules, "mani_skill", None)
    monkeypatch.setitem(sys.modules, "mani_skill.envs", None)
    try:
        with pytest.raises(MemstreamError, match=r"memstream\[mikasa\].*--no-deps mikasa-robo-suite"):
            sim.load_suite()
    finally:
        sim.load_suite.cache_clear()


def _follow(policy, tcp: np.ndarray, steps: int, lag: float = 0.4) -> np.ndarray:
    """A toy arm: each step the tip moves ``lag`` of the asked delta (the PD arm's behaviour)."""
    for _ in range(steps):
        action = policy(tcp)
        assert action.shape == (7,) and action.dtype == np.float32 and np.abs(action).max() <= 1
        tcp = tcp + lag * action[:3] * experts.STEP_M
    return tcp


def test_remember_color_expert_reaches_the_cube_from_above_and_stops_there():
    cube = np.array([-0.25, 0.28, 0.02])
    start = np.array([-0.06, 0.0, 0.33])
    heights = []

    def policy(tcp):
        heights.append((np.linalg.norm(tcp[:2] - cube[:2]), tcp[2]))
        return experts.remember_color_action(tcp, cube)

    end = _follow(policy, start, 25)
    assert np.linalg.norm(end - cube) < 0.05  # the suite's success radius
    assert np.abs(experts.remember_color_action(end, cube)[:3]).max() < 0.05  # holds still
    # never low while still far: the cone keeps the tip above neighbouring cubes (top face 0.04 m)
    assert all(z > 0.04 + 0.02 for dist, z in heights if dist > 0.05)


def test_intercept_expert_blocks_the_incoming_ball_then_kicks_it_at_the_goal():
    goal = np.array([0.0, 0.1, 0.0])
    hand_y = np.array([0.0, -1.0])
    # the ball rolls in (+y): the hand heads for the ball's path, ahead of it
    act = experts.intercept_action(np.array([-0.06, 0.0, 0.3]), np.array([-0.2, -0.8, 0.02]),
                                   np.array([0.0, 0.5, 0.0]), goal, hand_y, step=2)
    assert act[0] < 0 and act[1] < 0 and act[2] < 0
    # still ball, hand behind it on the goal line with the finger faces along that line: run up toward the goal
    ball = np.array([-0.2, -0.3, 0.02])
    d = (goal[:2] - ball[:2]) / np.linalg.norm(goal[:2] - ball[:2])
    tcp = np.array([*(ball[:2] - d * experts.RUN_UP_M), experts.TIP_Z_M])
    act = experts.intercept_action(tcp, ball, np.zeros(3), goal, d, step=30)
    assert act[:2] @ d > 0.9 * np.linalg.norm(act[:2]) and act[5] == 0
    # the same but the faces are turned 40 degrees off: turn in place first, do not kick
    off = np.array([np.cos(np.arctan2(d[1], d[0]) + 0.7), np.sin(np.arctan2(d[1], d[0]) + 0.7)])
    act = experts.intercept_action(tcp, ball, np.zeros(3), goal, off, step=30)
    assert act[5] == 1.0 and np.abs(act[:3]).max() < 0.05
    # the ball rolls toward the goal with time to get there (0.98 s; at step 20 1.9 s are left): lift away
    assert experts.on_course(ball, np.array([*(0.4 * d), 0.0]), goal, step=20)
    act = experts.intercept_action(tcp, ball, np.array([*(0.4 * d), 0.0]), goal, d, step=20)
    assert act[2] > 0 and np.abs(act[:2]).max() < 1e-6


def test_intercept_expert_catches_the_ball_instead_of_bouncing_it_back():
    goal = np.array([0.0, 0.1, 0.0])
    tcp = np.array([-0.2, -0.35, experts.TIP_Z_M])  # down on the ball's path
    far = experts.intercept_action(tcp, np.array([-0.2, -0.6, 0.02]), np.array([0.0, 0.4, 0.0]), goal,
                                   np.array([0.0, 1.0]), step=12)
    assert abs(far[1]) < 0.05  # waits while the ball is far
    near = experts.intercept_action(tcp, np.array([-0.2, -0.35 - experts.CONTACT_M - 0.02, 0.02]),
                                    np.array([0.0, 0.4, 0.0]), goal, np.array([0.0, 1.0]), step=16)
    assert near[1] > 0.1 and near[5] == 0  # one step from contact: gives way along the ball's motion


def test_intercept_push_runs_along_the_goal_line_from_the_run_up_to_the_ball():
    goal = np.array([0.3, 0.1, 0.0])
    ball = np.array([-0.2, -0.3, 0.02])
    d = (goal[:2] - ball[:2]) / np.linalg.norm(goal[:2] - ball[:2])  # a diagonal: per-axis clipping bent kicks
    normal = np.array([-d[1], d[0]])
    # every point of the run-up, from its start to the contact, pushes along the line at PUSH_SPEED:
    # the push is several steps long, not one kick whose timing a policy must hit
    for behind in (experts.RUN_UP_M, 0.08, 0.05, experts.CONTACT_M):
        tcp = np.array([*(ball[:2] - d * behind), experts.TIP_Z_M])
        act = experts.intercept_action(tcp, ball, np.zeros(3), goal, d, step=30)
        assert act[:2] == pytest.approx(d * experts.PUSH_SPEED, abs=1e-5), behind
    # 1 cm beside the line: still pushing, steered back onto it
    tcp = np.array([*(ball[:2] - d * 0.08 + 0.01 * normal), experts.TIP_Z_M])
    act = experts.intercept_action(tcp, ball, np.zeros(3), goal, d, step=30)
    assert act[:2] @ d > 0.5 and act[:2] @ normal < -0.1 and np.abs(act[:2]).max() <= 1.0
    # 3 cm beside it, or 4 cm short of the run-up point: no push; the way there keeps clear of the ball,
    # so the hand slides there on the table (no lift, pass over and second descent)
    behind = ball[:2] - d * experts.RUN_UP_M
    for offset in (d * -0.08 + 0.03 * normal, d * -(experts.RUN_UP_M + 0.04)):
        tcp = np.array([*(ball[:2] + offset), experts.TIP_Z_M])
        act = experts.intercept_action(tcp, ball, np.zeros(3), goal, d, step=30)
        to_point = behind - tcp[:2]
        assert abs(act[2]) < 1e-6 and act[:2] @ to_point > 0.99 * np.linalg.norm(act[:2]) * np.linalg.norm(to_point)
    # on the goal's side of the ball (where a catch leaves the hand): the straight way crosses the ball, so lift
    tcp = np.array([*(ball[:2] + d * experts.CONTACT_M), experts.TIP_Z_M])
    act = experts.intercept_action(tcp, ball, np.zeros(3), goal, d, step=30)
    assert act[2] > 0 and np.abs(act[:2]).max() < 1e-6


def test_low_path_clear_keeps_the_sliding_hand_off_the_ball():
    ball = np.zeros(2)
    assert experts.low_path_clear(np.array([-0.08, 0.06]), np.array([-0.11, 0.0]), ball)  # beside, to behind
    assert not experts.low_path_clear(np.array([0.04, 0.0]), np.array([-0.11, 0.0]), ball)  # through the ball
    assert not experts.low_path_clear(np.array([0.0, 0.06]), np.array([0.0, -0.06]), ball)  # 0 cm from its centre
    # backing straight away from a ball the fingers touch is clear; sliding past it closer than now is not
    assert experts.low_path_clear(np.array([-experts.CONTACT_M, 0.0]), np.array([-0.11, 0.0]), ball)
    assert not experts.low_path_clear(np.array([-0.05, 0.0]), np.array([0.05, 0.03]), ball)  # 1.4 cm


def test_catch_geometry_measures_the_hand_across_the_path_where_the_ball_reaches_it():
    # the ball rolls along +y at 0.5 m/s (2.5 cm a step) at a hand 3 cm off its line (on the +x side:
    # the right of its direction of travel), low on the table; the step the tip is first less than
    # 4.7 cm ahead of the ball's centre (2.5 cm: step 7) is where it reaches the hand
    steps = 12
    ball_y = -0.4 + 0.025 * np.arange(steps)
    offsets = np.stack([np.full(steps, 0.03), -0.2 - ball_y, np.full(steps, 0.005)], axis=1)
    velocities = np.tile([0.0, 0.5, 0.0], (steps, 1))
    velocities[8:] = [0.2, -0.4, 0.0]  # bounced back off the hand: the step before it counts
    row = catch_geometry(np.concatenate([offsets, velocities], axis=1))
    assert row["catch_step"] == 7 and row["ball_reached_hand"]
    assert row["catch_offset_m"] == pytest.approx(offsets[7].tolist(), abs=1e-4)
    assert row["catch_across_m"] == pytest.approx(-0.03, abs=1e-4) and row["catch_ball_speed_m_s"] == pytest.approx(0.5)
    mirrored = np.concatenate([offsets * [-1, 1, 1], velocities], axis=1)
    assert catch_geometry(mirrored)["catch_across_m"] == pytest.approx(0.03, abs=1e-4)  # the left side: positive
    # a ball rolling along -x: "across" is the y offset, the left of -x being -y
    along_x = np.concatenate([offsets[:, [1, 0, 2]] * [-1, 1, 1], np.tile([-0.5, 0.0, 0.0], (steps, 1))], axis=1)
    assert catch_geometry(along_x)["catch_step"] == 7
    assert catch_geometry(along_x)["catch_across_m"] == pytest.approx(-0.03, abs=1e-4)
    # a ball rolling away from a hand behind it never reaches it, nor does a still one: the closest
    # approach, with no line to be across
    for never in (np.concatenate([offsets * [1, -1, 1], velocities[:1].repeat(steps, 0)], axis=1),
                  np.concatenate([offsets, np.zeros_like(velocities)], axis=1)):
        row = catch_geometry(never)
        assert not row["ball_reached_hand"] and row["catch_across_m"] is None and json.dumps(row)
        assert row["catch_step"] == int(np.linalg.norm(never[:, :3], axis=1).argmin())


def test_on_course_needs_the_path_inside_the_goal_circle_and_the_time_to_get_there():
    goal = np.array([0.0, 0.0, 0.0])
    ball = np.array([0.0, -0.5, 0.02])
    assert experts.on_course(ball, np.array([0.0, 0.4, 0.0]), goal, step=20)
    assert not experts.on_course(ball, np.array([0.0, 0.4, 0.0]), goal, step=55)  # arrives after the limit
    assert not experts.on_course(ball, np.array([0.4 * np.sin(0.3), 0.4 * np.cos(0.3), 0.0]), goal, step=20)  # 15 cm off
    assert not experts.on_course(ball, np.array([0.0, -0.4, 0.0]), goal, step=20)  # rolling away
    assert not experts.on_course(ball, np.array([0.0, 0.05, 0.0]), goal, step=20)  # too slow to count


def test_yaw_error_treats_both_face_directions_alike():
    assert experts._yaw_error(np.array([0.0, 1.0]), np.array([0.0, -1.0])) == pytest.approx(0.0, abs=1e-9)
    assert experts._yaw_error(np.array([1.0, 0.0]), np.array([np.cos(0.3), np.sin(0.3)])) == pytest.approx(0.3)
    assert experts._yaw_error(np.array([-1.0, 0.0]), np.array([np.cos(0.3), np.sin(0.3)])) == pytest.approx(0.3)


def test_proprio_rotations_match_known_quaternions():
    half = np.sqrt(0.5)
    np.testing.assert_allclose(quat_wxyz_to_rpy(np.array([1.0, 0, 0, 0])), [0, 0, 0], atol=1e-7)
    np.testing.assert_allclose(quat_wxyz_to_rpy(np.array([half, 0, 0, half])), [0, 0, np.pi / 2], atol=1e-6)
    np.testing.assert_allclose(_rotate(np.array([half, 0, 0, half]), np.array([1.0, 0, 0])), [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(_rotate(np.array([0.0, 1, 0, 0]), np.array([0, 1.0, 0])), [0, -1, 0], atol=1e-12)


def _episode(length: int, size: int, rng: np.random.Generator, success: bool = True) -> dict:
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    frames = {}
    for k, camera in enumerate(CAMERAS):
        video = np.empty((length, size, size, 3), np.uint8)
        for t in range(length):  # smooth content (codecs keep it), different per frame and camera
            video[t] = np.clip(ramp[None, :, None] * 0.5 + 8 * t + 40 * k + ramp[:, None, None] * 0.3, 0, 255)
        frames[f"observation.images.{camera}"] = video
    return {"frames": frames, "states": rng.normal(size=(length, 7)).astype(np.float32),
            "actions": rng.uniform(-1, 1, size=(length, 7)).astype(np.float32),
            "rewards": (np.arange(length) == length - 1).astype(np.float32), "success": success,
            "seed": int(rng.integers(1000)), "hidden_info": [int(rng.integers(3))], "reveal_frames": 3}


def test_demonstrations_round_trip_episode_by_episode(tmp_path):
    rng = np.random.default_rng(0)
    writer = _DatasetWriter(tmp_path / "d", "RememberColor3", "touch it", 32)
    first = _episode(7, 32, rng)
    writer.add(first)
    partial = read_demonstrations(tmp_path / "d")  # readable while collection goes on
    assert len(partial) == 1 and partial.info["total_frames"] == 7
    second = _episode(5, 32, rng, success=False)
    writer.add(second)
    data = read_demonstrations(tmp_path / "d")
    assert len(data) == 2 and data.tasks == ["touch it"]
    assert data.info["total_frames"] == 12 and data.info["splits"] == {"train": "0:2"}
    assert data.info["total_videos"] == 4 and data.info["codebase_version"] == "v2.1"
    for i, original in enumerate((first, second)):
        episode = data.episode(i)
        np.testing.assert_array_equal(episode["actions"], original["actions"])
        np.testing.assert_array_equal(episode["states"], original["states"])
        assert episode["states"].dtype == np.float32
        np.testing.assert_array_equal(episode["frame_index"], np.arange(len(original["actions"])))
        assert episode["index"][0] == (0 if i == 0 else 7) and (episode["episode_index"] == i).all()
        np.testing.assert_allclose(episode["timestamp"], np.arange(len(original["actions"])) / 20)
        assert episode["next.done"][-1] and not episode["next.done"][:-1].any()
        assert bool(episode["next.success"][-1]) == original["success"]
        for key, video in original["frames"].items():
            decoded = episode[key]
            assert decoded.shape == video.shape and decoded.dtype == np.uint8
            assert np.abs(decoded.astype(int) - video).mean() < 3  # H.264 crf 18: near-lossless
        assert episode["meta"]["hidden_info"] == original["hidden_info"] and episode["meta"]["seed"] == original["seed"]
    lines = (tmp_path / "d" / "meta" / "episodes.jsonl").read_text().splitlines()
    assert [json.loads(line)["length"] for line in lines] == [7, 5]
    assert (tmp_path / "d" / "data" / "chunk-000" / "episode_000001.parquet").exists()
    video = tmp_path / "d" / "videos" / "chunk-000" / "observation.images.hand_camera" / "episode_000001.mp4"
    assert video.exists()
    # every frame is a key frame: no stored frame carries residue of an earlier one (a cue shown, then hidden)
    assert data.info["features"]["observation.images.hand_camera"]["info"]["video.g"] == 1
    import av

    with av.open(str(video)) as container:
        assert [frame.key_frame for frame in container.decode(video=0)] == [True] * 5


def test_a_collector_killed_mid_record_leaves_the_episodes_before_it_readable(tmp_path):
    rng = np.random.default_rng(1)
    writer = _DatasetWriter(tmp_path / "d", "RememberColor3", "touch it", 32)
    writer.add(_episode(4, 32, rng))
    with open(tmp_path / "d" / "meta" / "episodes.jsonl", "a") as handle:
        handle.write('{"episode_index": 1, "tasks": ["tou')  # the process died while appending the next record
    data = read_demonstrations(tmp_path / "d")
    assert len(data) == 1 and data.records[0]["length"] == 4 and len(data.episode(0)["actions"]) == 4
    path = tmp_path / "d" / "meta" / "episodes.jsonl"
    path.write_text(path.read_text().split("\n")[0])  # a complete last record without its newline still counts
    assert len(read_demonstrations(tmp_path / "d")) == 1
    assert not list((tmp_path / "d" / "meta").glob(".*.tmp"))  # info.json is replaced whole, nothing left beside it


def test_demonstration_seeds_must_avoid_the_evaluation_seeds(tmp_path):
    check_seeds_disjoint(0, 250)
    check_seeds_disjoint(EVAL_SEED + EVAL_EPISODES, 10)
    with pytest.raises(ConfigError, match="overlap the evaluation seeds"):
        check_seeds_disjoint(EVAL_SEED - 5, 10)
    with pytest.raises(ConfigError, match="overlap"):
        write_demonstrations(tmp_path / "x", "RememberColor3", 3, seed=EVAL_SEED)
    (tmp_path / "old" / "meta").mkdir(parents=True)
    (tmp_path / "old" / "meta" / "info.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a dataset"):
        write_demonstrations(tmp_path / "old", "RememberColor3", 3)


def test_reading_a_folder_that_is_no_dataset_says_so(tmp_path):
    with pytest.raises(MemstreamError, match="not a demonstration dataset"):
        read_demonstrations(tmp_path)


def test_the_state_roll_of_a_downward_gripper_does_not_jump_between_plus_and_minus_pi():
    down = np.array([[np.pi - 0.02, 0.01, 0.3], [-np.pi + 0.02, 0.01, 0.3]], dtype=np.float32)
    rolls = continuous_rpy(down)[:, 0]
    assert rolls == pytest.approx([np.pi - 0.02, np.pi + 0.02], abs=1e-5)  # 0.04 apart, not 6.24
    np.testing.assert_allclose(continuous_rpy(continuous_rpy(down)), continuous_rpy(down))  # idempotent
    np.testing.assert_allclose(continuous_rpy(down)[:, 1:], down[:, 1:])
