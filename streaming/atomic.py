"""Files written whole or not at all: the one temporary-file-then-rename of every writer in memstream.

A reader (a ``memstream query`` on a running run, a second replica, a benchmark that rereads its own
results before it writes, a user's ``cat``) sees the old file or the new one, never half of either.
Every writer here:

* writes a temporary file beside the target (same folder, so the rename never crosses a filesystem),
  named for this process *and* thread (``.NAME.PID.TID.tmp``): two writers of one path never share a
  temporary file, the failure that once made a Ray replica's rename find its file gone;
* creates it with ``open`` (mode 0666 less the umask, like every other output), not ``mkstemp``
  (0600), so a summary is as readable as the video beside it;
* optionally ``fsync``s it before the rename (``sync=True``: indexes and manifests that must survive
  a power cut, at the cost of a disk flush);
* removes the temporary file when anything fails, and re-raises.

``exclusive=True`` links the file into place only when nothing is there: the first writer wins and
the call says whether it was this one (a store's header written by several replicas at once).

Imports only the standard library: the service, the CLIs and the benchmarks use it without loading
the pipeline.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["replaced_on_success", "temporary_beside", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]


def temporary_beside(path: Path) -> Path:
    """This process's and thread's temporary name for ``path``: hidden, in the same folder."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextlib.contextmanager
def replaced_on_success(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (a video encoder): it
    becomes ``path`` when the block ends without an error, and is removed otherwise. It keeps
    ``path``'s suffix, so a writer that picks its format by the suffix still does.

    Example::

        with replaced_on_success("clip.mp4") as tmp:
            with VideoWriter(tmp, fps=30) as writer: ...
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, sync: bool = False,
                       exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` whole or not at all; returns False only when ``exclusive`` found a
    file already there (which is then left as it was)."""
    path = Path(path)
    tmp = temporary_beside(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        if not exclusive:
            os.replace(tmp, path)
            return True
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError:  # a filesystem without hard links: a rename, unless a first writer is there
            if path.exists():
                return False
            os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike[str], text: str, *, sync: bool = False,
                      exclusive: bool = False) -> bool:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"), sync=sync, exclusive=exclusive)


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 2, sync: bool = False,
                      exclusive: bool = False) -> bool:
    """``data`` as JSON (and a final newline) to ``path``, whole or not at all.

    Serialised before anything touches the disk, so data that is not JSON raises with no file made.
    """
    return write_text_atomic(path, json.dumps(data, indent=indent) + "\n", sync=sync, exclusive=exclusive)
