"""FindingDory-style instructions: 24 templates in three groups, each answerable only from the history.

In the history phase a scripted agent tours the house, then picks ``k`` objects one after another and
places each elsewhere (FindingDory's "daily" pick-and-place). :class:`HistoryFacts` is what happened;
a template turns the facts into an instruction and its ground-truth goals, or ``None`` when it does
not apply (e.g. no single object stands in the named room). Goals are positions on the floor: an
object where it stands after the history, or a place (where something was picked up, the start).

Groups, as in FindingDory (Yadav et al., 2025): ``temporal`` (order of interactions), ``spatial``
(where things were or are, relative to rooms and each other) and ``multi_goal`` (several goals in a
given order).

Example:
    >>> from memstream.embodied.envs.house import make_layout
    >>> facts = HistoryFacts(make_layout(np.random.default_rng(0)), picked=(2, 0, 4),
    ...                      pick_xz=((1.0, 1.0), (2.0, 2.0), (3.0, 3.0)), start_xz=(0.5, 0.5))
    >>> text, goals = TEMPLATES.get("picked_first").make(facts, np.random.default_rng(0))
    >>> text, goals[0].object_index
    ('Go to the object you picked up first.', 2)
    >>> len(TEMPLATES.names()), sorted({t.group for t in map(TEMPLATES.get, TEMPLATES.names())})
    (24, ['multi_goal', 'spatial', 'temporal'])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from memstream.embodied.envs.house import HouseLayout
from memstream.streaming.registry import Registry

GROUPS = ("temporal", "spatial", "multi_goal")


@dataclass(frozen=True)
class Goal:
    """One goal: ``xz`` (2,) metres on the floor; ``object_index`` into the layout's objects (-1: a place)."""

    xz: tuple[float, float]
    object_index: int = -1


@dataclass(frozen=True)
class HistoryFacts:
    """What the history phase did. layout: the house with objects where they stand afterwards.
    picked: object indices in the order picked (each placed before the next pick). pick_xz: where
    each was picked up, same order. start_xz: where the history began."""

    layout: HouseLayout
    picked: tuple[int, ...]
    pick_xz: tuple[tuple[float, float], ...]
    start_xz: tuple[float, float]

    @property
    def untouched(self) -> list[int]:
        return [i for i in range(len(self.layout.objects)) if i not in self.picked]

    def obj(self, index: int) -> Goal:
        return Goal(self.layout.objects[index].xz, index)

    def name(self, index: int) -> str:
        return self.layout.objects[index].name

    def at(self, xz: tuple[float, float]) -> np.ndarray:
        return np.asarray(xz, dtype=np.float64)


Maker = Callable[[HistoryFacts, np.random.Generator], "tuple[str, list[Goal]] | None"]


@dataclass(frozen=True)
class Template:
    """A named instruction template: its group and the function that instantiates it."""

    name: str
    group: str
    make: Maker


TEMPLATES: Registry[Template] = Registry("findingdory template")


def template(name: str, group: str) -> Callable[[Maker], Maker]:
    def register(make: Maker) -> Maker:
        TEMPLATES.add(name, Template(name, group, make))
        return make

    return register


_ORDINALS = ("first", "second", "third", "fourth", "fifth")


# ---- temporal: the order of interactions -------------------------------------------------------
@template("picked_first", "temporal")
def _picked_first(f: HistoryFacts, rng: np.random.Generator):
    return "Go to the object you picked up first.", [f.obj(f.picked[0])]


@template("picked_second", "temporal")
def _picked_second(f, rng):
    return "Go to the object you picked up second.", [f.obj(f.picked[1])]


@template("picked_last", "temporal")
def _picked_last(f, rng):
    return "Go to the object you picked up last.", [f.obj(f.picked[-1])]


@template("picked_after", "temporal")
def _picked_after(f, rng):
    i = int(rng.integers(len(f.picked) - 1))
    return f"Go to the object you picked up right after the {f.name(f.picked[i])}.", [f.obj(f.picked[i + 1])]


@template("picked_before", "temporal")
def _picked_before(f, rng):
    i = int(rng.integers(1, len(f.picked)))
    return f"Go to the object you picked up right before the {f.name(f.picked[i])}.", [f.obj(f.picked[i - 1])]


@template("where_first_picked", "temporal")
def _where_first_picked(f, rng):
    return "Go to the spot where you picked up the first object.", [Goal(f.pick_xz[0])]


@template("where_last_picked", "temporal")
def _where_last_picked(f, rng):
    return "Go to the spot where you picked up the last object.", [Goal(f.pick_xz[-1])]


@template("history_start", "temporal")
def _history_start(f, rng):
    return "Go back to where you were when the day began.", [Goal(f.start_xz)]


# ---- spatial: where things were and are ---------------------------------------------------------
@template("moved_object", "spatial")
def _moved_object(f, rng):
    i = int(rng.choice(f.picked))
    return f"Go to the {f.name(i)}, wherever you left it.", [f.obj(i)]


@template("untouched_object", "spatial")
def _untouched_object(f, rng):
    if not f.untouched:
        return None
    i = int(rng.choice(f.untouched))
    return f"Go to the {f.name(i)}, which you saw but never touched.", [f.obj(i)]


