"""The scene memory's queries as LLM tools: the schemas match the methods, and a tool call returns
the query's own JSON result (or an error a model can read)."""

from __future__ import annotations

import inspect
import json

import pytest

from memstream.embodied.scene import TOOLS, SceneMemory, call_tool
from tests.embodied.scene.helpers import rendered, run


@pytest.fixture(scope="module")
def memory() -> SceneMemory:
    return run(rendered()[:90])


@pytest.mark.parametrize("tool", TOOLS, ids=lambda t: t["function"]["name"])
def test_each_tool_is_a_query_with_the_same_arguments(tool: dict) -> None:
    function = tool["function"]
    method = getattr(SceneMemory, function["name"])
    parameters = inspect.signature(method).parameters
    arguments = [name for name in parameters if name != "self"]
    assert sorted(function["parameters"]["properties"]) == sorted(arguments)
    required = [name for name in arguments if parameters[name].default is inspect.Parameter.empty]
    assert sorted(function["parameters"]["required"]) == sorted(required)
    assert function["description"] and json.dumps(tool)


def test_a_tool_call_returns_the_querys_json(memory: SceneMemory) -> None:
    t = rendered()[45].timestamp_s
    assert call_tool(memory, "where", {"obj": "ball", "at_s": t}) == memory.where("ball", t).as_dict()
    assert call_tool(memory, "last_moved", {"obj": "cup"}) == memory.last_moved("cup").as_dict()
    assert call_tool(memory, "last_moved", {"obj": "box"}) is None
    near = call_tool(memory, "objects_near", {"point": list(memory.where("ball").position), "radius_m": 2.0})
    assert near == [s.as_dict() for s in memory.objects_near(memory.where("ball").position, 2.0)]
    assert [o["name"] for o in call_tool(memory, "objects")] == ["cup", "ball", "box", "table"]
    json.dumps(
        [
            call_tool(memory, name, args)
            for name, args in [
                ("trajectory", {"obj": "cup", "t0_s": 0.0, "t1_s": 1.0}),
                ("visible_at", {}),
                ("first_seen", {"obj": "box"}),
                ("last_seen", {"obj": "box"}),
                ("frames_showing", {"obj": "ball", "k": 2}),
            ]
        ]
    )


@pytest.mark.parametrize(
    ("name", "args", "error"),
    [
        ("where", {"obj": "mug"}, "no object 'mug' in the scene memory. Known objects: cup (#1)"),
        ("where", {"obj": "cup", "at_s": 500}, "time 500 s is outside the stream"),
        ("where", {"object": "cup"}, "where: unknown arguments ['object'], missing ['obj']"),
        ("teleport", {}, "unknown tool 'teleport'; tools: objects, where,"),
    ],
)
def test_a_bad_call_is_an_error_the_model_can_read(
    memory: SceneMemory, name: str, args: dict, error: str
) -> None:
    result = call_tool(memory, name, args)
    assert set(result) == {"error"} and result["error"].startswith(error)
