"""Synthetic scenes: the ground truth is exact, and each preset shows what it promises."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from memstream.streaming import ConfigError, open_source
from memstream.streaming.geometry import pose_from_tum
from memstream.streaming.synthetic import SCENE_PRESETS, Renderer, SceneParams, build_scene, write_scene

SMALL = SceneParams(frames=40, width=160, height=120)


def render_all(preset: str, params: SceneParams = SMALL, **kw):
    renderer = Renderer(build_scene(preset, params), keep_object_depth=True, **kw)
    return renderer, [renderer.render(i) for i in range(params.frames)]


def test_same_seed_same_frames_other_seed_differs() -> None:
    a = Renderer(build_scene("distractors", SceneParams(seed=1))).render(7)
    b = Renderer(build_scene("distractors", SceneParams(seed=1))).render(7)
    c = Renderer(build_scene("distractors", SceneParams(seed=2))).render(7)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_m, b.depth_m)
    assert not np.array_equal(a.rgb, c.rgb)


@pytest.mark.parametrize("preset", SCENE_PRESETS.names())
def test_mask_agrees_with_depth_order(preset: str) -> None:
    renderer, frames = render_all(preset)
    for out in frames[::7]:
        stack = np.stack(out.object_depth_m)  # (n, H, W), inf where an object's ray misses
        nearest = stack.min(0)
        hit = np.isfinite(nearest) & (nearest < out.depth_m + 1e-6)
        ids = np.array([o.object_id for o in renderer.scene.objects])
        expected = np.where(hit & (nearest <= out.depth_m), ids[stack.argmin(0)], 0)
        assert np.array_equal(out.instance_mask, expected)
        on_object = out.instance_mask > 0
        assert np.allclose(out.depth_m[on_object], nearest[on_object])
        assert (out.depth_m > 0).all() and np.isfinite(out.depth_m).all()


@pytest.mark.parametrize("preset", SCENE_PRESETS.names())
def test_boxes_are_tight_around_visible_pixels(preset: str) -> None:
    renderer, frames = render_all(preset)
    for out in frames:
        for j, obj in enumerate(renderer.scene.objects):
            ys, xs = np.nonzero(out.instance_mask == obj.object_id)
            assert out.visible_px[j] == len(xs)
            if len(xs) == 0:
                assert (out.boxes_xywh[j] == 0).all()
            else:
                box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                assert out.boxes_xywh[j].tolist() == box
            assert out.visible_px[j] <= out.amodal_px[j]


@pytest.mark.parametrize("preset", ["camera_motion", "dynamic_room", "demo"])
def test_poses_reproject_static_depth(preset: str) -> None:
    renderer, frames = render_all(preset)
    k = renderer.intrinsics
    a, b = frames[0], frames[12]
    assert not np.allclose(a.pose, b.pose)
    v, u = np.mgrid[0 : renderer.height, 0 : renderer.width]
    static = a.instance_mask == 0
    rays = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u, float)], -1)
    points_cam = rays[static] * a.depth_m[static][:, None]
    world = points_cam @ a.pose[:3, :3].T + a.pose[:3, 3]
    in_b = (world - b.pose[:3, 3]) @ b.pose[:3, :3]
    ub = np.round(k[0, 0] * in_b[:, 0] / in_b[:, 2] + k[0, 2]).astype(int)
    vb = np.round(k[1, 1] * in_b[:, 1] / in_b[:, 2] + k[1, 2]).astype(int)
    inside = (in_b[:, 2] > 0) & (ub >= 0) & (ub < renderer.width) & (vb >= 0) & (vb < renderer.height)
    ub, vb, z = ub[inside], vb[inside], in_b[inside, 2]
    still_static = b.instance_mask[vb, ub] == 0
    rel = np.abs(b.depth_m[vb, ub][still_static] - z[still_static]) / z[still_static]
    assert inside.mean() > 0.5
    assert np.median(rel) < 0.01 and (rel < 0.03).mean() > 0.9


def _gt(preset: str, frames: int = 90):
    with open_source(f"synthetic://{preset}?frames={frames}&size=160x120") as source:
        return [f.gt for f in source]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter) if inter else 0.0


def test_distractors_look_alike_and_cross_the_target() -> None:
    scene = build_scene("distractors")
    target, front, behind = scene.objects[:3]
    assert target.appearance == front.appearance == behind.appearance and target.shape == front.shape
    gts = _gt("distractors")
    assert max(iou(g.boxes_xywh[0], g.boxes_xywh[1]) for g in gts if g.visible[:2].all()) > 0.3
    assert any(iou(g.boxes_xywh[0], g.boxes_xywh[2]) > 0 for g in gts if g.visible[[0, 2]].all())
    # the front distractor passes in front: the target is partly hidden at the crossing
    assert min(g.visible_fraction[0] for g in gts) < 0.7


def test_occlusion_has_full_and_partial_occlusion_of_the_target() -> None:
    gts = _gt("occlusion")
    fractions = np.array([g.visible_fraction[0] for g in gts])
    in_view = np.array([g.in_view[0] for g in gts])
    assert ((fractions == 0) & in_view).sum() >= 3
    assert ((fractions > 0) & (fractions < 0.9)).sum() >= 3
    assert fractions[0] > 0.9 and fractions[-1] > 0


def test_fast_motion_leaves_view_returns_and_changes_scale() -> None:
    gts = _gt("fast_motion")
    in_view = np.array([g.in_view[0] for g in gts])
    first_out = int(np.argmin(in_view))
    assert not in_view[first_out] and in_view[first_out:].any()
    areas = np.array([g.boxes_xywh[0, 2] * g.boxes_xywh[0, 3] for g in gts])
    assert areas[areas > 0].max() / areas[areas > 0].min() > 3
    centers = np.array([g.boxes_xywh[0, :2] + g.boxes_xywh[0, 2:] / 2 for g in gts if g.visible[0]])
    assert np.linalg.norm(np.diff(centers, axis=0), axis=1).max() > 4  # px/frame at 160x120


def test_camera_motion_moves_the_camera_and_changes_the_light() -> None:
    with open_source("synthetic://camera_motion?frames=60&size=160x120") as source:
        frames = list(source)
    positions = np.array([f.pose[:3, 3] for f in frames])
    assert np.linalg.norm(positions[-1] - positions[0]) > 1.0
    brightness = [f.rgb[f.gt.instance_mask == 0].mean() for f in frames]
    assert min(brightness) < 0.75 * max(brightness)


def test_dynamic_room_has_static_and_dynamic_objects() -> None:
    gt = _gt("dynamic_room", 10)[0]
    assert gt.is_dynamic.sum() >= 3 and (~gt.is_dynamic).sum() >= 3


def test_source_options_and_uri_errors() -> None:
    with open_source("synthetic://demo?frames=10&size=64x48", stride=3, max_frames=3) as source:
        assert (source.info.num_frames, source.info.width, source.info.height) == (3, 64, 48)
        frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2]
    assert [round(f.timestamp_s * 30) for f in frames] == [0, 3, 6]
    assert frames[0].gt is not None and frames[0].depth_m.shape == (48, 64)
    with pytest.raises(ConfigError, match="unknown synthetic preset 'nope'"):
        open_source("synthetic://nope")
    with pytest.raises(ConfigError, match="unknown parameter 'colour'"):
        open_source("synthetic://demo?colour=red")
    with pytest.raises(ConfigError, match="invalid value frames"):
        open_source("synthetic://demo?frames=ten")


def test_write_scene_round_trips(tmp_path) -> None:
    out = write_scene("occlusion?frames=30&size=96x72", tmp_path / "scene")
    scene = json.loads((out / "scene.json").read_text())
    assert scene["target_id"] == 1 and scene["frames"] == 30
    renderer = Renderer(build_scene("occlusion", SceneParams(frames=30, width=96, height=72)))
    lines = (out / "gt" / "1.txt").read_text().split()
    flags_occ = (out / "gt" / "1_full_occlusion.txt").read_text().strip().split(",")
    flags_out = (out / "gt" / "1_out_of_view.txt").read_text().strip().split(",")
    assert len(lines) == len(flags_occ) == len(flags_out) == 30
    stamps = [
        line.split()[0] for line in (out / "rgb.txt").read_text().splitlines() if not line.startswith("#")
    ]
    poses = [
        line.split()
        for line in (out / "groundtruth.txt").read_text().splitlines()
        if not line.startswith("#")
    ]
    for i in (0, 11, 29):
        ref = renderer.render(i)
        box = [int(v) for v in lines[i].split(",")]
        if ref.visible_px[0]:
            assert box == np.round(ref.boxes_xywh[0]).astype(int).tolist()
        else:
            assert box == [0, 0, 0, 0] and (flags_occ[i], flags_out[i]) != ("0", "0")
        depth = cv2.imread(str(out / "depth" / f"{stamps[i]}.png"), cv2.IMREAD_UNCHANGED)
        assert depth.dtype == np.uint16 and np.abs(depth / 5000.0 - ref.depth_m).max() <= 1 / 10000 + 1e-7
        mask = cv2.imread(str(out / "masks" / f"{i:06d}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(mask.astype(np.int32), ref.instance_mask)
        assert np.allclose(pose_from_tum(np.array(poses[i][1:], float)), ref.pose, atol=1e-8)
    capture = cv2.VideoCapture(str(out / "video.mp4"))
    assert (
        int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 30 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96
    )
    assert not (tmp_path / "scene.partial").exists()
    with pytest.raises(ConfigError, match="already exists"):
        write_scene("occlusion?frames=2", out)
