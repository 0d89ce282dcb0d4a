"""A folder of images, in natural order (``frame2`` before ``frame10``).

Timestamps come from ``timestamps.txt`` in the folder when present: one line per image, either
``seconds`` (in the sorted image order) or ``filename seconds``; ``#`` starts a comment. Without
it, frame i is at ``i / fps`` (option ``fps``, default 30).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path


from memstream.streaming.errors import ConfigError, SourceError
from memstream.streaming.sources import SourceSpec, register_source
from memstream.streaming.sources._base import StreamSource, read_rgb
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import resize_frame
from memstream.streaming.types import Frame, SourceInfo

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def natural_key(name: str) -> list:
    """Sort key splitting digit runs: ``img2.png`` < ``img10.png``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: natural_key(p.name))


def read_timestamps(file: Path, images: list[Path]) -> list[float]:
    rows = [line.split() for line in file.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    try:
        if rows and all(len(r) == 2 for r in rows):
            by_name = {r[0]: float(r[1]) for r in rows}
            missing = [p.name for p in images if p.name not in by_name]
            if missing:
                raise SourceError(f"{file} has no timestamp for {missing[0]}", "Add a 'filename seconds' line for every image")
            return [by_name[p.name] for p in images]
        stamps = [float(r[0]) for r in rows if len(r) == 1]
    except ValueError as exc:
        raise SourceError(f"{file}: a timestamp is not a number ({exc})", "Write seconds as decimal numbers") from exc
    if len(stamps) != len(rows) or len(stamps) != len(images):
        raise SourceError(
            f"{file} has {len(rows)} timestamps for {len(images)} images",
            "Write one 'seconds' or 'filename seconds' line per image",
        )
    return stamps


class ImageFolderSource(StreamSource):
    """Frames read lazily from image files (see the module docstring)."""

    def __init__(self, uri: str, images: list[Path], stamps: list[float], fps: float | None, options: SourceOptions) -> None:
        super().__init__(options)
        self._images, self._stamps = images, stamps
        first = read_rgb(images[0])
        width, height = options.resize or (first.shape[1], first.shape[0])
        self.info = SourceInfo(
            uri=uri,
            num_frames=self.schedule.count_kept(stamps),
            fps=self.schedule.output_fps(fps),
            width=width,
            height=height,
            backend="opencv-imread",
        )

    def _frames(self) -> Iterator[Frame]:
        index = 0
        for path, t_s in zip(self._images, self._stamps):
            if self.schedule.done:
                return
            if self.schedule.keep(t_s):
                rgb, _, _ = resize_frame(read_rgb(path), self.options.resize)
                yield Frame(index=index, timestamp_s=t_s, rgb=rgb, source_id=self.info.uri)
                index += 1


def open_images(uri: str, options: SourceOptions, *, fps: float = 30.0, **unknown: object) -> ImageFolderSource:
    if unknown:
        raise ConfigError(f"unknown option(s) for an image folder: {', '.join(sorted(unknown))}", "Valid: fps")
    if fps <= 0:
        raise ConfigError(f"fps must be > 0, got {fps}", "Pass the capture rate, e.g. fps=30")
    folder = Path(uri)
    images = list_images(folder)
    if not images:
        raise SourceError(f"no images in {folder}", f"Put {', '.join(sorted(IMAGE_SUFFIXES))} files there")
    stamp_file = folder / "timestamps.txt"
    if stamp_file.is_file():
        return ImageFolderSource(uri, images, read_timestamps(stamp_file, images), None, options)
    return ImageFolderSource(uri, images, [i / fps for i in range(len(images))], fps, options)


register_source(SourceSpec("images", lambda uri: Path(uri).is_dir(), open_images, "a folder of images (natural order)"))
