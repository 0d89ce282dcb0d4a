"""The ``navqa`` synthetic preset: named movers scripted on an absolute clock (so a minute and an hour
move alike), furniture that never moves, a camera that glances aside; its script is the exact ground
truth of ``benchmarks/bench_scene_qa.py``."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.streaming.synthetic import Scene, build_scene
from memstream.streaming.synthetic.navqa import MOVERS, REST_S, SPEED_M_S, STEP_M, motion_intervals


@pytest.mark.parametrize(("frames", "fps"), [(240, 4.0), (14_400, 4.0), (3_000, 30.0)])
def test_movers_move_alike_however_long_the_stream(frames, fps):
    spec = build_scene("navqa", frames=frames, size=(64, 48), fps=fps)
    assert [o.name for o in spec.objects] == [*MOVERS, "table", "shelf"]
    end_s = (frames - 1) / fps
    for obj in spec.objects:
        motions = motion_intervals(obj)
        if obj.role == "furniture":
            assert motions == [] and obj.position.is_constant
            continue
        assert motions and motions[0][0] >= REST_S[0]
        for (start, end), following in zip(motions, [*motions[1:], None], strict=True):
            step = np.linalg.norm(obj.position.at(end) - obj.position.at(start))
            assert STEP_M[0] - 1e-9 <= step <= STEP_M[1] + 1e-9
            assert SPEED_M_S[0] - 1e-9 <= step / (end - start) <= SPEED_M_S[1] + 1e-9
            if following is not None:  # rests between motions, where it stays put
                assert REST_S[0] <= following[0] - end <= REST_S[1]
                middle = (end + following[0]) / 2
                assert np.allclose(obj.position.at(middle), obj.position.at(end))
        assert obj.position.times_s[-1] >= end_s  # the script covers the whole stream


def test_the_camera_glances_aside_within_the_first_minute_and_objects_come_back():
    scene = Scene(build_scene("navqa", frames=240, size=(64, 48), fps=4.0))
    fractions = np.array([scene.frame(i).gt.visible_fraction for i in range(0, 240, 2)])
    assert (fractions[0] > 0.9).all()  # everything in view at the start
    out_of_view = (fractions == 0).any(axis=1)
    assert out_of_view.any() and not out_of_view[-1]  # some leave during a glance, and are back by the end
