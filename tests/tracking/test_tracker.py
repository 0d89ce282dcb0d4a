"""The Tracker's logic over a scripted CandidateBackend: which candidate it commits, which frames it
lets into memory, and its input errors. The backend is a real (if trivial) implementation of the
protocol whose candidates the test dictates, so the numbers are exact."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from memstream.streaming.types import Frame
from memstream.tracking.classical import ClassicalBackend
from memstream.tracking.protocol import CandidateBackend
from memstream.tracking.tracker import Tracker, TrackingInputError
from memstream.tracking.types import Candidates, Decision, Prompt


class ScriptedBackend:
    """Proposes, per frame, the candidates of ``script[frame.index]``; records the decisions."""

    name = "scripted"

    def __init__(self, script: Mapping[int, Candidates]) -> None:
        self.script, self.decisions, self._frame = script, {}, None

    def add_prompts(self, frame, prompts):
        return {p.object_id: (np.ones((8, 8), bool), Candidates(p.box_xywh[None], [1.0], 5.0)) for p in prompts}

    def propose(self, frame: Frame, object_ids: Sequence[int]):
        self._frame = frame.index
        return {i: self.script[frame.index] for i in object_ids}

    def commit(self, decisions: Mapping[int, Decision]):
        self.decisions[self._frame] = dict(decisions)
        return {i: np.zeros((8, 8), bool) for i in decisions}

    def remove_object(self, object_id):
        pass

    def reset(self):
        self.decisions.clear()

    def state_dict(self):
        return {"decisions": len(self.decisions)}

    def load_state_dict(self, state):
        pass

    def memory_summary(self):
        return {"bytes": 0}


def frame(index: int) -> Frame:
    return Frame(index=index, timestamp_s=index / 30, rgb=np.zeros((100, 200, 3), np.uint8))


def box(t: int) -> list[float]:
    return [10.0 + 4 * t, 40.0, 20.0, 20.0]


def run(script: dict[int, Candidates], selection: str) -> ScriptedBackend:
    backend = ScriptedBackend(script)
    assert isinstance(backend, CandidateBackend)
    tracker = Tracker(backend, selection=selection)
    tracker.update(frame(0), [Prompt(1, box(0))])
    for t in range(1, max(script) + 1):
        tracker.update(frame(t), [])
    return backend


def test_samurai_follows_motion_through_a_brighter_distractor_and_keeps_it_out_of_memory() -> None:
    script = {t: Candidates([box(t), [150, 40, 20, 20]], [0.9, 0.6], 3.0) for t in range(1, 25)}
    # frame 25: a look-alike scores higher (0.8 > 0.7) far from where the motion model expects it
    script[25] = Candidates([box(25), [150, 40, 20, 20]], [0.7, 0.8], 3.0)
    samurai, affinity = run(script, "samurai"), run(script, "affinity")
    assert samurai.decisions[25][1].index == 0 and affinity.decisions[25][1].index == 1
    assert all(samurai.decisions[t][1].enters_memory for t in range(1, 26))
    assert all(affinity.decisions[t][1].enters_memory for t in range(1, 26))


def test_gate_keeps_low_affinity_and_absent_frames_out() -> None:
    script = {t: Candidates([box(t)], [0.9], 3.0) for t in range(1, 21)}
    script[18] = Candidates([box(18)], [0.45], 3.0)  # affinity <= 0.5
    script[19] = Candidates([[0, 0, 0, 0]], [0.9], -2.0)  # object absent
    decisions = run(script, "samurai").decisions
    assert [t for t in range(1, 21) if not decisions[t][1].enters_memory] == [18, 19]


def test_input_errors_name_the_object_and_the_fix() -> None:
    tracker = Tracker(ScriptedBackend({}), selection="samurai")
    with pytest.raises(TrackingInputError, match="prompted twice"):
        tracker.update(frame(0), [Prompt(1, box(0)), Prompt(1, box(1))])
    with pytest.raises(TrackingInputError, match="outside the 200x100 frame"):
        tracker.update(frame(0), [Prompt(2, [250, 10, 5, 5])])
    with pytest.raises(TrackingInputError, match="point lies outside"):
        tracker.update(frame(0), [Prompt(3, points_xy=[[5, 120]])])
    with pytest.raises(TrackingInputError, match="unknown object id 7"):
        tracker.remove_object(7)
    with pytest.raises(TrackingInputError, match="unknown selection"):
        Tracker(ScriptedBackend({}), selection="greedy")


def resume_matches_uninterrupted(make_backend, uri: str, split: int, tmp_path) -> None:
    """Track, save the state to disk, restore into a fresh tracker, go on: every later frame must be
    exactly what the uninterrupted tracker produced."""
    import torch

    from memstream.streaming import open_source

    with open_source(uri) as source:
        frames = list(source)
    prompts = [Prompt(1, frames[0].gt.boxes_xywh[0]), Prompt(2, frames[0].gt.boxes_xywh[1])]
    whole = Tracker(make_backend(), selection="samurai")
    expected = [whole.update(f, prompts if f.index == 0 else []) for f in frames]
    first = Tracker(make_backend(), selection="samurai")
    for f in frames[:split]:
        first.update(f, prompts if f.index == 0 else [])
    torch.save(first.state_dict(), tmp_path / "tracker.pt")
    resumed = Tracker(make_backend(), selection="samurai")
    resumed.load_state_dict(torch.load(tmp_path / "tracker.pt", weights_only=True))
    assert resumed.memory_summary() == first.memory_summary()
    for f in frames[split:]:
        got = resumed.update(f, [])
        for mine, theirs in zip(got.states, expected[f.index].states, strict=True):
            assert np.array_equal(mine.box_xywh, theirs.box_xywh) and np.array_equal(mine.mask, theirs.mask)
            assert (mine.affinity, mine.in_memory) == (theirs.affinity, theirs.in_memory)


def test_classical_tracker_resumes_exactly_from_a_saved_state(tmp_path) -> None:
    from memstream.tracking.classical import ClassicalBackend

    resume_matches_uninterrupted(ClassicalBackend, "synthetic://distractors?frames=40&seed=3", 25, tmp_path)


def test_sam2_tracker_resumes_exactly_from_a_saved_state(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from memstream.tracking.sam2_stream.backend import Sam2Backend
    from memstream.tracking.sam2_stream.loading import build_model

    torch.manual_seed(0)
    model = build_model("configs/sam2.1/sam2.1_hiera_t.yaml", None, image_size=128)
    resume_matches_uninterrupted(lambda: Sam2Backend(model), "synthetic://distractors?frames=12&size=160x120", 9, tmp_path)


def test_a_state_from_another_kind_of_tracker_is_refused() -> None:
    state = Tracker(ScriptedBackend({}), selection="affinity").state_dict()
    with pytest.raises(TrackingInputError, match="selection 'affinity', this tracker 'samurai'"):
        Tracker(ScriptedBackend({}), selection="samurai").load_state_dict(state)


def test_a_box_that_keeps_under_three_pixels_inside_the_frame_is_refused() -> None:
    tracker = Tracker(ScriptedBackend({}), selection="samurai")
    # 2 of its 20 columns lie in the 200x100 frame: a sliver, not an object
    with pytest.raises(TrackingInputError, match=r"covers only 2x20 pixels of the 200x100 frame"):
        tracker.update(frame(0), [Prompt(1, [198, 10, 20, 20])])
    with pytest.raises(TrackingInputError, match=r"covers only 2x2 pixels"):
        tracker.update(frame(0), [Prompt(1, [50, 50, 2, 2])])  # e.g. a box scaled down with the frame
    assert tracker.object_ids == []
    tracker.update(frame(0), [Prompt(1, [197, 10, 20, 20])])  # 3 columns inside: accepted
    assert tracker.object_ids == [1]


def test_a_frame_size_change_mid_stream_is_an_error_until_reset() -> None:
    tracker = Tracker(ClassicalBackend(), selection="samurai")
    small = Frame(index=0, timestamp_s=0.0, rgb=np.full((60, 80, 3), 90, np.uint8))
    large = Frame(index=1, timestamp_s=0.1, rgb=np.full((120, 160, 3), 90, np.uint8))
    tracker.update(small, [Prompt(1, [20, 20, 16, 16])])
    with pytest.raises(TrackingInputError, match=r"frame 1 is 160x120 but objects \[1\] were tracked on 80x60"):
        tracker.update(large)
    tracker.reset()
    output = tracker.update(large, [Prompt(1, [40, 40, 32, 32])])
    assert output.get(1).box_xywh.tolist() == [40, 40, 32, 32]
