"""`memstream track`, `memstream eval-track` and the tracking stage of `memstream run`, end to end
on synthetic scenes with exact ground truth."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from memstream.streaming import open_source
from memstream.streaming.cli import main
from memstream.tracking.eval.datasets import read_boxes
from memstream.tracking.eval.ope import box_iou_lasot

SCENE = "synthetic://distractors?frames=24&seed=1"


def first_boxes(uri: str) -> tuple[np.ndarray, np.ndarray]:
    with open_source(uri) as source:
        frames = list(source)
    return frames[0].gt.boxes_xywh, np.array([f.gt.boxes_xywh[0] for f in frames])


def box_arg(box: np.ndarray) -> str:
    return ",".join(f"{v:g}" for v in box)


def test_track_writes_lasot_boxes_scores_masks_and_video(tmp_path) -> None:
    boxes, gt = first_boxes(SCENE)
    out = tmp_path / "run"
    code = main(["track", SCENE, "--box", box_arg(boxes[0]), "--box", box_arg(boxes[1]), "--out", str(out),
                 "--masks", "--video", "--no-progress"])
    assert code == 0
    target, other = read_boxes(out / "1.txt"), read_boxes(out / "2.txt")
    assert target.shape == other.shape == (24, 4)
    # the weight-free backend follows the target until the look-alikes cross it (frame 12, inside
    # SAMURAI's 15-frame warm-up, where the choice is by affinity alone; the benchmark measures the rest)
    assert np.mean(box_iou_lasot(target[:11], gt[:11])) > 0.8
    scores = json.loads((out / "scores.json").read_text())["frames"]
    assert [f["frame"] for f in scores] == list(range(24))
    assert scores[0]["objects"]["1"]["prompt"] and not scores[5]["objects"]["1"]["prompt"]
    assert set(scores[5]["objects"]["2"]) >= {"affinity", "object_score", "motion_score", "in_memory", "present"}
    assert scores[0]["objects"]["1"]["present"] is True  # the prompt frame
    ids = cv2.imread(str(out / "masks" / "000005.png"), cv2.IMREAD_UNCHANGED)
    assert ids.dtype == np.uint16 and set(np.unique(ids)) <= {0, 1, 2} and (ids == 1).any()
    with open_source(str(out / "tracking.mp4")) as video:
        assert sum(1 for _ in video) == 24
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["tracking"]["outputs"]["objects"] == [1, 2]


def test_default_run_tracks_the_synthetic_target(tmp_path) -> None:
    uri = "synthetic://demo?frames=16"
    _, gt = first_boxes(uri)
    assert main(["run", uri, "--out", str(tmp_path), "--no-progress"]) == 0
    assert np.mean(box_iou_lasot(read_boxes(tmp_path / "1.txt"), gt)) > 0.5


def test_track_on_random_weight_sam2(tmp_path) -> None:
    pytest.importorskip("sam2")
    boxes, _ = first_boxes(SCENE)
    code = main(["track", SCENE, "--box", box_arg(boxes[0]), "--config", "samurai_t", "--max-frames", "3",
                 "--set", "stages.tracking.options.sam2.image_size=128", "--device", "cpu",
                 "--out", str(tmp_path), "--no-progress"])
    assert code == 0 and read_boxes(tmp_path / "1.txt").shape == (3, 4)


def test_eval_track_scores_a_synthetic_dataset(tmp_path) -> None:
    for seed in (0, 1):
        assert main(["synth", f"occlusion?seed={seed}&frames=20&size=160x120", "--out", str(tmp_path / f"s{seed}")]) == 0
    out = tmp_path / "eval"
    assert main(["eval-track", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads((out / "ope.json").read_text())
    assert report["num_sequences"] == 2 and set(report["sequences"]) == {"s0", "s1"}
    assert 0 < report["auc"] <= 100 and read_boxes(out / "s0.txt").shape == (20, 4)
    presence = report["presence"]
    assert presence["num_sequences"] == 2 and 0 < presence["auc"] <= 100
    assert presence["true_positives"] + presence["false_positives"] + presence["false_negatives"] + \
        presence["true_negatives"] == 2 * 19  # every frame after frame 0 of both sequences
    assert set(report["sequences"]["s0"]) >= {"auc", "presence_auc"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--box", "500,500,10,10"], "lies outside the 320x240 frame"),
        (["--box", "5,5,0,10"], "has no area"),
        (["--box", "5,5,10"], "is not X,Y,W,H"),
        ([], "no --box given"),
        (["--box", "5,5,10,10", "--checkpoint", "/no/such.pt"], "no such checkpoint file: /no/such.pt"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, capsys, args, message) -> None:
    code = main(["track", SCENE, *args, "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0]


def test_checkpoint_of_another_size_names_the_right_config(tmp_path, capsys) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from memstream.tracking.sam2_stream.loading import build_model

    small = build_model("configs/sam2.1/sam2.1_hiera_s.yaml", None, image_size=128)
    torch.save({"model": small.state_dict()}, tmp_path / "weights.pt")
    code = main(["track", SCENE, "--box", "5,5,10,10", "--checkpoint", str(tmp_path / "weights.pt"),
                 "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is SAM 2.1 hiera-s but the config is hiera-t" in err and "--config samurai_s" in err


def test_missing_sam2_package_says_how_to_install(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "sam2", None)  # import sam2 -> ImportError
    code = main(["track", SCENE, "--box", "5,5,10,10", "--config", "samurai_t", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "needs the sam2 package" in err and "SAM2_BUILD_CUDA=0" in err


def test_prompts_of_frames_that_never_reached_the_stage_apply_on_the_next_one() -> None:
    from memstream.streaming.pipeline.protocol import RunContext, Upstream
    from memstream.tracking.stage import TrackingStage

    stage = TrackingStage("tracking", {"prompts": [
        {"object_id": 1, "frame": 2, "box": [20, 189, 46, 38]}, {"object_id": 1, "frame": 3, "box": [25, 189, 46, 38]},
        {"object_id": 2, "frame": 9, "box": [200, 150, 40, 40]}]})
    with open_source(SCENE) as source:
        frames = [f for f in source if f.index in (0, 5)]  # frames 1-4 "dropped"
    stage.open(RunContext(source=source.info, out_dir=None))
    assert stage.update(frames[0], Upstream()).states == ()
    out = stage.update(frames[1], Upstream())
    assert [s.object_id for s in out.states] == [1] and out.states[0].is_prompt
    assert out.states[0].box_xywh[0] >= 24  # the newer of the two prompts (frame 3) was used
    stage.close()


def test_points_from_the_command_line(tmp_path, capsys) -> None:
    boxes, _ = first_boxes(SCENE)
    x, y, w, h = boxes[0]
    code = main(["track", SCENE, "--box", box_arg(boxes[0]), "--point", f"2:{boxes[1][0] + 5:g},{boxes[1][1] + 5:g}",
                 "--max-frames", "3", "--out", str(tmp_path), "--no-progress"])
    assert code == 0 and read_boxes(tmp_path / "2.txt").shape == (3, 4)
    config = (tmp_path / "config.yaml").read_text()
    assert "points" in config and "labels" in config
    assert main(["track", SCENE, "--point", "1:5", "--out", str(tmp_path / "bad"), "--no-progress"]) == 2
    assert "is not ID:X,Y[:LABEL]" in capsys.readouterr().err


class FailsOnFrame7:
    """A stage after tracking that raises on frame 7."""

    name = "fails_on_frame_7"

    def __init__(self, name, options) -> None:
        pass

    def open(self, context) -> None:
        pass

    def update(self, frame, upstream) -> None:
        assert "tracking" in upstream
        if frame.index == 7:
            raise RuntimeError("boom")

    def close(self) -> None:
        pass


def test_a_failing_later_stage_leaves_valid_tracking_files(tmp_path) -> None:
    from memstream.streaming.config import load_config
    from memstream.streaming.errors import StageError
    from memstream.streaming.pipeline.run import run_pipeline
    from memstream.streaming.pipeline.stages import STAGES

    if "fails_on_frame_7" not in STAGES:
        STAGES.add("fails_on_frame_7", FailsOnFrame7)
    config = load_config("track", ["stages.tracking.options.gt_objects=[1]", "stages.fails_on_frame_7.enabled=true",
                                   "runner.queue_size=1"])
    with pytest.raises(StageError, match="frame 7"):
        run_pipeline(SCENE, config, tmp_path)
    boxes = read_boxes(tmp_path / "1.txt")
    scores = json.loads((tmp_path / "scores.json").read_text())["frames"]
    assert 7 <= len(boxes) == len(scores) and json.loads((tmp_path / "summary.json").read_text())["stop_reason"] == "error"


def test_the_default_run_draws_the_tracks_beside_the_raw_video(tmp_path, capsys) -> None:
    out = tmp_path / "demo"
    assert main(["run", "synthetic://demo?frames=30", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert f"open {out / 'tracking.mp4'}" in printed.out and "note:" not in printed.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["tracking"]["outputs"]["preview"] == "tracking.mp4" and summary["notices"] == []
    with open_source(str(out / "video.mp4")) as raw, open_source(str(out / "tracking.mp4")) as drawn:
        pairs = list(zip(raw, drawn, strict=True))
    assert len(pairs) == 30
    x, y, w, h = (int(round(v)) for v in read_boxes(out / "1.txt")[2])  # tracked on frames 0-3
    assert w > 10 and h > 10 and x + w < 300 and y + h < 220
    raw, drawn = (f.rgb.astype(np.int16) for f in pairs[2])
    diff = np.abs(drawn - raw).sum(axis=-1)
    edge, far = diff[y - 1:y + 2, x + 2:x + w - 2].mean(), diff[-20:, -20:].mean()
    assert edge > 60 and edge > 5 * far  # the box's top edge is drawn; far from it, only encoding noise


def test_a_run_with_nothing_to_prompt_says_so(tmp_path, capsys) -> None:
    video = tmp_path / "plain.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(4):
        writer.write(np.full((48, 64, 3), 100, np.uint8))
    writer.release()
    out = tmp_path / "video"
    assert main(["run", str(video), "--out", str(out), "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "no ground truth to prompt gt_objects [1] from" in notes[0]
    assert "memstream track SOURCE --box X,Y,W,H" in notes[0] and "stages.tracking.options.prompts" in notes[0]
    assert json.loads((out / "summary.json").read_text())["notices"] == [notes[0].removeprefix("note: ")]
    out = tmp_path / "no_gt_objects"
    code = main(["run", "synthetic://demo?frames=3&size=64x48", "--set", "stages.tracking.options.gt_objects=[]",
                 "--out", str(out), "--no-progress"])
    assert code == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and notes[0].startswith("note: tracking: no prompt and no gt_objects, so nothing is tracked")


@pytest.mark.parametrize(
    "args",
    [
        ["track", SCENE, "--box", "5,5,10,10", "--checkpoint", "/no/such/file.pt"],
        ["eval-track", "DATASET", "--checkpoint", "/no/such/file.pt"],
        ["run", SCENE, "--config", "samurai_t", "--set", "stages.tracking.options.sam2.checkpoint=/no/such/file.pt"],
        ["track", SCENE, "--box", "5,5,10,10", "--checkpoint", "sam2.1_hiera_tiny.pt"],  # relative, no folder part
    ],
)
def test_a_missing_checkpoint_fails_at_once_without_loading_torch(tmp_path, args) -> None:
    args = [str(tmp_path) if a == "DATASET" else a for a in args] + ["--out", str(tmp_path / "out")]
    code = (
        "import sys\n"
        "from memstream.streaming.cli import main\n"
        f"code = main({args!r})\n"
        "print(code, [m for m in ('torch', 'sam2', 'transformers') if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.stdout.strip() == "2 []", (done.stdout, done.stderr)
    checkpoint = args[args.index("--checkpoint") + 1] if "--checkpoint" in args else "/no/such/file.pt"
    assert done.stderr.strip() == (f"error: no such checkpoint file: {checkpoint}. Pass the path of a SAM 2.1 .pt "
                                   "file or a hub id such as facebook/sam2.1-hiera-tiny")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing written


def test_eval_track_reports_every_frame_to_its_progress_bar() -> None:
    from memstream.tracking.classical import ClassicalBackend
    from memstream.tracking.eval.run import track_boxes, track_sequence
    from memstream.tracking.tracker import Tracker

    boxes, _ = first_boxes(SCENE)
    frames = []
    pred = track_boxes(Tracker(ClassicalBackend(), "samurai"), SCENE, boxes[0], max_frames=5,
                       on_frame=lambda: frames.append(len(frames)))
    assert pred.shape == (5, 4) and frames == [0, 1, 2, 3, 4]
    boxes_again, present = track_sequence(Tracker(ClassicalBackend(), "samurai"), SCENE, boxes[0], max_frames=5)
    assert np.array_equal(boxes_again, pred) and present.dtype == bool and present[0]


def test_a_prompt_on_a_frame_the_stream_never_reaches_is_a_note_not_a_silent_empty_track(tmp_path, capsys) -> None:
    boxes, _ = first_boxes(SCENE)
    out = tmp_path / "late"
    assert main(["track", SCENE, "--box", box_arg(boxes[0]), "--frame", "99", "--out", str(out), "--no-progress"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [("note: tracking: prompts for objects [1] on frames [99] were never used: the stream ended after "
                      "24 frames, before them; nothing was tracked for those objects")]
    assert json.loads((out / "summary.json").read_text())["notices"] == [notes[0].removeprefix("note: ")]


def test_track_holds_its_out_and_stops_on_sigterm_like_ctrl_c(tmp_path, capsys) -> None:
    from memstream.streaming.paths import output_lock

    boxes, _ = first_boxes(SCENE)
    locked = tmp_path / "locked"
    locked.mkdir()
    with output_lock(locked):  # a run still writing there
        assert main(["track", SCENE, "--box", box_arg(boxes[0]), "--out", str(locked), "--no-progress"]) == 2
    assert "another memstream command is writing into" in capsys.readouterr().err and not any(locked.iterdir())
    # SIGTERM (a scheduler, `timeout`) as Ctrl-C: the boxes of every processed frame, a playable video
    out = tmp_path / "run"
    command = [sys.executable, "-m", "memstream.streaming.cli", "track", "synthetic://distractors?frames=5000&seed=1",
               "--box", box_arg(boxes[0]), "--video", "--out", str(out), "--no-progress"]
    import signal
    import time

    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as child:
        deadline = time.monotonic() + 60
        while not ((out / "1.txt").is_file() and (out / "1.txt").read_text().count("\n") >= 3) and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        err = child.stderr.read()
        assert child.wait(timeout=60) == 143, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"] == "interrupted" and "Traceback" not in err
    assert len(read_boxes(out / "1.txt")) == summary["frames_processed"]
    capture = cv2.VideoCapture(str(out / "tracking.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == summary["frames_processed"]
