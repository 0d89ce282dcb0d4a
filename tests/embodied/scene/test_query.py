"""The question grammar of `memstream query`: each form parses to its query, and the answer is the
query's own result."""

from __future__ import annotations

import json

import pytest

from memstream.embodied.scene import SceneMemory, SceneQueryError, ask, parse_question
from memstream.embodied.scene.query import Question, parse_time
from tests.embodied.scene.helpers import rendered, run


@pytest.mark.parametrize(
    ("text", "question"),
    [
        ("where cup", Question("where", {"obj": "cup"})),
        ("Where is the red cup at 1:05?", Question("where", {"obj": "red cup", "at_s": 65.0})),
        ("trajectory cup from 1 to 3.5s", Question("trajectory", {"obj": "cup", "t0_s": 1.0, "t1_s": 3.5})),
        ("last moved #3", Question("last_moved", {"obj": "#3"})),
        ("when did the ball last move", Question("last_moved", {"obj": "ball"})),
        ("first seen box", Question("first_seen", {"obj": "box"})),
        ("last seen box", Question("last_seen", {"obj": "box"})),
        ("visible at 12", Question("visible_at", {"at_s": 12.0})),
        ("visible", Question("visible_at", {})),
        (
            "near 1,0.5,-3 within 0.5 at 4",
            Question("objects_near", {"point": [1.0, 0.5, -3.0], "radius_m": 0.5, "at_s": 4.0}),
        ),
        ("near cup within 2m", Question("objects_near", {"obj": "cup", "radius_m": 2.0})),
        ("frames cup 3", Question("frames_showing", {"obj": "cup", "k": 3})),
        ("objects", Question("objects", {})),
    ],
)
def test_each_form_parses_to_its_query(text: str, question: Question) -> None:
    assert parse_question(text) == question


def test_times_read_as_seconds_or_clock() -> None:
    assert [parse_time(t) for t in ("12.5", "12.5s", "1:05", "1:02:03")] == [12.5, 12.5, 65.0, 3723.0]


def test_a_question_outside_the_grammar_names_the_grammar() -> None:
    with pytest.raises(
        SceneQueryError, match=r"cannot read the question 'how are you'.*Ask one of: where OBJ"
    ):
        parse_question("how are you")


def test_answers_are_the_queries_results_as_json() -> None:
    memory = run(rendered()[:120])
    t = rendered()[60].timestamp_s
    answer = ask(memory, f"where ball at {t}")
    assert answer.result == memory.where("ball", t).as_dict() and answer.kind == "where"
    assert answer.text.startswith(f"ball (#2) at {t:.2f} s: (")
    moved = ask(memory, "last moved cup")
    assert moved.result == memory.last_moved("cup").as_dict()
    assert f"last moved from {memory.last_moved('cup').start_s:.2f} s" in moved.text
    assert ask(memory, "last moved box").result is None
    assert "has not moved since it was first seen at 0.00 s" in ask(memory, "last moved box").text
    assert ask(memory, "near ball within 1.5").result == [
        s.as_dict() for s in memory.objects_near(memory.where("ball").position, 1.5)
    ]
    assert [o["name"] for o in ask(memory, "objects").result] == ["cup", "ball", "box", "table"]
    json.dumps(
        [
            ask(memory, q).as_dict()
            for q in (
                "where cup",
                "trajectory cup from 0 to 1",
                "visible",
                "frames ball 2",
                "first seen table",
                "last seen cup",
            )
        ]
    )


def test_an_empty_memory_says_it_has_seen_nothing() -> None:
    with pytest.raises(SceneQueryError, match="no object 'cup'.*Known objects: none yet"):
        ask(SceneMemory(), "where cup")
    with pytest.raises(SceneQueryError, match="has seen no frame yet"):
        ask(SceneMemory(), "visible")
