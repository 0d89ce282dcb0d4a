"""`memstream reconstruct` and the map3d stage end to end on synthetic RGB-D scenes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import open3d as o3d

from memstream.streaming.cli import main

SCENE = "synthetic://dynamic_room?frames=12&size=96x72&seed=1"


def test_reconstruct_writes_the_static_map_trajectory_and_dynamic_objects(tmp_path):
    out = tmp_path / "room"
    assert main(["reconstruct", SCENE, "--out", str(out), "--no-progress", "--points"]) == 0
    cloud = o3d.io.read_point_cloud(str(out / "static.ply"))
    assert len(cloud.points) > 1000
    trajectory = np.loadtxt(out / "trajectory.txt")
    assert trajectory.shape == (12, 8)
    np.testing.assert_allclose(np.linalg.norm(trajectory[:, 4:], axis=1), 1.0, atol=1e-6)  # unit quaternions
    objects = [json.loads(line) for line in (out / "objects.jsonl").read_text().splitlines()]
    assert {o["object"] for o in objects} <= {1, 2, 3} and objects  # the scene's movers only
    written = {p.name for p in (out / "dynamic").iterdir()}
    assert written and written <= {"1.ply", "2.ply", "3.ply"}  # each remembered mover's latest points
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["map3d"]["outputs"]["memory"]["static"]["frames_fused"] == 12


def test_tracked_objects_are_kept_out_of_the_map_through_the_tracking_stage(tmp_path):
    out = tmp_path / "tracked"
    code = main(["run", SCENE, "--config", "reconstruct", "--out", str(out), "--no-progress",
                 "--set", "stages.tracking.enabled=true", "--set", "stages.tracking.options.gt_objects=[1]",
                 "--set", 'stages.map3d.options.dynamic_masks=["tracking"]'])
    assert code == 0
    objects = {json.loads(line)["object"] for line in (out / "objects.jsonl").read_text().splitlines()}
    assert objects == {1}  # only the tracked object reaches the dynamics memory


def test_a_source_without_depth_is_one_error_line_and_exit_2(tmp_path, capsys):
    video = tmp_path / "flat.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), 100, np.uint8))
    writer.release()
    assert main(["reconstruct", str(video), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error: frame 0 has no depth" in err and "Traceback" not in err


def test_an_unknown_mask_source_is_refused(tmp_path, capsys):
    assert main(["reconstruct", SCENE, "--out", str(tmp_path), "--masks", "magic"]) == 2
    assert "unknown --masks source" in capsys.readouterr().err


def test_a_missing_depth_model_folder_fails_at_once(tmp_path, capsys):
    code = main(["reconstruct", "walk.mp4", "--depth-model", "/no/such/dir", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: no such model folder: /no/such/dir. A local depth model is a folder with config.json")
    assert not (tmp_path / "out").exists()
