"""Video files as users have them: phone rotation, late start times, variable frame rates, MPEG-TS/PS
with B-frames, files cut short, audio only. Every backend must show what a player shows."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from memstream.streaming import SourceError, open_source

FPS = 30
BACKENDS = ["decord", "pyav", "opencv"]


def marked_frame(i: int, width: int = 64, height: int = 48, texture: bool = False) -> np.ndarray:
    """Gray level 5 * i (the index) with a red 8x8 marker at the top-left corner (the orientation)."""
    rgb = np.full((height, width, 3), 5 * i, np.uint8)
    rgb[:8, :8] = (255, 0, 0)
    if texture:  # noise, so the file holds real bytes and cutting it loses frames
        rgb[-16:, -16:] = np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8)
    return rgb


def decoded_index(rgb: np.ndarray) -> int:
    return int(round(np.median(rgb[..., 2]) / 5))


def marker_corner(rgb: np.ndarray) -> str:
    corners = {"top-left": rgb[:4, :4], "top-right": rgb[:4, -4:], "bottom-left": rgb[-4:, :4], "bottom-right": rgb[-4:, -4:]}
    return next(name for name, patch in corners.items() if patch[..., 0].mean() > 180 and patch[..., 1].mean() < 80)


def encode(path: Path, frames: int = 30, *, fmt: str | None = None, codec: str = "libx264", options: dict | None = None,
           container_options: dict | None = None, rotation: float | None = None, pts_ms: list[int] | None = None,
           texture: bool = False, size: tuple[int, int] = (64, 48)) -> Path:
    out = av.open(str(path), "w", format=fmt, options=container_options or {})
    stream = out.add_stream(codec, rate=FPS)
    (stream.width, stream.height), stream.pix_fmt = size, "yuv420p"
    if codec == "libx264":
        stream.options = {"crf": "10", **(options or {})}
    else:
        stream.bit_rate = 4_000_000
        stream.options = options or {}
    if rotation is not None:
        stream.set_display_rotation(rotation)
    if pts_ms is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(marked_frame(i, *size, texture=texture), format="rgb24")
        if pts_ms is not None:
            frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


def read(path: Path, backend: str, **options) -> tuple[list, object]:
    with open_source(str(path), backend=backend, **options) as source:
        return list(source), source.info


@pytest.mark.parametrize(
    ("rotation", "corner", "shape"),
    [(-90, "top-right", (64, 32, 3)), (90, "bottom-left", (64, 32, 3)), (180, "bottom-right", (32, 64, 3))],
)
def test_phone_rotation_is_applied_on_every_backend(tmp_path, rotation, corner, shape) -> None:
    # PyAV's display rotation is counter-clockwise: -90 is the "rotate=90" tag of an upright phone video.
    path = encode(tmp_path / "phone.mp4", 6, rotation=rotation, size=(64, 32))
    for backend in BACKENDS:
        frames, info = read(path, backend)
        assert (info.height, info.width, 3) == shape, backend
        assert [f.rgb.shape for f in frames] == [shape] * 6, backend
        assert [marker_corner(f.rgb) for f in frames] == [corner] * 6, backend
        assert [decoded_index(f.rgb) for f in frames] == list(range(6)), backend
        assert all(f.rgb.flags.c_contiguous for f in frames), backend  # torch.from_numpy takes them


def test_a_rotated_video_decord_garbles_is_read_by_pyav(tmp_path) -> None:
    path = encode(tmp_path / "narrow.mp4", 6, rotation=-90)  # 48 px wide upright: decord gives 4 channels
    with pytest.raises(SourceError, match="decord returns 4-channel frames"):
        open_source(str(path), backend="decord")
    frames, info = read(path, "auto")  # used to fail at frame 0 as "truncated or corrupt"
    assert info.backend == "pyav" and (info.width, info.height) == (48, 64)
    assert [(f.rgb.shape, marker_corner(f.rgb), decoded_index(f.rgb)) for f in frames] == [((64, 48, 3), "top-right", i) for i in range(6)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_stream_that_starts_late_is_timed_from_its_first_frame(tmp_path, suffix) -> None:
    path = encode(tmp_path / f"offset{suffix}", 45, container_options={"output_ts_offset": "10"})
    for backend in BACKENDS:
        frames, _ = read(path, backend)  # OpenCV used to call a complete .mkv truncated here (330 of 45 frames)
        assert [decoded_index(f.rgb) for f in frames] == list(range(45)), backend
        assert np.allclose([f.timestamp_s for f in frames], np.arange(45) / FPS, atol=1e-3), backend
        later, _ = read(path, backend, start_s=1.0, max_frames=3)
        assert [(decoded_index(f.rgb), round(f.timestamp_s, 3)) for f in later] == [(30, 1.0), (31, 1.033), (32, 1.067)], backend


def test_variable_frame_rate_keeps_its_timestamps_and_opencv_its_frames(tmp_path) -> None:
    pts_ms = [0, 33, 67, 100, 600, 633, 667, 1500, 1533, 1567]
    for suffix in (".mp4", ".mkv"):
        path = encode(tmp_path / f"vfr{suffix}", 10, pts_ms=pts_ms)
        for backend in BACKENDS:
            frames, info = read(path, backend)
            assert [decoded_index(f.rgb) for f in frames] == list(range(10)), (suffix, backend)
            assert np.allclose([f.timestamp_s for f in frames], np.array(pts_ms) / 1e3, atol=1e-3), (suffix, backend)
            if backend == "opencv" and suffix == ".mkv":
                assert info.num_frames is None  # OpenCV's duration x fps guess (48) is not reported


@pytest.mark.parametrize(("fmt", "codec", "suffix"), [("mpegts", "libx264", ".ts"), ("mpeg", "mpeg2video", ".mpg")])
def test_mpeg_ts_and_ps_with_b_frames_read_in_order(tmp_path, fmt, codec, suffix) -> None:
    path = encode(tmp_path / f"camcorder{suffix}", 40, fmt=fmt, codec=codec, options={"bf": "2", "g": "15"})
    with pytest.raises(SourceError, match="decord returns (shifted frames from MPEG-TS|wrong timestamps from MPEG-PS)"):
        open_source(str(path), backend="decord")
    # decord used to return frames 15, 16, ... from frame 0 on (.ts) or time frames at -1e14 s, which the
    # schedule then dropped without a word (.mpg: 27 of 40 frames)
    frames, info = read(path, "auto")
    assert info.backend == "pyav"
    for backend in ("auto", "pyav", "opencv"):
        frames, _ = read(path, backend)
        assert [decoded_index(f.rgb) for f in frames] == list(range(40)), backend
        assert np.allclose([f.timestamp_s for f in frames], np.arange(40) / FPS, atol=1e-3), backend
        later, _ = read(path, backend, start_s=0.5, max_frames=3)  # seeking used to land at frame 28 (PyAV)
        assert [(decoded_index(f.rgb), round(f.timestamp_s, 3)) for f in later] == [(15, 0.5), (16, 0.533), (17, 0.567)], backend


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_an_mp4_cut_short_is_an_error_on_pyav_too(tmp_path, backend) -> None:
    whole = encode(tmp_path / "whole.mp4", 45, container_options={"movflags": "faststart"}, texture=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    delivered = []
    with pytest.raises(SourceError) as info:  # decord refuses the file; PyAV's frame threads used to end quietly
        with open_source(str(cut), backend=backend) as source:
            delivered.extend(source)
    message = str(info.value)
    assert f"decoding {cut} failed at frame {len(delivered)}" in message and "truncated" in message and "\n" not in message
    assert 10 < len(delivered) < 45
    assert [decoded_index(f.rgb) for f in delivered] == list(range(len(delivered)))


def test_an_audio_only_file_says_it_has_no_video(tmp_path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            out.mux(packet)
    with pytest.raises(SourceError, match=r"voice.mp4 has no video stream \(it holds audio\)\. Pass a file with a video track"):
        open_source(str(path))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_start_past_the_end_is_an_error_not_an_empty_run(tmp_path, backend) -> None:
    path = encode(tmp_path / "short.mp4", 30)  # 1 s at 30 fps
    assert [f.index for f in read(path, backend, start_s=0.9)[0]] == [0, 1, 2]  # the last 3 frames
    with pytest.raises(SourceError, match=r"start_s 5 is past the end of .*short\.mp4 \(1\.00 s long\)\. Pass a start_s below 1\.00"):
        open_source(str(path), backend=backend, start_s=5)
