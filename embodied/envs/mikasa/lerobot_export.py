"""Export a demonstration folder as a LeRobot v3.0 dataset, the format current LeRobot reads.

Our folders keep LeRobot v2.1's layout (one Parquet table and one video per episode,
``meta/*.jsonl``), which lerobot >= 0.4 refuses (``BackwardCompatibilityError``); its own v2.1 ->
v3.0 converter needs ``meta/episodes_stats.jsonl``, which these folders never had. This writes
v3.0 from them instead, leaving the source as it is::

    meta/info.json                              codebase_version "v3.0", v3.0 path templates
    meta/tasks.parquet                          task_index, indexed by the instruction
    meta/stats.json                             per feature: min, max, mean, std, count, q01..q99
    meta/episodes/chunk-000/file-000.parquet    per episode: tasks, length, dataset_from_index /
        dataset_to_index, data/ and videos/<key>/ chunk_index, file_index (from_/to_timestamp),
        stats/<feature>/<stat>, and ours: seed, success, hidden_info, reveal_frames
    data/chunk-000/file-000.parquet             the episodes' rows, concatenated (a new file
                                                past ``DATA_FILE_MB``), same columns as before
    videos/<key>/chunk-000/file-000.mp4         one episode's video, copied byte for byte

Videos stay one per episode (file_index = episode index modulo ``CHUNK``) so that no frame is
re-encoded: every frame stays a key frame (see :mod:`.dataset`). Statistics are exact (video ones
from per-channel 256-bin histograms of every decoded frame, scaled to [0, 1] and shaped (3, 1, 1)
as LeRobot's are; LeRobot samples frames and bins values, so its own numbers differ slightly).

Example::

    export_lerobot("demos/rc3", "demos/rc3-lerobot")
    # then, with lerobot installed:
    # LeRobotDataset("local/rc3", root="demos/rc3-lerobot", video_backend="torchcodec")
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from memstream.embodied.envs.mikasa.dataset import CHUNK, FPS, _decode, _pyarrow, read_demonstrations
from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.errors import ConfigError, MemstreamError

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"
DATA_FILE_MB = 100  # LeRobot's defaults for one data file and one video file
VIDEO_FILE_MB = 200
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's q01 .. q99


def export_lerobot(root: str | Path, out: str | Path) -> dict[str, Any]:
    """Write the demonstrations in ``root`` (a :func:`write_demonstrations` folder) to ``out`` in
    LeRobot's v3.0 format, episodes renumbered ``0 ..`` in the source's order.

    Args:
        root: the source folder; read only.
        out: the new dataset folder; must be absent or empty. ``meta/info.json`` is written last,
            so a folder whose export was interrupted holds no dataset.

    Returns:
        The new ``meta/info.json`` content.

    Raises:
        ConfigError: ``out`` is not empty, or ``root`` holds no episode.
    """
    reader = read_demonstrations(root)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{str(out)!r} is not empty", "Export to a new folder")
    if not reader.records:
        raise ConfigError(f"{str(reader.root)!r} holds no episode", "Export a folder with finished episodes")
    pa = _pyarrow()
    features = reader.info["features"]
    videos = [key for key, feature in features.items() if feature["dtype"] == "video"]
    numeric = [key for key, feature in features.items() if feature["dtype"] != "video"]
    tables, rows, columns = [], [], {key: [] for key in numeric}
    histograms = {key: np.zeros((3, 256), dtype=np.int64) for key in videos}  # summed over episodes
    data_file, data_bytes, start = (0, 0), 0, 0
    for index in range(len(reader)):
        table, episode_videos, source_bytes = _read_episode(reader, index, start, videos)
        if tables and data_bytes + source_bytes > DATA_FILE_MB * 2**20:
            _write_table(pa, tables, out / DATA_PATH.format(chunk_index=data_file[0], file_index=data_file[1]))
            tables, data_bytes, data_file = [], 0, _next_file(*data_file)
        tables.append(table)
        data_bytes += source_bytes
        values = {key: _column(table, key) for key in numeric}
        episode_histograms = {key: _histogram(frames) for key, frames in episode_videos.items()}
        for key in numeric:
            columns[key].append(values[key])
        for key, histogram in episode_histograms.items():
            histograms[key] += histogram
        stats = {**{key: _stats(value) for key, value in values.items()},
                 **{key: _video_stats(histogram, table.num_rows) for key, histogram in episode_histograms.items()}}
        rows.append({**_episode_row(reader, index, start, table.num_rows, data_file, stats),
                     **_copy_videos(reader, index, table.num_rows, videos, out)})
        start += table.num_rows
    _write_table(pa, tables, out / DATA_PATH.format(chunk_index=data_file[0], file_index=data_file[1]))
    _write_table(pa, [pa.Table.from_pylist(rows)], out / EPISODES_PATH)
    _write_tasks(reader.tasks, out)
    stats = {**{key: _stats(np.concatenate(value)) for key, value in columns.items()},
             **{key: _video_stats(histogram, start) for key, histogram in histograms.items()}}
    write_json_atomic(out / "meta" / "stats.json", {key: {name: value.tolist() for name, value in entry.items()}
                                                    for key, entry in stats.items()})
    info = _info(reader.info, len(reader), start, len(reader.tasks))
    write_json_atomic(out / "meta" / "info.json", info)
    return info


def _read_episode(reader: Any, index: int, start: int, videos: list[str]) -> tuple[Any, dict[str, np.ndarray], int]:
    """Episode ``index``'s table (``episode_index`` / ``index`` renumbered from ``start``), its
    decoded videos, and its Parquet file's size in bytes."""
    table = reader.renumbered_table(index, index, start)
    frames = {key: _decode(reader.video_file(index, key)) for key in videos}
    for key, decoded in frames.items():
        if len(decoded) != table.num_rows:
            raise MemstreamError(f"episode {reader.records[index]['episode_index']} of {str(reader.root)!r} has "
                                 f"{table.num_rows} rows but {len(decoded)} frames of {key}", "Re-collect that episode")
    return table, frames, reader.data_file(index).stat().st_size


