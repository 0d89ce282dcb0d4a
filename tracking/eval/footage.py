"""Synthetic sequences as a tracker would receive them: raw, or through H.264 at a chosen CRF.

A ``synthetic://`` scene is rendered once. Its ground truth comes from that render, and its frames
are either the rendered pixels (``"raw"``) or those pixels encoded by
:class:`~memstream.streaming.videoio.VideoWriter` (libx264, the writer ``memstream synth`` uses for
its ``video.mp4``, CRF 18 there) at ``"crf<N>"`` and decoded back through
:func:`~memstream.streaming.open_source`, the way a recorded video reaches the tracker. Every
encoding of a scene therefore shares one ground truth, box for box. An encoded file is cached under
a name that hashes the rendered pixels and the CRF, so a scene is encoded once per CRF, and a
renderer change that alters the pixels never hits a stale file.

Example:
    >>> footage = load_synthetic("synthetic://distractors?seed=10&frames=8&size=96x64", "crf28")
    >>> footage.num_frames, footage.frames[0].gt is not None, footage.gt_xywh.shape
    (8, True, (8, 4))
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memstream.streaming.atomic import replaced_on_success
from memstream.streaming.errors import ConfigError, SourceError
from memstream.streaming.sources import open_source
from memstream.streaming.types import Frame, read_only
from memstream.streaming.videoio import VideoWriter

RAW = "raw"
_CRF = re.compile(r"crf(\d{1,2})")


def parse_codec(codec: str) -> int | None:
    """``"raw"`` -> None; ``"crf<N>"`` (N in 0..51, as x264 takes it) -> N.

    Raises:
        ConfigError: any other name.
    """
    match = _CRF.fullmatch(codec)
    if codec == RAW:
        return None
    if match is None or int(match.group(1)) > 51:
        raise ConfigError(f"unknown encoding {codec!r}", "Use raw or crf<N> with N in 0..51, e.g. crf18")
    return int(match.group(1))


@dataclass(frozen=True)
class Footage:
    """One synthetic sequence in one encoding.

    Attributes:
        uri: the ``synthetic://`` scene.
        codec: ``"raw"`` or ``"crf<N>"``.
        frames: the ``N`` frames the tracker gets; each carries the render's ``gt``.
        gt_xywh: float64 ``(N, 4)`` pixels, the target's visible box (zeros where it is not visible).
        target_visible: bool ``(N,)``: some pixel of the target is visible.
        video_path: the decoded H.264 file, or None for ``raw``.
    """

    uri: str
    codec: str
    frames: tuple[Frame, ...]
    gt_xywh: np.ndarray
    target_visible: np.ndarray
    video_path: Path | None = None

    def __post_init__(self) -> None:
        read_only(self.gt_xywh)
        read_only(self.target_visible)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


def _pixels_digest(frames: list[Frame]) -> str:
    digest = hashlib.sha1()
    for frame in frames:
        digest.update(np.ascontiguousarray(frame.rgb).data)
    return digest.hexdigest()[:16]


def encoded_video(frames: list[Frame], fps: float, crf: int, cache_dir: Path) -> Path:
    """The H.264 encoding of ``frames`` at ``crf`` in ``cache_dir``, written on the first call only.

    The file is written under a temporary name and renamed, so a cached file is always complete.

    Returns:
        ``cache_dir/<sha1 of the pixels>-crf<crf>.mp4``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{_pixels_digest(frames)}-crf{crf}.mp4"
    if path.is_file():
        return path
    with replaced_on_success(path) as temporary, VideoWriter(temporary, fps, codec="h264", crf=crf) as writer:
        for frame in frames:
            writer.write(frame.rgb)
    return path


def _decode(path: Path, raw: list[Frame]) -> tuple[Frame, ...]:
    with open_source(str(path)) as source:
        decoded = list(source)
    if len(decoded) != len(raw) or decoded[0].rgb.shape != raw[0].rgb.shape:
        raise SourceError(
            f"{path} decodes to {len(decoded)} frames of {decoded[0].rgb.shape if decoded else '-'}, "
            f"expected {len(raw)} of {raw[0].rgb.shape}",
            "Delete the cached file and run again",
        )
    return tuple(dataclasses.replace(d, gt=r.gt) for d, r in zip(decoded, raw, strict=True))  # lengths checked above


def load_synthetic(uri: str, codec: str = RAW, cache_dir: str | Path | None = None, object_id: int = 1) -> Footage:
    """Render ``uri`` and return it raw or through H.264 (see the module docstring).

    Args:
        uri: a ``synthetic://PRESET?params`` scene.
        codec: ``"raw"`` or ``"crf<N>"``.
        cache_dir: where encoded files are kept between calls; None encodes into a temporary folder
            that is removed once the frames are decoded.
        object_id: the object whose box is the ground truth (1, the target, in every preset).

    Raises:
        ConfigError: a bad codec name or URI. SourceError: the encoded file does not decode back to
            the rendered frame count and size.
    """
    crf = parse_codec(codec)
    with open_source(uri) as source:
        raw = list(source)
        fps = source.info.fps or 30.0
    if not raw or raw[0].gt is None:
        raise ConfigError(f"{uri} gave no frames with ground truth", "Pass a synthetic:// scene")
    row = raw[0].gt.index_of(object_id)
    gt = np.array([f.gt.boxes_xywh[row] for f in raw], np.float64)
    visible = np.array([f.gt.visible_fraction[row] > 0 for f in raw])
    if crf is None:
        return Footage(uri, codec, tuple(raw), gt, visible)
    if cache_dir is not None:
        path = encoded_video(raw, fps, crf, Path(cache_dir))
        return Footage(uri, codec, _decode(path, raw), gt, visible, path)
    with tempfile.TemporaryDirectory(prefix="memstream-footage-") as folder:
        frames = _decode(encoded_video(raw, fps, crf, Path(folder)), raw)
    return Footage(uri, codec, frames, gt, visible)
