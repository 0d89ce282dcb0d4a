"""Configs and the memstream command: outputs, exit codes, one-line errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import yaml

from memstream.streaming import ConfigError
from memstream.streaming.cli import main
from memstream.streaming.config import config_dir, load_config, preset_names, resolve_config_path
from memstream.streaming.pipeline.stages import VideoWriterOptions, parse_options

DEMO = "synthetic://demo?frames=8&size=64x48"


def test_default_config_and_presets_resolve_from_the_checkout() -> None:
    assert (config_dir() / "default.yaml").is_file()
    assert {"default", "decode_only"} <= set(preset_names())
    config = load_config()
    assert config.runner.backpressure == "auto" and [s.name for s in config.enabled_stages] == ["tracking", "video_writer"]
    assert load_config("decode_only").stages == []
    assert resolve_config_path("default") == config_dir() / "default.yaml"


def test_overrides_address_sections_and_stages_by_name() -> None:
    config = load_config(None, ["runner.queue_size=16", "stages.video_writer.enabled=false", "source.resize=[32, 24]"])
    assert config.runner.queue_size == 16 and config.source.resize == (32, 24)
    assert [s.name for s in config.enabled_stages] == ["tracking"]
    config = load_config(None, ["stages.tracking.options.selection=affinity"])
    tracking = next(s for s in config.stages if s.name == "tracking")
    assert tracking.options == {"gt_objects": [1], "outputs": {"video": True}, "selection": "affinity"}  # merged into the preset's keys
    config = load_config(None, ["stages.video_writer.options.crf=0"])
    writer = next(s for s in config.stages if s.name == "video_writer")
    assert writer.options == {"crf": 0}  # the preset sets none; the rest are VideoWriterOptions' defaults
    assert parse_options(VideoWriterOptions, "video_writer", writer.options) == VideoWriterOptions(crf=0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("runner:\n  queue_sz: 3\n", "unknown config key runner.queue_sz"),
        ("runner:\n  queue_size: -3\n", "invalid config value runner.queue_size=-3"),
        ("runner:\n  backpressure: sometimes\n", "invalid config value runner.backpressure='sometimes'"),
        ("stages:\n  - name: video_writer\n    enabeld: true\n", "unknown config key stages.video_writer.enabeld"),
        ("runner: {}\nrunner: {}\n", "duplicate key 'runner'"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("runner: [unclosed\n", "not valid YAML"),
    ],
)
def test_config_errors_name_the_key_and_value(tmp_path, text, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(path)


def test_missing_config_lists_presets() -> None:
    with pytest.raises(ConfigError, match="config 'nope' not found.*default"):
        load_config("nope")


def test_run_writes_summary_config_and_video(tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["run", DEMO, "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == 8 and summary["stop_reason"] == "end_of_stream"
    assert summary["source"]["num_frames"] == 8 and summary["stages"]["video_writer"]["frames"] == 8
    assert summary["stages"]["video_writer"]["outputs"]["frames_written"] == 8
    assert yaml.safe_load((out / "config.yaml").read_text())["runner"]["queue_size"] == 8
    capture = cv2.VideoCapture(str(out / "video.mp4"))
    count = 0
    while capture.read()[0]:
        count += 1
    assert count == 8 and int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 64


def test_run_without_stages_and_with_max_frames(tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["run", DEMO, "--config", "decode_only", "--max-frames", "3", "--out", str(out), "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_processed"] == 3 and summary["stages"] == {} and not (out / "video.mp4").exists()


def _bad_video(tmp_path: Path) -> str:
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(1).bytes(3000))
    return str(path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.mp4"], "no such video file: missing.mp4"),
        (["run", "CORRUPT"], "cannot decode"),
        (["run", "gopher://host/x"], "unknown URI scheme 'gopher://'"),
        (["run", "cam:9", "--set", "source.options={reconnect: 0, open_timeout_s: 2}"], "camera 9 did not open"),
        (["run", DEMO, "--set", "runner.queue_sz=2"], "unknown config key runner.queue_sz"),
        (["run", DEMO, "--set", "runner.queue_size=0"], "invalid config value runner.queue_size=0"),
        (["run", DEMO, "--set", "stages.tracker.enabled=true"], "unknown stage 'tracker'"),
        (["run", DEMO, "--set", "stages.video_writer.options.codec=h265"], "unknown video codec 'h265'"),
        (["run", DEMO, "--set", "stages.video_writer.options.quality=3"], "unknown config key stages.video_writer.options.quality. Valid keys here: filename, codec, crf, fps"),
        (["run", "synthetic://nowhere"], "unknown synthetic preset 'nowhere'"),
        (["run", DEMO, "--set", "source.resize=[64, 48"], "override 'source.resize=[64, 48': the value is not valid YAML"),
        (["run", DEMO, "--set", "stages.video_writer.options.filename=../escaped.mp4"],
         "filename '../escaped.mp4' must be a file name inside the run folder"),
        (["synth", "demo?frames=2"], None),  # --out is required: argparse's own usage error
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message) -> None:
    args = [str(tmp_path / "corrupt.mp4") if a == "CORRUPT" else a for a in args]
    if "CORRUPT" in str(args) or any(a.endswith("corrupt.mp4") for a in args):
        _bad_video(tmp_path)
    if args[0] == "run":
        args += ["--out", str(tmp_path / "out"), "--no-progress"]
    if message is None:
        with pytest.raises(SystemExit) as info:
            main(args)
        assert info.value.code == 2
        return
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    line = next(line for line in err if line.startswith("error:"))
    assert message in line and "Traceback" not in "\n".join(err)


def test_a_failing_stage_exits_1_and_debug_shows_the_traceback(tmp_path, capsys) -> None:
    from memstream.streaming.pipeline.stages import STAGES

    STAGES.add("explodes_for_test", failing_on_frame_2(RuntimeError("kaboom")))
    args = ["run", DEMO, "--config", "decode_only", "--set", "stages.explodes_for_test.enabled=true", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 1
    assert "stage 'explodes_for_test' failed on frame 2: RuntimeError: kaboom" in capsys.readouterr().err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["stop_reason"] == "error"  # the summary is written even when a stage fails
    with pytest.raises(Exception, match="kaboom"):
        main(args + ["--out", str(tmp_path / "b"), "--debug"])


def test_info_lists_versions_and_extras(capsys) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "memstream 0.1.0" in out and "torch" in out and "decord" in out and "open3d" in out


def test_info_names_our_version_from_any_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # the bare name `streaming` is not ours outside the checkout
    assert main(["info"]) == 0
    assert capsys.readouterr().out.startswith("memstream 0.1.0 ")


def test_synth_writes_a_scene(tmp_path, capsys) -> None:
    assert main(["synth", "distractors?frames=4&size=64x48", "--out", str(tmp_path / "s")]) == 0
    scene = json.loads((tmp_path / "s" / "scene.json").read_text())
    assert scene["preset"] == "distractors" and scene["frames"] == 4
    assert main(["synth", "distractors?frames=4&size=64x48", "--out", str(tmp_path / "s")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["synth", "distractors?frames=4&size=64x48", "--out", str(tmp_path / "s"), "--overwrite"]) == 0
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "notes.txt").write_text("keep")
    assert main(["synth", "demo?frames=2&size=64x48", "--out", str(tmp_path / "notes"), "--overwrite"]) == 2
    assert "no earlier memstream output" in capsys.readouterr().err and (tmp_path / "notes" / "notes.txt").is_file()


def test_the_installed_console_script(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memstream.streaming.cli", "run", DEMO, "--out", str(tmp_path / "r"), "--no-progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "r" / "summary.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "memstream.streaming.cli", "run", "nothing.mp4"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("error: no such video file")


# -- what a new user trips on -------------------------------------------------------------------------
COMMANDS = {  # every command that writes a run folder, with arguments that would otherwise run
    "run": ["run", DEMO, "--no-progress"],
    "track": ["track", DEMO, "--box", "10,10,20,20", "--no-progress"],
    "reconstruct": ["reconstruct", "synthetic://dynamic_room?frames=2&size=64x48", "--no-progress"],
    "eval-track": ["eval-track", "DATASET", "--no-progress"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", ["file", "folder of files"])
def test_out_that_is_a_file_or_holds_files_is_one_line_and_nothing_is_lost(tmp_path, capsys, command, case) -> None:
    args = [str(tmp_path) if a == "DATASET" else a for a in COMMANDS[command]]
    out = tmp_path / "out"
    if case == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        (out / "summary.json").write_text("earlier")
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    if case == "file":
        assert err[0] == f"error: output path {out} is a file. Pass a folder path to --out"
        assert out.read_text() == "mine"
    else:
        assert err[0].startswith(f"error: output folder {out} already exists and holds files (summary.json). Pass --overwrite")
        assert (out / "summary.json").read_text() == "earlier"


def test_overwrite_replaces_an_earlier_run_and_never_a_folder_of_other_files(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", DEMO, "--out", str(out), "--no-progress"]) == 0
    (out / "2.txt").write_text("an object the next run does not track")
    assert main(["run", DEMO, "--out", str(out), "--no-progress", "--overwrite"]) == 0
    assert not (out / "2.txt").exists() and (out / "summary.json").is_file() and (out / "1.txt").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert main(["run", DEMO, "--out", str(other), "--no-progress", "--overwrite"]) == 2
    assert "no earlier memstream output" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep"


def test_a_wrong_source_writes_nothing_so_the_corrected_command_runs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    for _ in range(2):
        assert main(["run", "missing.mp4", "--out", str(out), "--no-progress"]) == 2
        assert "no such video file: missing.mp4" in capsys.readouterr().err
    assert list(out.iterdir()) == []
    assert main(["run", DEMO, "--out", str(out), "--no-progress"]) == 0


def test_a_misspelt_stage_is_an_error_listing_the_known_ones(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["run", DEMO, "--set", "stages.trackin.enabled=false", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown stage 'trackin' in --set stages.trackin.enabled. Did you mean 'tracking'?")
    assert "Known stages: " in err and "tracking" in err.split("Known stages: ")[1] and "video_writer" in err
    assert not out.exists()
    path = tmp_path / "typo.yaml"
    path.write_text("stages:\n  - name: vidoe_writer\n    enabled: false\n")
    with pytest.raises(ConfigError, match="unknown stage 'vidoe_writer' in stages.vidoe_writer"):
        load_config(path)


def test_a_registered_stage_absent_from_the_preset_can_be_switched_on(tmp_path) -> None:
    out = tmp_path / "run"
    code = main(["run", DEMO, "--config", "decode_only", "--set", "stages.video_writer.enabled=true",
                 "--out", str(out), "--no-progress"])
    assert code == 0 and (out / "video.mp4").is_file()
    assert json.loads((out / "summary.json").read_text())["stages"]["video_writer"]["frames"] == 8


def test_summary_json_honours_the_umask_like_every_other_file(tmp_path) -> None:
    out = tmp_path / "run"
    previous = os.umask(0o027)
    try:
        assert main(["run", DEMO, "--out", str(out), "--no-progress"]) == 0
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["summary.json"] == modes["config.yaml"] == modes["video.mp4"] == 0o640, modes


def test_sigterm_stops_a_run_like_ctrl_c_and_leaves_finished_outputs(tmp_path) -> None:
    # SIGTERM (kill, timeout, a scheduler) used to end the process mid-write: no summary.json, and
    # video.mp4 / tracking.mp4 without their index, unreadable.
    out = tmp_path / "r"
    command = [sys.executable, "-m", "memstream.streaming.cli", "run", "synthetic://demo?frames=5000&size=64x48",
               "--out", str(out), "--no-progress"]
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as child:
        scores, deadline = out / "scores.jsonl", time.monotonic() + 60
        while not (scores.is_file() and scores.read_text().count("\n") >= 3) and time.monotonic() < deadline:
            assert child.poll() is None, child.stderr.read()
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        err = child.stderr.read()
        assert child.wait(timeout=60) == 143, err
    assert "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    processed = summary["frames_processed"]
    assert summary["stop_reason"] == "interrupted" and 3 <= processed < 5000
    assert len(json.loads((out / "scores.json").read_text())["frames"]) == processed
    for name in ("video.mp4", "tracking.mp4"):
        with av.open(str(out / name)) as container:
            assert sum(1 for _ in container.decode(video=0)) == processed, name


def test_ctrl_c_while_the_commands_load_is_one_line_and_130(monkeypatch, capsys) -> None:
    import memstream.streaming.cli as cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert main(["run", DEMO]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def failing_on_frame_2(error: BaseException) -> type:
    """A stage class that raises ``error`` on frame 2 (a bug, a full output disk)."""

    class FailsOnFrame2:
        def __init__(self, name, options):
            self.name = name

        def open(self, context):
            pass

        def update(self, frame, upstream):
            if frame.index == 2:
                raise error

        def close(self):
            pass

    return FailsOnFrame2


@pytest.mark.parametrize("stage_fails", [False, True])
def test_an_output_that_cannot_be_written_is_one_line_naming_the_disk(tmp_path, capsys, monkeypatch, stage_fails) -> None:
    # A full disk once ended in a traceback: summary.json's own OSError, raised over the stage's error.
    import memstream.streaming.pipeline.run as pipeline_run
    from memstream.streaming.atomic import write_json_atomic
    from memstream.streaming.pipeline.stages import STAGES

    def full(path, data, **kwargs):
        if Path(path).name == "summary.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return write_json_atomic(path, data, **kwargs)

    monkeypatch.setattr(pipeline_run, "write_json_atomic", full)
    args = ["run", DEMO, "--config", "decode_only", "--out", str(tmp_path / "r"), "--no-progress"]
    if stage_fails:
        if "fills_the_disk_for_test" not in STAGES:
            STAGES.add("fills_the_disk_for_test", failing_on_frame_2(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
        args += ["--set", "stages.fills_the_disk_for_test.enabled=true"]
    assert main(args) == (1 if stage_fails else 2)
    err = capsys.readouterr().err.strip().splitlines()
    fix = "Make room on that disk (or make it writable), or choose another --out, then run again"
    what = ("stage 'fills_the_disk_for_test' failed on frame 2: OSError: [Errno 28] No space left on device" if stage_fails
            else f"cannot write {tmp_path / 'r' / 'summary.json'}: No space left on device")
    assert err == [f"error: {what}. {fix}"]
    assert (tmp_path / "r" / "config.yaml").is_file() and not (tmp_path / "r" / "summary.json").exists()


def test_a_second_run_into_an_out_a_run_is_writing_is_refused_and_deletes_nothing(tmp_path, capsys) -> None:
    from memstream.streaming.paths import output_lock

    out = tmp_path / "r"
    assert main(["run", DEMO, "--out", str(out), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    with output_lock(out):  # what a run holds while it writes
        assert main(["run", DEMO, "--out", str(out), "--overwrite", "--no-progress"]) == 2
        assert capsys.readouterr().err == f"error: another memstream command is writing into {out}. Wait for it to end, or choose another --out\n"
        empty = tmp_path / "empty"
        empty.mkdir()
        with output_lock(empty):  # two runs started at once into a new folder: the second to lock is refused
            assert main(["run", DEMO, "--out", str(empty), "--no-progress"]) == 2
        assert not any(empty.iterdir())
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


HEAVY = ("torch", "cv2", "transformers", "open3d", "sam2", "scipy", "fastapi", "rich")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],  # builds every subcommand's parser (the memstream.commands entry points)
        ["run"],  # argparse: no source
        ["track", "x.mp4", "--box", "1,2", "--out", "unused"],  # a bad box
        ["reconstruct", "x", "--out", "unused", "--masks", "magic"],  # a bad flag value
        ["ask", "x.mp4", "What moved?", "--model", "/no/such/dir"],  # a model folder that is not there
        ["ask", "x.mp4", "  ", "--model", "tiny-random"],  # an empty question
    ],
)
def test_the_command_starts_without_heavy_libraries(argv) -> None:
    code = (
        "import sys\n"
        "from memstream.streaming.cli import main\n"
        f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
        f"print(code, [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] in ("0 []", "2 []"), (done.stdout, done.stderr)
