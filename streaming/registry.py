"""A small named registry, one per extension point (sources, stages, memory selectors, ...).

Registries are plain objects owned by the module that defines the extension point, never a global
singleton. Registration is explicit and names must be unique::

    SOURCES = Registry[SourceFactory]("source")

    @SOURCES.register("tum")
    def open_tum(uri: str, **options) -> Source: ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint, EntryPoints, entry_points
from typing import Generic, TypeVar

from memstream.streaming.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to implementations of one extension point.

    Args:
        kind: what is registered, used in error messages (``"source"``, ``"stage"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers ``obj`` under ``name``; a duplicate name raises ValueError."""

        def decorator(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """Return the entry for ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(f"unknown {self.kind} {name!r}", f"Choose one of: {known}") from None

    def names(self) -> list[str]:
        """Registered names in registration order."""
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


@functools.cache
def _installed_entry_points() -> EntryPoints:
    return entry_points()


def entry_points_of(group: str) -> tuple[EntryPoint, ...]:
    """The installed entry points of ``group`` (``memstream.stages``, ``memstream.commands``...).

    Every distribution's metadata is read once per process: each ``importlib.metadata.entry_points``
    call reads them all again (about 70 ms of CPU in an environment of a thousand packages), and a
    ``memstream run`` looked its groups up four times, in every video's process of a batch.
    """
    return tuple(_installed_entry_points().select(group=group))

