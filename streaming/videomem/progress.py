"""A status line on stderr while ``memstream ask`` reads a source into the memory.

Shown when stderr is a terminal (redrawn in place) or when asked with ``--progress`` (then one line
every few seconds, for logs); never with ``--no-progress``. Rates are frames read per wall-clock
second, rounded to one decimal, and left out until there is a rate to show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

#: ``--progress`` / ``--no-progress`` / neither.
ALWAYS, NEVER, AUTO = "always", "never", "auto"


def progress_wanted(choice: str, stream: TextIO) -> bool:
    """Whether to show progress: ``always``, ``never``, or ``auto`` (only on a terminal)."""
    if choice == AUTO:
        isatty = getattr(stream, "isatty", None)
        return bool(isatty and isatty())
    return choice == ALWAYS


class IngestProgress:
    """Counts frames read and kept and reports them on ``stream``.

    Args:
        stream: where to write (stderr).
        enabled: False makes every call a no-op.
        clock: wall-clock seconds (``time.monotonic``; tests pass their own).

    Example::

        progress = IngestProgress(sys.stderr, enabled=progress_wanted("auto", sys.stderr))
        for frame in source:
            progress.advance(frame.timestamp_s, kept=schedule.keep(frame.timestamp_s))
        progress.close()
    """

    def __init__(self, stream: TextIO, *, enabled: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.enabled, self.clock = stream, enabled, clock
        isatty = getattr(stream, "isatty", None)
        self.in_place = bool(isatty and isatty())
        self.interval_s = 0.1 if self.in_place else 2.0
        self.read = 0
        self.kept = 0
        self.stream_time_s: float | None = None
        self._started = clock()
        self._shown_at: float | None = None

    def line(self) -> str:
        """``[read 120 frames, 12 kept for the memory, stream at 3.9 s; 25.3 frames/s]``."""
        parts = f"read {self.read} frames, {self.kept} kept for the memory"
        if self.stream_time_s is not None:
            parts += f", stream at {self.stream_time_s:.1f} s"
        elapsed = self.clock() - self._started
        if elapsed > 0 and self.read:
            parts += f"; {self.read / elapsed:.1f} frames/s"
        return f"[{parts}]"

    def advance(self, timestamp_s: float, kept: bool) -> None:
        """Count one frame read from the source (``kept``: given to the memory)."""
        if not self.enabled:
            return
        self.read += 1
        self.kept += int(kept)
        self.stream_time_s = timestamp_s
        now = self.clock()
        if self._shown_at is None or now - self._shown_at >= self.interval_s:
            self._show(final=False)
            self._shown_at = now

    def close(self) -> None:
        """The final count, on its own line."""
        if self.enabled:
            self._show(final=True)

    def _show(self, final: bool) -> None:
        if self.in_place:
            end = "\n" if final else ""
            self.stream.write(f"\r{self.line()}\033[K{end}")
        elif final or self.read:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
