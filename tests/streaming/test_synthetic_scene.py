"""Scene specs, URIs, the Scene API and the synthetic:// source's options."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.streaming import open_source
from memstream.streaming.errors import ConfigError
from memstream.streaming.synthetic import (
    Appearance,
    CameraSpec,
    Keyframes,
    Lighting,
    ObjectSpec,
    RoomSpec,
    Scene,
    SceneParams,
    SceneSpec,
    build_scene,
    constant,
    parse_uri,
)


def test_keyframes_interpolate_linearly_and_hold_outside() -> None:
    k = Keyframes((0.0, 1.0, 3.0), ((0.0, 10.0), (2.0, 10.0), (2.0, 4.0)))
    assert k.at(-1.0).tolist() == [0.0, 10.0]
    assert k.at(0.5).tolist() == [1.0, 10.0]
    assert k.at(2.0).tolist() == [2.0, 7.0]
    assert k.at(9.0).tolist() == [2.0, 4.0]
    assert not k.is_constant and constant(1.0, 2.0).is_constant
    with pytest.raises(ValueError, match="increase"):
        Keyframes((1.0, 1.0), ((0.0,), (1.0,)))


def test_parse_uri_reads_every_parameter() -> None:
    preset, params = parse_uri("synthetic://occlusion?seed=7&frames=33&size=200x150&fps=12.5")
    assert preset == "occlusion"
    assert params == SceneParams(seed=7, frames=33, width=200, height=150, fps=12.5)
    assert parse_uri("synthetic://demo") == ("demo", SceneParams())


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("synthetic://nope", "unknown synthetic preset 'nope'.*Choose one of: demo, distractors"),
        ("synthetic://demo?colour=red", "unknown parameter 'colour'.*Valid parameters: seed"),
        ("synthetic://demo?frames=ten", "invalid value frames='ten'"),
        ("synthetic://demo?size=320", "invalid value size='320'"),
        ("synthetic://demo?frames=0", "invalid synthetic scene parameter frames=0"),
        ("synthetic://demo?seed=-1", "invalid synthetic scene parameter seed=-1"),
        ("synthetic://demo?size=4x4", "invalid synthetic scene parameter size=4x4"),
        ("synthetic://demo?fps=0", "invalid synthetic scene parameter fps=0.0"),
        ("synthetic://", "not a synthetic scene URI"),
    ],
)
def test_bad_uris_raise_config_errors_that_name_the_problem(uri: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_uri(uri)
    assert info.value.fix


def test_build_scene_accepts_names_uris_and_overrides() -> None:
    a = build_scene("distractors?seed=4&frames=12")
    b = build_scene("synthetic://distractors", seed=4, frames=12)
    c = build_scene("distractors", SceneParams(seed=4, frames=12))
    assert a == b == c and (a.seed, a.num_frames) == (4, 12)
    assert build_scene("demo", size=(64, 48)).camera.width_px == 64
    assert build_scene("demo", seed=1) != build_scene("demo", seed=2)


def test_object_one_is_the_target_of_every_preset() -> None:
    from memstream.streaming.synthetic import SCENE_PRESETS

    for name in SCENE_PRESETS.names():
        spec = build_scene(name, frames=5)
        assert spec.objects[0].object_id == 1 and spec.objects[0].role == "target"


def test_scene_random_access_equals_the_stream() -> None:
    uri = "synthetic://demo?frames=12&size=64x48&seed=3"
    scene = Scene(build_scene(uri), source_id=uri)
    with open_source(uri) as source:
        streamed = list(source)
    assert len(scene) == 12 and len(streamed) == 12
    for index in (11, 0, 5):  # any order
        frame = scene.frame(index)
        assert frame.index == index and frame.source_id == uri
        assert np.array_equal(frame.rgb, streamed[index].rgb)
        assert np.array_equal(frame.depth_m, streamed[index].depth_m)
        assert np.array_equal(frame.gt.instance_mask, streamed[index].gt.instance_mask)
        assert np.array_equal(frame.pose, streamed[index].pose)


def test_ground_truth_fields_are_consistent() -> None:
    scene = Scene(build_scene("occlusion", frames=90, size=(160, 120)))
    for index in range(0, 90, 6):
        rendered = scene.render(index)
        gt = scene.ground_truth(rendered)
        assert gt.object_ids.tolist() == [1, 2, 3]
        assert gt.is_dynamic.tolist() == [True, False, False]
        assert np.array_equal(gt.in_view, rendered.amodal_px > 0)
        expected = np.where(
            rendered.amodal_px > 0, rendered.visible_px / np.maximum(rendered.amodal_px, 1), 0
        )
        assert np.allclose(gt.visible_fraction, expected)
        assert ((gt.visible_fraction >= 0) & (gt.visible_fraction <= 1)).all()
        assert np.array_equal(gt.visible, rendered.visible_px > 0)


def test_source_info_up_front_and_options_honoured() -> None:
    with open_source(
        "synthetic://fast_motion?frames=30&fps=30", stride=2, start_s=0.5, max_frames=5
    ) as source:
        info = source.info
        frames = list(source)
    assert (info.num_frames, info.fps, info.width, info.height, info.is_live) == (5, 15.0, 320, 240, False)
    assert [round(f.timestamp_s * 30) for f in frames] == [15, 17, 19, 21, 23]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    with open_source("synthetic://demo?frames=20", target_fps=10) as source:
        assert source.info.num_frames == 7 and source.info.fps == 10.0
        assert len(list(source)) == 7


def test_resize_renders_exactly_at_the_new_size() -> None:
    with open_source("synthetic://distractors?frames=3&size=160x120", resize=(320, 240)) as source:
        big = list(source)[2]
    small = Scene(build_scene("distractors", frames=3, size=(160, 120))).frame(2)
    native = Scene(build_scene("distractors", frames=3, size=(320, 240))).frame(2)
    assert big.rgb.shape == (240, 320, 3)
    assert np.array_equal(big.rgb, native.rgb) and np.array_equal(
        big.gt.instance_mask, native.gt.instance_mask
    )
    assert np.allclose(big.intrinsics[:2, :2], 2 * small.intrinsics[:2, :2])
    visible = small.gt.visible
    assert np.abs(big.gt.boxes_xywh[visible] - 2 * small.gt.boxes_xywh[visible]).max() <= 2


def test_source_rejects_backend_options_and_iterates_once() -> None:
    with pytest.raises(ConfigError, match="unknown option"):
        open_source("synthetic://demo", backend="pyav")
    source = open_source("synthetic://demo?frames=2")
    assert len(list(source)) == 2
    with pytest.raises(Exception, match="already iterated"):
        list(source)
    source.close()


def _lit_scene(gain: Keyframes) -> SceneSpec:
    box = ObjectSpec(
        1,
        "box",
        "target",
        "box",
        (0.3, 0.3, 0.3),
        Appearance((0.8, 0.2, 0.2), (0.4, 0.1, 0.1)),
        constant(0.0, 1.1, 4.0),
    )
    return SceneSpec(
        "lit", 0, 3, 1.0, CameraSpec(width_px=64, height_px=48), RoomSpec(), Lighting(gain=gain), (box,)
    )


def test_lighting_change_scales_brightness_with_geometry_unchanged() -> None:
    scene = Scene(_lit_scene(Keyframes((0.0, 2.0), ((1.0,), (0.5,)))))
    frames = [scene.frame(i) for i in range(3)]
    for f in frames[1:]:
        assert np.array_equal(f.depth_m, frames[0].depth_m)
        assert np.array_equal(f.gt.instance_mask, frames[0].gt.instance_mask)
    means = [f.rgb.astype(float).mean() for f in frames]
    assert means[1] / means[0] == pytest.approx(0.75, abs=0.01)
    assert means[2] / means[0] == pytest.approx(0.5, abs=0.01)


def test_a_static_object_is_labelled_static_and_a_moving_one_dynamic() -> None:
    spec = _lit_scene(constant(1.0))
    assert not spec.objects[0].is_dynamic
    moving = ObjectSpec(
        2,
        "m",
        "mover",
        "sphere",
        (0.2, 0.2, 0.2),
        spec.objects[0].appearance,
        constant(0.0, 1.0, 5.0),
        scale=Keyframes((0.0, 1.0), ((1.0,), (2.0,))),
    )
    assert moving.is_dynamic
    with pytest.raises(ValueError, match="unique"):
        SceneSpec("x", 0, 1, 1.0, CameraSpec(), RoomSpec(), Lighting(), (spec.objects[0], spec.objects[0]))


def test_camera_outside_the_room_is_refused() -> None:
    spec = _lit_scene(constant(1.0))
    outside = SceneSpec(
        "x", 0, 1, 1.0, CameraSpec(position=constant(0.0, 0.0, -5.0)), RoomSpec(), Lighting(), ()
    )
    with pytest.raises(ValueError, match="outside the room"):
        Scene(outside).frame(0)
    assert Scene(spec).frame(0).gt.visible.tolist() == [True]
