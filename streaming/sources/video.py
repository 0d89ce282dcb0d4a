"""Video files, decoded by decord (batched, fastest on seeks), PyAV, or OpenCV.

``backend="auto"`` tries decord, then PyAV, then OpenCV, moving on when one is not installed or
cannot open the file; ``info.backend`` says which one decodes. A file none can open is a
:class:`SourceError` naming the file and each backend's complaint.

Truncated or corrupt data in the middle of a file: the frames decoded before it are yielded, then a
SourceError names the frame where decoding failed. decord and PyAV raise there by themselves;
OpenCV silently stops, so its reader compares the count it reached with the container's.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from memstream.streaming.errors import ConfigError, SourceError
from memstream.streaming.sources import SourceSpec, register_source
from memstream.streaming.sources._base import StreamSource
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import resize_frame
from memstream.streaming.threads import thread_budget
from memstream.streaming.types import Frame, SourceInfo

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp"}
BACKENDS = ("decord", "pyav", "opencv")
_DECORD_CHUNK = 32


@dataclass(frozen=True)
class VideoProbe:
    """What the container says: frame count (None if unknown), fps, size."""

    num_frames: int | None
    fps: float | None
    width: int
    height: int


class _Decoder:
    """One backend: ``probe`` at open, then ``frames(schedule)`` yields (timestamp_s, rgb) of kept frames."""

    name = ""

    def __init__(self, path: Path) -> None:
        self.path = path

    def probe(self) -> VideoProbe:
        raise NotImplementedError

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def failed(self, index: int, exc: BaseException) -> SourceError:
        return SourceError(
            f"decoding {self.path} failed at frame {index} ({self.name}: {type(exc).__name__}: {exc})".replace("\n", " "),
            "The file may be truncated or corrupt; the frames before it were delivered. Re-encode it to read the rest",
        )


class _Decord(_Decoder):
    name = "decord"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import decord

        budget = thread_budget()  # MEMSTREAM_THREADS; 0 is decord's "one thread a core"
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=budget or 0)

    def probe(self) -> VideoProbe:
        height, width = self._reader[0].shape[:2] if len(self._reader) else (0, 0)
        return VideoProbe(len(self._reader), float(self._reader.get_avg_fps()) or None, width, height)

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        count = len(self._reader)
        stamps = self._reader.get_frame_timestamp(range(count))[:, 0] if count else np.zeros(0)
        chunk: list[int] = []
        for i in range(count):
            if schedule.done:
                break
            if schedule.keep(float(stamps[i])):
                chunk.append(i)
            if len(chunk) == _DECORD_CHUNK or (chunk and (i == count - 1 or schedule.done)):
                yield from self._decode(chunk, stamps)
                chunk = []
        if chunk:
            yield from self._decode(chunk, stamps)

    def _decode(self, indices: list[int], stamps: np.ndarray) -> Iterator[tuple[float, np.ndarray]]:
        try:
            batch = self._reader.get_batch(indices).asnumpy()
        except Exception as exc:  # decord raises DECORDError/RuntimeError on bad data; re-raised with context
            raise self.failed(indices[0], exc) from exc
        for i, rgb in zip(indices, batch):
            yield float(stamps[i]), rgb


class _PyAV(_Decoder):
    name = "pyav"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import av

        self._av = av
        self._container = av.open(str(path))
        if not self._container.streams.video:
            self._container.close()
            raise ValueError("no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        budget = thread_budget()
        if budget is not None:  # MEMSTREAM_THREADS: a batch's video shares the cores with others
            self._stream.thread_count = budget

    def probe(self) -> VideoProbe:
        s = self._stream
        fps = float(s.average_rate) if s.average_rate else None
        return VideoProbe(s.frames or None, fps, s.codec_context.width, s.codec_context.height)

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        start_s = schedule.options.start_s
        if start_s > 0 and self._stream.time_base:
            self._container.seek(int(start_s / self._stream.time_base), stream=self._stream, backward=True)
        index = 0
        decoded = self._container.decode(self._stream)
        while not schedule.done:
            try:
                frame = next(decoded, None)
            except self._av.FFmpegError as exc:
                raise self.failed(index, exc) from exc
            if frame is None:
                return
            index += 1
            t_s = float(frame.time) if frame.time is not None else (index - 1) / (self.probe().fps or 30.0)
            if schedule.keep(t_s):
                yield t_s, frame.to_ndarray(format="rgb24")

    def close(self) -> None:
        self._container.close()


class _OpenCV(_Decoder):
    name = "opencv"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        budget = thread_budget()
        if budget is not None and hasattr(cv2, "CAP_PROP_N_THREADS"):  # MEMSTREAM_THREADS (OpenCV >= 4.6)
            self._capture = cv2.VideoCapture(str(path), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, budget])
        else:
            self._capture = cv2.VideoCapture(str(path))
        if not self._capture.isOpened():
            raise ValueError("cv2.VideoCapture did not open it")

    def probe(self) -> VideoProbe:
        c = self._capture
        count = int(c.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = c.get(cv2.CAP_PROP_FPS)
        return VideoProbe(count if count > 0 else None, fps if fps > 0 else None,
                          int(c.get(cv2.CAP_PROP_FRAME_WIDTH)), int(c.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        declared = self.probe().num_frames
        if schedule.options.start_s > 0:
            self._capture.set(cv2.CAP_PROP_POS_MSEC, schedule.options.start_s * 1e3)
        first = int(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
        index = first
        while not schedule.done:
            ok, bgr = self._capture.read()
            if not ok:
                # OpenCV reports a broken stream as a plain end: compare with the container's count.
                if declared is not None and index < declared - 1:
                    raise self.failed(index, RuntimeError(f"stream ended after {index} of {declared} frames"))
                return
            t_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
            index += 1
            if schedule.keep(t_s):
                yield t_s, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._capture.release()


_DECODERS = {"decord": _Decord, "pyav": _PyAV, "opencv": _OpenCV}
_MODULES = {"decord": "decord", "pyav": "av", "opencv": "cv2"}


class VideoSource(StreamSource):
    """Frames of a video file with container timestamps (see the module docstring)."""

    def __init__(self, uri: str, decoder: _Decoder, probe: VideoProbe, options: SourceOptions) -> None:
        super().__init__(options)
        self._decoder = decoder
        width, height = options.resize or (probe.width, probe.height)
        self.info = SourceInfo(
            uri=uri,
            num_frames=self.schedule.planned_count(probe.num_frames, probe.fps) if options.start_s == 0 else None,
            fps=self.schedule.output_fps(probe.fps),
            width=width,
            height=height,
            backend=decoder.name,
        )

    def _frames(self) -> Iterator[Frame]:
        for index, (t_s, rgb) in enumerate(self._decoder.frames(self.schedule)):
            rgb, _, _ = resize_frame(rgb, self.options.resize)
            yield Frame(index=index, timestamp_s=t_s, rgb=np.ascontiguousarray(rgb), source_id=self.info.uri)

    def _release(self) -> None:
        self._decoder.close()


def open_video(uri: str, options: SourceOptions, *, backend: str = "auto", **unknown: Any) -> VideoSource:
    if unknown:
        raise ConfigError(f"unknown option(s) for a video source: {', '.join(sorted(unknown))}", "Valid: backend")
    if backend != "auto" and backend not in BACKENDS:
        raise ConfigError(f"unknown video backend {backend!r}", f"Use auto or one of: {', '.join(BACKENDS)}")
    path = Path(uri.removeprefix("file://"))
    if not path.is_file():
        raise SourceError(f"no such video file: {path}", "Check the path")
    complaints = []
    for name in BACKENDS if backend == "auto" else (backend,):
        if importlib.util.find_spec(_MODULES[name]) is None:
            complaints.append(f"{name}: not installed")
            continue
        try:
            decoder = _DECODERS[name](path)
            probe = decoder.probe()
        except Exception as exc:  # each library has its own error types; all are reported below
            complaints.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        return VideoSource(uri, decoder, probe, options)
    raise SourceError(
        f"cannot decode {path} ({'; '.join(complaints)})",
        "Check that it is a complete video file (ffprobe it) or re-encode it, e.g. with ffmpeg -i IN -c:v libx264 OUT.mp4",
    )


def _is_video(uri: str) -> bool:
    if "://" in uri and not uri.startswith("file://"):
        return False
    path = Path(uri.removeprefix("file://"))
    return path.suffix.lower() in VIDEO_SUFFIXES or (path.is_file() and uri.startswith("file://"))


register_source(SourceSpec("video", _is_video, open_video, "video files: decord, PyAV or OpenCV (backend=)"))
