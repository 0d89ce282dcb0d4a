"""MEMSTREAM_THREADS, the thread budget of one process (memstream batch sets it for each video):
parsed strictly, applied to OpenCV and torch, and honoured by every decoder and by x264 without
changing a frame."""

from __future__ import annotations

import os
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from memstream.streaming import open_source, write_video
from memstream.streaming.cli import main
from memstream.streaming.errors import ConfigError
from memstream.streaming.sources.video import BACKENDS
from memstream.streaming.threads import ENV, apply_thread_budget, thread_budget


def test_the_budget_is_a_positive_number_or_unset(monkeypatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert thread_budget() is None
    monkeypatch.setenv(ENV, " 3 ")
    assert thread_budget() == 3
    for bad in ("0", "-1", "two", "1.5"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(ConfigError) as error:
            thread_budget()
        assert ENV in error.value.what and "1 or more" in error.value.fix


def test_apply_caps_opencv_and_torch(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    saved = cv2.getNumThreads(), torch.get_num_threads()
    monkeypatch.setenv(ENV, "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    try:
        assert apply_thread_budget() == 1
        assert (cv2.getNumThreads(), torch.get_num_threads()) == (1, 1)
    finally:
        cv2.setNumThreads(saved[0])
        torch.set_num_threads(saved[1])
    monkeypatch.delenv(ENV)
    assert apply_thread_budget() is None and cv2.getNumThreads() == saved[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("threads") / "clip.mp4"
    with open_source("synthetic://demo?frames=24&size=96x64") as source:
        write_video(path, (frame.rgb for frame in source), fps=30)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_decoder_gives_the_same_frames_on_one_thread(video: Path, backend: str, monkeypatch) -> None:
    if backend == "decord":
        pytest.importorskip("decord")

    def decoded() -> np.ndarray:
        with open_source(str(video), backend=backend) as source:
            assert source.info.backend == backend
            return np.stack([frame.rgb for frame in source])

    monkeypatch.delenv(ENV, raising=False)
    default = decoded()
    monkeypatch.setenv(ENV, "1")
    assert np.array_equal(decoded(), default) and len(default) == 24


def test_x264_on_one_thread_writes_as_faithful_a_video(tmp_path: Path, monkeypatch) -> None:
    with open_source("synthetic://demo?frames=12&size=160x120") as source:
        frames = [frame.rgb for frame in source]
    monkeypatch.delenv(ENV, raising=False)
    write_video(tmp_path / "default.mp4", frames, fps=30)
    monkeypatch.setenv(ENV, "1")
    write_video(tmp_path / "one.mp4", frames, fps=30)
    assert b" threads=1 " not in (tmp_path / "default.mp4").read_bytes() or os.cpu_count() == 1  # x264: a thread a core or so
    with av.open(str(tmp_path / "one.mp4")) as one, av.open(str(tmp_path / "default.mp4")) as default:
        decoded = [[f.to_ndarray(format="rgb24") for f in c.decode(video=0)] for c in (one, default)]
    assert len(decoded[0]) == len(decoded[1]) == 12
    assert b" threads=1 " in (tmp_path / "one.mp4").read_bytes()  # x264's settings, as it wrote them into the stream
    error = [np.mean([np.abs(d.astype(int) - f.astype(int)).mean() for d, f in zip(video, frames, strict=True)])
             for video in decoded]
    assert error[0] < 1.1 * error[1]  # as faithful to the frames (threads change x264's choices a little, not its quality)


def test_a_bad_budget_stops_memstream_run_with_one_line(tmp_path: Path, video: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(ENV, "many")
    assert main(["run", str(video), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{ENV}='many' is not a number of threads" in err and not (tmp_path / "out").exists()
