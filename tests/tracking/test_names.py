"""Named prompts: `--box cup:X,Y,W,H` names an object, and the name travels with its id."""

from __future__ import annotations

import json

import pytest

from memstream.streaming.cli import main
from memstream.streaming.configtypes import parse
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline import RunContext, Upstream
from memstream.streaming.synthetic import Scene, build_scene
from memstream.streaming.types import SourceInfo
from memstream.tracking.names import parse_named_box
from memstream.tracking.options import TrackingOptions
from memstream.tracking.stage import TrackingStage


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("120,80,60,90", (None, [120.0, 80.0, 60.0, 90.0])),
        ("cup:120,80,60,90", ("cup", [120.0, 80.0, 60.0, 90.0])),
        ("red cup: 1, 2, 3, 4", ("red cup", [1.0, 2.0, 3.0, 4.0])),
        ("red_cup-2:1 2 3 4", ("red_cup-2", [1.0, 2.0, 3.0, 4.0])),
    ],
)
def test_a_box_may_carry_a_name(text: str, parsed: tuple) -> None:
    assert parse_named_box(text) == parsed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cup:1,2,3", "is not X,Y,W,H or NAME:X,Y,W,H"),
        ("12:1,2,3,4", r"not only digits \(digits alone are ids\)"),
        ("c/p:1,2,3,4", "must be letters, digits"),
    ],
)
def test_a_bad_box_or_name_is_one_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_named_box(text)


def test_a_name_used_twice_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        [
            "track",
            "synthetic://demo?frames=3&size=64x48",
            "--box",
            "cup:1,1,8,8",
            "--box",
            "cup:20,20,8,8",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 2 and not out.exists()
    assert capsys.readouterr().err.strip() == (
        "error: --box name 'cup' is used twice. Give each object its own name, e.g. cup and cup_2"
    )
    with pytest.raises(ConfigError, match="the name 'cup' is given to objects 1 and 2"):
        parse(
            TrackingOptions,
            {
                "prompts": [
                    {"object_id": 1, "box": [1, 1, 4, 4], "name": "cup"},
                    {"object_id": 2, "box": [9, 9, 4, 4], "name": "cup"},
                ]
            },
            "o",
        )


def test_track_names_the_boxed_objects_in_its_summary(tmp_path) -> None:
    out = tmp_path / "run"
    assert (
        main(
            [
                "track",
                "synthetic://demo?frames=3&size=64x48",
                "--box",
                "cup:10,10,12,12",
                "--box",
                "20,20,8,8",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())["stages"]["tracking"]["outputs"]
    assert summary["objects"] == [1, 2] and summary["names"] == {"1": "cup"}
    scores = json.loads((out / "scores.json").read_text())["frames"]
    assert [(f["objects"]["1"]["name"], "name" in f["objects"]["2"]) for f in scores] == [("cup", False)] * 3


def test_gt_objects_take_the_scenes_names() -> None:
    scene = Scene(build_scene("dynamic_room", frames=2, size=(64, 48)))
    stage = TrackingStage("tracking", {"gt_objects": [1, 2]})
    stage.open(RunContext(SourceInfo(uri="synthetic://dynamic_room"), None))
    output = stage.update(scene.frame(0), Upstream())
    assert (
        output.names == ((1, "walker"), (2, "ball"))
        and output.name_of(2) == "ball"
        and output.name_of(3) is None
    )
    assert scene.frame(0).gt.name_of(3) == "cart"
