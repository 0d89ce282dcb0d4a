"""``write_scene``: every file of the on-disk layout, read back and compared with the renderer."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from memstream.streaming.errors import ConfigError
from memstream.streaming.geometry import matrix_from_quaternion, pose_from_tum, quaternion_from_matrix
from memstream.streaming.synthetic import Scene, build_scene, write_scene
from memstream.streaming.synthetic import writer as writer_module

FRAMES = 40


@pytest.fixture(scope="module")
def fast_motion_dir(tmp_path_factory) -> Path:
    return write_scene(f"fast_motion?frames={FRAMES}&size=96x72&seed=2", tmp_path_factory.mktemp("w") / "fm")


def _data_lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if not line.startswith("#")]


def test_layout_is_complete(fast_motion_dir: Path) -> None:
    for name in ("video.mp4", "rgb.txt", "depth.txt", "groundtruth.txt", "scene.json"):
        assert (fast_motion_dir / name).is_file()
    for sub in ("rgb", "depth", "masks"):
        assert len(list((fast_motion_dir / sub).glob("*.png"))) == FRAMES
    assert sorted(p.name for p in (fast_motion_dir / "gt").iterdir()) == [
        "1.txt",
        "1_full_occlusion.txt",
        "1_out_of_view.txt",
        "2.txt",
        "2_full_occlusion.txt",
        "2_out_of_view.txt",
    ]
    assert (fast_motion_dir / "rgb.txt").read_text().startswith("# color images\n")
    assert (fast_motion_dir / "depth.txt").read_text().startswith("# depth maps\n")


def test_lasot_boxes_and_flags_agree_with_the_renderer(fast_motion_dir: Path) -> None:
    scene = Scene(build_scene(f"fast_motion?frames={FRAMES}&size=96x72&seed=2"))
    boxes = [
        [int(v) for v in line.split(",")] for line in (fast_motion_dir / "gt" / "1.txt").read_text().split()
    ]
    occluded = [
        int(v) for v in (fast_motion_dir / "gt" / "1_full_occlusion.txt").read_text().strip().split(",")
    ]
    out_of_view = [
        int(v) for v in (fast_motion_dir / "gt" / "1_out_of_view.txt").read_text().strip().split(",")
    ]
    assert len(boxes) == len(occluded) == len(out_of_view) == FRAMES
    for i in range(FRAMES):
        frame = scene.render(i)
        absent = frame.visible_px[0] == 0
        assert boxes[i] == ([0, 0, 0, 0] if absent else frame.boxes_xywh[0].astype(int).tolist())
        assert out_of_view[i] == int(frame.amodal_px[0] == 0)
        assert occluded[i] == int(frame.amodal_px[0] > 0 and absent)
        assert (occluded[i] or out_of_view[i]) == absent
    assert sum(out_of_view) >= 3  # fast_motion leaves the view ...
    assert out_of_view[-1] == 0  # ... and comes back


def test_depth_masks_and_rgb_round_trip(fast_motion_dir: Path) -> None:
    scene = Scene(build_scene(f"fast_motion?frames={FRAMES}&size=96x72&seed=2"))
    rgb_files = _data_lines(fast_motion_dir / "rgb.txt")
    depth_files = _data_lines(fast_motion_dir / "depth.txt")
    assert (
        [r[0] for r in rgb_files] == [d[0] for d in depth_files] == [f"{i / 30:.6f}" for i in range(FRAMES)]
    )
    for i in (0, 13, FRAMES - 1):
        frame = scene.render(i)
        depth = cv2.imread(str(fast_motion_dir / depth_files[i][1]), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and depth.shape == (72, 96)
        assert np.abs(depth / 5000.0 - frame.depth_m).max() <= 0.5 / 5000 + 1e-6
        mask = cv2.imread(str(fast_motion_dir / "masks" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint16 and np.array_equal(mask, frame.instance_mask)
        rgb = cv2.cvtColor(cv2.imread(str(fast_motion_dir / rgb_files[i][1])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(rgb, frame.rgb)


def test_groundtruth_poses_reproduce_the_camera(tmp_path: Path) -> None:
    out = write_scene("dynamic_room?frames=8&size=64x48", tmp_path / "room")
    scene = Scene(build_scene("dynamic_room?frames=8&size=64x48"))
    lines = _data_lines(out / "groundtruth.txt")
    assert len(lines) == 8 and all(len(line) == 8 for line in lines)
    for i, line in enumerate(lines):
        assert float(line[0]) == pytest.approx(i / 30, abs=1e-6)
        assert np.abs(pose_from_tum(np.array(line[1:], float)) - scene.render(i).pose).max() < 1e-8
    assert not np.allclose(
        pose_from_tum(np.array(lines[0][1:], float)), pose_from_tum(np.array(lines[-1][1:], float))
    )


def test_scene_json_describes_objects_and_camera(fast_motion_dir: Path) -> None:
    meta = json.loads((fast_motion_dir / "scene.json").read_text())
    spec = build_scene(f"fast_motion?frames={FRAMES}&size=96x72&seed=2")
    assert (meta["preset"], meta["seed"], meta["frames"], meta["width"], meta["height"]) == (
        "fast_motion",
        2,
        FRAMES,
        96,
        72,
    )
    assert meta["uri"] == f"synthetic://fast_motion?frames={FRAMES}&size=96x72&seed=2"
    assert meta["target_id"] == 1 and meta["depth_scale"] == 5000.0
    k = Scene(spec).intrinsics
    assert meta["intrinsics"] == {"fx": k[0, 0], "fy": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]}
    assert [(o["id"], o["role"], o["is_dynamic"], o["shape"]) for o in meta["objects"]] == [
        (o.object_id, o.role, o.is_dynamic, o.shape) for o in spec.objects
    ]
    assert meta["camera"]["moves"] is False and meta["lighting_changes"] is False


def test_video_decodes_to_every_frame(fast_motion_dir: Path) -> None:
    capture = cv2.VideoCapture(str(fast_motion_dir / "video.mp4"))
    decoded = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        decoded.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    assert len(decoded) == FRAMES and decoded[0].shape == (72, 96, 3)
    reference = cv2.cvtColor(
        cv2.imread(str(sorted((fast_motion_dir / "rgb").iterdir())[20])), cv2.COLOR_BGR2RGB
    )
    assert np.abs(decoded[20].astype(int) - reference).mean() < 6  # H.264 crf 18 on noisy textures


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "scene"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not empty") as info:
        write_scene("demo?frames=2&size=32x24", out)
    assert "--overwrite" in info.value.fix and (out / "keep.txt").exists()
    write_scene("demo?frames=2&size=32x24", out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "scene.json").exists()
    assert not (tmp_path / "scene.partial").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        write_scene("demo?frames=2", tmp_path / "file")


def test_interrupted_write_leaves_no_complete_looking_folder(tmp_path: Path, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer_module, "_write_lasot", fail)
    with pytest.raises(KeyboardInterrupt):
        write_scene("demo?frames=3&size=32x24", tmp_path / "scene")
    assert not (tmp_path / "scene").exists()
    assert (tmp_path / "scene.partial").is_dir() and not (tmp_path / "scene.partial" / "scene.json").exists()
    monkeypatch.undo()
    out = write_scene("demo?frames=3&size=32x24", tmp_path / "scene")  # a stale .partial is replaced
    assert (out / "scene.json").exists() and not (tmp_path / "scene.partial").exists()


def test_a_hand_built_spec_can_be_written(tmp_path: Path) -> None:
    spec = build_scene("occlusion", frames=3, size=(48, 32))
    out = write_scene(spec, tmp_path / "spec")
    meta = json.loads((out / "scene.json").read_text())
    assert meta["uri"] is None and meta["preset"] == "occlusion" and len(meta["objects"]) == 3


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


@pytest.mark.parametrize("angle", [0.0, 1e-9, 0.3, 2.0, np.pi - 1e-7, np.pi])
def test_quaternion_round_trip_including_half_turns(angle: float) -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        axis = rng.normal(size=3)
        rotation = _rotation(axis, angle)
        q = quaternion_from_matrix(rotation)
        assert q[3] >= 0 and np.linalg.norm(q) == pytest.approx(1.0, abs=1e-12)
        assert np.abs(matrix_from_quaternion(q) - rotation).max() < 1e-9
        assert q[3] == pytest.approx(np.cos(angle / 2), abs=1e-9)
