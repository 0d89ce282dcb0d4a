"""The scene memory against a synthetic scene's exact ground truth: positions, motion intervals,
visibility, neighbours, best frames, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from memstream.embodied.scene import SceneConfig, SceneMemory, SceneQueryError
from memstream.streaming.types import Frame
from tests.embodied.scene.helpers import FPS, gt_tracking, motion_intervals, rendered, run, scene


@pytest.fixture(scope="module")
def memory() -> SceneMemory:
    return run(rendered())


def _truth(object_id: int, t_s: float) -> np.ndarray:
    return next(o for o in scene().spec.objects if o.object_id == object_id).position.at(t_s)


def test_positions_follow_the_true_centres_of_moving_objects() -> None:
    # The memory's latest answer after each frame vs the object's true centre then: the back-projected
    # mask median moved behind the visible side (cup 0.4 m wide, ball 0.6 m across)
    memory = SceneMemory()
    errors: dict[str, list[float]] = {"cup": [], "ball": []}
    for frame in rendered():
        memory.observe_frame(frame, gt_tracking(frame))
        for name, object_id in (("cup", 1), ("ball", 2)):
            sighting = memory.where(name)
            assert sighting.seen_frame == frame.index and sighting.visible and sighting.space == "world"
            errors[name].append(
                float(np.linalg.norm(np.subtract(sighting.position, _truth(object_id, frame.timestamp_s))))
            )
    # min_step_m (0.02) plus the estimate's own error; measured medians 0.03 (cup) and 0.015 (ball)
    assert np.median(errors["cup"]) < 0.05 and np.median(errors["ball"]) < 0.03
    assert max(max(e) for e in errors.values()) < 0.08


def test_last_moved_matches_the_true_motion_intervals(memory: SceneMemory) -> None:
    for name, object_id in (("cup", 1), ("ball", 2)):
        truth = motion_intervals(object_id)
        found = memory.motions(name)[::-1]  # oldest first
        assert len(found) == len(truth), (name, found, truth)
        for motion, (start, end) in zip(found, truth):
            # back-dated to the last frame within motion_rest_m (0.08 m) of the resting point: a few frames
            assert abs(motion.start_s - start) <= 4 / FPS and abs(motion.end_s - end) <= 4 / FPS, (
                name,
                motion,
                start,
                end,
            )
            assert motion.distance_m == pytest.approx(
                np.linalg.norm(_truth(object_id, end) - _truth(object_id, start)), abs=0.1
            )
        assert memory.last_moved(name) == memory.motions(name)[0]
    # the box is hidden for a while by the ball coming to rest in front of it; partial views are not motion
    assert memory.last_moved("box") is None and memory.last_moved("table") is None


def test_where_at_a_past_time_answers_from_that_time(memory: SceneMemory) -> None:
    frames = rendered()
    for frame in frames[10::37]:
        sighting = memory.where("cup", at_s=frame.timestamp_s)
        assert sighting.seen_frame == frame.index and sighting.seen_at_s == pytest.approx(frame.timestamp_s)
        assert np.linalg.norm(np.subtract(sighting.position, _truth(1, frame.timestamp_s))) < 0.08
    # between two frames: the earlier one
    middle = (frames[50].timestamp_s + frames[51].timestamp_s) / 2
    assert memory.where("ball", at_s=middle).seen_frame == 50


def test_visible_at_lists_exactly_the_visible_objects(memory: SceneMemory) -> None:
    for frame in rendered()[::29]:
        expected = [int(o) for o, v in zip(frame.gt.object_ids, frame.gt.visible) if v]
        assert [s.object_id for s in memory.visible_at(frame.timestamp_s)] == expected


def test_objects_near_is_nearest_first_with_exact_distances(memory: SceneMemory) -> None:
    t = rendered()[120].timestamp_s
    ball = memory.where("ball", at_s=t)
    near = memory.objects_near(ball.position, radius_m=1.5, at_s=t)
    assert near[0].object_id == 2 and near[0].distance_m == 0.0
    distances = [s.distance_m for s in near]
    assert distances == sorted(distances) and all(d <= 1.5 for d in distances)
    for s in near:
        assert s.distance_m == pytest.approx(
            np.linalg.norm(np.subtract(memory.where(s.object_id, t).position, ball.position))
        )
    far = {s.object_id for s in memory.visible_at(t)} - {s.object_id for s in near}
    assert all(np.linalg.norm(np.subtract(memory.where(o, t).position, ball.position)) > 1.5 for o in far)


def test_frames_showing_are_the_best_scores_spread_in_time() -> None:
    memory = SceneMemory(SceneConfig(top_frames=3, top_frames_min_gap_s=1.0))
    frames = rendered()[:100]
    for frame in frames:  # the score peaks on frames 10, 50 and 90 (1.33 s apart)
        score = 0.5 + 0.4 * float(frame.index in (10, 50, 90)) + 0.001 * frame.index
        memory.observe_frame(frame, gt_tracking(frame, score=score))
    best = memory.frames_showing("cup", k=3)
    assert [f.frame for f in best] == [90, 50, 10]
    assert [f.score for f in best] == sorted((f.score for f in best), reverse=True)
    assert memory.frames_showing("cup", k=1) == best[:1]


def test_unanswerable_queries_say_why(memory: SceneMemory) -> None:
    with pytest.raises(
        SceneQueryError, match=r"no object 'mug'.*Known objects: cup \(#1\), ball \(#2\), box \(#3\)"
    ):
        memory.where("mug")
    with pytest.raises(
        SceneQueryError, match="time 999 s is outside the stream, which covers 0 to 7.96667 s"
    ):
        memory.where("cup", at_s=999)
    with pytest.raises(SceneQueryError, match="the end is before the start"):
        memory.trajectory("cup", 3, 1)
    assert memory.where("CUP") == memory.where(1) == memory.where("#1")


def test_without_depth_positions_are_image_pixels_with_the_flag() -> None:
    memory = SceneMemory()
    for frame in rendered()[:5]:
        plain = Frame(frame.index, frame.timestamp_s, frame.rgb, source_id="rgb only", gt=frame.gt)
        memory.observe_frame(plain, gt_tracking(frame))
    sighting = memory.where("ball")
    v, u = np.nonzero(rendered()[4].gt.instance_mask == 2)
    assert sighting.space == "image" and sighting.position == (float(np.median(u)), float(np.median(v)))


def test_state_dict_round_trips_through_json_and_resumes_exactly() -> None:
    frames = rendered()
    whole = run(frames)
    first = run(frames[:120])
    saved = json.loads(json.dumps(first.state_dict()))
    resumed = SceneMemory.from_state(saved)
    assert resumed.state_dict() == first.state_dict()
    run(frames[120:], resumed)
    assert resumed.state_dict() == whole.state_dict()
    assert resumed.last_moved("cup") == whole.last_moved("cup")
    with pytest.raises(SceneQueryError, match="format 'memstream.scene/0'.*another memstream version"):
        SceneMemory().load_state_dict({**saved, "format": "memstream.scene/0"})
