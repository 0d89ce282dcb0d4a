"""The small contract between the runner and a stage (one memory, a writer, an exporter)."""

from __future__ import annotations

from collections.abc import Mapping
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from memstream.streaming.types import Frame, SourceInfo


@dataclass(frozen=True)
class RunContext:
    """What a stage learns once, before the first frame.

    Attributes:
        source: what the source knows up front (length, fps, size, live or not).
        out_dir: folder for the stage's outputs, or None when the run writes nothing.
        config: the resolved run configuration as plain data (saved beside the outputs).
        notices: what stages said through :meth:`notice`, in order (``summary.json``'s ``notices``).
    """

    source: SourceInfo
    out_dir: Path | None
    config: Mapping[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def notice(self, stage: str, message: str) -> None:
        """Say once, on stderr and in ``summary.json``, that ``stage`` has nothing to do or ignores
        part of its input (no prompt to track, no question to answer): never a silent empty output.

        Example::

            context.notice("tracking", "no prompt, nothing is tracked. Give --box X,Y,W,H")
        """
        line = f"{stage}: {message}"
        if line not in self.notices:
            self.notices.append(line)
            print(f"note: {line}", file=sys.stderr, flush=True)


class Upstream:
    """Read-only view of what earlier stages returned for the same frame.

    ``upstream["tracking"]`` is the tracking stage's result for this frame; a stage that can use an
    earlier stage's output but does not require it checks ``"tracking" in upstream`` first.
    """

    __slots__ = ("_results",)

    def __init__(self, results: Mapping[str, Any] | None = None) -> None:
        self._results = dict(results or {})

    def __getitem__(self, stage: str) -> Any:
        try:
            return self._results[stage]
        except KeyError:
            raise KeyError(f"no upstream stage {stage!r} ran before this one; ran: {list(self._results)}") from None

    def __contains__(self, stage: object) -> bool:
        return stage in self._results

    def get(self, stage: str, default: Any = None) -> Any:
        return self._results.get(stage, default)

    def stages(self) -> list[str]:
        return list(self._results)

    def with_result(self, stage: str, result: Any) -> Upstream:
        """A new view with ``stage``'s result added (views are never mutated: threads share them)."""
        return Upstream({**self._results, stage: result})


@runtime_checkable
class Stage(Protocol):
    """One step of the pipeline. The runner calls ``open`` once, ``update`` once per frame in
    stream order (always from the same thread), then ``close`` once, even after an error.

    ``update`` returns this frame's result (or None); later stages see it through ``Upstream``.
    ``summary`` returns stage-specific figures (JSON-serialisable) for ``summary.json``.
    """

    name: str

    def open(self, context: RunContext) -> None: ...

    def update(self, frame: Frame, upstream: Upstream) -> Any: ...

    def close(self) -> None: ...

    def summary(self) -> dict[str, Any]: ...
