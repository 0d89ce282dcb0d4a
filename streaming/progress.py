"""One progress display for every long loop: decoding and stages (``run``, ``track``,
``reconstruct``), ``eval-track``'s sequences, MemoryVLA training.

A rich bar on stderr: done/total, the rate rounded to one decimal (nothing until it is known, never
``None``), the time left and a status text (the sequence, the loss). Shown when stderr is a
terminal; ``show=True`` or ``MEMSTREAM_PROGRESS=1`` forces it (logs, CI), ``show=False`` or
``MEMSTREAM_PROGRESS=0`` turns it off. rich is imported only when a bar is shown.

Example::

    with progress("train", total=steps, unit="steps") as bar:
        for step in range(steps):
            ...
            bar.advance()
            bar.status(f"loss {loss:.3f}")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ENV = "MEMSTREAM_PROGRESS"


def progress_shown(show: bool | None = None) -> bool:
    """Whether a bar is drawn: ``show`` if given, else ``MEMSTREAM_PROGRESS`` (1/0), else whether
    stderr is a terminal."""
    if show is not None:
        return show
    forced = os.environ.get(ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return sys.stderr.isatty()


def format_rate(per_s: float | None, unit: str) -> str:
    """``55.4 fps``: one decimal; an empty string while the rate is not known yet.

    Example:
        >>> format_rate(55.376886645553554, "fps"), format_rate(None, "fps")
        ('55.4 fps', '')
    """
    return "" if per_s is None else f"{per_s:.1f} {unit}"


class ProgressBar:
    """What a loop reports to: :meth:`advance` after each item, :meth:`status` for a short text.

    Thread-safe (the last stage of a run advances it from its own thread). This base class draws
    nothing: it is what :func:`progress` hands out when no bar is shown.
    """

    def advance(self, n: int = 1) -> None:
        """``n`` more items done."""

    def status(self, text: str) -> None:
        """Replace the status text (e.g. ``loss 0.412``, the sequence being scored)."""


class _RichBar(ProgressBar):
    def __init__(self, progress: Any, task: Any) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def status(self, text: str) -> None:
        self._progress.update(self._task, status=text)


@contextmanager
def progress(
    description: str, total: int | None = None, *, unit: str = "frames", rate_unit: str | None = None,
    show: bool | None = None, transient: bool = True,
) -> Iterator[ProgressBar]:
    """A progress bar on stderr for the duration of the ``with`` block (see the module docstring).

    Args:
        description: what runs, shown first (``memstream run``, ``train``).
        total: items expected, or None when unknown (live sources): the bar then counts only.
        unit: what an item is, for the rate (``frames``, ``steps``).
        rate_unit: the rate's unit (default ``<unit>/s``; ``fps`` for frames).
        show: True forces the bar, False hides it, None: see :func:`progress_shown`.
        transient: remove the bar when the block ends (the command prints its own summary).
    """
    if not progress_shown(show):
        yield ProgressBar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from rich.table import Column

    console = Console(stderr=True, force_terminal=True if not sys.stderr.isatty() else None)
    columns = (TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
               _rate_column(rate_unit or ("fps" if unit == "frames" else f"{unit}/s")), TimeRemainingColumn(),
               TextColumn("{task.fields[status]}", table_column=Column(no_wrap=True, overflow="ellipsis")))
    with Progress(*columns, console=console, transient=transient) as bar:
        yield _RichBar(bar, bar.add_task(description, total=total, status=""))


def _rate_column(unit: str) -> Any:
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """The task's speed as ``12.3 fps``; blank until rich has measured it."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed  # rich keeps the final rate apart once a task is done
            return Text(format_rate(speed, unit), style="progress.data.speed")

    return RateColumn(table_column=Column(no_wrap=True))  # a narrow terminal cuts the status, never the rate