def _episode_row(reader: Any, index: int, start: int, length: int, data_file: tuple[int, int],
                 stats: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Episode ``index``'s row of ``meta/episodes``, less its videos' entries."""
    record = reader.records[index]
    row: dict[str, Any] = {"episode_index": index, "tasks": list(record["tasks"]), "length": length,
                           "data/chunk_index": data_file[0], "data/file_index": data_file[1],
                           "dataset_from_index": start, "dataset_to_index": start + length,
                           "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
    row.update({name: record[name] for name in ("seed", "success", "hidden_info", "reveal_frames") if name in record})
    for key, entry in stats.items():
        row.update({f"stats/{key}/{name}": value.tolist() for name, value in entry.items()})
    return row


def _copy_videos(reader: Any, index: int, length: int, videos: list[str], out: Path) -> dict[str, Any]:
    """Copy episode ``index``'s videos into ``out``, one file each; returns their ``meta/episodes`` entries."""
    chunk_index, file_index = divmod(index, CHUNK)
    row: dict[str, Any] = {}
    for key in videos:
        target = out / VIDEO_PATH.format(video_key=key, chunk_index=chunk_index, file_index=file_index)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(reader.video_file(index, key), target)
        row.update({f"videos/{key}/chunk_index": chunk_index, f"videos/{key}/file_index": file_index,
                    f"videos/{key}/from_timestamp": 0.0, f"videos/{key}/to_timestamp": length / FPS})
    return row


def _next_file(chunk_index: int, file_index: int) -> tuple[int, int]:
    return (chunk_index + 1, 0) if file_index == CHUNK - 1 else (chunk_index, file_index + 1)


def _write_table(pa: Any, tables: list[Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pa.parquet.write_table(pa.concat_tables(tables), path)


def _write_tasks(tasks: list[str], out: Path) -> None:
    """``meta/tasks.parquet`` as LeRobot writes it: a pandas frame of ``task_index`` indexed by
    the instruction (LeRobot names an item's task by that index)."""
    try:
        import pandas
    except ModuleNotFoundError:
        raise MemstreamError("LeRobot's task table is a pandas frame and pandas is not installed",
                             "pip install pandas") from None
    pandas.DataFrame({"task_index": range(len(tasks))}, index=tasks).to_parquet(out / "meta" / "tasks.parquet")


def _column(table: Any, name: str) -> np.ndarray:
    """A column as float64, (T,) for scalars and (T, d) for vectors."""
    return np.asarray(table.column(name).to_pylist(), dtype=np.float64)


def _stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """LeRobot's statistics of a (T,) or (T, d) column over its T frames: arrays of shape (1,) or (d,)."""
    values = values.reshape(len(values), -1)
    stats = {"min": values.min(0), "max": values.max(0), "mean": values.mean(0), "std": values.std(0),
             "count": np.array([len(values)])}
    for q, value in zip(QUANTILES, np.quantile(values, QUANTILES, axis=0), strict=True):
        stats[f"q{round(q * 100):02d}"] = value
    return stats


def _histogram(frames: np.ndarray) -> np.ndarray:
    """Per-channel counts of each 8-bit value in uint8 (T, H, W, 3) frames: int64 (3, 256)."""
    return np.stack([np.bincount(frames[..., c].ravel(), minlength=256) for c in range(3)])


def _video_stats(histogram: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """LeRobot's per-channel image statistics of ``frames`` frames, in [0, 1], shaped (3, 1, 1),
    from their value counts (``count``: the frames, as LeRobot's)."""
    levels = np.arange(256) / 255.0
    pixels = histogram.sum(1, keepdims=True)
    mean = (histogram * levels).sum(1, keepdims=True) / pixels
    cumulative = np.cumsum(histogram, 1)
    stats = {"min": levels[(histogram > 0).argmax(1)], "max": levels[255 - (histogram[:, ::-1] > 0).argmax(1)],
             "mean": mean[:, 0], "std": np.sqrt((histogram * (levels - mean) ** 2).sum(1) / pixels[:, 0]),
             "count": np.array([frames])}
    for q in QUANTILES:  # the lowest level with at least a fraction q of the pixels at or below it
        stats[f"q{round(q * 100):02d}"] = levels[(cumulative >= q * pixels).argmax(1)]
    return {name: value if name == "count" else value.reshape(3, 1, 1) for name, value in stats.items()}


def _info(source: dict[str, Any], episodes: int, frames: int, tasks: int) -> dict[str, Any]:
    info = json.loads(json.dumps(source))
    for name in ("total_chunks", "total_videos"):
        info.pop(name, None)
    info.update({"codebase_version": CODEBASE_VERSION, "total_episodes": episodes, "total_frames": frames,
                 "total_tasks": tasks, "chunks_size": CHUNK, "fps": int(source["fps"]),
                 "data_files_size_in_mb": DATA_FILE_MB, "video_files_size_in_mb": VIDEO_FILE_MB,
                 "splits": {"train": f"0:{episodes}"}, "data_path": DATA_PATH, "video_path": VIDEO_PATH})
    for feature in info["features"].values():
        if feature["dtype"] == "video":
            height, width, channels = feature["shape"]
            feature["info"] = {"video.height": height, "video.width": width, "video.channels": channels,
                               "video.is_depth_map": False, **feature.get("info", {})}
        else:
            feature["fps"] = int(source["fps"])
    return info