@template("where_picked", "spatial")
def _where_picked(f, rng):
    k = int(rng.integers(len(f.picked)))
    return f"Go to the spot where you picked up the {f.name(f.picked[k])}.", [Goal(f.pick_xz[k])]


@template("placed_nearest_start", "spatial")
def _placed_nearest_start(f, rng):
    d = [np.linalg.norm(f.at(f.layout.objects[i].xz) - f.at(f.start_xz)) for i in f.picked]
    return "Go to the object you moved that now stands nearest to where the day began.", [
        f.obj(f.picked[int(np.argmin(d))])
    ]


@template("moved_farthest", "spatial")
def _moved_farthest(f, rng):
    d = [
        np.linalg.norm(f.at(f.layout.objects[i].xz) - f.at(p))
        for i, p in zip(f.picked, f.pick_xz, strict=True)
    ]
    return "Go to the object you carried farthest.", [f.obj(f.picked[int(np.argmax(d))])]


@template("moved_into_room_of", "spatial")
def _moved_into_room_of(f, rng):
    for u in rng.permutation(f.untouched):
        room = f.layout.room_of(f.layout.objects[u].xz)
        moved = [i for i in f.picked if f.layout.room_of(f.layout.objects[i].xz) == room]
        if len(moved) == 1:
            return f"Go to the object you brought into the room where the {f.name(int(u))} is.", [
                f.obj(moved[0])
            ]
    return None


@template("untouched_nearest_to", "spatial")
def _untouched_nearest_to(f, rng):
    if not f.untouched:
        return None
    i = int(rng.choice(f.picked))
    d = [np.linalg.norm(f.at(f.layout.objects[u].xz) - f.at(f.layout.objects[i].xz)) for u in f.untouched]
    return (
        f"Go to the object you never touched that stands nearest to the {f.name(i)}.",
        [f.obj(f.untouched[int(np.argmin(d))])],
    )


@template("in_room_where_picked", "spatial")
def _in_room_where_picked(f, rng):
    for k in rng.permutation(len(f.picked)):
        room = f.layout.room_of(f.pick_xz[k])
        here = [i for i in range(len(f.layout.objects)) if f.layout.room_of(f.layout.objects[i].xz) == room]
        if len(here) == 1:
            return (
                f"Go to the object now standing in the room where you picked up the {f.name(f.picked[k])}.",
                [f.obj(here[0])],
            )
    return None


# ---- multi-goal: several goals in a given order -------------------------------------------------
@template("picked_in_order", "multi_goal")
def _picked_in_order(f, rng):
    return "Visit the objects you picked up, in the order you picked them up.", [f.obj(i) for i in f.picked]


@template("picked_in_reverse", "multi_goal")
def _picked_in_reverse(f, rng):
    return "Visit the objects you picked up, last picked first.", [f.obj(i) for i in reversed(f.picked)]


@template("first_and_last", "multi_goal")
def _first_and_last(f, rng):
    return "Go to the object you picked up first, then to the one you picked up last.", [
        f.obj(f.picked[0]),
        f.obj(f.picked[-1]),
    ]


@template("object_then_its_spot", "multi_goal")
def _object_then_its_spot(f, rng):
    k = int(rng.integers(len(f.picked)))
    return (
        f"Go to the {f.name(f.picked[k])}, then to the spot where you picked it up.",
        [f.obj(f.picked[k]), Goal(f.pick_xz[k])],
    )


@template("first_two_spots", "multi_goal")
def _first_two_spots(f, rng):
    return "Visit the spots where you picked up your first two objects, in that order.", [
        Goal(f.pick_xz[0]),
        Goal(f.pick_xz[1]),
    ]


@template("untouched_by_colour", "multi_goal")
def _untouched_by_colour(f, rng):
    if len(f.untouched) < 2:
        return None
    order = sorted(f.untouched, key=lambda i: f.layout.objects[i].colour)
    return "Visit the objects you never touched, in alphabetical order of their colours.", [
        f.obj(i) for i in order
    ]


@template("last_then_start", "multi_goal")
def _last_then_start(f, rng):
    return "Go to the object you picked up last, then back to where the day began.", [
        f.obj(f.picked[-1]),
        Goal(f.start_xz),
    ]


@template("second_then_nearest_untouched", "multi_goal")
def _second_then_nearest_untouched(f, rng):
    if not f.untouched:
        return None
    second = f.layout.objects[f.picked[1]].xz
    d = [np.linalg.norm(f.at(f.layout.objects[u].xz) - f.at(second)) for u in f.untouched]
    return (
        "Go to the object you picked up second, then to the untouched object nearest to it.",
        [f.obj(f.picked[1]), f.obj(f.untouched[int(np.argmin(d))])],
    )


def instantiate(
    facts: HistoryFacts, rng: np.random.Generator, names: list[str] | None = None
) -> tuple[Template, str, list[Goal]]:
    """Draw a template (from ``names``, default all) that applies to ``facts``: it, its text, its goals."""
    names = list(TEMPLATES.names() if names is None else names)
    for name in rng.permutation(names):
        chosen = TEMPLATES.get(str(name))
        try:
            made = chosen.make(facts, rng)
        except IndexError:  # the history picked fewer objects than this template needs
            continue
        if made is not None:
            return chosen, made[0], made[1]
    raise ValueError(f"no template of {names} applies to this history")
