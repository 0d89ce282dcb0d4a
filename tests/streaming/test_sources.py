"""File, folder, RGB-D and live sources: exact frame selection, agreement across backends, bad input."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from memstream.streaming import ConfigError, SourceError, UnknownSourceError, open_source
from memstream.streaming.geometry import pose_to_tum
from memstream.streaming.synthetic import write_scene

N_FRAMES, FPS = 45, 30


def level_frame(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """A frame whose gray level encodes its index (5 levels apart survive H.264)."""
    return np.full((height, width, 3), 5 * i, np.uint8)


def decoded_index(frame) -> int:
    return int(round(frame.rgb.mean() / 5))


def write_h264(path: Path, frames: int = N_FRAMES, fmt: str | None = None, options: dict | None = None) -> Path:
    out = av.open(str(path), "w", format=fmt, options=options or {})
    stream = out.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    stream.options = {"crf": "10"}
    for i in range(frames):
        for packet in stream.encode(av.VideoFrame.from_ndarray(level_frame(i), format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    h264 = write_h264(root / "levels.mp4")
    mp4v = root / "levels_mp4v.mp4"
    writer = cv2.VideoWriter(str(mp4v), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    for i in range(N_FRAMES):
        writer.write(level_frame(i))
    writer.release()
    faststart = write_h264(root / "faststart.mp4", options={"movflags": "faststart"})
    truncated = root / "truncated.mp4"
    truncated.write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    corrupt = root / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    stream = write_h264(root / "stream.ts", frames=20, fmt="mpegts")
    return {"h264": h264, "mp4v": mp4v, "truncated": truncated, "corrupt": corrupt, "ts": stream}


@pytest.mark.parametrize("backend", ["decord", "pyav", "opencv"])
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, list(range(N_FRAMES))),
        ({"stride": 4}, list(range(0, N_FRAMES, 4))),
        ({"max_frames": 5, "stride": 2}, [0, 2, 4, 6, 8]),
        ({"start_s": 1.0}, list(range(30, N_FRAMES))),
        ({"target_fps": 10}, list(range(0, N_FRAMES, 3))),
        ({"start_s": 0.5, "target_fps": 15, "stride": 2, "max_frames": 4}, [15, 19, 23, 27]),
    ],
)
def test_video_frame_selection_is_exact_on_every_backend(videos, backend, options, expected) -> None:
    with open_source(str(videos["h264"]), backend=backend, **options) as source:
        frames = list(source)
        assert source.info.backend == backend
        if "start_s" not in options:
            assert source.info.num_frames == len(expected)
    assert [decoded_index(f) for f in frames] == expected
    assert [f.index for f in frames] == list(range(len(expected)))
    assert np.allclose([f.timestamp_s for f in frames], np.array(expected) / FPS, atol=1e-3)


def test_backends_agree_and_auto_prefers_decord(videos) -> None:
    decoded = {}
    for backend in ("decord", "pyav", "opencv"):
        with open_source(str(videos["mp4v"]), backend=backend) as source:
            decoded[backend] = np.stack([f.rgb for f in source]).astype(int)
    assert decoded["decord"].shape == (N_FRAMES, 48, 64, 3)
    assert np.abs(decoded["decord"] - decoded["pyav"]).mean() < 1
    assert np.abs(decoded["decord"] - decoded["opencv"]).mean() < 1
    with open_source(str(videos["h264"])) as source:
        assert source.info.backend == "decord" and source.info.fps == pytest.approx(FPS)


def test_resize_and_one_shot_iteration(videos) -> None:
    source = open_source(str(videos["h264"]), resize=(32, 24), max_frames=2)
    assert (source.info.width, source.info.height) == (32, 24)
    assert [f.rgb.shape for f in source] == [(24, 32, 3)] * 2
    with pytest.raises(SourceError, match="already iterated"):
        iter(source)
    source.close()
    with pytest.raises(SourceError, match="closed"):
        iter(source)


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav", "opencv"])
def test_truncated_and_corrupt_videos_fail_with_one_clear_error(videos, backend) -> None:
    for name in ("truncated", "corrupt"):
        with pytest.raises(SourceError) as info:
            with open_source(str(videos[name]), backend=backend) as source:
                for _ in source:
                    pass
        message = str(info.value)
        assert str(videos[name]) in message and "\n" not in message
        assert "re-encode" in message.lower() or "truncated" in message.lower()


def test_missing_file_unknown_scheme_and_bad_options(tmp_path) -> None:
    with pytest.raises(SourceError, match="no such video file: .*missing.mp4"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="no such file or folder: .*missing_dir"):
        open_source(str(tmp_path / "missing_dir"))
    with pytest.raises(UnknownSourceError, match="unknown URI scheme 'ftp://'"):
        open_source("ftp://example/video.mp4")
    with pytest.raises(ConfigError, match="unknown video backend"):
        open_source(str(tmp_path / "x.mp4"), backend="gstreamer")
    with pytest.raises(ConfigError, match="stride must be >= 1"):
        open_source("synthetic://demo", stride=0)


def test_image_folder_natural_order_and_timestamps(tmp_path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10, 3):
        cv2.imwrite(str(folder / f"frame{i}.png"), level_frame(i))
    with open_source(str(folder), fps=10) as source:
        frames = list(source)
    assert [decoded_index(f) for f in frames] == [1, 2, 3, 10]
    assert [f.timestamp_s for f in frames] == pytest.approx([0, 0.1, 0.2, 0.3])
    (folder / "timestamps.txt").write_text("# name seconds\nframe1.png 5.0\nframe2.png 5.5\nframe3.png 7\nframe10.png 9\n")
    with open_source(str(folder), start_s=6) as source:
        assert [(decoded_index(f), f.timestamp_s) for f in source] == [(3, 7.0), (10, 9.0)]
    (folder / "timestamps.txt").write_text("1\n2\n")
    with pytest.raises(SourceError, match="2 timestamps for 4 images"):
        open_source(str(folder))
    (folder / "timestamps.txt").unlink()
    (folder / "frame20.png").write_bytes(b"not a png")
    with pytest.raises(SourceError, match="cannot read image .*frame20.png"):
        list(open_source(str(folder)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(empty))


def test_tum_rgbd_association_depth_and_interpolated_poses(tmp_path) -> None:
    scene = write_scene("camera_motion?frames=12&size=64x48", tmp_path / "scene")
    # Shift depth stamps by 7 ms (TUM's sensors are not synchronised) and thin the ground truth to
    # every other frame, so poses between samples must be interpolated.
    rgb_rows = [r for r in (scene / "rgb.txt").read_text().splitlines() if not r.startswith("#")]
    depth_rows = [r.split() for r in (scene / "depth.txt").read_text().splitlines() if not r.startswith("#")]
    (scene / "depth.txt").write_text("# depth\n" + "\n".join(f"{float(t) + 0.007:.6f} {f}" for t, f in depth_rows))
    gt_rows = [r for r in (scene / "groundtruth.txt").read_text().splitlines() if not r.startswith("#")]
    (scene / "groundtruth.txt").write_text("# gt\n" + "\n".join(gt_rows[::2]) + "\n")
    with open_source("synthetic://camera_motion?frames=12&size=64x48") as reference:
        expected = list(reference)
    with open_source(str(scene)) as source:
        assert source.info.backend == "tum-rgbd" and source.info.num_frames == len(rgb_rows)
        frames = list(source)
    assert len(frames) == 12
    for got, ref in zip(frames, expected):
        assert np.array_equal(got.rgb, ref.rgb)
        assert np.abs(got.depth_m - ref.depth_m).max() <= 1.01e-4  # half a 1/5000 m step, float32
        assert np.allclose(got.intrinsics, ref.intrinsics)
    assert frames[-1].pose is None  # after the last kept ground-truth sample (frame 10)
    # odd frames are interpolated between their neighbours: close to, not equal to, the truth
    for i in (1, 3):  # the pan is linear up to frame 5
        assert np.allclose(frames[i].pose, expected[i].pose, atol=2e-2)
        midpoint = (expected[i - 1].pose[:3, 3] + expected[i + 1].pose[:3, 3]) / 2
        assert np.allclose(pose_to_tum(frames[i].pose)[:3], midpoint, atol=1e-5)  # stamps have 6 decimals
    assert np.allclose(frames[4].pose, expected[4].pose, atol=1e-8)
    (scene / "depth.txt").write_text("# nothing\n")
    with pytest.raises(SourceError, match="no colour image .* has a depth image"):
        open_source(str(scene))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server(videos):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(videos["ts"].parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.network
def test_network_stream_reads_reconnects_and_has_live_timestamps(http_server, videos) -> None:
    uri = f"{http_server}/{videos['ts'].name}"
    started = time.monotonic()
    with open_source(uri, reconnect=1, reconnect_delay_s=0.05, max_frames=30, open_timeout_s=5, read_timeout_s=5) as source:
        assert source.info.is_live and source.info.num_frames is None and source.info.backend == "pyav"
        frames = list(source)
        # the server's stream ends after 20 frames; the source reopens it and goes on
        assert source.reconnects == 1
    assert [decoded_index(f) for f in frames] == list(range(20)) + list(range(10))
    stamps = [f.timestamp_s for f in frames]
    assert stamps[0] == 0 and all(b >= a for a, b in zip(stamps, stamps[1:]))
    assert stamps[-1] <= time.monotonic() - started


@pytest.mark.network
def test_network_stream_that_goes_away_ends_after_the_retries(http_server, videos, tmp_path) -> None:
    moved = tmp_path / "stream.ts"
    moved.write_bytes(videos["ts"].read_bytes())
    served = videos["ts"].parent / "vanishing.ts"
    served.write_bytes(moved.read_bytes())
    source = open_source(f"{http_server}/vanishing.ts", reconnect=2, reconnect_delay_s=0.05, open_timeout_s=5)
    served.unlink()  # the server now answers 404: every reconnection fails
    frames = list(source)
    source.close()
    assert len(frames) == 20 and source.reconnects == 0


@pytest.mark.parametrize("uri", ["cam:9", "/dev/video9", "rtsp://127.0.0.1:9/live"])
def test_dead_cameras_and_refused_streams_fail_fast_with_a_fix(uri) -> None:
    started = time.monotonic()
    with pytest.raises(SourceError) as info:
        open_source(uri, reconnect=0, open_timeout_s=2, read_timeout_s=2)
    assert time.monotonic() - started < 10
    assert "did not open" in str(info.value) and "Check" in str(info.value)


def _gst_rtsp_available() -> bool:
    import shutil
    import subprocess

    if not shutil.which("/usr/bin/python3"):
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode == 0


@pytest.fixture
def rtsp_server():
    import socket
    import subprocess

    if not _gst_rtsp_available():
        pytest.skip("GStreamer RTSP server not installed: run tests/system_deps.sh (the README test command does)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        ["/usr/bin/python3", str(Path(__file__).with_name("rtsp_server.py")), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        yield f"rtsp://127.0.0.1:{port}/live"
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.network
def test_rtsp_stream_from_a_local_server(rtsp_server) -> None:
    with open_source(rtsp_server, max_frames=15, open_timeout_s=10, read_timeout_s=10) as source:
        assert source.info.is_live and source.info.backend == "pyav" and (source.info.width, source.info.height) == (64, 48)
        frames = list(source)
    assert [f.index for f in frames] == list(range(15))
    assert all(f.rgb.shape == (48, 64, 3) and f.rgb.std() > 5 for f in frames)  # the test pattern, not a blank
    stamps = [f.timestamp_s for f in frames]
    assert stamps[0] == 0 and stamps == sorted(stamps)
