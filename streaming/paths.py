"""Fail at once on a local path that does not exist, before a loader takes it for a hub id.

``from_pretrained("/no/such/dir")`` does not say the folder is missing: it takes the string for a
hub id, retries the hub for half a minute and ends with "Repo id must be in the form ...". Every
option that accepts "a local folder or a hub id" (``--model``, ``--embedder``, a tracker's
``--checkpoint``, a depth model) runs :func:`check_local_path` first::

    model = check_local_path(args.model, what="model folder")
    AutoModel.from_pretrained(model)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from memstream.streaming.errors import ConfigError

#: ``C:\\...`` or ``C:/...``: a Windows drive.
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def looks_like_local_path(value: str) -> bool:
    """Whether ``value`` can only mean a local path, not a hub id (``name`` or ``org/name``).

    A path: absolute (``/x``, ``C:\\x``), home- or dot-relative (``~/x``, ``./x``, ``../x``, ``.``),
    with a backslash or with two or more ``/`` (a hub id has at most one), or ``dir/name`` whose
    ``dir`` is an existing folder (a relative path the user meant, not an organisation).
    """
    if not value:
        return False
    if value in (".", "..") or value.startswith(("/", "~", "./", "../", ".\\", "..\\")) or _DRIVE.match(value):
        return True
    if "\\" in value or value.count("/") >= 2 or (os.sep != "/" and os.sep in value):
        return True
    if value.count("/") == 1:
        parent = value.split("/", 1)[0]
        return Path(parent).is_dir()
    return False


def check_local_path(value: str, *, what: str = "model folder", fix: str | None = None) -> str:
    """``value`` to load from: unchanged, or with ``~`` expanded when it is a local path that exists.

    Args:
        value: what the user gave (``--model``, ``--embedder``, ``--checkpoint`` ...).
        what: what it names, for the message: ``"model folder"``, ``"embedder folder"``,
            ``"checkpoint"``.
        fix: the second half of the message; by default, how to give an existing path or a hub id.

    Raises:
        ConfigError: ``value`` looks like a local path (see :func:`looks_like_local_path`) and
            nothing is there: ``no such model folder: /no/such/dir. Give ...`` (the CLI prints it
            as one ``error:`` line and exits with status 2).

    Example:
        >>> check_local_path("llava-hf/llava-onevision-qwen2-0.5b-ov-hf")
        'llava-hf/llava-onevision-qwen2-0.5b-ov-hf'
    """
    if not looks_like_local_path(value):
        return value
    path = Path(value).expanduser()
    if path.exists():
        return str(path) if value.startswith("~") else value
    nearest = next((p for p in path.parents if p.exists()), None)
    shallow = nearest is None or nearest == Path(".") or nearest == Path(nearest.anchor)
    where = "" if shallow else f" ({nearest} exists, {path.relative_to(nearest).parts[0]!r} is not in it)"
    raise ConfigError(
        f"no such {what}: {value}{where}",
        fix or "Check the path, or give a hub id such as org/name (a local folder must exist)",
    )
