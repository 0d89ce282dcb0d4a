"""Tracking datasets on disk: LaSOT, GOT-10k and ``memstream synth`` folders, plus box files.

:func:`open_dataset` recognises these layouts (``N`` frames, boxes ``x,y,w,h`` pixels, one per line):

* LaSOT / LaSOT_ext: ``ROOT/<class>/<class>-<n>/`` or flat ``ROOT/<seq>/``, each with ``img/*.jpg``,
  ``groundtruth.txt``, ``full_occlusion.txt`` and ``out_of_view.txt`` (one line of comma-separated
  0/1); an optional ``ROOT/testing_set.txt`` selects sequences by name.
  ``target_visible = (full_occlusion == 0) & (out_of_view == 0)``.
* GOT-10k: ``ROOT/[<split>/]<seq>/`` with the frames ``00000001.jpg ...`` and ``groundtruth.txt``,
  optionally ``absence.label`` and ``cover.label`` (one integer per line) and ``<split>/list.txt``.
  ``target_visible = (absence == 0) & (cover > 0)``, each part only when its file exists.
* ``memstream synth`` output (``scene.json``, ``gt/<id>.txt`` with LaSOT flags, ``rgb/``,
  ``video.mp4``), or a folder of several; the sequence is the scene's target object.

Example:
    >>> dataset = open_dataset("data/LaSOT")  # doctest: +SKIP
    >>> for spec in dataset:  # doctest: +SKIP
    ...     source = memstream.streaming.open_source(spec.source_uri)
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memstream.streaming.atomic import write_text_atomic
from memstream.streaming.errors import MemstreamError
from memstream.streaming.sources.images import IMAGE_SUFFIXES, list_images, natural_key

LAYOUTS = (
    "Expected LaSOT (ROOT/<class>/<class>-<n>/ or ROOT/<seq>/ with img/ and groundtruth.txt), "
    "GOT-10k (ROOT/[<split>/]<seq>/ with the frames and groundtruth.txt), "
    "or a `memstream synth` folder (scene.json, gt/) or a folder of them"
)
_SEPARATOR = re.compile(r"\s*,\s*|\s+")


class DatasetError(MemstreamError):
    """A dataset folder or a box / flag file is missing or malformed."""


def read_boxes(path: str | Path) -> np.ndarray:
    """Read a LaSOT / GOT-10k box file: one ``x,y,w,h`` line per frame.

    Values may be separated by commas, tabs or spaces; ``nan`` is accepted; trailing blank lines
    are ignored.

    Returns:
        float64 ``(N, 4)`` pixels.

    Raises:
        DatasetError: the file cannot be read, or a line (named by number) is not 4 numbers.
    """
    path = Path(path)
    lines = _read_text(path).rstrip().splitlines()
    boxes = np.empty((len(lines), 4), np.float64)
    for number, line in enumerate(lines, start=1):
        tokens = _SEPARATOR.split(line.strip().strip(","))
        try:
            if len(tokens) != 4:
                raise ValueError(f"{len(tokens)} values")
            boxes[number - 1] = [float(token) for token in tokens]
        except ValueError as exc:
            raise DatasetError(
                f"{path}, line {number}: expected 4 numbers x,y,w,h, got {line.strip()[:60]!r} ({exc})",
                "Write one 'x,y,w,h' line per frame, separated by commas, tabs or spaces",
            ) from exc
    return boxes


def write_boxes(path: str | Path, boxes_xywh: np.ndarray) -> Path:
    """Write ``x,y,w,h`` lines (up to 4 decimals) atomically: a reader never sees half a file.

    Args:
        path: the box file; its folder is created when missing.
        boxes_xywh: float ``(N, 4)`` pixels.

    Returns:
        ``path``.
    """
    boxes = np.asarray(boxes_xywh, np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes_xywh must have shape (N, 4), got {boxes.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(",".join(_format_number(v) for v in box) + "\n" for box in boxes)
    write_text_atomic(path, text)
    return path


def _format_number(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}", "Check that the file exists and is text") from exc


def read_flags(path: str | Path, num_frames: int) -> np.ndarray:
    """Read integer flags: LaSOT's one comma-separated line, or GOT-10k's one value per line.

    Returns:
        int64 ``(num_frames,)``.

    Raises:
        DatasetError: a value is not an integer (its line is named) or the count is not ``num_frames``.
    """
    path = Path(path)
    values: list[int] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        for token in _SEPARATOR.split(line.strip().strip(",")):
            if not token:
                continue
            try:
                values.append(int(token))
            except ValueError as exc:
                raise DatasetError(f"{path}, line {number}: {token!r} is not an integer flag") from exc
    if len(values) != num_frames:
        raise DatasetError(f"{path} has {len(values)} flags for {num_frames} frames", "Write one per frame")
    return np.array(values, np.int64)


@dataclass(frozen=True)
class SequenceSpec:
    """One annotated sequence, ready to stream and to score.

    Attributes:
        name: the sequence name (its folder name: ``airplane-1``, ``GOT-10k_Val_000001``).
        source_path: the image folder or video file the frames come from.
        frame_paths: the ``N`` image files in natural order, or empty for a video.
        gt_xywh: float64 ``(N, 4)`` pixels; NaN rows where no box is published (GOT-10k test).
        target_visible: bool ``(N,)``.
        protocol: the OPE protocol of the dataset ("lasot" or "got10k", see ``evaluate_sequence``).
    """

    name: str
    source_path: Path
    frame_paths: tuple[Path, ...]
    gt_xywh: np.ndarray
    target_visible: np.ndarray
    protocol: str = "lasot"

    def __post_init__(self) -> None:
        gt = np.array(self.gt_xywh, np.float64)
        visible = np.array(self.target_visible, bool).reshape(-1)
        if gt.ndim != 2 or gt.shape[1] != 4 or len(gt) == 0 or visible.shape != (len(gt),):
            raise ValueError(f"{self.name}: need gt (N>=1, 4), (N,) flags, got {gt.shape}, {visible.shape}")
        if self.frame_paths and len(self.frame_paths) != len(gt):
            raise ValueError(f"{self.name}: {len(self.frame_paths)} frames for {len(gt)} boxes")
        gt.flags.writeable = visible.flags.writeable = False
        object.__setattr__(self, "gt_xywh", gt)
        object.__setattr__(self, "target_visible", visible)

    @property
    def source_uri(self) -> str:
        """A URI for ``memstream.streaming.open_source`` (image folder or video path)."""
        return str(self.source_path)

    @property
    def num_frames(self) -> int:
        return len(self.gt_xywh)

    @property
    def first_box_xywh(self) -> np.ndarray:
        """float64 ``(4,)`` pixels: the box OPE initialises the tracker with."""
        return self.gt_xywh[0]


def _images_matching(folder: Path, num_frames: int, gt_file: Path) -> tuple[Path, ...]:
    frames = tuple(list_images(folder)) if folder.is_dir() else ()
    if len(frames) != num_frames:
        raise DatasetError(f"{folder} has {len(frames)} images but {gt_file} has {num_frames} boxes")
    return frames


def _visible_from_flags(folder: Path, names: tuple[str, str], num_frames: int) -> np.ndarray:
    visible = np.ones(num_frames, bool)
    for name in names:
        if (folder / name).is_file():
            visible &= read_flags(folder / name, num_frames) == 0
    return visible


def read_lasot_sequence(folder: str | Path) -> SequenceSpec:
    """A LaSOT sequence folder (``img/``, ``groundtruth.txt``, occlusion flags; missing flags = visible)."""
    folder = Path(folder)
    gt = read_boxes(folder / "groundtruth.txt")
    frames = _images_matching(folder / "img", len(gt), folder / "groundtruth.txt")
    visible = _visible_from_flags(folder, ("full_occlusion.txt", "out_of_view.txt"), len(gt))
    return SequenceSpec(folder.name, folder / "img", frames, gt, visible, "lasot")


def read_got10k_sequence(folder: str | Path) -> SequenceSpec:
    """A GOT-10k sequence folder. On the test split only frame 0's box is public: later rows are NaN."""
    folder = Path(folder)
    gt_file = folder / "groundtruth.txt"
    gt, frames = read_boxes(gt_file), tuple(list_images(folder))
    published = len(gt)
    if published == 1 < len(frames):
        gt = np.vstack([gt, np.full((len(frames) - 1, 4), np.nan)])
    if len(frames) != len(gt):
        raise DatasetError(f"{folder} has {len(frames)} images but {gt_file} has {published} boxes")
    visible = np.arange(len(gt)) < published
    if (folder / "absence.label").is_file():
        visible &= read_flags(folder / "absence.label", len(gt)) == 0
    if (folder / "cover.label").is_file():
        visible &= read_flags(folder / "cover.label", len(gt)) > 0
    return SequenceSpec(folder.name, folder, frames, gt, visible, "got10k")


