"""What a batch runs over: the video files of a folder, or the entries of a manifest.

* a folder: its video files (by extension, ``VIDEO_SUFFIXES``), sorted by name, not recursive;
  the id of each is its file name without the extension (``cam3.mp4`` -> ``cam3``), or the whole
  file name where two files share a stem (``a.mp4`` and ``a.avi``);
* a manifest, by extension: ``.jsonl`` (one ``{"path": ..., "id": ...}`` object a line), ``.csv``
  (a header row with a ``path`` column and optionally an ``id`` column), anything else one path a
  line. Blank lines and lines starting with ``#`` are skipped. A relative path is relative to the
  manifest's folder. A path may be any source ``memstream run`` opens (a video, an image folder, a
  TUM RGB-D folder, ``synthetic://...``); the id defaults to the file's stem.

An entry that cannot run (a missing file, a line that is not JSON, an id that is not a folder name,
an id used twice) is still an item: one with ``error`` set, so the batch records it as failed with
that reason and goes on.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from memstream.streaming.errors import ConfigError

MANIFEST_KINDS = (".jsonl", ".csv", ".txt")


@dataclass(frozen=True)
class BatchItem:
    """One video of a batch.

    Attributes:
        id: the name of its output folder (``OUT/<id>/``) and its key in ``batch.jsonl``; unique in
            the batch. An entry with no usable id gets ``#<entry number>`` (1-based).
        source: the path or URI handed to ``memstream run`` (paths absolute).
        error: why the entry cannot run, or None.
    """

    id: str
    source: str
    error: str | None = None


def read_inputs(path: str | Path) -> list[BatchItem]:
    """The items of a folder or a manifest file, in order (see the module docstring).

    Raises:
        ConfigError: ``path`` does not exist, or is a folder without video files.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> for name in ("b.mp4", "a.mkv", "notes.txt"):
        ...     _ = (folder / name).write_bytes(b"")
        >>> [item.id for item in read_inputs(folder)]
        ['a', 'b']
    """
    path = Path(path).expanduser()
    if path.is_dir():
        return _folder_items(path)
    if not path.is_file():
        raise ConfigError(f"no such folder or manifest: {path}", "Pass a folder of videos or a .jsonl/.csv/.txt manifest")
    return _manifest_items(path)


def _folder_items(folder: Path) -> list[BatchItem]:
    from memstream.streaming.sources.video import VIDEO_SUFFIXES

    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not files:
        raise ConfigError(f"no video files in {folder}", f"Put {', '.join(sorted(VIDEO_SUFFIXES))} files there, or pass a manifest")
    stems = Counter(p.stem for p in files)
    return [BatchItem(p.stem if stems[p.stem] == 1 else p.name, str(p.resolve())) for p in files]


def _manifest_items(manifest: Path) -> list[BatchItem]:
    text = manifest.read_text()
    kind = manifest.suffix.lower()
    rows = _jsonl_rows(text) if kind == ".jsonl" else _csv_rows(text, manifest) if kind == ".csv" else _txt_rows(text)
    items, seen = [], {}
    for number, (raw_path, raw_id, error) in enumerate(rows, start=1):
        fallback = f"#{number}"
        if error is not None:
            items.append(BatchItem(fallback, raw_path or "", error))
            continue
        source = _source(raw_path, manifest.parent)
        item_id = raw_id if raw_id else _default_id(raw_path)
        problem = _id_problem(item_id)
        if problem is None and item_id in seen:
            problem = f"duplicate id {item_id!r} (entry {seen[item_id]} has it too)"
        if problem is not None:
            items.append(BatchItem(fallback, source, problem))
            continue
        seen[item_id] = number
        items.append(BatchItem(item_id, source, _missing(source)))
    return items


Row = tuple[str | None, str | None, str | None]  # path, id, error


def _jsonl_rows(text: str) -> list[Row]:
    rows: list[Row] = []
    for line in _lines(text):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            rows.append((None, None, f"manifest line is not JSON ({exc.msg}): {line[:80]}"))
            continue
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"]:
            rows.append((None, None, f"manifest line has no \"path\" string: {line[:80]}"))
            continue
        entry_id = entry.get("id")
        rows.append((entry["path"], None if entry_id is None else str(entry_id), None))
    return rows


def _csv_rows(text: str, manifest: Path) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    if "path" not in (reader.fieldnames or []):
        raise ConfigError(f"{manifest} has no 'path' column (header: {reader.fieldnames})", "Start it with a header row: id,path")
    rows: list[Row] = []
    for record in reader:
        path = (record.get("path") or "").strip()
        if not path or path.startswith("#"):
            continue
        rows.append((path, (record.get("id") or "").strip() or None, None))
    return rows


def _txt_rows(text: str) -> list[Row]:
    return [(line, None, None) for line in _lines(text)]


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _is_uri(value: str) -> bool:
    return "://" in value or value.startswith("cam:")


def _source(raw: str, base: Path) -> str:
    if _is_uri(raw):
        return raw
    path = Path(raw).expanduser()
    return str((path if path.is_absolute() else base / path).resolve())


def _default_id(raw: str) -> str:
    if _is_uri(raw):  # synthetic://demo?frames=8 -> demo
        return raw.split("://", 1)[-1].split("?", 1)[0].strip("/").replace("/", "_") or raw
    return Path(raw).stem


def _id_problem(item_id: str) -> str | None:
    if not item_id or item_id.startswith(".") or any(c in item_id for c in "/\\\0") or item_id in ("batch.jsonl", "batch.json"):
        return f"id {item_id!r} cannot name an output folder (no '/', '\\', leading '.' or empty id)"
    return None


def _missing(source: str) -> str | None:
    if _is_uri(source) or Path(source).exists():
        return None
    return f"no such file: {source}"
