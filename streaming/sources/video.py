"""Video files, decoded by decord (batched, fastest on seeks), PyAV, or OpenCV.

``backend="auto"`` tries decord, then PyAV, then OpenCV, moving on when one is not installed or
cannot open the file; ``info.backend`` says which one decodes. A file none can open is a
:class:`SourceError` naming the file and each backend's complaint.

Truncated or corrupt data in the middle of a file: the frames decoded before it are yielded, then a
SourceError names the frame where decoding failed. decord raises there by itself; PyAV's frame
threads and OpenCV silently stop, so their readers check the container's index (PyAV: does it
point past the end of the file; OpenCV: the frame count of an MP4/MOV or AVI, the containers that
index every frame; elsewhere OpenCV's count is duration x fps, a guess). A Matroska/WebM or MPEG-TS
file cut short has no index to compare with: it reads as a shorter video, as in every player.

All backends return what a player shows: frames turned by the file's display matrix (phone videos
filmed upright), timestamps counted from the first frame (0 s) even when the container starts
later (MPEG-TS, ``-output_ts_offset``). decord shifts the frames of MPEG-TS files with B-frames
(camcorder .mts/.m2ts, broadcast .ts) and times MPEG-PS files (.mpg, .vob) at -1e14 s, so it refuses
both and ``auto`` reads them with PyAV.
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


def container_family(path: Path) -> str:
    """The container, sniffed from the first bytes (extensions lie): ``MP4`` (MP4, MOV, 3GP, M4V),
    ``AVI``, ``MPEG-TS`` (also M2TS/MTS), ``MPEG-PS`` (.mpg, .vob), or ``""`` for anything else."""
    with path.open("rb") as file:
        head = file.read(1024)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return "MP4"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI"
    if head[:4] == b"\x00\x00\x01\xba":  # an MPEG program stream's pack header
        return "MPEG-PS"
    for packet, offset in ((188, 0), (192, 4)):  # TS packets start with 0x47; M2TS puts a 4-byte clock first
        syncs = head[offset::packet][:3]
        if len(syncs) >= 2 and set(syncs) == {0x47}:
            return "MPEG-TS"
    return ""


def quarter_turns(frame: Any) -> int:
    """Counter-clockwise quarter turns (``np.rot90``'s k) that show a PyAV frame as a player does.

    ``frame.rotation`` is the display matrix's angle, counter-clockwise in degrees (an upright phone
    video is stored landscape with -90: turn it clockwise); 0 when the file has none."""
    return round(getattr(frame, "rotation", 0) / 90) % 4


class NoVideoStreamError(ValueError):
    """The file opens but holds no video stream (audio only, or a video track with no frames)."""


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
        self.family = container_family(path)  # sniffed once: the backends' quirks depend on it

    @property
    def seekable(self) -> bool:
        """False for MPEG-TS and MPEG-PS: with no index, a seek lands after the wanted time or between
        key frames (PyAV and OpenCV then skip or garble frames), so their readers decode from the start
        and the schedule drops the frames before ``start_s``."""
        return self.family not in ("MPEG-TS", "MPEG-PS")

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

        if self.family == "MPEG-TS":
            raise ValueError("decord returns shifted frames from MPEG-TS files with B-frames; PyAV reads them")
        if self.family == "MPEG-PS":  # -1e14 s: the schedule then drops those frames as before start_s
            raise ValueError("decord returns wrong timestamps from MPEG-PS files; PyAV reads them")
        budget = thread_budget()  # MEMSTREAM_THREADS; 0 is decord's "one thread a core"
        self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=budget or 0)

    def probe(self) -> VideoProbe:
        height, width, channels = self._reader[0].shape if len(self._reader) else (0, 0, 3)
        if channels != 3:  # decord's rotation of some narrow videos (16-72 px wide when upright)
            raise ValueError(f"decord returns {channels}-channel frames for this file")
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
        for i, rgb in zip(indices, batch, strict=True):
            yield float(stamps[i]), rgb


class _PyAV(_Decoder):
    name = "pyav"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        import av

        self._av = av
        self._container = av.open(str(path))
        if not self._container.streams.video:
            kinds = sorted({s.type for s in self._container.streams})
            self._container.close()
            raise NoVideoStreamError(f"no video stream (it holds {', '.join(kinds)})" if kinds else "no stream at all")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        budget = thread_budget()
        if budget is not None:  # MEMSTREAM_THREADS: a batch's video shares the cores with others
            self._stream.thread_count = budget
        # Timestamps count from the stream's first frame, as decord's and OpenCV's do.
        self._start_pts = self._stream.start_time or 0
        self._decoded = self._container.decode(self._stream)
        try:
            self._first = self._next(self._decoded, 0)  # the display matrix rides on frames, not on the stream
        except SourceError:
            self._container.close()
            raise

    def probe(self) -> VideoProbe:
        s = self._stream
        fps = float(s.average_rate) if s.average_rate else None
        width, height = s.codec_context.width, s.codec_context.height
        if self._first is not None and quarter_turns(self._first) % 2:
            width, height = height, width
        return VideoProbe(s.frames or None, fps, width, height)

    def _next(self, decoded: Iterator, index: int):
        try:
            return next(decoded, None)
        except self._av.FFmpegError as exc:
            raise self.failed(index, exc) from exc

    def _data_missing(self) -> bool:
        """True when the container's index lists data past the end of the file (an MP4 cut short):
        frame threads end decoding there without an error."""
        entries = getattr(self._stream, "index_entries", None) or ()  # PyAV >= 14
        return max((e.pos + e.size for e in entries), default=0) > self.path.stat().st_size

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        start_s, time_base = schedule.options.start_s, self._stream.time_base
        decoded, pending = self._decoded, [self._first] if self._first is not None else []
        if start_s > 0 and time_base and self.seekable:
            self._container.seek(self._start_pts + int(start_s / time_base), stream=self._stream, backward=True)
            decoded, pending = self._container.decode(self._stream), []
        index = 0
        while not schedule.done:
            frame = pending.pop() if pending else self._next(decoded, index)
            if frame is None:
                if self._data_missing():
                    raise self.failed(index, RuntimeError("the file ends before the frames its index lists"))
                return
            index += 1
            if frame.pts is not None and time_base:
                t_s = float((frame.pts - self._start_pts) * time_base)
            else:
                t_s = (index - 1) / (self.probe().fps or 30.0)
            if schedule.keep(t_s):
                turns = quarter_turns(frame)  # a turned view has negative strides, which torch.from_numpy refuses
                rgb = frame.to_ndarray(format="rgb24")
                yield t_s, np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb

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
        # MP4/MOV and AVI index every frame; for other containers OpenCV guesses duration x fps, which is
        # wrong for variable frame rates and streams that start after 0 s (read as truncation below).
        count = int(c.get(cv2.CAP_PROP_FRAME_COUNT)) if self.family in ("MP4", "AVI") else 0
        fps = c.get(cv2.CAP_PROP_FPS)
        return VideoProbe(count if count > 0 else None, fps if fps > 0 else None,
                          int(c.get(cv2.CAP_PROP_FRAME_WIDTH)), int(c.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def frames(self, schedule) -> Iterator[tuple[float, np.ndarray]]:
        declared = self.probe().num_frames
        if schedule.options.start_s > 0 and self.seekable:
            self._capture.set(cv2.CAP_PROP_POS_MSEC, schedule.options.start_s * 1e3)
        first = int(self._capture.get(cv2.CAP_PROP_POS_FRAMES))
        index, last_s = first, None
        while not schedule.done:
            ok, bgr = self._capture.read()
            if not ok:
                # OpenCV reports a broken stream as a plain end: compare with the container's count.
                if declared is not None and index < declared - 1:
                    raise self.failed(index, RuntimeError(f"stream ended after {index} of {declared} frames"))
                return
            t_s = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
            if last_s is not None and t_s <= last_s:  # the last frames of an MPEG-PS with B-frames read 0 s
                t_s = last_s + 1 / (self.probe().fps or 30.0)
            last_s = t_s
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
        decoder = None
        try:
            decoder = _DECODERS[name](path)
            probe = decoder.probe()
        except NoVideoStreamError as exc:
            raise SourceError(f"{path} has {exc}", "Pass a file with a video track (an audio-only file has no frames)") from exc
        except Exception as exc:  # each library has its own error types; all are reported below
            if decoder is not None:
                decoder.close()
            complaints.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if probe.num_frames and probe.fps and options.start_s >= probe.num_frames / probe.fps:
            decoder.close()  # otherwise the run ends at once with no frame and no word why
            duration_s = probe.num_frames / probe.fps
            raise SourceError(f"start_s {options.start_s:g} is past the end of {path} ({duration_s:.2f} s long)",
                              f"Pass a start_s below {duration_s:.2f}")
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
