"""Scene grounding for the service: the run folders a server was started with, bound to streams by name.

``memstream serve --scene lab=runs/lab --scene dock=runs/dock`` serves two scene memories (each the
``scene.json`` a ``memstream run ... --config scene --out DIR`` writes, read again whenever the run
has saved since, so a run that is still going is served as it grows). Only the operator names
folders, on the command line; a client names a scene by its *name*, never a path:

* ``POST /v1/streams {"stream_id": "cam0", "scene": "lab"}`` binds the stream ``cam0`` to ``lab``.
  A server with exactly one scene binds every new stream to it unless the request says
  ``"scene": null``; a stream may be bound at creation only (the binding is saved with the stream
  under ``--store``). An unknown name, or any value that is not a name (``[A-Za-z0-9._-]{1,64}``),
  is a 400 that lists the served names;
* each chat answer on a bound stream puts the scene memory's facts (``scene_facts``: one line per
  object the question names, else the most recently seen) before the question, as ``memstream ask
  --scene`` does, and lists them in the response (``memstream.scene``, ``memstream.facts``);
* ``POST /v1/tools/{name}`` runs on the scene named by the body's ``"scene"`` (the only one when
  the server has one).

A scene whose folder can no longer be read when a question comes (deleted, replaced by something
that is not a scene memory) refuses the answer with a 503 naming the scene, rather than answering
without the facts the client asked for.

The providers are found through the ``memstream.tools`` entry point (the scene memory registers
:class:`~memstream.embodied.scene.grounding.RunFolderTools`), so this module imports no scene code.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from typing import Any

from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.videomem.service.errors import ServiceError

SCENE_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_SCENE = "default"
class _Unset(enum.Enum):
    """A request that says nothing about the scene (None says "no scene"). An enum member, so it
    stays itself when pickled: Ray Serve ships the app's handlers to a frontend replica by value."""

    UNSET = "unset"


UNSET: Any = _Unset.UNSET


def parse_scene_flags(values: list[str]) -> dict[str, str]:
    """``--scene`` values (``NAME=RUN_DIR`` or a bare ``RUN_DIR``, named ``default``) -> {name: folder}.

    Raises:
        ConfigError: a name that is not ``[A-Za-z0-9._-]{1,64}``, or a name given twice.
    """
    scenes: dict[str, str] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or "/" in name or "\\" in name:  # a bare folder (a path with "=" in a later part too)
            name, folder = DEFAULT_SCENE, value
        if not SCENE_NAME_PATTERN.fullmatch(name) or name in (".", ".."):
            raise ConfigError(f"--scene {value!r}: {name!r} is not a scene name",
                              "Write --scene NAME=RUN_DIR with NAME of 1-64 characters from A-Z a-z 0-9 . _ -")
        if not folder:
            raise ConfigError(f"--scene {value!r} names no run folder", "Write --scene NAME=RUN_DIR")
        if name in scenes:
            raise ConfigError(f"--scene names the scene {name!r} twice ({scenes[name]!r} and {folder!r})",
                              "Give each run folder its own name: --scene lab=runs/lab --scene dock=runs/dock")
        scenes[name] = folder
    return scenes


class SceneSet:
    """The scenes a server serves, by name; each a provider with ``tools``, ``names``,
    ``call(tool, arguments)`` and ``facts(question)`` (``RunFolderTools``).

    Args:
        providers: name -> provider.
    """

    def __init__(self, providers: Mapping[str, Any]) -> None:
        for name in providers:
            if not SCENE_NAME_PATTERN.fullmatch(name):
                raise ConfigError(f"{name!r} is not a scene name", "Use 1-64 characters from A-Z a-z 0-9 . _ -")
        self.providers = dict(providers)

    @classmethod
    def from_folders(cls, folders: Mapping[str, str], make: Callable[[str], Any]) -> SceneSet:
        """Providers made by ``make(folder)``, each folder checked now (a missing run folder fails
        at start, naming the scene)."""
        providers = {}
        for name, folder in folders.items():
            try:
                providers[name] = make(folder)
            except MemstreamError as exc:
                raise ConfigError(f"--scene {name}={folder}: {exc.what}", exc.fix) from exc
        return cls(providers)

    @property
    def names(self) -> list[str]:
        return sorted(self.providers)

    def default(self) -> str | None:
        """The scene a stream is bound to when its request names none: the only one, if one."""
        return self.names[0] if len(self.providers) == 1 else None

    def check(self, value: Any, param: str = "scene") -> str:
        """``value`` if it names a served scene, else a 400 listing them (the value is never a path)."""
        if isinstance(value, str) and value in self.providers:
            return value
        shown = repr(value)[:60] if isinstance(value, str) else f"a JSON {type(value).__name__}"
        raise ServiceError(f"{param} {shown} is not a scene this server serves",
                           f"Use one of: {', '.join(self.names)} (names given to memstream serve --scene NAME=RUN_DIR)",
                           param=param, code="scene_not_found")

    def provider(self, name: Any, param: str = "scene") -> Any:
        """The provider of ``name``; None names the only scene (a 400 when there are several)."""
        if name is None:
            if self.default() is None:
                raise ServiceError("the request names no scene and this server serves several",
                                   f'Add "scene": one of {", ".join(self.names)}', param=param, code="scene_required")
            name = self.default()
        return self.providers[self.check(name, param)]

    def facts(self, name: str, question: str) -> list[str]:
        """The scene memory's fact lines for ``question`` (its newest save).

        Raises:
            ServiceError: 503 when the scene's folder cannot be read now (naming it and why).
        """
        provider = self.providers.get(name)
        if provider is None:  # a stored stream bound to a scene this server was not started with
            raise ServiceError(f"the stream is bound to the scene {name!r}, which this server does not serve",
                               f"Start the server with --scene {name}=RUN_DIR, or open a new stream",
                               409, param="scene", code="scene_not_served")
        try:
            return list(provider.facts(question))
        except MemstreamError as exc:
            raise ServiceError(f"the scene {name!r} cannot be read now: {exc.what}",
                               exc.fix or "Check its run folder", 503, param="scene", code="scene_unavailable") from exc
