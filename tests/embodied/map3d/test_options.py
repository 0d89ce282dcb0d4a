"""The map3d stage's options: the memory's own config dataclasses, set from YAML, --set and the
`memstream reconstruct` flags, with bad keys named by their dotted path."""

from __future__ import annotations

import pytest
import yaml

from memstream.embodied.map3d.psm import PSMConfig
from memstream.embodied.map3d.stage import Map3DStage
from memstream.streaming.cli import main
from memstream.streaming.errors import ConfigError

SCENE = "synthetic://dynamic_room?frames=6&size=96x72&seed=1"
KEY = "stages.map3d.options"


def test_reconstruct_flags_set_the_memorys_own_fields(tmp_path) -> None:
    out = tmp_path / "room"
    assert main(["reconstruct", SCENE, "--out", str(out), "--no-progress", "--voxel", "0.05", "--masks", "geometry",
                 "--pose", "given", "--points", "--set", f"{KEY}.psm.block_budget=1000",
                 "--set", f"{KEY}.tdm.window_frames=7"]) == 0
    options = next(s for s in yaml.safe_load((out / "config.yaml").read_text())["stages"] if s["name"] == "map3d")["options"]
    assert options["psm"] == {**vars(PSMConfig(voxel_m=0.05, block_budget=1000))}
    assert (options["tdm"]["window_frames"], options["dynamic_masks"], options["pose"], options["static"]) == (
        7, ["geometry"], "given", "points")


@pytest.mark.parametrize(("options", "message"), [
    ({"psm": {"voxel_m": -1}}, f"invalid config value {KEY}.psm.voxel_m=-1: Input should be greater than 0"),
    ({"psm": {"depth_min_m": 9.0}}, f"invalid config {KEY}.psm: need 0 < depth_min_m < depth_max_m"),
    ({"tdm": {"max_age_s": float("nan")}}, f"invalid config value {KEY}.tdm.max_age_s=nan: Input should be a finite number"),
    ({"registration": {"method": "icp"}}, f"invalid config value {KEY}.registration.method='icp': Input should be"),
    ({"dynamic_masks": ["magic"]}, f"invalid config value {KEY}.dynamic_masks.0='magic': Input should be 'tracking'"),
    ({"pose": "guess"}, f"invalid config value {KEY}.pose='guess': Input should be 'given', 'estimated' or 'auto'"),
    ({"fov_deg": 60.0, "fx_px": 500.0}, f"invalid config {KEY}: fov_deg and fx_px both give the focal length"),
    ({"fuse_every": 0}, f"invalid config value {KEY}.fuse_every=0: Input should be greater than or equal to 1"),
    # the flat keys of the old layout point to where they went
    ({"block_resolution": 16}, f"unknown config key {KEY}.block_resolution. Did you mean psm.block_resolution?"),
    ({"tdm_window_frames": 30}, f"unknown config key {KEY}.tdm_window_frames. Did you mean tdm.window_frames?"),
])
def test_a_bad_option_is_one_line_naming_its_dotted_key(options: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Map3DStage("map3d", options)
    assert message in info.value.one_line()


def test_a_bad_flag_value_is_one_error_line_before_anything_runs(tmp_path, capsys) -> None:
    assert main(["reconstruct", SCENE, "--out", str(tmp_path / "out"), "--no-progress", "--voxel", "-0.1"]) == 2
    err = capsys.readouterr().err
    assert f"error: invalid config value {KEY}.psm.voxel_m=-0.1: Input should be greater than 0" in err
    assert "Traceback" not in err and not (tmp_path / "out" / "static.ply").exists()


def test_fuse_every_fuses_every_nth_frame_and_passes_the_others_through(tmp_path) -> None:
    out = tmp_path / "room"
    assert main(["reconstruct", SCENE.replace("frames=6", "frames=12"), "--out", str(out), "--no-progress",
                 "--pose", "given", "--points", "--set", f"{KEY}.fuse_every=2"]) == 0
    # frames 0, 2, ..., 10 of 12 are fused: six poses written, the map built from six views
    assert len((out / "trajectory.txt").read_text().splitlines()) == 6
    summary = yaml.safe_load((out / "summary.json").read_text())["stages"]["map3d"]["outputs"]
    assert summary["frames"] == 12 and summary["memory"]["static"]["frames_fused"] == 6