def read_synthetic_sequence(folder: str | Path, object_id: int | None = None) -> SequenceSpec:
    """A ``memstream synth`` folder; the object is the scene's target unless ``object_id`` is given.

    The frames are the lossless ``rgb/`` PNGs (the pixels the boxes were measured on); when that
    folder is missing or incomplete, ``video.mp4``.
    """
    folder = Path(folder)
    try:
        meta = json.loads(_read_text(folder / "scene.json"))
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{folder / 'scene.json'} is not valid JSON: {exc}") from exc
    target = object_id if object_id is not None else meta.get("target_id") or 1
    gt_file = folder / "gt" / f"{target}.txt"
    gt = read_boxes(gt_file)
    if meta.get("frames", len(gt)) != len(gt):
        raise DatasetError(f"{gt_file} has {len(gt)} boxes but scene.json says {meta['frames']} frames")
    flags = (f"{target}_full_occlusion.txt", f"{target}_out_of_view.txt")
    visible = _visible_from_flags(folder / "gt", flags, len(gt))
    frames = tuple(list_images(folder / "rgb")) if (folder / "rgb").is_dir() else ()
    if len(frames) == len(gt):
        return SequenceSpec(folder.name, folder / "rgb", frames, gt, visible, "lasot")
    if not (folder / "video.mp4").is_file():
        raise DatasetError(f"{folder} has neither rgb/ with {len(gt)} images nor video.mp4")
    return SequenceSpec(folder.name, folder / "video.mp4", (), gt, visible, "lasot")


