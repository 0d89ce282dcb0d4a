"""The scene memory's small interface: one update per frame, typed queries, a state to persist.

Every query takes plain values (an object id or name, seconds, a point as numbers) and returns a
dataclass of :mod:`memstream.embodied.scene.types` whose ``as_dict()`` is JSON, so the queries map
one to one onto tools an LLM client can call (``where(obj, at_s)`` -> ``{"name": "where",
"parameters": {"obj": ..., "at_s": ...}}``). An unanswerable query raises
:class:`~memstream.embodied.scene.types.SceneQueryError` with a one-line reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from memstream.embodied.scene.types import (
    FrameScore,
    Motion,
    ObjectSummary,
    SceneUpdate,
    Sighting,
    Trajectory,
)
from memstream.streaming.types import Frame


@runtime_checkable
class SceneQueries(Protocol):
    """What can be asked of a scene memory (a live one, or one loaded from a run folder)."""

    def objects(self) -> list[ObjectSummary]: ...

    def where(self, obj: int | str, at_s: float | None = None) -> Sighting: ...

    def trajectory(
        self, obj: int | str, t0_s: float | None = None, t1_s: float | None = None
    ) -> Trajectory: ...

    def last_moved(self, obj: int | str) -> Motion | None: ...

    def first_seen(self, obj: int | str) -> Sighting: ...

    def last_seen(self, obj: int | str) -> Sighting: ...

    def visible_at(self, at_s: float | None = None) -> list[Sighting]: ...

    def objects_near(
        self, point: Sequence[float], radius_m: float, at_s: float | None = None
    ) -> list[Sighting]: ...

    def frames_showing(self, obj: int | str, k: int = 4) -> list[FrameScore]: ...


@runtime_checkable
class SceneIndex(SceneQueries, Protocol):
    """A scene memory that is fed frame by frame and survives a restart."""

    def update(self, frame: Frame, upstream: Mapping[str, Any] | None = None) -> SceneUpdate: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
