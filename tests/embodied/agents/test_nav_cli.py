"""``memstream nav-eval``: bad names exit 2 with one line naming the fix; a run writes valid JSON."""

from __future__ import annotations

import argparse
import importlib.util
import json

import memstream.embodied.policies.memvla.nav_agent  # noqa: F401 - loads triton before MiniWorld's EGL (see there)
import pytest
from memstream.embodied.agents.cli import add_commands, finite
from memstream.streaming.errors import MemstreamError


def nav_eval(argv: list[str], command: str = "nav-eval") -> int:
    """The command through the same boundary as ``memstream``'s main (error line, exit code)."""
    parser = argparse.ArgumentParser(prog="memstream")
    parser.add_argument("--debug", action="store_true")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([command, *argv])
    try:
        return args.handler(args)
    except MemstreamError as error:
        print(f"error: {error.one_line()}")
        return error.exit_code


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--env", "habitat_sim"], "unknown navigation environment 'habitat_sim'. Choose one of: memory_maze, miniworld"),
        (["--task", "objectnav"], "unknown miniworld task 'objectnav'. Choose one of: cue, findingdory"),
        (["--agents", "memory,psychic"], "unknown agent(s) ['psychic']"),
        (["--episodes", "0"], "--episodes must be >= 1"),
        (["--env", "memory_maze", "--task", "10x10"], "unknown memory_maze task '10x10'. Choose one of: 11x11"),
        (["--env", "memory_maze", "--agents", "wiped"], "Choose among memory, no_memory, oracle"),
        (["--seed", "-1"], "episode seeds must lie in [0, 2**32), got -1 .. 8. Pass a seed of 0 or more"),
        (["--env", "memory_maze", "--seed", str(2**32 - 1), "--episodes", "2"], "episode seeds must lie in [0, 2**32)"),
        (["--template", "picked_frist"], "unknown findingdory template 'picked_frist'. Choose one of: first_and_last"),
        (["--task", "cue", "--template", "picked_first"], "--template applies to --task findingdory, not miniworld cue"),
        (["--image-size", "8"], "findingdory.image_size=8: Input should be greater than or equal to 32. Pass another"),
        (["--max-steps", "0"], "--max-steps must be >= 1, got 0. Pass --max-steps 500"),
        (["--env", "memory_maze", "--max-steps", "-3"], "--max-steps must be >= 1, got -3"),
    ],
)
def test_bad_names_exit_2_with_one_line_before_the_output_folder_is_made(tmp_path, capsys, flags, says):
    out = tmp_path / "run"
    assert nav_eval([*flags, "--out", str(out)]) == 2
    printed = capsys.readouterr().out
    assert says in printed and printed.count("\n") == 1
    assert not out.exists()


