"""The scene and bank stages in a run: the scene preset end to end on a CPU, `memstream query` over
its folder, resuming a saved scene memory, and the errors a user can make."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from memstream.embodied.bank.stage import BankStage, perceptual_tokens
from memstream.embodied.scene import ask
from memstream.embodied.scene.stage import SceneStage, load_scene
from memstream.streaming.cli import main
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline import RunContext, Runner, Upstream
from memstream.streaming.sources import open_source
from memstream.streaming.synthetic import build_scene
from memstream.streaming.types import SourceInfo
from tests.embodied.scene.helpers import gt_tracking, rendered

URI = "synthetic://stop_and_go?frames=45&size=96x72"


@pytest.fixture(scope="module")
def scene_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "run"
    assert main(["run", URI, "--config", "scene", "--out", str(out), "--no-progress"]) == 0
    return out


def test_the_scene_preset_runs_all_four_memories_and_joins_them(scene_run: Path) -> None:
    summary = json.loads((scene_run / "summary.json").read_text())
    assert list(summary["stages"]) == ["tracking", "video_memory", "map3d", "bank", "scene"]
    assert summary["stages"]["tracking"]["outputs"]["names"] == {"1": "cup", "2": "ball", "3": "box"}
    memory = load_scene(scene_run)
    assert [(o.object_id, o.name, o.space) for o in memory.objects()] == [
        (1, "cup", "world"),
        (2, "ball", "world"),
        (3, "box", "world"),
    ]
    assert memory.frames_seen == 45
    # names reach the 3D memory's output and the bank's log
    named = {json.loads(line).get("name") for line in (scene_run / "objects.jsonl").read_text().splitlines()}
    assert {"cup", "ball", "box"} <= named
    steps = [json.loads(line) for line in (scene_run / "bank.jsonl").read_text().splitlines()]
    assert [s["frame"] for s in steps] == [0, 30]  # sample_fps 1 at 30 fps
    assert all(s["cognitive"] == "video_memory" for s in steps) and steps[1]["entries"] == 1
    assert [o["name"] for o in steps[0]["objects"]] == ["cup", "ball", "box"]
    saved = torch.load(scene_run / "bank_state.pt", weights_only=False)
    assert saved["bank"]["dims"]["cognitive"] == 32  # the tiny Video-LLM's hidden size: its hidden state
    # the classical tracker's masks, placed with the 3D memory's depth and pose, land near the true
    # centres: within 0.15 m for the cup and the ball; the box, 7.5 m away, is 10 px wide at 96x72
    spec = build_scene(URI)
    for object_id, tolerance_m in ((1, 0.15), (2, 0.15), (3, 0.3)):
        sighting = memory.where(object_id)
        truth = spec.objects[object_id - 1].position.at(sighting.seen_at_s)
        assert np.linalg.norm(np.subtract(sighting.position, truth)) < tolerance_m, object_id


def test_query_answers_from_the_run_folder_and_changes_nothing(scene_run: Path, capsys) -> None:
    before = {p: p.stat().st_mtime_ns for p in scene_run.rglob("*")}
    assert main(["query", str(scene_run), "where", "cup", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(ask(load_scene(scene_run), "where cup").as_dict()))
    assert main(["query", str(scene_run), "last moved box"]) == 0
    assert capsys.readouterr().out.startswith("box (#3) has not moved since it was first seen at 0.00 s")
    assert main(["query", str(scene_run), "where mug"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: no object 'mug' in the scene memory. Known objects: cup (#1), ball (#2), box (#3)"
    )
    assert main(["query", str(scene_run), "where cup at 99"]) == 2
    assert "outside the stream" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in scene_run.rglob("*")} == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda d: d / "missing",
            "error: no run folder '{d}/missing'. Give the --out folder of a run with the scene stage",
        ),
        (lambda d: d, "error: '{d}' holds no scene.json. Run with the scene stage"),
    ],
)
def test_query_without_a_scene_memory_says_how_to_get_one(tmp_path: Path, capsys, make, message: str) -> None:
    assert main(["query", str(make(tmp_path)), "where cup"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message.format(d=tmp_path)) and "\n" not in err and "--config scene" in err


def test_query_refuses_a_scene_memory_of_another_version(tmp_path: Path, capsys) -> None:
    (tmp_path / "scene.json").write_text(json.dumps({"format": "memstream.scene/0"}))
    assert main(["query", str(tmp_path), "objects"]) == 2
    assert "format 'memstream.scene/0', not 'memstream.scene/1'" in capsys.readouterr().err


def _stage_over(frames, options: dict, out: Path | None) -> SceneStage:
    stage = SceneStage("scene", options)
    stage.open(RunContext(SourceInfo(uri="synthetic://stop_and_go"), out))
    for frame in frames:
        stage.update(frame, Upstream({"tracking": gt_tracking(frame)}))
    stage.close()
    return stage


def test_a_resumed_scene_memory_continues_exactly(tmp_path: Path) -> None:
    frames = rendered()[:80]
    whole = _stage_over(frames, {}, None).memory
    (tmp_path / "a").mkdir()
    _stage_over(frames[:40], {"save_every_frames": 7}, tmp_path / "a")
    resumed = _stage_over(frames[40:], {"resume_from": str(tmp_path / "a")}, None).memory
    assert resumed.state_dict() == whole.state_dict()


def test_a_resumed_stream_that_restarts_its_clock_is_placed_after_the_saved_one(tmp_path: Path) -> None:
    from dataclasses import replace

    frames = rendered()[:80]
    _stage_over(frames[:40], {}, tmp_path)
    restarted = [
        replace(f, index=f.index - 40, timestamp_s=f.timestamp_s - frames[40].timestamp_s)
        for f in frames[40:]
    ]
    memory = _stage_over(restarted, {"resume_from": str(tmp_path / "scene.json")}, None).memory
    assert (memory.latest_frame, memory.frames_seen) == (79, 80)
    assert memory.latest_s == pytest.approx(frames[79].timestamp_s)
    assert memory.where("cup").seen_frame == 79


def test_the_bank_stage_alone_takes_its_cognitive_token_from_the_frame(tmp_path: Path) -> None:
    stage = BankStage("bank", {"sample_fps": None, "bank": {"capacity": 4}, "grid": 2, "patch_px": 4})
    with open_source("synthetic://demo?frames=12&size=64x48") as source:
        Runner(source, [stage], out_dir=tmp_path).run()
    steps = [json.loads(line) for line in (tmp_path / "bank.jsonl").read_text().splitlines()]
    assert [s["entries"] for s in steps] == [0, 1, 2, 3] + [4] * 8  # bounded by the capacity
    assert {s["cognitive"] for s in steps} == {"frame"} and stage.bank.dims == {
        "perceptual": 48,
        "cognitive": 48,
    }
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, 32:] = 255  # the right half white: two tokens of -0.5, two of +0.5
    tokens = perceptual_tokens(rgb, grid=2, patch_px=4)
    assert tokens.shape == (1, 4, 48) and tokens[0, :, 0].tolist() == [-0.5, 0.5, -0.5, 0.5]


def test_a_running_run_can_be_queried_after_each_save(tmp_path: Path) -> None:
    stage = SceneStage("scene", {"save_every_frames": 5})
    stage.open(RunContext(SourceInfo(uri="synthetic://stop_and_go"), tmp_path))
    for frame in rendered()[:12]:
        stage.update(frame, Upstream({"tracking": gt_tracking(frame)}))
        saved = (tmp_path / "scene.json").exists()
        assert saved == (frame.index >= 4)
        if saved:  # what a reader sees while the run goes on: the last save, whole
            assert load_scene(tmp_path).frames_seen == (frame.index + 1) // 5 * 5


def test_stages_that_miss_what_they_read_say_so(capsys) -> None:
    config = {"stages": [{"name": "map3d", "enabled": True}, {"name": "scene", "enabled": True}]}
    SceneStage("scene", {}).open(RunContext(SourceInfo(uri="x"), None, config))
    assert (
        "note: scene: no tracking stage runs before it, so no object is recorded" in capsys.readouterr().err
    )
    bank = BankStage("bank", {"cognitive": "video_memory"})
    with pytest.raises(
        ConfigError, match="cognitive is video_memory, but no video_memory stage runs before it"
    ):
        bank.open(RunContext(SourceInfo(uri="x"), None, {"stages": [{"name": "bank", "enabled": True}]}))
