"""Object names: what ``--box cup:120,80,60,90`` and ``prompts: [{name: cup, ...}]`` may call an object.

Light (no numpy): the command line checks names before anything heavy loads. A name travels with
its object id through every memory and output (the tracker's results, the 3D memory's
``objects.jsonl``, the scene memory and ``memstream query``).
"""

from __future__ import annotations

import re

from memstream.streaming.errors import ConfigError

#: Letters, digits, ``_``, ``-`` and inner spaces, at most 64 characters.
OBJECT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\- ]{0,62}[A-Za-z0-9_]|[A-Za-z_]")


def check_object_name(name: str) -> str:
    """``name`` when it can name an object in prompts and queries (``cup``, ``red_cup``, ``red cup``):
    letters, digits, ``_``, ``-`` and inner spaces, not all digits; else ValueError saying why."""
    if not OBJECT_NAME.fullmatch(name) or name.isdigit():
        raise ValueError(
            f"object name {name!r} must be letters, digits, '_', '-' or inner spaces and not only "
            "digits (digits alone are ids), e.g. cup or red_cup"
        )
    return name


def parse_named_box(text: str) -> tuple[str | None, list[float]]:
    """``[NAME:]X,Y,W,H`` -> (name or None, box in pixels): ``cup:120,80,60,90``.

    Raises:
        ConfigError: not four numbers, or a name :func:`check_object_name` refuses.
    """
    name, sep, numbers = text.rpartition(":")  # a name never holds ':', so the last one splits
    values = [v for v in re.split(r"[,\s]+", numbers.strip()) if v]
    try:
        box = [float(v) for v in values]
    except ValueError:
        box = []
    if len(box) != 4:
        raise ConfigError(
            f"--box {text!r} is not X,Y,W,H or NAME:X,Y,W,H",
            "Give four numbers in pixels, optionally named: --box 120,80,60,90 or --box cup:120,80,60,90",
        )
    if not sep:
        return None, box
    try:
        return check_object_name(name.strip()), box
    except ValueError as exc:
        raise ConfigError(f"--box {text!r}: {exc}") from None


def check_unique_names(names: list[str | None]) -> None:
    """A name given to two ``--box`` options is one clear error (ConfigError)."""
    seen = [n for n in names if n is not None]
    twice = sorted({n for n in seen if seen.count(n) > 1})
    if twice:
        raise ConfigError(
            f"--box name {twice[0]!r} is used twice", "Give each object its own name, e.g. cup and cup_2"
        )
