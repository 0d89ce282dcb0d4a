"""The scene memory: who (track ids, names) x where (3D) x when (time) x what (frames), over one run.

:class:`SceneMemory` (``memory.py``) joins, frame by frame, what the tracker saw (ids, names, masks,
scores) with where the 3D memory places it (depth, camera, pose), into a bounded object-centric
index (``record.py``, ``motion.py``; caps and thresholds in ``config.py``) that answers ``where``,
``trajectory``, ``last_moved``, ``first_seen`` / ``last_seen``, ``visible_at``, ``objects_near`` and
``frames_showing`` (``protocol.py``) with the results of ``types.py``. ``query.py`` parses the small
question grammar of ``memstream query``, ``tools.py`` offers the queries as OpenAI function-calling
tools (:data:`TOOLS`, :func:`call_tool`); the ``scene`` stage feeds it in a run and saves it as
``scene.json``. Importing this package loads nothing; names load on first use (numpy only).

Example:
    >>> from memstream.embodied.scene import SceneMemory, ask
    >>> memory = SceneMemory()
    >>> # in a run: memory.update(frame, upstream) per frame; then
    >>> # memory.where("cup"), memory.last_moved("cup"), ask(memory, "where cup at 12.5")
"""

from __future__ import annotations

from memstream.streaming.lazy import lazy_attributes

_LAZY = {  # name -> module that defines it, imported on first use
    "SceneConfig": "memstream.embodied.scene.config",
    "SceneMemory": "memstream.embodied.scene.memory",
    "SceneIndex": "memstream.embodied.scene.protocol",
    "SceneQueries": "memstream.embodied.scene.protocol",
    "FrameScore": "memstream.embodied.scene.types",
    "Motion": "memstream.embodied.scene.types",
    "ObjectObservation": "memstream.embodied.scene.types",
    "ObjectSummary": "memstream.embodied.scene.types",
    "SceneQueryError": "memstream.embodied.scene.types",
    "SceneUpdate": "memstream.embodied.scene.types",
    "Sighting": "memstream.embodied.scene.types",
    "Trajectory": "memstream.embodied.scene.types",
    "TOOLS": "memstream.embodied.scene.tools",
    "call_tool": "memstream.embodied.scene.tools",
    "ask": "memstream.embodied.scene.query",
    "parse_question": "memstream.embodied.scene.query",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY)


__all__ = sorted(_LAZY)
