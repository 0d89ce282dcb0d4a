"""Checks of the paths a user names on the command line, done before anything slow happens.

* :func:`check_local_path`: a model or checkpoint argument that looks like a local path but names
  nothing is one clear error at once, instead of a hub lookup (and its retries) for an id that
  cannot exist, seconds later, after torch and transformers have been imported;
* :func:`prepare_output_dir`: the one output-folder rule of every command that writes a run folder
  (``run``, ``track``, ``reconstruct``, ``eval-track``): a new or empty folder is used, a file is
  refused, a folder holding files is refused unless ``--overwrite``, and ``--overwrite`` replaces
  only a folder that holds an earlier memstream output (it never deletes a folder of other files),
  and never one that a running command holds (:func:`output_lock`);
* :func:`claim_output_dir`: the same, and the folder held (:func:`output_lock`) for as long as the
  command runs, for the commands that write into their folder over minutes or hours.

Imports nothing heavy: every command calls these before loading a model.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from memstream.streaming.errors import ConfigError

# Files by which an earlier output of ours is recognised (run/track/reconstruct, eval-track, synth, batch,
# nav-eval / vla-eval's results.json, vla-train's mikasa.json).
OUTPUT_MARKERS = ("summary.json", "config.yaml", "ope.json", "scene.json", "batch.jsonl", "results.json", "mikasa.json",
                  "meta/info.json")  # the last: a demonstration dataset (vla-collect)

#: ``C:\\...`` or ``C:/...``: a Windows drive.
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")


def looks_like_local_path(value: str, suffixes: Iterable[str] = ()) -> bool:
    """True when ``value`` can only mean a path on this machine, never a hub id (``name`` or ``owner/name``).

    A path: absolute (``/x``, ``C:\\x``), home- or dot-relative (``~/x``, ``./x``, ``../x``, ``.``),
    with a backslash or with two or more ``/`` (a hub id has at most one), a name ending in one of
    ``suffixes`` (``.pt``), or ``dir/name`` whose ``dir`` is an existing folder (a relative path the
    user meant, not an organisation), or anything that exists on disk.

    Example:
        >>> looks_like_local_path("/models/sam2.pt"), looks_like_local_path("facebook/sam2.1-hiera-tiny")
        (True, False)
        >>> looks_like_local_path("sam2.1_hiera_tiny.pt", suffixes=(".pt",))
        True
    """
    if not value:
        return False
    if value in (".", "..") or value.startswith(("/", "~", "./", "../", ".\\", "..\\")) or _DRIVE.match(value):
        return True
    if "\\" in value or value.count("/") >= 2 or (os.sep != "/" and os.sep in value):
        return True
    if Path(value).suffix.lower() in {s.lower() for s in suffixes}:
        return True
    if value.count("/") == 1 and Path(value.split("/", 1)[0]).is_dir():
        return True
    return Path(value).exists()


def check_local_path(
    value: str | Path | None,
    *,
    what: str = "model folder",
    fix: str | None = None,
    kind: Literal["file", "folder"] | None = None,
    suffixes: Iterable[str] = (),
) -> str | None:
    """``value`` to load from: unchanged (a hub id, None), or with ``~`` expanded when it is a local
    path that exists and is of the expected ``kind``.

    Args:
        value: the argument as the user gave it (``--model``, ``--embedder``, ``--checkpoint`` ...).
        what: what it should be, for the message: ``"checkpoint file"``, ``"model folder"``.
        fix: what to pass instead; by default, how to give an existing path or a hub id.
        kind: whether a ``file`` or a ``folder`` is expected (None: either).
        suffixes: file name endings that mark a local file even without a slash (``.pt``).

    Raises:
        ConfigError: ``value`` looks like a local path (:func:`looks_like_local_path`) and nothing is
            there, or it is a file where a folder is expected (or the reverse):
            ``no such checkpoint file: /no/such/file.pt. Check the path`` (the CLI prints it as
            one ``error:`` line and exits with status 2).

    Example:
        >>> check_local_path("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", what="model folder")
        'llava-hf/llava-onevision-qwen2-0.5b-ov-hf'
        >>> check_local_path("/no/such/file.pt", what="checkpoint file", fix="Check the path")
        Traceback (most recent call last):
        ...
        memstream.streaming.errors.ConfigError: no such checkpoint file: /no/such/file.pt. Check the path
    """
    if value is None:
        return None
    text = str(value)
    if not looks_like_local_path(text, suffixes):
        return text
    fix = fix or "Check the path, or give a hub id such as org/name (a local folder must exist)"
    path = Path(text).expanduser()
    if not path.exists():
        nearest = next((p for p in path.parents if p.exists()), None)
        shallow = nearest is None or nearest == Path(".") or nearest == Path(nearest.anchor)
        where = "" if shallow else f" ({nearest} exists, {path.relative_to(nearest).parts[0]!r} is not in it)"
        raise ConfigError(f"no such {what}: {text}{where}", fix)
    if kind == "file" and path.is_dir():
        raise ConfigError(f"{text} is a folder, not a {what}", fix)
    if kind == "folder" and not path.is_dir():
        raise ConfigError(f"{text} is a file, not a {what}", fix)
    return str(path) if text.startswith("~") else text


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
            with output_lock(path):  # never the folder of a run still writing into it
                pass
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output folder {path}: {exc.strerror or exc}", "Choose a writable --out folder") from exc
    return path


def holds_output_dirs(handler: Callable[[Any, contextlib.ExitStack], int]) -> Callable[[Any], int]:
    """A command handler ``handler(args, held)`` as ``handler(args)``: ``held`` is an ExitStack for
    :func:`claim_output_dir`, closed (every folder released) when the handler returns or raises."""

    @functools.wraps(handler)
    def run(args: Any) -> int:
        with contextlib.ExitStack() as held:
            return handler(args, held)

    return run


def claim_output_dir(path: Path, held: contextlib.ExitStack, *, overwrite: bool = False, prepare: bool = True) -> Path:
    """:func:`prepare_output_dir` (skipped when ``prepare`` is False: ``--resume`` goes on in the
    folder it finds), then :func:`output_lock` on the folder, held until ``held`` closes: a second
    command writing into the same folder meanwhile (a second ``--resume``, or one started at the same
    time into a new folder) is refused instead of writing into the same files.

    Raises:
        ConfigError: as :func:`prepare_output_dir`, or another command holds the folder.
    """
    path = prepare_output_dir(path, overwrite=overwrite) if prepare else path
    held.enter_context(output_lock(path))
    return path


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold the output folder ``path`` while a command writes into it: a second command writing into
    it at the same time is refused (two runs would write into the same video and results files).

    An advisory lock on the folder itself, so no file is added to it; none where the platform or the
    filesystem has no ``flock`` (Windows, some network mounts).

    Raises:
        ConfigError: another command holds the folder.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"another memstream command is writing into {path}",
                              "Wait for it to end, or choose another --out") from None
        except OSError:  # a filesystem without flock: unguarded, as before
            pass
        yield
    finally:
        os.close(fd)


def _listing(path: Path, shown: int = 3) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    more = f", ... {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
