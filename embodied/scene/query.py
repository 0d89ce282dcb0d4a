"""The small question grammar of ``memstream query``, parsed into scene-memory queries.

==========================================  ==========================================
question                                    query
==========================================  ==========================================
``where cup [at T]``                        :meth:`SceneMemory.where`
``trajectory cup [from T0] [to T1]``        :meth:`SceneMemory.trajectory`
``last moved cup`` (``when did cup move``)  :meth:`SceneMemory.last_moved`
``first seen cup`` / ``last seen cup``      :meth:`SceneMemory.first_seen` / ``last_seen``
``visible [at T]``                          :meth:`SceneMemory.visible_at`
``near X,Y,Z [within R] [at T]``            :meth:`SceneMemory.objects_near` (R: 1 by default)
``near cup [within R] [at T]``              the same, around the cup's position then
``frames cup [K]``                          :meth:`SceneMemory.frames_showing` (K: 4)
``objects``                                 :meth:`SceneMemory.objects`
==========================================  ==========================================

Objects are names (any case, inner spaces allowed) or ids (``3``, ``#3``); times are seconds
(``12.5``, ``12.5s``) or ``[h:]mm:ss`` (``1:05``). Each answer is a :class:`QueryAnswer`: one line
of text and the query's JSON result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from memstream.embodied.scene.protocol import SceneQueries
from memstream.embodied.scene.types import SceneQueryError, Sighting

_TIME = r"(?:\d+:)?\d+(?::\d+)?(?:\.\d*)?s?"
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("where", rf"where(?: is| was)? (?P<obj>.+?)(?: at (?P<at>{_TIME}))?"),
    (
        "trajectory",
        rf"(?:trajectory|path|track) (?:of )?(?P<obj>.+?)(?: from (?P<t0>{_TIME}))?(?: to (?P<t1>{_TIME}))?",
    ),
    ("last_moved", r"(?:last moved|when did) (?P<obj>.+?)(?: last)?(?: move| moved)?"),
    ("first_seen", r"first seen (?P<obj>.+)"),
    ("last_seen", r"last seen (?P<obj>.+)"),
    ("visible_at", rf"visible(?: at (?P<at>{_TIME}))?(?: now)?"),
    (
        "objects_near",
        rf"near (?P<target>.+?)(?: within (?P<radius>\d+(?:\.\d*)?)(?: ?m)?)?(?: at (?P<at>{_TIME}))?",
    ),
    ("frames_showing", r"frames (?:of |showing )?(?P<obj>.+?)(?: (?P<k>\d+))?"),
    ("objects", r"objects|list"),
)
GRAMMAR = (
    "where OBJ [at T] | trajectory OBJ [from T0] [to T1] | last moved OBJ | first seen OBJ | "
    "last seen OBJ | visible [at T] | near X,Y,Z|OBJ [within R] [at T] | frames OBJ [K] | objects"
)


@dataclass(frozen=True)
class Question:
    """A parsed question: the query's name and its typed arguments."""

    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class QueryAnswer:
    """One answer: ``text`` (a line for people), ``result`` (the query's JSON)."""

    question: str
    kind: str
    text: str
    result: Any

    def as_dict(self) -> dict[str, Any]:
        return {"question": self.question, "query": self.kind, "answer": self.text, "result": self.result}


def parse_time(text: str) -> float:
    """``12.5``, ``12.5s``, ``1:05`` or ``1:02:03`` -> seconds."""
    parts = text.rstrip("s").split(":")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def parse_question(text: str) -> Question:
    """The question as a query (see the module docstring).

    Raises:
        SceneQueryError: a question outside the grammar, naming the grammar.
    """
    clean = " ".join(text.strip().rstrip("?").split())
    for kind, pattern in _PATTERNS:
        match = re.fullmatch(pattern, clean, flags=re.IGNORECASE)
        if match is None:
            continue
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        args: dict[str, Any] = {}
        for key, value in groups.items():
            if key in ("at", "t0", "t1"):
                args[{"at": "at_s", "t0": "t0_s", "t1": "t1_s"}[key]] = parse_time(value)
            elif key == "radius":
                args["radius_m"] = float(value)
            elif key == "k":
                args["k"] = int(value)
            elif key == "target":
                numbers = re.fullmatch(
                    r"\(?\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*(?:,\s*(-?[\d.]+)\s*)?\)?", value
                )
                args["point" if numbers else "obj"] = (
                    [float(v) for v in numbers.groups() if v is not None] if numbers else _object(value)
                )
            else:
                args[key] = _object(value)
        return Question(kind, args)
    raise SceneQueryError(f"cannot read the question {text!r}", f"Ask one of: {GRAMMAR}")


