"""Monocular depth through transformers: tiny random-weight Depth Anything (metric and relative)
and GLPN built in code, saved, and loaded through the real loader; metric-only fusion; bad
checkpoints refused in one line; `memstream reconstruct` over RGB-only frames."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import open3d as o3d
import pytest

from memstream.embodied.map3d.depth_model import (
    METRIC_INDOOR,
    DepthModelError,
    RelativeDepthScale,
    load_depth_model,
    pinhole_intrinsics,
)
from memstream.embodied.map3d.memory import DepthInputError
from memstream.embodied.map3d.stage import Map3DStage
from memstream.embodied.map3d.tiny import build_tiny_depth_anything, build_tiny_glpn
from memstream.streaming.cli import main
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.sources import SOURCES, SourceSpec, open_source
from memstream.streaming.sources.synthetic import SyntheticSource
from memstream.streaming.synthetic import Scene, build_scene
from memstream.streaming.types import SourceInfo

SCENE = "synthetic://dynamic_room?frames=12&size=96x72&seed=1"
RGB_ONLY = "rgbonly+" + SCENE  # the same scene as a monocular camera with known poses
MAX_DEPTH_M = 5
SMALL_MAP = ["--set", "stages.map3d.options.psm.block_budget=1000"]  # allocates in ms instead of seconds


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("depth")
    return {
        "metric": build_tiny_depth_anything(root / "metric", metric=True, max_depth_m=MAX_DEPTH_M),
        "relative": build_tiny_depth_anything(root / "relative", metric=False),
        "glpn": build_tiny_glpn(root / "glpn", max_depth_m=MAX_DEPTH_M),
    }


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8) for _ in range(3)]  # odd sizes


class _RgbOnlySource(SyntheticSource):
    """Frames with RGB and pose only: no depth, intrinsics or ground truth."""

    def _frames(self):
        for frame in super()._frames():
            yield replace(frame, depth_m=None, intrinsics=None, gt=None)


@pytest.fixture
def rgb_only(monkeypatch):
    def open_rgb_only(uri, options, **_):
        return _RgbOnlySource(uri, Scene(build_scene(uri.removeprefix("rgbonly+")), source_id=uri), options)

    spec = SourceSpec("rgb_only_test", lambda uri: uri.startswith("rgbonly+"), open_rgb_only)
    monkeypatch.setitem(SOURCES._entries, spec.name, spec)
    return RGB_ONLY


@pytest.mark.parametrize("family", ["metric", "glpn"])
def test_a_metric_model_gives_finite_positive_metres_of_the_frames_size(models, images, family):
    model = load_depth_model(str(models[family]))
    assert (model.kind, model.max_depth_m) == ("metric", MAX_DEPTH_M)
    depth = model.predict(images[0])
    assert depth.shape == (37, 53) and depth.dtype == np.float32
    assert np.isfinite(depth).all() and (depth > 0).all() and (depth <= MAX_DEPTH_M).all()
    assert depth.std() > 1e-3  # varies over the image: the network ran, not a constant fill


def test_a_batch_gives_each_images_own_depth(models, images):
    model = load_depth_model(str(models["metric"]))
    batch = model.predict_batch(images)
    assert batch.shape == (3, 37, 53)
    for image, depth in zip(images, batch):
        np.testing.assert_allclose(depth, model.predict(image), rtol=0, atol=1e-5)
    assert model.predict_batch([]).shape == (0, 0, 0)
    with pytest.raises(ValueError, match="one size"):
        model.predict_batch([images[0], images[0][:30]])


def test_a_relative_model_is_refused_naming_the_metric_checkpoints(models):
    with pytest.raises(DepthModelError) as caught:
        load_depth_model(str(models["relative"]))
    message = str(caught.value)
    assert "relative depth" in message and "cannot be fused as metres" in message
    assert METRIC_INDOOR in message and "--relative-depth-scale" in message
    with pytest.raises(DepthModelError, match="applies only to relative models"):
        load_depth_model(str(models["metric"]), relative_scale=RelativeDepthScale(1.0))


def test_a_relative_model_is_read_with_the_users_scale_and_shift(models, images):
    one = load_depth_model(str(models["relative"]), relative_scale=RelativeDepthScale(0.5, 0.1))
    two = load_depth_model(str(models["relative"]), relative_scale=RelativeDepthScale(2.0, 0.3))
    d1, d2 = one.predict(images[0]), two.predict(images[0])
    both = (d1 > 0) & (d2 > 0)
    assert both.mean() > 0.5
    # 1/depth = scale * prediction + shift: both recover the same prediction.
    np.testing.assert_allclose((1 / d1[both] - 0.1) / 0.5, (1 / d2[both] - 0.3) / 2.0, rtol=1e-4, atol=1e-5)
    far = load_depth_model(str(models["relative"]), relative_scale=RelativeDepthScale(1e-4))
    assert (far.predict(images[0]) == 0).all()  # past 80 m everywhere: no measurement, not 10 km


@pytest.mark.parametrize("other", ["wider", "deeper"])
def test_weights_saved_for_another_config_are_one_clear_error(models, tmp_path, rgb_only, capsys, other):
    mixed = tmp_path / other
    sizes = {"hidden_size": 48} if other == "wider" else {"layers": 3}
    build_tiny_depth_anything(mixed, **sizes)
    shutil.copy(models["metric"] / "model.safetensors", mixed / "model.safetensors")
    with pytest.raises(DepthModelError, match="do not match its config"):
        load_depth_model(str(mixed))
    args = ["reconstruct", rgb_only, "--out", str(tmp_path / "out"), "--no-progress", "--depth-model", str(mixed)]
    assert main(args + SMALL_MAP) == 2
    err = capsys.readouterr().err
    assert "error: the weights of depth model" in err
    assert ("other shapes" if other == "wider" else "not in the checkpoint") in err
    assert "Traceback" not in err and "LOAD REPORT" not in err  # transformers' report is replaced by ours


def test_a_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DepthModelError, match="no depth model directory"):
        load_depth_model(str(tmp_path / "missing"))
    with pytest.raises(DepthModelError, match="HF_HUB_OFFLINE"):  # a hub id, offline in tests
        load_depth_model("memstream-tests/no-such-depth-model")


def test_pinhole_intrinsics_from_a_field_of_view_or_focal_lengths():
    k = pinhole_intrinsics(96, 72, fov_deg=90)
    np.testing.assert_allclose(k, [[48, 0, 47.5], [0, 48, 35.5], [0, 0, 1]], atol=1e-9)
    np.testing.assert_allclose(pinhole_intrinsics(96, 72)[0, 0], 48 / np.tan(np.radians(30)))  # 60 degrees
    assert pinhole_intrinsics(96, 72, fx_px=80, fy_px=82)[[0, 1], [0, 1]].tolist() == [80, 82]
    with pytest.raises(ValueError, match="not both"):
        pinhole_intrinsics(96, 72, fov_deg=60, fx_px=80)


def test_the_stage_predicts_depth_only_for_frames_without_it(models):
    with open_source(SCENE, max_frames=3) as source:
        frames = list(source)
    stage = Map3DStage("map3d", {"depth_model": str(models["metric"]), "psm": {"block_budget": 1000}})
    stage.open(RunContext(SourceInfo(uri=SCENE), None))
    stage.update(frames[0], Upstream())  # RGB-D: the sensor's depth
    stripped = replace(frames[1], depth_m=None, intrinsics=None)
    assert stage.update(stripped, Upstream()).fused
    assert stage.summary()["depth_model"]["frames_predicted"] == 1
    # Sensor depth without intrinsics is not guessed at unless a camera is given.
    with pytest.raises(DepthInputError, match="no intrinsics"):
        stage.update(replace(frames[2], intrinsics=None), Upstream())
    given = Map3DStage("map3d", {"fov_deg": 70.0, "psm": {"block_budget": 1000}})
    given.open(RunContext(SourceInfo(uri=SCENE), None))
    assert given.update(replace(frames[2], intrinsics=None), Upstream()).fused


def test_reconstruct_maps_rgb_only_frames_with_the_depth_model(models, rgb_only, tmp_path):
    out = tmp_path / "mono"
    code = main(["reconstruct", rgb_only, "--out", str(out), "--no-progress", "--points",
                 "--depth-model", str(models["metric"]), "--fov-deg", "70", *SMALL_MAP])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    outputs = summary["stages"]["map3d"]["outputs"]
    assert outputs["memory"]["static"]["frames_fused"] == 12
    assert outputs["depth_model"]["frames_predicted"] == 12 and outputs["depth_model"]["output"] == "metric"
    points = np.asarray(o3d.io.read_point_cloud(str(out / "static.ply")).points)
    assert len(points) > 500
    with open_source(SCENE) as source:
        poses = np.stack([frame.pose for frame in source])
    trajectory = np.loadtxt(out / "trajectory.txt")
    np.testing.assert_allclose(trajectory[:, 1:4], poses[:, :3, 3], atol=1e-5)  # the given poses
    # The map lies at the model's depth (2.3-2.7 m for this tiny model) along the rays of a camera
    # with a 70 degree field of view at the given poses: every point is seen by some frame there.
    k = pinhole_intrinsics(96, 72, fov_deg=70)
    seen = np.zeros(len(points), bool)
    for pose in poses:
        cam = (points - pose[:3, 3]) @ pose[:3, :3]
        u, v = (cam[:, :2] / cam[:, 2:] * k[[0, 1], [0, 1]] + k[[0, 1], [2, 2]]).T
        seen |= (cam[:, 2] > 2.2) & (cam[:, 2] < 2.8) & (u > -0.5) & (u < 95.5) & (v > -0.5) & (v < 71.5)
    assert seen.mean() > 0.99


@pytest.mark.parametrize(("flags", "message"), [
    (["--fov-deg", "60", "--fx", "500"], "fov_deg and fx_px both"),
    (["--relative-depth-scale", "0.5"], "relative_depth_scale is set but no depth_model"),
])
def test_contradictory_depth_and_camera_flags_are_refused(tmp_path, capsys, flags, message):
    assert main(["reconstruct", SCENE, "--out", str(tmp_path), "--no-progress", *flags]) == 2
    assert message in capsys.readouterr().err
