"""The scene memory's facts for a Video-LLM's question: the grounding of ``memstream ask --scene``.

A question about "the cup" is answered from the retrieved frames *and* what the scene memory knows of
the cup: where it is (world metres, or image pixels when the run had no depth), when it was first
and last seen and when it last moved. The facts are short lines prefixed to the question; the
answer lists them, so a reader sees what the model was told.

Which objects: those the question names (whole-word, case-insensitive, by name or ``#id``), else
the most recently seen, at most ``max_objects``; one line each, so a handful fit in a question's
token budget.

``memstream ask`` reaches this through the ``memstream.grounding`` entry-point group (``scene``), so
the video memory never imports the scene memory.
"""

from __future__ import annotations

import re
from pathlib import Path

from memstream.embodied.scene.protocol import SceneQueries
from memstream.embodied.scene.query import _name, _point


def scene_facts(memory: SceneQueries, question: str, at_s: float | None = None, max_objects: int = 6) -> list[str]:
    """One fact line per object relevant to ``question``, as of ``at_s`` (None: the latest).

    Example::

        scene_facts(memory, "Where did the cup go?")
        # ['cup (#1): at (0.42, 0.10, 1.31) m at 9.97 s (in view, frame 299); first seen 0.00 s;
        #   last moved 5.98-6.98 s, 0.41 m']
    """
    objects = memory.objects()
    if at_s is not None:
        objects = [o for o in objects if o.first_seen_s <= at_s]
    named = [o for o in objects if _mentioned(o.name, o.object_id, question)]
    chosen = named or sorted(objects, key=lambda o: (-o.last_seen_s, o.object_id))
    facts = []
    for summary in chosen[:max_objects]:
        end = summary.last_seen_s if at_s is None else min(at_s, summary.last_seen_s)
        where = memory.where(summary.object_id, end if at_s is None else at_s)
        unit = "m" if where.space == "world" else "px"
        state = "in view" if where.visible else f"last seen {where.seen_at_s:.2f} s"
        line = (f"{_name(summary.name, summary.object_id)}: at {_point(where.position)} {unit} at {where.at_s:.2f} s "
                f"({state}, frame {where.seen_frame}); first seen {summary.first_seen_s:.2f} s")
        last = _last_motion(memory, summary.object_id, at_s)
        if last is not None:
            span = "still moving" if last.end_s is None or (at_s is not None and last.end_s > at_s) else f"{last.end_s:.2f} s"
            line += f"; last moved {last.start_s:.2f}-{span}, {last.distance_m:.2f} {unit}"
        else:
            line += "; has not moved"
        facts.append(line)
    return facts


def _last_motion(memory: SceneQueries, object_id: int, at_s: float | None):
    """The object's latest motion begun by ``at_s`` (None: its latest of all)."""
    if at_s is None:
        return memory.last_moved(object_id)
    motions = getattr(memory, "motions", None)  # SceneMemory keeps them all, latest first
    if motions is None:
        last = memory.last_moved(object_id)
        return last if last is not None and last.start_s <= at_s else None
    return next((m for m in motions(object_id) if m.start_s <= at_s), None)


def _mentioned(name: str | None, object_id: int, question: str) -> bool:
    if re.search(rf"#{object_id}\b", question):
        return True
    return bool(name) and re.search(rf"\b{re.escape(name)}\b", question, re.IGNORECASE) is not None


def facts_from_run(run_dir: str | Path, question: str, at_s: float | None = None) -> list[str]:
    """:func:`scene_facts` from the ``scene.json`` of a run folder (read anew on every call, so a
    running run's newest save is used). The ``memstream.grounding`` entry point ``scene``."""
    from memstream.embodied.scene.stage import load_scene

    return scene_facts(load_scene(Path(run_dir)), question, at_s)


class RunFolderTools:
    """The scene memory's queries as tools over a run folder (``memstream serve --scene RUN_DIR``):
    :attr:`tools` are OpenAI function-calling schemas, :meth:`call` runs one against the folder's
    newest ``scene.json`` (read again when the run has saved since). The ``memstream.tools`` entry
    point ``scene``.

    Raises:
        ConfigError: the folder does not exist or holds no ``scene.json`` (at construction).
    """

    def __init__(self, run_dir: str | Path) -> None:
        from memstream.embodied.scene.stage import SCENE_FILE
        from memstream.embodied.scene.tools import TOOL_NAMES, TOOLS

        self.run_dir, self.tools, self.names = Path(run_dir), TOOLS, TOOL_NAMES
        self._file = self.run_dir / SCENE_FILE
        self._memory, self._stamp = None, None
        self._load()

    def _load(self):
        from memstream.embodied.scene.stage import load_scene

        stamp = self._file.stat().st_mtime_ns if self._file.is_file() else None
        if self._memory is None or stamp != self._stamp:
            self._memory, self._stamp = load_scene(self.run_dir), stamp
        return self._memory

    def facts(self, question: str, at_s: float | None = None) -> list[str]:
        """:func:`scene_facts` for ``question`` from the folder's newest ``scene.json`` (the
        service's grounded answers)."""
        return scene_facts(self._load(), question, at_s)

    def call(self, name: str, arguments: dict) -> object:
        """The tool's JSON result, or ``{"error": ...}`` for arguments it cannot answer."""
        from memstream.embodied.scene.tools import call_tool

        return call_tool(self._load(), name, arguments)
