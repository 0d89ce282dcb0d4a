"""The scene memory's queries as LLM tools: OpenAI function-calling schemas and one dispatcher.

:data:`TOOLS` lists one ``{"type": "function", "function": {name, description, parameters}}`` per
query, with JSON-Schema parameters; :func:`call_tool` runs a tool call against a memory and returns
JSON-able data (an error becomes ``{"error": "..."}``, so a model can read it and try again). A
service hands ``TOOLS`` to the model and feeds each ``tool_calls`` entry to :func:`call_tool`::

    reply = client.chat.completions.create(model=..., messages=..., tools=TOOLS)
    for call in reply.choices[0].message.tool_calls or []:
        result = call_tool(memory, call.function.name, json.loads(call.function.arguments))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memstream.embodied.scene.protocol import SceneQueries
from memstream.embodied.scene.types import SceneQueryError

_OBJ = {"type": "string", "description": "the object's name (e.g. 'cup') or id (e.g. '3')"}
_AT = {"type": "number", "description": "stream time in seconds; omit for now (the latest frame)"}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    parameters = {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


TOOLS: list[dict[str, Any]] = [
    _tool("objects", "List the tracked objects: id, name, first and last time seen.", {}, []),
    _tool(
        "where",
        "Where an object was at a time (world metres, or image pixels without 3D), and the frame it "
        "was last seen on.",
        {"obj": _OBJ, "at_s": _AT},
        ["obj"],
    ),
    _tool(
        "trajectory",
        "An object's positions over a time range.",
        {
            "obj": _OBJ,
            "t0_s": {"type": "number", "description": "start, seconds"},
            "t1_s": {"type": "number", "description": "end, seconds"},
        },
        ["obj"],
    ),
    _tool(
        "last_moved",
        "When an object last moved: start and end of its latest motion (null: it never moved).",
        {"obj": _OBJ},
        ["obj"],
    ),
    _tool("first_seen", "When and where an object was first seen.", {"obj": _OBJ}, ["obj"]),
    _tool("last_seen", "When and where an object was last seen.", {"obj": _OBJ}, ["obj"]),
    _tool("visible_at", "The objects in view at a time.", {"at_s": _AT}, []),
    _tool(
        "objects_near",
        "Objects within a radius of a point at a time, nearest first.",
        {
            "point": {
                "type": "array",
                "items": {"type": "number"},
                "minItems": 2,
                "maxItems": 3,
                "description": "x, y, z metres (u, v pixels without 3D)",
            },
            "radius_m": {"type": "number", "exclusiveMinimum": 0},
            "at_s": _AT,
        },
        ["point", "radius_m"],
    ),
    _tool(
        "frames_showing",
        "The frames that show an object best (by the tracker's score).",
        {"obj": _OBJ, "k": {"type": "integer", "minimum": 1, "description": "how many (default 4)"}},
        ["obj"],
    ),
]
TOOL_NAMES = tuple(t["function"]["name"] for t in TOOLS)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value.as_dict() if hasattr(value, "as_dict") else value


def call_tool(memory: SceneQueries, name: str, arguments: Mapping[str, Any] | None = None) -> Any:
    """Run one tool call; returns the query's JSON result, or ``{"error": "..."}`` when the call
    cannot be answered (unknown tool or object, bad arguments, a time outside the stream)."""
    arguments = dict(arguments or {})
    allowed = next((t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name), None)
    if allowed is None:
        return {"error": f"unknown tool {name!r}; tools: {', '.join(TOOL_NAMES)}"}
    unknown = set(arguments) - set(allowed["properties"])
    missing = set(allowed["required"]) - set(arguments)
    if unknown or missing:
        return {"error": f"{name}: unknown arguments {sorted(unknown)}, missing {sorted(missing)}"}
    try:
        return _plain(getattr(memory, name)(**arguments))
    except (SceneQueryError, TypeError, ValueError, OverflowError) as exc:  # OverflowError: a JSON 10**400 as a time
        return {"error": str(exc)}
