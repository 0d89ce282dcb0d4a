"""RGB-D sequences in the TUM RGB-D benchmark layout.

A folder with ``rgb.txt`` and ``depth.txt`` (``timestamp filename`` lines, ``#`` comments) and
optionally ``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``, camera-to-world). Depth PNGs are
uint16 in units of 1/5000 m (0 = no measurement). Each colour image is paired with the depth image
nearest in time, if within ``max_dt_s`` (0.02 s, as TUM's associate.py); unpaired colour images are
skipped. Poses are interpolated at the colour timestamp (linear translation, slerp rotation) between
the two ground-truth samples around it; outside the ground truth's time range, ``pose`` is None.

Intrinsics, first match wins: the ``intrinsics=(fx, fy, cx, cy)`` option; a ``intrinsics.txt`` file
with ``fx fy cx cy`` on one line; ``scene.json`` as written by ``memstream synth``; the published
TUM calibrations when the folder name contains ``freiburg1``/``2``/``3``; else None.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from memstream.streaming.errors import ConfigError, SourceError
from memstream.streaming.geometry import matrix_from_quaternion, slerp
from memstream.streaming.sources import SourceSpec, register_source
from memstream.streaming.sources._base import StreamSource, read_rgb
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import resize_frame
from memstream.streaming.types import Frame, SourceInfo

DEPTH_SCALE = 5000.0
# Published TUM RGB-D calibrations (fx, fy, cx, cy) of the three Kinects.
TUM_INTRINSICS = {
    "freiburg1": (517.3, 516.5, 318.6, 255.3),
    "freiburg2": (520.9, 521.0, 325.1, 249.7),
    "freiburg3": (535.4, 539.2, 320.1, 247.6),
}


def read_list(path: Path, columns: int) -> list[list[str]]:
    """Non-comment rows of a TUM text file, each with ``columns`` fields."""
    if not path.is_file():
        raise SourceError(f"missing {path}", "A TUM RGB-D folder needs rgb.txt and depth.txt")
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    bad = next((i for i, row in enumerate(rows) if len(row) != columns), None)
    if bad is not None:
        raise SourceError(f"{path}: row {bad + 1} has {len(rows[bad])} fields, expected {columns}", "Fix the file")
    return rows


def associate(rgb_t: np.ndarray, depth_t: np.ndarray, max_dt_s: float) -> list[tuple[int, int]]:
    """Pairs (rgb row, depth row) by nearest timestamp within ``max_dt_s``, each depth used once."""
    if len(depth_t) == 0:
        return []
    order = np.argsort(depth_t)
    sorted_t = depth_t[order]
    pairs, used = [], set()
    for i, t in enumerate(rgb_t):
        j = int(np.searchsorted(sorted_t, t))
        candidates = [k for k in (j - 1, j) if 0 <= k < len(sorted_t)]
        k = min(candidates, key=lambda k: abs(sorted_t[k] - t))
        if abs(sorted_t[k] - t) <= max_dt_s and int(order[k]) not in used:
            used.add(int(order[k]))
            pairs.append((i, int(order[k])))
    return pairs


class PoseTrack:
    """Ground-truth poses interpolated at any time within their range."""

    def __init__(self, rows: list[list[str]]) -> None:
        data = np.array(rows, np.float64) if rows else np.zeros((0, 8))
        data = data[np.argsort(data[:, 0])]
        self.times = data[:, 0]
        self.translations = data[:, 1:4]
        self.quaternions = data[:, 4:8]

    def at(self, t_s: float) -> np.ndarray | None:
        if len(self.times) == 0 or t_s < self.times[0] or t_s > self.times[-1]:
            return None
        j = int(np.searchsorted(self.times, t_s))
        if j == 0 or self.times[j] == t_s:
            return self._pose(self.translations[j], self.quaternions[j])
        t0, t1 = self.times[j - 1], self.times[j]
        f = (t_s - t0) / (t1 - t0)
        translation = (1 - f) * self.translations[j - 1] + f * self.translations[j]
        return self._pose(translation, slerp(self.quaternions[j - 1], self.quaternions[j], f))

    @staticmethod
    def _pose(translation: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3] = matrix_from_quaternion(quaternion)
        pose[:3, 3] = translation
        return pose


def find_intrinsics(folder: Path, given: tuple[float, float, float, float] | None) -> np.ndarray | None:
    values = given
    if values is None and (folder / "intrinsics.txt").is_file():
        values = tuple(float(v) for v in (folder / "intrinsics.txt").read_text().split()[:4])
    if values is None and (folder / "scene.json").is_file():
        k = json.loads((folder / "scene.json").read_text()).get("intrinsics")
        values = (k["fx"], k["fy"], k["cx"], k["cy"]) if k else None
    if values is None:
        values = next((v for key, v in TUM_INTRINSICS.items() if key in folder.resolve().name), None)
    if values is None:
        return None
    fx, fy, cx, cy = values
    return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], np.float64)


class TumRgbdSource(StreamSource):
    """RGB + metric depth + interpolated poses from a TUM RGB-D folder."""

    def __init__(self, uri: str, folder: Path, options: SourceOptions, intrinsics=None, max_dt_s: float = 0.02) -> None:
        super().__init__(options)
        rgb_rows, depth_rows = read_list(folder / "rgb.txt", 2), read_list(folder / "depth.txt", 2)
        gt_file = folder / "groundtruth.txt"
        self.poses = PoseTrack(read_list(gt_file, 8) if gt_file.is_file() else [])
        rgb_t = np.array([float(r[0]) for r in rgb_rows])
        depth_t = np.array([float(r[0]) for r in depth_rows])
        self._pairs = [(rgb_t[i], folder / rgb_rows[i][1], folder / depth_rows[j][1]) for i, j in associate(rgb_t, depth_t, max_dt_s)]
        if not self._pairs:
            raise SourceError(f"no colour image in {folder} has a depth image within {max_dt_s} s", "Check rgb.txt and depth.txt")
        self._t0 = self._pairs[0][0]
        self.intrinsics = find_intrinsics(folder, intrinsics)
        first = read_rgb(self._pairs[0][1])
        width, height = options.resize or (first.shape[1], first.shape[0])
        span = self._pairs[-1][0] - self._t0
        self.info = SourceInfo(
            uri=uri,
            num_frames=self.schedule.count_kept(t - self._t0 for t, _, _ in self._pairs),
            fps=self.schedule.output_fps(float((len(self._pairs) - 1) / span) if span > 0 else None),
            width=width,
            height=height,
            backend="tum-rgbd",
        )

    def _frames(self) -> Iterator[Frame]:
        index = 0
        for t_abs, rgb_path, depth_path in self._pairs:
            if self.schedule.done:
                return
            if not self.schedule.keep(t_abs - self._t0):
                continue
            raw = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
            if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
                raise SourceError(f"cannot read 16-bit depth image {depth_path}", "TUM depth must be uint16 PNG")
            depth = raw.astype(np.float32) / DEPTH_SCALE
            rgb, depth, k = resize_frame(read_rgb(rgb_path), self.options.resize, depth, self.intrinsics)
            # Timestamps stay on the recording's clock minus the first frame's, so frames line up with
            # groundtruth.txt through self._t0.
            yield Frame(index, float(t_abs - self._t0), rgb, depth, k, self.poses.at(t_abs), self.info.uri)
            index += 1


def open_tum(uri: str, options: SourceOptions, *, intrinsics=None, max_dt_s: float = 0.02, **unknown) -> TumRgbdSource:
    if unknown:
        raise ConfigError(f"unknown option(s) for a TUM RGB-D folder: {', '.join(sorted(unknown))}", "Valid: intrinsics, max_dt_s")
    return TumRgbdSource(uri, Path(uri), options, intrinsics, max_dt_s)


def _is_tum(uri: str) -> bool:
    folder = Path(uri)
    return folder.is_dir() and (folder / "rgb.txt").is_file() and (folder / "depth.txt").is_file()


register_source(SourceSpec("tum", _is_tum, open_tum, "TUM RGB-D folders (rgb.txt, depth.txt, groundtruth.txt)"))
