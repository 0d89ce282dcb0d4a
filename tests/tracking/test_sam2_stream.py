"""The streaming SAM 2 backend on a tiny random-weight SAM 2.1 hiera-t (256 px), checked against
sam2's own ``SAM2VideoPredictor`` on the same weights and frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from memstream.streaming import open_source
from memstream.streaming.types import Frame
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

pytest.importorskip("sam2")
from memstream.tracking.sam2_stream.backend import Sam2Backend  # noqa: E402
from memstream.tracking.sam2_stream.loading import build_model  # noqa: E402

IMAGE_SIZE = 256
FRAMES = 18  # >= 16, so sam2's pointer encoding (min(num_frames, 16)) matches the streaming one


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu", image_size=IMAGE_SIZE)


@pytest.fixture(scope="module")
def jpeg_video(tmp_path_factory) -> tuple[str, list[Frame], np.ndarray]:
    """Synthetic frames saved as sam2 reads videos (``<int>.jpg``), and the same frames as decoded."""
    folder = tmp_path_factory.mktemp("jpg")
    frames = []
    with open_source(f"synthetic://distractors?frames={FRAMES}&size=160x120&seed=2") as source:
        for frame in source:
            if frame.index == 0:
                boxes = frame.gt.boxes_xywh.copy()
            Image.fromarray(frame.rgb).save(folder / f"{frame.index:05d}.jpg", quality=95)
            rgb = np.asarray(Image.open(folder / f"{frame.index:05d}.jpg").convert("RGB"))
            frames.append(Frame(index=frame.index, timestamp_s=frame.timestamp_s, rgb=rgb))
    return str(folder), frames, boxes


def run_sam2_predictor(model, folder: str, boxes: np.ndarray):
    state = model.init_state(folder)
    for object_id, box in enumerate(boxes, start=1):
        x, y, w, h = box
        model.add_new_points_or_box(state, 0, object_id, box=[x, y, x + w, y + h])
    masks = {t: m[:, 0] > 0 for t, _, m in model.propagate_in_video(state)}
    return state, masks


@pytest.mark.parametrize("num_objects", [1, 2])
def test_affinity_mode_reproduces_sam2_video_predictor(model, jpeg_video, num_objects) -> None:
    folder, frames, boxes = jpeg_video
    boxes = boxes[:num_objects]
    state, expected = run_sam2_predictor(model, folder, boxes)
    tracker = Tracker(Sam2Backend(model, min_obj_score_logit=0.0), selection="affinity")
    for frame in frames:
        prompts = [Prompt(i, b) for i, b in enumerate(boxes, start=1)] if frame.index == 0 else []
        out = tracker.update(frame, prompts)
        ours = np.stack([s.mask for s in out.states])
        assert (ours != expected[frame.index].numpy()).mean() < 1e-3, frame.index
    # what each object holds in memory is what sam2 computed for those frames (within float noise
    # when two objects share one batched call)
    tol = 1e-5 if num_objects == 1 else 2e-2
    for obj_idx in range(num_objects):
        bank = tracker.backend._memory[obj_idx + 1]
        theirs = state["output_dict_per_obj"][obj_idx]["non_cond_frame_outputs"]
        for entry in bank.accepted:
            torch.testing.assert_close(entry.obj_ptr, theirs[entry.frame_index]["obj_ptr"], atol=tol, rtol=tol)
            # the features are stored in a reduced precision: one rounding step of that dtype is float noise
            # (on one CPU thread 4 of 16,384 bfloat16 values round the other way)
            step = torch.finfo(entry.features.dtype).eps
            torch.testing.assert_close(entry.features.float(), theirs[entry.frame_index]["maskmem_features"].float(),
                                       atol=tol * 10, rtol=max(tol * 10, step))
        cond = state["output_dict_per_obj"][obj_idx]["cond_frame_outputs"][0]
        torch.testing.assert_close(bank.cond[0].obj_ptr, cond["obj_ptr"], atol=1e-5, rtol=1e-5)


def test_memory_stays_bounded_and_the_bank_follows_the_gate(model, jpeg_video) -> None:
    _, frames, boxes = jpeg_video
    backend = Sam2Backend(model, min_obj_score_logit=-1.0)
    tracker = Tracker(backend, selection="samurai")
    sizes, entered = [], []
    for repeat in range(3):  # 54 frames: the stream is longer than every bound
        for frame in frames:
            index = repeat * FRAMES + frame.index
            frame = Frame(index=index, timestamp_s=index / 30, rgb=frame.rgb)
            out = tracker.update(frame, [Prompt(1, boxes[0]), Prompt(2, boxes[1])] if index == 0 else [])
            sizes.append(backend.memory_summary()["bytes"])
            if index > 0 and out.get(1).in_memory:
                entered.append(index)
    held = backend.memory_summary()["objects"][1]["frames"]
    assert held["cond"] == [0] and held["previous"] == [3 * FRAMES - 1]
    assert held["accepted"] == entered[-6:]  # exactly the newest frames the gate let in
    assert held["pointers"] == list(range(3 * FRAMES - 15, 3 * FRAMES))
    assert sizes[-1] == max(sizes[20:])  # flat once the bank is full


def test_objects_added_later_and_batched_by_memory_layout(model, jpeg_video) -> None:
    _, frames, boxes = jpeg_video
    backend = Sam2Backend(model)
    tracker = Tracker(backend, selection="samurai")
    for frame in frames[:10]:
        prompts = [Prompt(1, boxes[0])] if frame.index == 0 else [Prompt(2, boxes[1])] if frame.index == 5 else []
        out = tracker.update(frame, prompts)
    assert [s.object_id for s in out.states] == [1, 2]
    assert out.get(2).mask.shape == (120, 160)
    frames_held = backend.memory_summary()["objects"]
    assert frames_held[2]["frames"]["cond"] == [5] and frames_held[1]["frames"]["cond"] == [0]


def test_points_prompts_and_a_correction_on_a_tracked_object(model, jpeg_video) -> None:
    _, frames, boxes = jpeg_video
    backend = Sam2Backend(model)
    tracker = Tracker(backend, selection="samurai")
    x, y, w, h = boxes[1]
    click = Prompt(2, points_xy=[[x + w / 2, y + h / 2]])  # one click: SAM 2's multimask prompt path
    for frame in frames[:8]:
        prompts = [Prompt(1, boxes[0]), click] if frame.index == 0 else []
        if frame.index == 6:  # a correction box on an object already tracked: memory + prompt
            prompts = [Prompt(1, boxes[0] + np.array([2.0, 0.0, 0.0, 0.0]))]
        out = tracker.update(frame, prompts)
        assert out.get(1).is_prompt == (frame.index in (0, 6))
    held = backend.memory_summary()["objects"]
    assert held[1]["frames"]["cond"] == [0, 6] and held[2]["frames"]["cond"] == [0]
    assert 6 not in held[1]["frames"]["accepted"] and held[1]["frames"]["previous"] == [7]
    assert tracker.memory_summary()["stable_frames"][1] == 1  # the correction restarted the motion model
