"""Resolve a FindingDory-style instruction against the agent's memory: which goals, in which order.

:class:`EpisodicMemory` is what the agent remembers of the history phase: the colour of each object it
picked, in order, and where (map metres), the objects' last known positions, and the history's start
(the map origin). :func:`resolve` matches the instruction against one pattern per template of
:mod:`memstream.embodied.envs.findingdory` and answers from that memory only; ``None`` means the
memory cannot answer (e.g. wiped).

Example:
    >>> memory = EpisodicMemory(picks=[("red", np.array([1.0, 0.0])), ("blue", np.array([2.0, 0.0]))],
    ...                         objects={"red": np.array([5.0, 5.0]), "blue": np.array([6.0, 1.0])})
    >>> [g.tolist() for g in resolve("Go to the object you picked up last.", memory)]
    [[6.0, 1.0]]
    >>> resolve("Go to the object you picked up last.", EpisodicMemory()) is None
    True
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

_ORD = {"first": 0, "second": 1, "third": 2, "last": -1}
_OBJ = r"the (\w+) (?:box|ball)"


@dataclass
class EpisodicMemory:
    """picks: (colour, map position where picked) in order. objects: colour -> last known position (2,).
    same_room(a, b) -> bool: whether two positions lie in one room (the map's walls)."""

    picks: list[tuple[str, np.ndarray]] = field(default_factory=list)
    objects: dict[str, np.ndarray] = field(default_factory=dict)
    start: np.ndarray = field(default_factory=lambda: np.zeros(2))
    same_room: Callable[[np.ndarray, np.ndarray], bool] = lambda a, b: False

    @property
    def picked(self) -> list[str]:
        return [c for c, _ in self.picks]

    @property
    def untouched(self) -> list[str]:
        return [c for c in self.objects if c not in self.picked]

    def at(self, colour: str) -> np.ndarray | None:
        return self.objects.get(colour)

    def pick_spot(self, colour: str) -> np.ndarray | None:
        return next((p for c, p in self.picks if c == colour), None)


Goals = list[np.ndarray]
_RULES: list[tuple[re.Pattern[str], Callable[[EpisodicMemory, re.Match[str]], Goals | None]]] = []


def rule(pattern: str) -> Callable:
    def register(fn: Callable[[EpisodicMemory, re.Match[str]], Goals | None]) -> Callable:
        _RULES.append((re.compile(pattern + r"$"), fn))
        return fn

    return register


def _need(*values: np.ndarray | None) -> Goals | None:
    return None if any(v is None for v in values) else [np.asarray(v) for v in values]  # type: ignore[misc]


def _nth(m: EpisodicMemory, k: int) -> str | None:
    return m.picked[k] if -len(m.picked) <= k < len(m.picked) else None


def _obj_nth(m: EpisodicMemory, k: int) -> np.ndarray | None:
    colour = _nth(m, k)
    return None if colour is None else m.at(colour)


@rule(r"Go to the object you picked up (first|second|last)\.")
def _picked_nth(m, x):
    return _need(_obj_nth(m, _ORD[x[1]]))


@rule(r"Go to the object you picked up right (after|before) " + _OBJ + r"\.")
def _picked_next(m, x):
    if x[2] not in m.picked:
        return None
    k = m.picked.index(x[2]) + (1 if x[1] == "after" else -1)
    return _need(_obj_nth(m, k)) if 0 <= k < len(m.picked) else None


@rule(r"Go to the spot where you picked up the (first|last) object\.")
def _spot_nth(m, x):
    k = _ORD[x[1]]
    return _need(m.picks[k][1]) if m.picks else None


@rule(r"Go back to where you were when the day began\.")
def _start(m, x):
    return [m.start]


@rule(r"Go to " + _OBJ + r", wherever you left it\.")
def _moved(m, x):
    return _need(m.at(x[1]))


@rule(r"Go to " + _OBJ + r", which you saw but never touched\.")
def _untouched(m, x):
    return _need(m.at(x[1]))


@rule(r"Go to the spot where you picked up " + _OBJ + r"\.")
def _spot_of(m, x):
    return _need(m.pick_spot(x[1]))


@rule(r"Go to the object you moved that now stands nearest to where the day began\.")
def _nearest_start(m, x):
    known = [c for c in m.picked if c in m.objects]
    if not known:
        return None
    return [m.objects[min(known, key=lambda c: np.linalg.norm(m.objects[c] - m.start))]]


@rule(r"Go to the object you carried farthest\.")
def _farthest(m, x):
    known = [(c, p) for c, p in m.picks if c in m.objects]
    if not known:
        return None
    return [m.objects[max(known, key=lambda cp: np.linalg.norm(m.objects[cp[0]] - cp[1]))[0]]]


@rule(r"Go to the object you brought into the room where " + _OBJ + r" is\.")
def _into_room_of(m, x):
    anchor = m.at(x[1])
    if anchor is None:
        return None
    moved = [c for c in m.picked if c in m.objects and m.same_room(m.objects[c], anchor)]
    return [m.objects[moved[0]]] if len(moved) == 1 else None


@rule(r"Go to the object you never touched that stands nearest to " + _OBJ + r"\.")
def _untouched_nearest(m, x):
    anchor = m.at(x[1])
    if anchor is None or not m.untouched:
        return None
    return [m.objects[min(m.untouched, key=lambda c: np.linalg.norm(m.objects[c] - anchor))]]


@rule(r"Go to the object now standing in the room where you picked up " + _OBJ + r"\.")
def _in_room_where_picked(m, x):
    spot = m.pick_spot(x[1])
    if spot is None:
        return None
    here = [c for c in m.objects if m.same_room(m.objects[c], spot)]
    return [m.objects[here[0]]] if len(here) == 1 else None


@rule(r"Visit the objects you picked up, in the order you picked them up\.")
def _in_order(m, x):
    return _need(*[m.at(c) for c in m.picked]) if m.picked else None


@rule(r"Visit the objects you picked up, last picked first\.")
def _in_reverse(m, x):
    return _need(*[m.at(c) for c in reversed(m.picked)]) if m.picked else None


@rule(r"Go to the object you picked up first, then to the one you picked up last\.")
def _first_last(m, x):
    return _need(_obj_nth(m, 0), _obj_nth(m, -1))


@rule(r"Go to " + _OBJ + r", then to the spot where you picked it up\.")
def _object_then_spot(m, x):
    return _need(m.at(x[1]), m.pick_spot(x[1]))


@rule(r"Visit the spots where you picked up your first two objects, in that order\.")
def _first_two_spots(m, x):
    return [m.picks[0][1], m.picks[1][1]] if len(m.picks) >= 2 else None


@rule(r"Visit the objects you never touched, in alphabetical order of their colours\.")
def _untouched_by_colour(m, x):
    return [m.objects[c] for c in sorted(m.untouched)] if m.untouched else None


@rule(r"Go to the object you picked up last, then back to where the day began\.")
def _last_then_start(m, x):
    return _need(_obj_nth(m, -1), m.start)


@rule(r"Go to the object you picked up second, then to the untouched object nearest to it\.")
def _second_then_untouched(m, x):
    second = _obj_nth(m, 1)
    if second is None or not m.untouched:
        return None
    return [second, m.objects[min(m.untouched, key=lambda c: np.linalg.norm(m.objects[c] - second))]]


def resolve(instruction: str, memory: EpisodicMemory) -> Goals | None:
    """The goals (map metres, in order) the instruction asks for, or None if memory cannot tell."""
    for pattern, fn in _RULES:
        match = pattern.match(instruction.strip())
        if match:
            return fn(memory, match)
    return None


def goal_count(instruction: str) -> int:
    """How many goals an instruction asks for (1 unless it names several)."""
    text = instruction.lower()
    if "picked up, in the order" in text or "last picked first" in text:
        return 3
    if text.startswith("visit the objects you never touched"):
        return 2
    return 2 if text.startswith("visit") or ", then" in text else 1


def named_colour(instruction: str) -> str | None:
    """The colour of the object an instruction names, if it names one."""
    match = re.search(_OBJ, instruction)
    return match[1] if match else None