def _object(text: str) -> str:
    """An object reference without a leading article (``the red cup`` -> ``red cup``)."""
    return re.sub(r"^(?:the|a|an)\s+", "", text.strip(), flags=re.IGNORECASE)


def ask(memory: SceneQueries, text: str) -> QueryAnswer:
    """Parse ``text`` and answer it from ``memory``.

    Raises:
        SceneQueryError: a question outside the grammar, an unknown object, a time outside the stream.
    """
    q = parse_question(text)
    a = q.args
    if q.kind == "where":
        s = memory.where(a["obj"], a.get("at_s"))
        return QueryAnswer(text, q.kind, _where_text(s), s.as_dict())
    if q.kind in ("first_seen", "last_seen"):
        s = getattr(memory, q.kind)(a["obj"])
        return QueryAnswer(
            text,
            q.kind,
            f"{s.label} was {q.kind.replace('_', ' ')} at {s.seen_at_s:.2f} s (frame {s.seen_frame}){_at(s)}",
            s.as_dict(),
        )
    if q.kind == "trajectory":
        tr = memory.trajectory(a["obj"], a.get("t0_s"), a.get("t1_s"))
        span = f" from {tr.times_s[0]:.2f} to {tr.times_s[-1]:.2f} s" if len(tr) else ""
        return QueryAnswer(
            text, q.kind, f"{len(tr)} positions of {_name(tr.name, tr.object_id)}{span}", tr.as_dict()
        )
    if q.kind == "last_moved":
        m = memory.last_moved(a["obj"])
        if m is None:
            first = memory.first_seen(a["obj"])
            return QueryAnswer(
                text,
                q.kind,
                f"{first.label} has not moved since it was first seen at {first.seen_at_s:.2f} s",
                None,
            )
        unit = "m" if m.space == "world" else "px"
        end = "and is still moving" if m.moving else f"to {m.end_s:.2f} s (frame {m.end_frame})"
        return QueryAnswer(
            text,
            q.kind,
            f"{_name(m.name, m.object_id)} last moved from {m.start_s:.2f} s (frame "
            f"{m.start_frame}) {end}, {m.distance_m:.2f} {unit}",
            m.as_dict(),
        )
    if q.kind == "visible_at":
        seen = memory.visible_at(a.get("at_s"))
        names = ", ".join(s.label for s in seen) or "nothing tracked"
        return QueryAnswer(text, q.kind, f"visible: {names}", [s.as_dict() for s in seen])
    if q.kind == "objects_near":
        point = a.get("point") or memory.where(a["obj"], a.get("at_s")).position
        near = memory.objects_near(point, a.get("radius_m", 1.0), a.get("at_s"))
        names = ", ".join(f"{s.label} at {s.distance_m:.2f}" for s in near) or "nothing"
        return QueryAnswer(text, q.kind, f"near {_point(point)}: {names}", [s.as_dict() for s in near])
    if q.kind == "frames_showing":
        frames = memory.frames_showing(a["obj"], a.get("k", 4))
        listed = ", ".join(f"{f.frame} ({f.score:.2f})" for f in frames)
        return QueryAnswer(text, q.kind, f"best frames: {listed}", [f.as_dict() for f in frames])
    summaries = memory.objects()
    listed = ", ".join(_name(o.name, o.object_id) for o in summaries) or "none"
    return QueryAnswer(text, q.kind, f"{len(summaries)} objects: {listed}", [o.as_dict() for o in summaries])


def _name(name: str | None, object_id: int) -> str:
    return f"{name} (#{object_id})" if name else f"object #{object_id}"


def _point(position: Any) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in position) + ")" if position is not None else "(unplaced)"


def _at(s: Sighting) -> str:
    unit = "m" if s.space == "world" else "px"
    return f" at {_point(s.position)} {unit}" if s.position is not None else ""


def _where_text(s: Sighting) -> str:
    when = "in view" if s.visible else f"last seen {s.at_s - s.seen_at_s:.2f} s earlier"
    return (
        f"{s.label} at {s.at_s:.2f} s: {_point(s.position)} {'m' if s.space == 'world' else 'px'} ({when}, "
        f"frame {s.seen_frame})"
    )
