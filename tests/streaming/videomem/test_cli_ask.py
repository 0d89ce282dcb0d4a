"""`memstream ask` (one question, --at, --interactive, --json) and the `video_memory` stage of
`memstream run`, end to end on a tiny random-weight LLaVA-OneVision saved like a checkpoint."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from memstream.streaming.cli import main

SCENE = "synthetic://demo?frames=30&size=96x64"  # 30 frames at 30 fps: 1 s of stream


def _answers(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_ask_answers_on_everything_seen(tiny_llava_dir, capsys) -> None:
    code = main(["ask", SCENE, "What moved?", "--model", str(tiny_llava_dir), "--sample-fps", "10",
                 "--topk", "3", "--window-frames", "4", "--max-new-tokens", "3", "--json", "--device", "cpu"])
    assert code == 0
    (answer,) = _answers(capsys.readouterr().out)
    assert answer["question"] == "What moved?"
    assert answer["frames_seen"] == 28  # frames 0, 3, ..., 27 were kept at 10 fps
    assert answer["covered_until_s"] == pytest.approx(0.9)
    assert len(answer["retrieved_frames"]) >= 3 and answer["retrieval"] == "internal"


def test_ask_at_a_time_sees_only_the_stream_up_to_it(tiny_llava_dir, capsys) -> None:
    assert main(["ask", SCENE, "What moved?", "--at", "0.5", "--model", str(tiny_llava_dir), "--sample-fps", "10",
                 "--max-new-tokens", "2", "--json", "--device", "cpu"]) == 0
    (answer,) = _answers(capsys.readouterr().out)
    assert answer["covered_until_s"] <= 0.5 and max(answer["retrieved_frames"]) <= 15


def test_ask_streams_text_and_says_what_it_covers(tiny_llava_dir, capsys) -> None:
    assert main(["ask", SCENE, "What moved?", "--model", str(tiny_llava_dir), "--max-new-tokens", "2", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "[as of 0.0 s, 1 frames; internal retrieval of frames 0" in err


def test_interactive_ask_answers_each_line_and_survives_a_bad_one(tiny_llava_dir, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("What moved?\n\n" + "why " * 600 + "\nWhere is it?\n"))
    assert main(["ask", SCENE, "--interactive", "--model", str(tiny_llava_dir), "--sample-fps", "10",
                 "--max-new-tokens", "2", "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert [a["question"] for a in _answers(captured.out)] == ["What moved?", "Where is it?"]
    assert "error: the question is 2" in captured.err  # the over-long one, reported, session goes on


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", SCENE, "What?"], "error: no --model given"),
        (["ask", SCENE, "  ", "--model", "tiny-random"], "error: the question is empty"),
        (["ask", SCENE, "--model", "tiny-random"], "error: give either a question or --interactive"),
        (["ask", "/nowhere/video.mp4", "What?", "--model", "tiny-random"], "error: "),
        (["ask", SCENE, "What?", "--model", "/nowhere/model"], "error: no such model folder: /nowhere/model. Give an existing folder"),
        (["ask", SCENE, "What?", "--model", "no-such-org/no-such-model"], "error: cannot load model 'no-such-org/no-such-model'"),
        (["ask", SCENE, "What?", "--model", "tiny-random", "--retrieval", "external", "--embedder", "./no/such/siglip"],
         "error: no such embedder folder: ./no/such/siglip. Give an existing CLIP / SigLIP folder"),
        (["ask", SCENE, "What?", "--model", "tiny-random", "--retrieval", "nearest"],
         "error: invalid config value rekv.retrieval='nearest': unknown retrieval policy 'nearest'; registered: internal"),
        (["ask", SCENE, "What?", "--model", "tiny-random", "--memory", "vstream"],
         "error: invalid config value memory='vstream': unknown video memory 'vstream'; registered: rekv, flash_vstream"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(argv, message, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_store_of_another_model_is_refused_and_kept(tiny_llava_dir, tmp_path, capsys) -> None:
    from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

    store = tmp_path / "store"
    args = ["--store", str(store), "--sample-fps", "10", "--max-new-tokens", "1", "--json", "--device", "cpu"]
    assert main(["ask", SCENE, "What?", "--model", str(tiny_llava_dir), *args]) == 0
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    other = build_tiny_llava_onevision(tmp_path / "other", seed=5)
    assert main(["ask", SCENE, "What?", "--model", str(other), *args]) == 2
    assert "was written by model" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before  # nothing stored is lost


def test_a_store_directory_that_is_a_file_is_refused(tiny_llava_dir, tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["ask", SCENE, "What?", "--model", str(tiny_llava_dir), "--store", str(blocker), "--device", "cpu"]) == 2
    assert str(blocker) in capsys.readouterr().err


def test_run_stage_answers_scheduled_questions_into_answers_jsonl(tiny_llava_dir, tmp_path) -> None:
    config = {
        "stages": [
            {
                "name": "video_memory",
                "options": {
                    "model": str(tiny_llava_dir),
                    "device": "cpu",
                    "sample_fps": 10,
                    "rekv": {"window_frames": 4, "topk": 3},
                    "generation": {"max_new_tokens": 2},
                    "questions": [{"at_s": 0.45, "text": "What moved first?"}, {"at_s": 99, "text": "And at the end?"}],
                },
            }
        ]
    }
    path = tmp_path / "videoqa.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["run", SCENE, "--config", str(path), "--out", str(out), "--no-progress"]) == 0
    answers = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert [a["question"] for a in answers] == ["What moved first?", "And at the end?"]
    assert answers[0]["covered_until_s"] == pytest.approx(0.4)  # asked at 0.467 s; the last kept frame is at 0.4 s
    assert answers[1]["frames_seen"] == 28  # asked at close, after the last kept frame
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["video_memory"]["outputs"]["answers"] == 2


def test_ask_with_the_flash_vstream_memory(tiny_llava_dir, capsys) -> None:
    assert main(["ask", SCENE, "What moved?", "--memory", "flash_vstream", "--model", str(tiny_llava_dir),
                 "--sample-fps", "10", "--max-new-tokens", "2", "--json", "--device", "cpu"]) == 0
    (answer,) = _answers(capsys.readouterr().out)
    assert answer["retrieval"] == "flash_vstream" and answer["frames_seen"] == 28


def test_the_videoqa_preset_runs_with_a_model_given_on_the_command_line(tiny_llava_dir, tmp_path) -> None:
    stage = "stages.video_memory.options"
    out = tmp_path / "run"
    code = main(["run", SCENE, "--config", "videoqa", "--out", str(out), "--no-progress",
                 "--set", f"{stage}.model={tiny_llava_dir}", "--set", f"{stage}.device=cpu",
                 "--set", f'{stage}.questions=[{{"at_s": 0.5, "text": "What moved?"}}]',
                 "--set", f"{stage}.generation.max_new_tokens=2"])
    assert code == 0
    (answer,) = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    assert answer["question"] == "What moved?" and answer["frames_seen"] == 1  # 1 fps: frame 0 only by 0.5 s


def test_a_qwen_model_is_told_the_rate_frames_are_sampled_at(tiny_qwen_dir) -> None:
    from memstream.streaming.videomem.options import VideoMemoryOptions
    from memstream.streaming.videomem.factory import load_model

    llm = load_model(VideoMemoryOptions(model=str(tiny_qwen_dir), device="cpu", sample_fps=0.5))
    assert llm.frames_per_second == 0.5 and float(llm.temporal_step) == 2 * 2 / 0.5  # tokens/s * s per block


def test_the_stage_samples_frames_by_the_sources_target_fps_rule() -> None:
    """One rule for ``sample_fps`` and a source's ``target_fps``: the same frames, the same 0.5 ms
    tolerance for timestamps a container rounded (a frame 0.4 ms before its slot is kept)."""
    from memstream.streaming.sources.protocol import SourceOptions
    from memstream.streaming.sources.schedule import FrameSchedule
    from memstream.streaming.videomem.stage import frame_schedule

    times = [round(i / 30, 3) for i in range(60)] + [2.5, 2.6, 2.7, 2.7996, 2.85, 2.9]  # ms-rounded, a gap, one early
    stage, source = frame_schedule(10.0), FrameSchedule(SourceOptions(target_fps=10.0))
    kept = [t for t in times if stage.keep(t)]
    assert kept == [t for t in times if source.keep(t)]
    assert kept[:4] == [0.0, 0.1, 0.2, 0.3] and kept[-5:] == [2.5, 2.6, 2.7, 2.7996, 2.9]
    everything = frame_schedule(None)
    assert all(everything.keep(t) for t in times)


def test_a_run_without_questions_says_so_instead_of_writing_an_empty_file(tiny_llava_dir, tmp_path, capsys) -> None:
    stage = "stages.video_memory.options"
    out = tmp_path / "run"
    assert main(["run", SCENE, "--config", "videoqa", "--out", str(out), "--no-progress",
                 "--set", f"{stage}.model={tiny_llava_dir}", "--set", f"{stage}.device=cpu"]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if line.startswith("note: video_memory: ")]
    assert len(notes) == 1 and "no questions to answer, so no answers.jsonl is written" in notes[0]
    assert "--set 'stages.video_memory.options.questions=[" in notes[0]  # names the fix
    assert not (out / "answers.jsonl").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["notices"] == [notes[0].removeprefix("note: ")]
    assert summary["stages"]["video_memory"]["outputs"]["frames_in_memory"] == 1  # it still watched


def test_ask_at_a_time_past_the_end_says_where_the_stream_ended(tiny_llava_dir, capsys) -> None:
    assert main(["ask", SCENE, "What moved?", "--at", "99", "--model", str(tiny_llava_dir), "--sample-fps", "10",
                 "--max-new-tokens", "2", "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    (answer,) = _answers(captured.out)
    assert answer["asked_at_s"] == 99 and answer["covered_until_s"] == pytest.approx(0.9)
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert notes == ["note: the stream ended at 0.97 s, before --at 99 s; the answer covers it up to 0.90 s "
                     "(the last frame given to the memory)"]


def test_ask_at_a_time_inside_the_stream_adds_no_note(tiny_llava_dir, capsys) -> None:
    assert main(["ask", SCENE, "What moved?", "--at", "0.5", "--model", str(tiny_llava_dir), "--sample-fps", "10",
                 "--max-new-tokens", "1", "--json", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "note:" not in captured.err and _answers(captured.out)[0]["asked_at_s"] == 0.5


def test_ask_reports_its_reading_on_stderr_when_asked(tiny_llava_dir, capsys) -> None:
    import re

    args = ["ask", SCENE, "What moved?", "--model", str(tiny_llava_dir), "--sample-fps", "10", "--max-new-tokens", "1",
            "--json", "--device", "cpu"]
    assert main([*args, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "memstream ask" in err and "30/30" in err and "None" not in err
    assert "10 kept for the memory, stream at 1.0 s" in err
    assert re.search(r"\d+\.\d fps", err)  # the rate to one decimal
    assert main(args) == 0  # stderr is not a terminal here: quiet unless asked
    assert "kept for the memory" not in capsys.readouterr().err
    assert main([*args, "--no-progress"]) == 0
    assert "kept for the memory" not in capsys.readouterr().err


def test_serve_builds_one_model_and_a_memory_per_stream_from_the_flags(tiny_llava_dir, monkeypatch, capsys) -> None:
    import cv2
    import numpy as np
    import uvicorn
    from fastapi.testclient import TestClient

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: served.update(app=app, **kwargs))
    assert main(["serve", "--model", str(tiny_llava_dir), "--memory", "flash_vstream", "--device", "cpu",
                 "--max-new-tokens", "2", "--port", "8123"]) == 0
    assert served["port"] == 8123 and "(flash_vstream) on http://127.0.0.1:8123/v1" in capsys.readouterr().err
    client = TestClient(served["app"], base_url="http://127.0.0.1:8123")  # the Host a client of this server sends
    stream = client.post("/v1/streams").json()["stream_id"]
    image = cv2.imencode(".png", np.zeros((48, 64, 3), np.uint8))[1].tobytes()
    assert client.post(f"/v1/streams/{stream}/frames", params={"timestamp_s": 1.5}, content=image).json() == {"frames_seen": 1}
    body = client.post("/v1/chat/completions", json={"stream_id": stream, "messages": [{"role": "user", "content": "What?"}]}).json()
    assert body["memstream"]["retrieval"] == "flash_vstream" and body["memstream"]["covered_until_s"] == 1.5
    assert body["usage"]["completion_tokens"] <= 2


def test_serve_refuses_a_model_path_that_does_not_exist(capsys) -> None:
    assert main(["serve", "--model", "/nowhere/model"]) == 2
    assert "error: no such model folder: /nowhere/model. " in capsys.readouterr().err