READERS: dict[str, Callable[[Path], SequenceSpec]] = {
    "lasot": read_lasot_sequence,
    "got10k": read_got10k_sequence,
    "synthetic": read_synthetic_sequence,
}


@dataclass(frozen=True)
class TrackingDataset:
    """Sequence folders of one layout; iterating reads them one at a time.

    Attributes:
        kind: "lasot", "got10k" or "synthetic" (a key of :data:`READERS`).
        root: the folder given to :func:`open_dataset`.
        sequence_dirs: one folder per sequence, in dataset order.
    """

    kind: str
    root: Path
    sequence_dirs: tuple[Path, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(folder.name for folder in self.sequence_dirs)

    def __len__(self) -> int:
        return len(self.sequence_dirs)

    def __iter__(self) -> Iterator[SequenceSpec]:
        return (READERS[self.kind](folder) for folder in self.sequence_dirs)

    def sequence(self, name: str) -> SequenceSpec:
        """The sequence called ``name``; KeyError when there is none."""
        for folder in self.sequence_dirs:
            if folder.name == name:
                return READERS[self.kind](folder)
        raise KeyError(f"no sequence {name!r} in {self.root}")


def sequence_kind(folder: Path) -> str | None:
    """The layout of a single sequence folder, or None when it is not one."""
    if (folder / "scene.json").is_file() and (folder / "gt").is_dir():
        return "synthetic"  # checked first: its groundtruth.txt holds TUM poses, not boxes
    if not (folder / "groundtruth.txt").is_file():
        return None
    if (folder / "img").is_dir():
        return "lasot"
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
        return "got10k"
    return None


def _subfolders(folder: Path) -> list[Path]:
    children = (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(children, key=lambda p: natural_key(p.name))


def _find_sequences(root: Path) -> list[tuple[str, Path]]:
    """(kind, folder) of the sequences one level below ``root``, or two levels below (class or split)."""
    found = []
    for child in _subfolders(root):
        kind = sequence_kind(child)
        if kind is not None:
            found.append((kind, child))
        else:
            found += [(kind, p) for p in _subfolders(child) if (kind := sequence_kind(p))]
    return found


def _order_by_list(list_file: Path, folders: list[Path]) -> list[Path]:
    """The folders named in ``list_file`` (one name per line), in its order."""
    by_name = {folder.name: folder for folder in folders}
    names = [line.strip() for line in _read_text(list_file).splitlines() if line.strip()]
    missing = [name for name in names if name not in by_name]
    if missing:
        raise DatasetError(
            f"{list_file} names {len(missing)} sequence(s) with no folder, e.g. {missing[0]!r}",
            "Restore the sequence folders or remove their names from the list",
        )
    return [by_name[name] for name in names]


def _apply_lists(kind: str, root: Path, folders: list[Path]) -> list[Path]:
    if kind == "lasot" and (root / "testing_set.txt").is_file():
        return _order_by_list(root / "testing_set.txt", folders)
    if kind != "got10k":
        return folders
    ordered: list[Path] = []
    for parent in dict.fromkeys(folder.parent for folder in folders):
        group = [folder for folder in folders if folder.parent == parent]
        ordered += _order_by_list(parent / "list.txt", group) if (parent / "list.txt").is_file() else group
    return ordered


def open_dataset(path: str | Path) -> TrackingDataset:
    """Recognise the layout under ``path`` (see the module docstring) and list its sequences.

    ``path`` may also be a single sequence folder of any of the layouts.

    Raises:
        DatasetError: ``path`` is not a folder, mixes layouts, or matches none of them.
    """
    root = Path(path)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder", LAYOUTS)
    kind = sequence_kind(root)
    if kind is not None:
        return TrackingDataset(kind, root, (root,))
    found = _find_sequences(root)
    kinds = sorted({kind for kind, _ in found})
    if not kinds:
        raise DatasetError(f"no tracking sequences found in {root}", LAYOUTS)
    if len(kinds) > 1:
        raise DatasetError(f"{root} mixes sequence layouts ({', '.join(kinds)})", "Open one layout at a time")
    folders = _apply_lists(kinds[0], root, [folder for _, folder in found])
    return TrackingDataset(kinds[0], root, tuple(folders))
