"""SAMURAI's candidate selection state machine and memory gate, on exact numbers."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.tracking.selection import MotionAwareSelector, MotionState, SamuraiConfig, Selection


def moving_box(t: int) -> np.ndarray:
    return np.array([10.0 + 3 * t, 40.0, 20.0, 20.0])


def warm_up(selector: MotionAwareSelector, state: MotionState, frames: int) -> None:
    for t in range(frames):
        selector.select(state, moving_box(t)[None], [0.9])


def test_initialise_then_warm_up_counts_stable_frames() -> None:
    selector, state = MotionAwareSelector(), MotionState()
    first = selector.select(state, [moving_box(0), [0, 0, 5, 5]], [0.8, 0.9])
    assert first.index == 1 and first.motion_score is None and state.stable_frames == 1
    state.reset()
    warm_up(selector, state, 10)
    assert state.stable_frames == 10


def test_warm_up_resets_on_a_low_predicted_iou() -> None:
    selector, state = MotionAwareSelector(), MotionState()
    warm_up(selector, state, 5)
    selection = selector.select(state, moving_box(5)[None], [0.3])  # not > 0.3
    assert state.stable_frames == 0 and selection.motion_score is None
    selector.select(state, moving_box(6)[None], [0.9])
    assert state.stable_frames == 1  # re-initialised on the next frame


def test_stable_phase_prefers_the_candidate_where_motion_predicts() -> None:
    selector, state = MotionAwareSelector(), MotionState()
    warm_up(selector, state, 20)
    assert state.stable_frames == 15
    t = 20
    distractor = np.array([150.0, 40.0, 20.0, 20.0])  # a look-alike elsewhere, slightly preferred by the decoder
    selection = selector.select(state, [distractor, moving_box(t)], [0.85, 0.75])
    assert selection.index == 1
    assert selection.motion_score > 0.8 and np.allclose(selection.predicted_box_xywh, moving_box(t), atol=1.0)
    # score = 0.25 * IoU + 0.75 * iou: the distractor gets 0.6375, the true box > 0.25*0.8 + 0.5625
    plain = MotionAwareSelector(SamuraiConfig(kf_score_weight=0.0))
    assert plain.select(MotionState(), [distractor, moving_box(t)], [0.85, 0.75]).index == 0


def test_absent_object_does_not_pull_the_filter() -> None:
    selector, state = MotionAwareSelector(), MotionState()
    warm_up(selector, state, 20)
    for t in range(20, 25):  # occluded: empty mask, decoder still confident (SAMURAI would update)
        selector.select(state, [[0, 0, 0, 0]], [0.9], object_present=False)
    predicted = selector.select(state, moving_box(25)[None], [0.9]).predicted_box_xywh
    assert np.allclose(predicted, moving_box(25), atol=1.5)  # coasted at constant velocity
    assert state.stable_frames == 15


def test_memory_gate_uses_all_three_scores() -> None:
    selector = MotionAwareSelector()
    assert selector.enters_memory(Selection(0, 0.9, None, None), 0.5)
    assert selector.enters_memory(Selection(0, 0.9, 0.3, None), 0.5)
    assert not selector.enters_memory(Selection(0, 0.5, 0.3, None), 0.5)  # affinity not > 0.5
    assert not selector.enters_memory(Selection(0, 0.9, 0.3, None), 0.0)  # object score not > 0
    assert not selector.enters_memory(Selection(0, 0.9, 0.0, None), 0.5)  # motion score not > 0


def test_mismatched_candidates_are_an_error() -> None:
    with pytest.raises(ValueError, match="one predicted IoU per candidate"):
        MotionAwareSelector().select(MotionState(), [[0, 0, 1, 1]], [0.5, 0.6])
