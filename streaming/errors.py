"""Errors a user can act on.

Every error that reaches the command line is a :class:`MemstreamError`: one line that says what is
wrong and how to fix it. The CLI prints ``error: <what>. <fix>`` and exits with status 2; the
traceback is shown only with ``--debug``. Errors raised by a dependency (decord, PyAV, OpenCV, YAML,
pydantic) are caught where we call it and re-raised as one of these, chained with ``from`` so the
original stays visible under ``--debug``.
"""

from __future__ import annotations

import errno

#: What to do when an output cannot be written: its disk is full, over quota or read-only.
OUTPUT_FIX = "Make room on that disk (or make it writable), or choose another --out, then run again"
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class MemstreamError(Exception):
    """Base class for errors caused by input the user controls.

    Args:
        what: the problem, naming the offending file, URI, key or value.
        fix: what the user should do about it (optional but strongly encouraged).
    """

    exit_code = 2

    def __init__(self, what: str, fix: str | None = None) -> None:
        self.what = what.rstrip(". ")
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message as printed by the CLI: ``what. fix``."""
        return f"{self.what}. {self.fix}" if self.fix else f"{self.what}."


class SourceError(MemstreamError):
    """A frame source could not be opened or read (missing file, corrupt video, dead camera)."""


class UnknownSourceError(SourceError):
    """No registered source understands the URI."""


class ConfigError(MemstreamError):
    """A config file, key or value is invalid."""


class StageError(MemstreamError):
    """A pipeline stage failed on a frame.

    Attributes:
        stage: name of the stage that raised.
        frame_index: index of the frame being processed, or -1 when the failure is not tied to one.
    """

    exit_code = 1

    def __init__(self, stage: str, frame_index: int, cause: BaseException) -> None:
        self.stage = stage
        self.frame_index = frame_index
        self.cause = cause
        full = isinstance(cause, OSError) and cause.errno in _OUTPUT_ERRNOS  # the disk, not the stage
        super().__init__(
            f"stage {stage!r} failed on frame {frame_index}: {type(cause).__name__}: {cause}",
            OUTPUT_FIX if full else "Run again with --debug for the traceback",
        )
