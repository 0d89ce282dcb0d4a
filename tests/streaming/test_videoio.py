"""VideoWriter: H.264 through PyAV, mp4v through OpenCV, odd sizes, and errors a user can fix."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from memstream.streaming import videoio
from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.videoio import VideoWriteError, VideoWriter, write_video


def _frames(n: int, height: int, width: int) -> list[np.ndarray]:
    """Smooth moving gradients (codec-friendly, so the error bound is tight)."""
    v, u = np.mgrid[0:height, 0:width]
    return [
        np.stack([(u * 3 + 7 * i) % 256, (v * 3 + 5 * i) % 256, np.full_like(u, 40 + 4 * i)], -1).astype(
            np.uint8
        )
        for i in range(n)
    ]


def _read_cv2(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def test_h264_round_trip_through_pyav_and_opencv(tmp_path: Path) -> None:
    frames = _frames(12, 48, 64)
    path = tmp_path / "a.mp4"
    assert write_video(path, frames, fps=25) == 12
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == 25.0
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    assert len(decoded) == 12 and decoded[0].shape == (48, 64, 3)
    errors = [np.abs(d.astype(int) - f).mean() for d, f in zip(decoded, frames)]
    assert max(errors) < 3.0
    assert len(_read_cv2(path)) == 12


@pytest.mark.parametrize(("height", "width"), [(49, 65), (48, 65), (49, 64)])
def test_odd_sizes_keep_their_exact_size(tmp_path: Path, height: int, width: int) -> None:
    frames = _frames(5, height, width)
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=10) as writer:
        for f in frames:
            writer.write(f)
    decoded = _read_cv2(path)
    assert len(decoded) == 5 and decoded[0].shape == (height, width, 3)
    assert np.abs(decoded[4].astype(int) - frames[4]).mean() < 3.0


def test_mp4v_codec_and_automatic_fallback_without_pyav(tmp_path: Path, monkeypatch) -> None:
    frames = _frames(6, 48, 64)
    write_video(tmp_path / "m.mp4", frames, fps=10, codec="mp4v")
    decoded = _read_cv2(tmp_path / "m.mp4")
    assert len(decoded) == 6 and np.abs(decoded[3].astype(int) - frames[3]).mean() < 8.0
    monkeypatch.setattr(videoio, "pyav_available", lambda: False)
    assert VideoWriter(tmp_path / "f.mp4", fps=10).codec == "mp4v"
    with pytest.raises(ConfigError, match="needs PyAV"):
        VideoWriter(tmp_path / "g.mp4", fps=10, codec="h264")


def test_lossless_crf_zero_is_nearly_exact(tmp_path: Path) -> None:
    frames = _frames(3, 32, 32)
    write_video(tmp_path / "l.mp4", frames, fps=5, crf=0)
    decoded = _read_cv2(tmp_path / "l.mp4")
    # crf 0 is lossless in YUV; only the RGB<->yuv420p conversion and chroma subsampling remain.
    assert np.abs(decoded[1].astype(int) - frames[1]).mean() < 2.0


def test_unwritable_paths_raise_memstream_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoWriteError, match="folder does not exist") as info:
        VideoWriter(tmp_path / "missing" / "a.mp4", fps=10)
    assert isinstance(info.value, MemstreamError) and info.value.fix
    with pytest.raises(VideoWriteError, match="it is a folder"):
        VideoWriter(tmp_path, fps=10)
    (tmp_path / "file").write_text("x")
    with pytest.raises(VideoWriteError, match="folder does not exist"):
        VideoWriter(tmp_path / "file" / "a.mp4", fps=10)


def test_bad_options_and_frames_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown video codec 'vp9'"):
        VideoWriter(tmp_path / "a.mp4", fps=10, codec="vp9")
    with pytest.raises(ConfigError, match="fps must be > 0"):
        VideoWriter(tmp_path / "a.mp4", fps=0)
    with pytest.raises(ConfigError, match="crf must be in 0..51"):
        VideoWriter(tmp_path / "a.mp4", fps=10, crf=60)
    writer = VideoWriter(tmp_path / "a.mp4", fps=10)
    with pytest.raises(ValueError, match="uint8"):
        writer.write(np.zeros((8, 8, 3), np.float32))
    writer.write(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="differs from the first frame"):
        writer.write(np.zeros((8, 10, 3), np.uint8))
    writer.close()
    writer.close()  # idempotent
    with pytest.raises(ValueError, match="is closed"):
        writer.write(np.zeros((8, 8, 3), np.uint8))
    assert writer.frames_written == 1 and len(_read_cv2(tmp_path / "a.mp4")) == 1


def _decode_pyav(path: Path) -> tuple[list[np.ndarray], list[bool]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [f.to_ndarray(format="rgb24") for f in frames], [bool(f.key_frame) for f in frames]


def test_keyint_one_codes_every_frame_on_its_own(tmp_path: Path) -> None:
    table = np.full((48, 64, 3), (171, 103, 65), np.uint8)  # an empty scene, after a small cue was shown on it
    cue = table.copy()
    cue[20:24, 30:33] = (4, 4, 231)
    with VideoWriter(tmp_path / "inter.mp4", 20, codec="h264") as inter, \
            VideoWriter(tmp_path / "intra.mp4", 20, codec="h264", keyint=1) as intra:
        for frame in [cue] * 4 + [table] * 4:
            inter.write(frame)
            intra.write(frame)
    with VideoWriter(tmp_path / "alone.mp4", 20, codec="h264", keyint=1) as alone:
        alone.write(table)
    inter_frames, inter_keys = _decode_pyav(tmp_path / "inter.mp4")
    intra_frames, intra_keys = _decode_pyav(tmp_path / "intra.mp4")
    assert all(intra_keys) and not all(inter_keys) and len(intra_frames) == 8
    empty_alone = _decode_pyav(tmp_path / "alone.mp4")[0][0]
    for frame in intra_frames[4:]:  # an empty frame decodes the same whatever the frames before it showed
        np.testing.assert_array_equal(frame, empty_alone)


@pytest.mark.parametrize("keyint", [0, -1, 1.5, True])
def test_keyint_must_be_a_positive_int(tmp_path: Path, keyint) -> None:
    with pytest.raises(ConfigError, match="keyint"):
        VideoWriter(tmp_path / "x.mp4", 20, codec="h264", keyint=keyint)
