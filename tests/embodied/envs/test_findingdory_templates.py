"""FindingDory-style templates: 24 in three groups, exact goals from a hand-made history, and the agent's
instruction resolver answering every template exactly from a memory of that history."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.embodied.agents.instructions import EpisodicMemory, goal_count, resolve
from memstream.embodied.envs.findingdory import GROUPS, TEMPLATES, HistoryFacts, instantiate
from memstream.embodied.envs.house import HouseLayout, HouseObject, free_grid, make_layout

ROOMS = np.array([[0, 5, 0, 5], [5.4, 10, 0, 5], [0, 5, 5.4, 10], [5.4, 10, 5.4, 10]], dtype=float)
OBJECTS = (
    HouseObject("red", "box", (8.0, 8.0)),  # picked 1st in room 0, now in room 3
    HouseObject("blue", "ball", (2.0, 8.0)),  # picked 2nd in room 1, now in room 2
    HouseObject("green", "box", (8.5, 2.0)),  # picked 3rd in room 3, now in room 1
    HouseObject("yellow", "ball", (2.0, 2.5)),  # untouched, room 0
    HouseObject("purple", "box", (3.5, 8.5)),
)  # untouched, room 2
FACTS = HistoryFacts(
    HouseLayout(ROOMS, (), OBJECTS, (1.0, 1.0), 0.0),
    picked=(0, 1, 2),
    pick_xz=((2.0, 1.0), (7.0, 3.0), (7.5, 7.0)),
    start_xz=(1.0, 1.0),
)


def goals(name: str, seed: int = 0) -> list[tuple[tuple[float, float], int]]:
    made = TEMPLATES.get(name).make(FACTS, np.random.default_rng(seed))
    assert made is not None
    return [(g.xz, g.object_index) for g in made[1]]


def test_there_are_24_templates_in_the_three_groups():
    groups = [TEMPLATES.get(n).group for n in TEMPLATES.names()]
    assert len(groups) == 24 and set(groups) == set(GROUPS)
    assert {g: groups.count(g) for g in GROUPS} == {"temporal": 8, "spatial": 8, "multi_goal": 8}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("picked_first", [((8.0, 8.0), 0)]),
        ("picked_last", [((8.5, 2.0), 2)]),
        ("where_first_picked", [((2.0, 1.0), -1)]),
        ("history_start", [((1.0, 1.0), -1)]),
        ("placed_nearest_start", [((2.0, 8.0), 1)]),  # blue: 7.07 m from the start; green 7.57, red 9.9
        ("moved_farthest", [((8.0, 8.0), 0)]),  # red carried 9.2 m
        ("picked_in_reverse", [((8.5, 2.0), 2), ((2.0, 8.0), 1), ((8.0, 8.0), 0)]),
        ("untouched_by_colour", [((3.5, 8.5), 4), ((2.0, 2.5), 3)]),  # purple before yellow
        ("last_then_start", [((8.5, 2.0), 2), ((1.0, 1.0), -1)]),
        ("second_then_nearest_untouched", [((2.0, 8.0), 1), ((3.5, 8.5), 4)]),
    ],
)
def test_templates_give_the_goals_the_history_implies(name, expected):
    assert goals(name) == expected


def test_room_templates_use_where_things_stand_now():
    # purple stands in room 2, where only blue was brought; yellow in room 0, where nothing was brought
    text, made = TEMPLATES.get("moved_into_room_of").make(FACTS, np.random.default_rng(0))
    assert "purple box" in text and [g.object_index for g in made] == [1]
    # red was picked in room 0, where only yellow stands now
    rng = np.random.default_rng(0)
    for _ in range(10):
        text, made = TEMPLATES.get("in_room_where_picked").make(FACTS, rng)
        picked_room = {"red": 0, "blue": 1, "green": 3}[text.split("the ")[-1].split()[0]]
        standing = [i for i, o in enumerate(OBJECTS) if FACTS.layout.room_of(o.xz) == picked_room]
        assert [g.object_index for g in made] == standing


def test_every_template_is_answered_exactly_by_the_agents_resolver_from_memory():
    memory = EpisodicMemory(
        picks=[(OBJECTS[i].colour, np.array(FACTS.pick_xz[k])) for k, i in enumerate(FACTS.picked)],
        objects={o.colour: np.array(o.xz) for o in OBJECTS},
        start=np.array(FACTS.start_xz),
        same_room=lambda a, b: FACTS.layout.room_of(a) == FACTS.layout.room_of(b),
    )
    for name in TEMPLATES.names():
        for seed in range(4):
            text, truth = TEMPLATES.get(name).make(FACTS, np.random.default_rng(seed))
            answer = resolve(text, memory)
            assert answer is not None, text
            assert [tuple(a) for a in answer] == [g.xz for g in truth], text
            assert goal_count(text) == len(truth) or name == "untouched_by_colour", text
    assert resolve("Go to the object you picked up first.", EpisodicMemory()) is None  # nothing remembered


def test_instantiation_is_deterministic_per_seed_and_skips_templates_that_do_not_apply():
    a = instantiate(FACTS, np.random.default_rng(7))
    b = instantiate(FACTS, np.random.default_rng(7))
    assert a[0].name == b[0].name and a[1] == b[1] and a[2] == b[2]
    no_untouched = HistoryFacts(
        FACTS.layout.with_objects(OBJECTS[:3]), FACTS.picked, FACTS.pick_xz, FACTS.start_xz
    )
    template, _, _ = instantiate(no_untouched, np.random.default_rng(0), ["untouched_object", "picked_first"])
    assert template.name == "picked_first"


def test_random_houses_are_connected_and_keep_objects_apart():
    for seed in range(5):
        layout = make_layout(np.random.default_rng(seed))
        points = np.array([layout.start_xz] + [o.xz for o in layout.objects])
        gaps = np.linalg.norm(points[:, None] - points[None], axis=2) + np.eye(len(points)) * 99
        assert gaps.min() >= 2.0 and len({o.colour for o in layout.objects}) == 5
        grid, free = free_grid(layout, clearance_m=0.45, cell_m=0.1)
        from memstream.embodied.envs.navgrid import distance_field

        field = distance_field(free, [tuple(grid.to_cell(layout.start_xz))], 0.1)
        centres = [((r[0] + r[1]) / 2, (r[2] + r[3]) / 2) for r in layout.rooms]
        assert all(np.isfinite(field[tuple(grid.to_cell(c))]) for c in centres)  # every room reachable
