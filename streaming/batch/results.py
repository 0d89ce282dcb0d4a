"""``OUT/batch.jsonl``: one line per video of a batch, what became of it.

A line is a JSON object (:func:`record`): ``id``, ``source``, ``status`` (``ok``, ``failed`` or
``skipped``), ``reason`` (why it failed or was skipped, else null), ``out`` (its output folder,
relative to OUT, or null), ``attempts``, ``wall_s`` (seconds over all attempts), ``frames`` and
``fps`` (from its ``summary.json``), ``host`` and ``finished`` (UTC, ISO 8601).

Crash safety: only the batch's driver writes the file, one line at a time, each appended with one
``write`` and flushed to disk (``fsync``) before the video counts as recorded. A crash can leave at
most a torn last line, which :meth:`ResultLog.read` ignores, :meth:`ResultLog.append` ends
before its own line and the next run cuts off. There is at
most one line per id at any time: a run first rewrites the file (atomically: a temporary file,
then a rename) without the lines of the videos it is about to run again (failed ones, or ones whose
folder is gone), and the driver appends one line per video it finishes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_text_atomic

STATUSES = ("ok", "failed", "skipped")
FILE_NAME = "batch.jsonl"


def record(
    item_id: str, source: str, status: str, *, reason: str | None = None, out: str | None = None,
    attempts: int = 0, wall_s: float = 0.0, frames: int | None = None, fps: float | None = None,
) -> dict[str, Any]:
    """One line of ``batch.jsonl`` (see the module docstring)."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    return {
        "id": item_id, "source": source, "status": status, "reason": reason, "out": out, "attempts": attempts,
        "wall_s": round(wall_s, 3), "frames": frames, "fps": fps, "host": socket.gethostname(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class ResultLog:
    """The results file of one batch folder; used from the driver's thread only.

    Example:
        >>> import tempfile, pathlib
        >>> log = ResultLog(pathlib.Path(tempfile.mkdtemp()) / "batch.jsonl")
        >>> log.append(record("a", "/v/a.mp4", "ok", out="a", attempts=1))
        >>> log.append(record("b", "/v/b.mp4", "failed", reason="no such file: /v/b.mp4"))
        >>> log.rewrite(r for r in log.read().values() if r["status"] == "ok")
        >>> list(log.read())
        ['a']
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, dict[str, Any]]:
        """The records by id, in file order; a line that is not a whole JSON object (a torn last
        line after a crash) is ignored, and of two lines with one id the later wins."""
        if not self.path.exists():
            return {}
        found: dict[str, dict[str, Any]] = {}
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and isinstance(entry.get("id"), str) and entry.get("status") in STATUSES:
                found.pop(entry["id"], None)
                found[entry["id"]] = entry
        return found

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        """Replace the file with ``records`` (temporary file, fsync, rename)."""
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records), sync=True)

    def append(self, entry: dict[str, Any]) -> None:
        """Add one line, on disk when this returns; a torn last line is ended first, so the new
        line never joins it."""
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
