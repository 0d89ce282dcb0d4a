"""Checks of the paths a user names on the command line, done before anything slow happens.

* :func:`check_local_path`: a model or checkpoint argument that looks like a local path but names
  nothing is one clear error at once, instead of a hub lookup (and its retries) for an id that
  cannot exist, seconds later, after torch and transformers have been imported;
* :func:`prepare_output_dir`: the one output-folder rule of every command that writes a run folder
  (``run``, ``track``, ``reconstruct``, ``eval-track``): a new or empty folder is used, a file is
  refused, a folder holding files is refused unless ``--overwrite``, and ``--overwrite`` replaces
  only a folder that holds an earlier memstream output (it never deletes a folder of other files).

Imports nothing heavy: every command calls these before loading a model.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from memstream.streaming.errors import ConfigError

# Files by which an earlier output of ours is recognised (run/track/reconstruct, eval-track, synth).
OUTPUT_MARKERS = ("summary.json", "config.yaml", "ope.json", "scene.json")


def looks_like_local_path(value: str, suffixes: Iterable[str] = ()) -> bool:
    """True when ``value`` can only mean a path on this machine, never a hub id (``owner/name``).

    Absolute, ``~``-, ``./``- or ``../``-relative paths, Windows paths, paths of more than two parts,
    and names ending in one of ``suffixes`` (e.g. ``.pt``) are local; ``owner/name`` is a hub id
    unless something exists at that relative path.

    Example:
        >>> looks_like_local_path("/models/sam2.pt"), looks_like_local_path("facebook/sam2.1-hiera-tiny")
        (True, False)
        >>> looks_like_local_path("sam2.1_hiera_tiny.pt", suffixes=(".pt",))
        True
    """
    if value.startswith(("/", "~", "./", "../", ".\\", "..\\")) or value in (".", "..") or "\\" in value:
        return True
    if value.count("/") > 1 or Path(value).suffix.lower() in {s.lower() for s in suffixes}:
        return True
    return Path(value).exists()


def check_local_path(
    value: str | Path | None,
    *,
    what: str,
    fix: str,
    kind: Literal["file", "folder"] = "file",
    suffixes: Iterable[str] = (),
) -> None:
    """Raise :class:`ConfigError` ``no such <what>: <value>. <fix>`` when ``value`` looks like a local
    path (:func:`looks_like_local_path`) and nothing is there, or it is a file where a folder is
    expected (or the reverse). Hub ids and None pass untouched: the loader handles them.

    Args:
        value: the argument as the user gave it.
        what: what it should be, for the message: ``"checkpoint file"``, ``"model folder"``.
        fix: what to pass instead, e.g. ``"Pass a SAM 2.1 .pt file or a hub id such as ..."``.
        kind: whether a ``file`` or a ``folder`` is expected.
        suffixes: file name endings that mark a local file even without a slash (``.pt``).

    Example:
        >>> check_local_path("/no/such/file.pt", what="checkpoint file", fix="Check the path")
        Traceback (most recent call last):
        ...
        memstream.streaming.errors.ConfigError: no such checkpoint file: /no/such/file.pt. Check the path
    """
    if value is None:
        return
    text = str(value)
    if not looks_like_local_path(text, suffixes):
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise ConfigError(f"no such {what}: {text}", fix)
    if kind == "file" and path.is_dir():
        raise ConfigError(f"{text} is a folder, not a {what}", fix)
    if kind == "folder" and not path.is_dir():
        raise ConfigError(f"{text} is a file, not a {what}", fix)


def check_output_dir(path: Path, *, overwrite: bool = False) -> None:
    """Refuse an output path that is a file, or a folder holding files unless ``overwrite`` and it
    holds an earlier memstream output (one of :data:`OUTPUT_MARKERS`). Changes nothing on disk."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output path {path} is a file", "Pass a folder path to --out")
    if not path.is_dir() or not any(path.iterdir()):
        return
    if not overwrite:
        raise ConfigError(
            f"output folder {path} already exists and holds files ({_listing(path)})",
            "Pass --overwrite to replace them, or another --out",
        )
    if not any((path / marker).exists() for marker in OUTPUT_MARKERS):
        raise ConfigError(
            f"output folder {path} holds files but no earlier memstream output ({', '.join(OUTPUT_MARKERS)}), "
            "so --overwrite does not delete it",
            "Pass a new or empty --out folder",
        )


def prepare_output_dir(path: Path, *, overwrite: bool = False) -> Path:
    """The output folder of a command, checked (:func:`check_output_dir`), emptied when
    ``overwrite`` replaces an earlier output, and created.

    An earlier run's outputs are never mixed with a new run's: stale files (``2.txt`` of an object
    the new run does not track, ``masks/`` of a run with ``--masks``) would read as the new run's.

    Raises:
        ConfigError: the path is a file, holds files (see above), or cannot be created.
    """
    check_output_dir(path, overwrite=overwrite)
    try:
        if overwrite and path.is_dir() and any(path.iterdir()):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror or exc}", "Choose a writable --out folder") from exc
    return path


def _listing(path: Path, shown: int = 3) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
