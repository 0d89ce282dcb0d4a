"""Live sources: cameras (``cam:0``, ``/dev/video0``) and network streams (``rtsp://``, ``http(s)://``...).

Timestamps are wall-clock seconds (monotonic) since the first frame; the length is unknown
(``info.num_frames`` is None) and ``info.is_live`` is True, so the runner drops the oldest queued
frames rather than letting latency grow.

Reconnect-or-stop: when a read fails or the stream ends, the source reopens it up to ``reconnect``
times in a row (waiting ``reconnect_delay_s`` before each try; the count resets after a frame is
read). When the tries are used up, the stream **ends** (iteration stops, no exception), so a run
over a camera that was unplugged finishes and writes its outputs; ``reconnects`` on the source says
how many reopenings happened. A source that cannot be opened at all raises :class:`SourceError`.

Network streams are read with PyAV (FFmpeg: RTSP over TCP, HTTP, RTMP, UDP, SRT) and fall back to
OpenCV when PyAV is missing or cannot open the URL; cameras are read with OpenCV (V4L2).
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np

from memstream.streaming.errors import ConfigError, SourceError
from memstream.streaming.sources import SourceSpec, register_source
from memstream.streaming.sources._base import StreamSource
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import resize_frame
from memstream.streaming.types import Frame, SourceInfo

NETWORK_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class _Capture:
    """An open connection to a live device or stream; ``read`` returns RGB or None when it fails."""

    backend = ""
    last_error: BaseException | None = None

    def read(self) -> np.ndarray | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _OpenCVCapture(_Capture):
    backend = "opencv"

    def __init__(self, target: int | str, open_timeout_s: float, read_timeout_s: float, request: dict[str, float]) -> None:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(open_timeout_s * 1e3), cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(read_timeout_s * 1e3)]
        api = cv2.CAP_V4L2 if isinstance(target, int) else cv2.CAP_ANY
        self._capture = cv2.VideoCapture(target, api, params)
        if not self._capture.isOpened():
            self._capture.release()
            raise OSError("cv2.VideoCapture did not open it")
        for prop, value in (("width", cv2.CAP_PROP_FRAME_WIDTH), ("height", cv2.CAP_PROP_FRAME_HEIGHT), ("fps", cv2.CAP_PROP_FPS)):
            if request.get(prop):
                self._capture.set(value, request[prop])

    def read(self) -> np.ndarray | None:
        ok, bgr = self._capture.read()
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None

    def close(self) -> None:
        self._capture.release()


class _PyAVCapture(_Capture):
    backend = "pyav"

    def __init__(self, url: str, open_timeout_s: float, read_timeout_s: float) -> None:
        import av

        self._av = av
        options = {"rtsp_transport": "tcp"} if url.startswith(("rtsp://", "rtsps://")) else {}
        self._container = av.open(url, options=options, timeout=(open_timeout_s, read_timeout_s))
        if not self._container.streams.video:
            self._container.close()
            raise OSError("the stream has no video track")
        # No frame threading: it adds frames of latency on a live stream (and its teardown can block).
        self._frames = self._container.decode(self._container.streams.video[0])

    def read(self) -> np.ndarray | None:
        try:
            frame = next(self._frames, None)
        except (self._av.FFmpegError, OSError) as exc:
            self.last_error = exc  # kept for diagnostics; the failure is handled by reconnect-or-stop
            return None
        return None if frame is None else frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        # Close the decode generator first: closing the container under a live generator can block.
        self._frames.close()
        self._container.close()


class LiveSource(StreamSource):
    """Frames from a camera or a network stream (see the module docstring)."""

    def __init__(self, uri: str, options: SourceOptions, connect, reconnect: int, reconnect_delay_s: float) -> None:
        super().__init__(options)
        self._connect = connect
        self.reconnect = reconnect
        self.reconnect_delay_s = reconnect_delay_s
        self.reconnects = 0
        self._capture: _Capture = connect()
        first = self._capture.read()
        if first is None:
            self._capture.close()
            raise SourceError(f"{uri} opened but delivered no frame", "Check that the device or stream is sending video")
        self._first = first
        width, height = options.resize or (first.shape[1], first.shape[0])
        self.info = SourceInfo(uri=uri, num_frames=None, fps=None, width=width, height=height, is_live=True,
                               backend=self._capture.backend)

    def _frames(self) -> Iterator[Frame]:
        t0: float | None = None
        rgb: np.ndarray | None = self._first
        self._first = None
        index, failures = 0, 0
        while not self.schedule.done:
            if rgb is None:
                if failures >= self.reconnect or not self._reopen():
                    return
                failures += 1
                rgb = self._capture.read()
                continue
            failures = 0
            now = time.monotonic()
            t0 = now if t0 is None else t0
            t_s = now - t0
            if self.schedule.keep(t_s):
                rgb, _, _ = resize_frame(rgb, self.options.resize)
                yield Frame(index=index, timestamp_s=t_s, rgb=rgb, source_id=self.info.uri)
                index += 1
            rgb = self._capture.read()

    def _reopen(self) -> bool:
        self._capture.close()
        time.sleep(self.reconnect_delay_s)
        try:
            self._capture = self._connect()
        except SourceError:
            return False
        self.reconnects += 1
        return True

    def _release(self) -> None:
        self._capture.close()


def _camera_target(uri: str) -> int | str:
    if uri.startswith("cam:"):
        index = uri[4:]
        if not index.isdigit():
            raise ConfigError(f"camera URI {uri!r} needs a device number", "Write cam:0, cam:1, ...")
        return int(index)
    return uri


def open_live(
    uri: str,
    options: SourceOptions,
    *,
    backend: str = "auto",
    reconnect: int = 3,
    reconnect_delay_s: float = 1.0,
    open_timeout_s: float = 10.0,
    read_timeout_s: float = 10.0,
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    **unknown: Any,
) -> LiveSource:
    if unknown:
        raise ConfigError(
            f"unknown option(s) for a live source: {', '.join(sorted(unknown))}",
            "Valid: backend, reconnect, reconnect_delay_s, open_timeout_s, read_timeout_s, width, height, fps",
        )
    if backend not in ("auto", "pyav", "opencv"):
        raise ConfigError(f"unknown live backend {backend!r}", "Use auto, pyav or opencv")
    if reconnect < 0 or reconnect_delay_s < 0:
        raise ConfigError("reconnect and reconnect_delay_s must be >= 0", "Use reconnect=0 to stop at the first failure")
    is_network = uri.startswith(NETWORK_SCHEMES)
    target = uri if is_network else _camera_target(uri)
    request = {"width": width, "height": height, "fps": fps}

    def connect() -> _Capture:
        complaints = []
        names = ["pyav", "opencv"] if is_network else ["opencv"]
        for name in names if backend == "auto" else [backend]:
            if name == "pyav" and importlib.util.find_spec("av") is None:
                complaints.append("pyav: not installed")
                continue
            try:
                if name == "pyav":
                    return _PyAVCapture(str(target), open_timeout_s, read_timeout_s)
                return _OpenCVCapture(target, open_timeout_s, read_timeout_s, request)
            except Exception as exc:  # FFmpeg / OpenCV errors differ per protocol; all are reported
                complaints.append(f"{name}: {type(exc).__name__}: {exc}".replace("\n", " "))
        what = f"camera {target}" if not is_network else uri
        fix = (
            "Check the device number, its permissions (video group), and that no other program holds it"
            if not is_network
            else "Check the URL, that the server is up, and the network path to it"
        )
        raise SourceError(f"{what} did not open ({'; '.join(complaints)})", fix)

    return LiveSource(uri, options, connect, reconnect, reconnect_delay_s)


def _is_live(uri: str) -> bool:
    return uri.startswith(NETWORK_SCHEMES) or uri.startswith("cam:") or uri.startswith("/dev/video")


register_source(SourceSpec("live", _is_live, open_live, "cameras (cam:N, /dev/videoN) and network streams (rtsp://, http(s)://)"))
