"""Writing RGB frames to a video file.

H.264 through PyAV (libx264, yuv420p: plays everywhere, decodes in decord, PyAV and OpenCV) is the
default; OpenCV's ``mp4v`` is the fallback when PyAV is missing. the OpenCV wheels have no H.264
encoder of its own, which is why PyAV comes first.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.threads import thread_budget


class VideoWriteError(MemstreamError):
    """The video file cannot be created or written."""


def pyav_available() -> bool:
    """True when PyAV (``import av``) is installed, i.e. H.264 encoding is possible."""
    return importlib.util.find_spec("av") is not None


class VideoWriter:
    """Append RGB frames to a video file.

    Args:
        path: output file (``.mp4`` recommended); its folder must exist.
        fps: frame rate written in the container.
        codec: ``auto`` (H.264 if PyAV is installed, else mp4v), ``h264`` or ``mp4v``.
        crf: H.264 constant rate factor (0 = lossless, 18 = visually lossless, 23 = x264 default).
        keyint: H.264 frames between key frames (x264's ``g``; None: x264's default, 250; mp4v has no
            such setting and ignores it). 1 codes
            every frame on its own (intra only): a decoded frame then depends on that frame alone,
            never on earlier ones. Inter-coded frames carry faint residue of what earlier frames
            showed (a cube shown and then hidden stays decodable from the "empty" frames after it:
            ``benchmarks/diag_mikasa_leak.py``), which data meant to train a memory must not have.

    Frames must all have the size of the first one. yuv420p (the format every player decodes)
    needs even sizes, so an odd width or height is encoded as yuv444p (High 4:4:4 profile) instead:
    the decoded frames keep exactly the written size (decord, PyAV and OpenCV read it; some browsers
    do not play it). Padding to even would change the frame size under the ground truth.

    Example:
        >>> import numpy as np, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "x.mp4")
        >>> with VideoWriter(path, fps=10) as w:
        ...     w.write(np.zeros((48, 64, 3), np.uint8))
        >>> w.frames_written
        1
    """

    def __init__(self, path: str | Path, fps: float, *, codec: str = "auto", crf: int = 18,
                 keyint: int | None = None) -> None:
        if codec not in ("auto", "h264", "mp4v"):
            raise ConfigError(f"unknown video codec {codec!r}", "Use auto, h264 or mp4v")
        if fps <= 0:
            raise ConfigError(f"video fps must be > 0, got {fps}", "Pass the stream's frame rate")
        if not 0 <= crf <= 51:
            raise ConfigError(
                f"crf must be in 0..51, got {crf}", "Use 18 (visually lossless) or 23 (x264 default)"
            )
        if keyint is not None and (isinstance(keyint, bool) or not isinstance(keyint, int) or keyint < 1):
            raise ConfigError(f"keyint must be an int >= 1, got {keyint!r}", "Use 1 (every frame a key frame) or leave it out")
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise VideoWriteError(
                f"cannot write {self.path}: folder does not exist", "Create the folder first"
            )
        if self.path.is_dir():
            raise VideoWriteError(
                f"cannot write {self.path}: it is a folder", "Pass a file path such as out/video.mp4"
            )
        has_av = pyav_available()
        if codec == "h264" and not has_av:
            raise ConfigError(
                "codec h264 needs PyAV, which is not installed", "pip install av, or use codec=mp4v"
            )
        self.codec = "h264" if codec == "h264" or (codec == "auto" and has_av) else "mp4v"
        self.fps = float(fps)
        self.crf = int(crf)
        self.keyint = keyint
        self.frames_written = 0
        self._closed = False
        self._size: tuple[int, int] | None = None
        self._container = None
        self._stream = None
        self._cv_writer: cv2.VideoWriter | None = None

    def _open(self, width: int, height: int) -> None:
        self._size = (width, height)
        if self.codec == "h264":
            import av

            try:
                self._container = av.open(str(self.path), mode="w")
            except (OSError, av.FFmpegError) as exc:
                raise VideoWriteError(
                    f"cannot create video {self.path}: {exc}", "Check the path and permissions"
                ) from exc
            rate = Fraction(self.fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv444p" if width % 2 or height % 2 else "yuv420p"
            options = {"crf": str(self.crf), "preset": "veryfast"}
            if self.keyint is not None:
                options["g"] = str(self.keyint)
            budget = thread_budget()
            if budget is not None:  # MEMSTREAM_THREADS: x264 makes 1.5 threads a core (and lookahead) otherwise
                options["threads"] = str(budget)
            self._stream.options = options
        else:
            writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not writer.isOpened():
                raise VideoWriteError(
                    f"OpenCV cannot create video {self.path}", "Check the path and permissions"
                )
            self._cv_writer = writer

    def write(self, rgb: np.ndarray) -> None:
        """Append one uint8 (H, W, 3) RGB frame."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
        if self._closed:
            raise ValueError(f"video writer for {self.path} is closed")
        height, width = rgb.shape[:2]
        if self._size is None:
            self._open(width, height)
        elif self._size != (width, height):
            raise ValueError(f"frame size {width}x{height} differs from the first frame's {self._size}")
        if self._cv_writer is not None:
            self._cv_writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        else:
            import av

            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            try:
                for packet in self._stream.encode(frame):
                    self._container.mux(packet)
            except (OSError, av.FFmpegError) as exc:
                raise VideoWriteError(
                    f"cannot write to video {self.path}: {exc}", "Check free disk space"
                ) from exc
        self.frames_written += 1

    def close(self) -> None:
        """Flush and close; the file is complete and playable afterwards. Idempotent."""
        self._closed = True
        if self._container is not None:
            import av

            container, self._container = self._container, None
            try:
                for packet in self._stream.encode():
                    container.mux(packet)
            except (OSError, av.FFmpegError) as exc:
                raise VideoWriteError(
                    f"cannot finish video {self.path}: {exc}", "Check free disk space"
                ) from exc
            finally:
                container.close()
        if self._cv_writer is not None:
            self._cv_writer.release()
            self._cv_writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(
    path: str | Path, frames: Iterable[np.ndarray], fps: float, *, codec: str = "auto", crf: int = 18
) -> int:
    """Write an iterable of uint8 RGB frames to ``path``; returns the number written."""
    with VideoWriter(path, fps, codec=codec, crf=crf) as writer:
        for rgb in frames:
            writer.write(rgb)
    return writer.frames_written