def test_json_has_no_nan():
    assert finite({"a": [float("nan"), 1.0, float("inf")], "b": {"c": -float("inf")}}) == {
        "a": [None, 1.0, None],
        "b": {"c": None},
    }


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_a_run_writes_per_episode_rows_and_a_summary_per_group(tmp_path, capsys):
    out = tmp_path / "nav"
    code = nav_eval(
        [
            "--episodes",
            "1",
            "--agents",
            "oracle",
            "--image-size",
            "32",
            "--out",
            str(out),
            "--template",
            "picked_first",
            "--videos",
            "1",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads((out / "results.json").read_text())
    assert result["complete"] is True
    (row,) = result["episodes"]["oracle"]
    assert row["ok"] and row["template"] == "picked_first" and row["group"] == "temporal" and row["seed"] == 0
    # the top-down video: a frame a step; the last shows the mapped floor, the goal and the agent's choice
    import cv2
    import numpy as np

    video = cv2.VideoCapture(str(out / "videos" / "oracle_seed0.mp4"))
    frames = []
    while True:
        ok, bgr = video.read()
        if not ok:
            break
        frames.append(bgr[..., ::-1])
    assert len(frames) == row["steps"]
    last = frames[-1].astype(int)
    green = (last[..., 1] > 150) & (last[..., 0] < 80) & (last[..., 2] < 80)
    red = (last[..., 0] > 180) & (last[..., 1] < 90) & (last[..., 2] < 90)
    grey = (np.abs(last - last[..., :1]).max(-1) < 12) & (last[..., 0] > 60)  # floor and obstacles
    assert green.sum() > 20 and red.sum() > 10 and grey.mean() > 0.05
    assert np.abs(frames[0].astype(int) - last).mean() > 1  # the map grows as the agent goes
    summary = result["summary"]["oracle"]
    assert summary["high_level_success"] == 1.0 and set(summary["groups"]) == {"temporal"}
    assert summary["success"] == row["success"] and 0.0 <= summary["agent_share"] <= 1.0
    table = capsys.readouterr().out
    assert "oracle" in table and "temporal" in table


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_max_steps_bounds_an_episode_and_the_results_name_the_limit(tmp_path):
    out = tmp_path / "cue"
    flags = ["--task", "cue", "--agents", "oracle", "--episodes", "1", "--image-size", "32", "--no-progress"]
    assert nav_eval([*flags, "--max-steps", "5", "--out", str(out)]) == 0  # the oracle needs ~35 steps
    result = json.loads((out / "results.json").read_text())
    (row,) = result["episodes"]["oracle"]
    assert row["ok"] and row["steps"] == 5 and row["success"] == 0.0
    assert result["max_steps"] == 5 and result["options"]["max_steps"] == 5  # the cue maze's own field


def test_a_missing_simulator_exits_2_naming_the_install(tmp_path, capsys, monkeypatch):
    from memstream.embodied.envs import miniworld_env

    monkeypatch.setitem(__import__("sys").modules, "miniworld.miniworld", None)  # as if not installed
    miniworld_env._house_world_class.cache_clear()
    try:
        assert nav_eval(["--episodes", "1", "--out", str(tmp_path / "run")]) == 2
    finally:
        miniworld_env._house_world_class.cache_clear()
    printed = capsys.readouterr().out
    assert "MiniWorld is not installed" in printed and "pip install 'memstream[sim]'" in printed
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--variant", "lstm"], "unknown policy variant 'lstm'"),
        (["--task", "findingdory"], "task 'findingdory' has no scripted expert to imitate"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--seed", "-2"], "episode seeds must lie in [0, 2**32)"),
    ],
)
def test_nav_train_bad_input_exits_2_before_the_output_folder_is_made(tmp_path, capsys, flags, says):
    out = tmp_path / "policy"
    assert nav_eval([*flags, "--out", str(out)], command="nav-train") == 2
    printed = capsys.readouterr().out
    assert says in printed and printed.count("\n") == 1
    assert not out.exists()


def test_nav_eval_of_a_folder_without_a_policy_exits_2(tmp_path, capsys):
    assert nav_eval(["--task", "cue", "--policy", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert "has no config.json and model.safetensors" in capsys.readouterr().out


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_nav_train_then_nav_eval_of_the_policy_on_the_cue_maze(tmp_path, capsys):
    policy = tmp_path / "bank"
    flags = ["--episodes", "2", "--steps", "2", "--batch-episodes", "2", "--no-progress", "--out", str(policy)]
    assert nav_eval(flags, command="nav-train") == 0
    assert (policy / "model.safetensors").exists() and json.loads((policy / "training.json").read_text())["frames"] == 70
    out = tmp_path / "eval"
    assert nav_eval(["--task", "cue", "--policy", str(policy), "--episodes", "1", "--seed", "1000", "--no-progress",
                     "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    (row,) = result["episodes"]["bank"]
    assert row["ok"] and row["steps"] >= 1 and result["options"]["image_size"] == 64  # what the policy was trained on
    assert set(result["summary"]) == {"bank"}


@pytest.mark.skipif(importlib.util.find_spec("miniworld") is None, reason="needs miniworld (memstream[sim])")
def test_nav_commands_refuse_a_folder_another_command_is_writing_into(tmp_path, capsys):
    from memstream.streaming.paths import output_lock

    busy = tmp_path / "busy"
    busy.mkdir()
    evaluate = ["--task", "cue", "--agents", "oracle", "--episodes", "1", "--image-size", "32", "--no-progress"]
    train = ["--episodes", "2", "--steps", "2", "--batch-episodes", "2", "--no-progress"]
    with output_lock(busy):  # what a running nav-eval / nav-train holds
        for argv, command in ((evaluate, "nav-eval"), (train, "nav-train")):
            assert nav_eval([*argv, "--out", str(busy)], command=command) == 2, command
            assert capsys.readouterr().out == (f"error: another memstream command is writing into {busy}. "
                                               "Wait for it to end, or choose another --out\n"), command
            assert not any(busy.iterdir()), command
    assert nav_eval([*evaluate, "--out", str(busy)]) == 0  # released when the refusing command ended
