"""Grounded questions (issue 18, part 3): the scene memory's facts for a question, and `memstream ask
--scene RUN_DIR` answering on them with the tiny random-weight Video-LLM, listing what it was told."""

from __future__ import annotations

import json

import pytest

from memstream.embodied.scene.grounding import facts_from_run, scene_facts
from memstream.streaming.cli import main
from memstream.streaming.videomem.grounding import grounded_question, grounding_provider
from tests.embodied.scene.helpers import rendered, run
from tests.streaming.videomem.conftest import tiny_llava, tiny_llava_dir  # noqa: F401 -- fixtures of the tool tests


@pytest.fixture(scope="module")
def memory():
    return run(rendered()[:120])


def test_a_question_naming_an_object_gets_that_objects_facts(memory):
    facts = scene_facts(memory, "Where did the CUP go?")
    assert len(facts) == 1
    where, moved = memory.where("cup", memory.last_seen("cup").seen_at_s), memory.last_moved("cup")
    position = "(" + ", ".join(f"{v:.2f}" for v in where.position) + ")"
    assert facts[0].startswith(f"cup (#1): at {position} m at {where.at_s:.2f} s")
    assert f"first seen {memory.first_seen('cup').seen_at_s:.2f} s" in facts[0]
    assert (f"last moved {moved.start_s:.2f}-" in facts[0]) if moved else facts[0].endswith("has not moved")
    assert scene_facts(memory, "what about #2?")[0].startswith("ball (#2)")


def test_without_a_named_object_the_most_recently_seen_come_first_and_bounded(memory):
    facts = scene_facts(memory, "What happened?", max_objects=2)
    latest = sorted(memory.objects(), key=lambda o: (-o.last_seen_s, o.object_id))[:2]
    assert [f.split(":")[0] for f in facts] == [f"{o.name} (#{o.object_id})" for o in latest]


def test_facts_as_of_a_time_see_nothing_later(memory):
    t = rendered()[20].timestamp_s
    facts = scene_facts(memory, "where is the cup", at_s=t)
    assert f"at {t:.2f} s" in facts[0]
    assert all(m.start_s > t for m in memory.motions("cup")) == ("has not moved" in facts[0])


def test_the_question_follows_its_facts():
    assert grounded_question("Where?", []) == "Where?"
    assert grounded_question("Where?", ["cup (#1): at (1.00, 2.00, 3.00) m"]).endswith(
        "- cup (#1): at (1.00, 2.00, 3.00) m\nQuestion: Where?")
    assert grounding_provider("scene") is facts_from_run  # found through the entry point


def test_ask_answers_on_the_scene_facts_and_lists_them(memory, tmp_path, capsys):
    (tmp_path / "scene.json").write_text(json.dumps(memory.state_dict()))
    code = main(["ask", "synthetic://stop_and_go?frames=6&size=64x48", "Where is the cup now?", "--model", "tiny-random",
                 "--scene", str(tmp_path), "--max-new-tokens", "2", "--json", "--no-progress"])
    assert code == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["question"] == "Where is the cup now?"
    assert record["facts"] == facts_from_run(tmp_path, "Where is the cup now?") and record["facts"][0].startswith("cup (#1)")


def test_ask_refuses_a_scene_folder_that_is_not_a_run_before_reading_the_video(tmp_path, capsys):
    assert main(["ask", "synthetic://stop_and_go?frames=6&size=64x48", "Where?", "--model", "tiny-random",
                 "--scene", str(tmp_path / "missing")]) == 2
    assert "no run folder" in capsys.readouterr().err


# ---- the service's tools -------------------------------------------------------------------------
@pytest.fixture()
def tools_client(memory, tmp_path, tiny_llava):
    from fastapi.testclient import TestClient
    from memstream.embodied.scene.grounding import RunFolderTools
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
    from memstream.streaming.videomem.serve import create_app
    from memstream.streaming.videomem.service import AccessPolicy, VideoQAService

    (tmp_path / "scene.json").write_text(json.dumps(memory.state_dict()))
    service = VideoQAService(lambda _s: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), "tiny")
    app = create_app(service, AccessPolicy(api_keys=("sk-tools-123456",)), tools=RunFolderTools(tmp_path))
    return TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": "Bearer sk-tools-123456"})


def test_the_service_serves_the_scene_queries_as_openai_tools(memory, tools_client):
    from memstream.embodied.scene.tools import TOOLS

    assert tools_client.get("/v1/tools").json() == {"object": "list", "data": TOOLS}
    t = rendered()[60].timestamp_s
    called = tools_client.post("/v1/tools/where", json={"arguments": {"obj": "ball", "at_s": t}})
    assert called.status_code == 200
    assert called.json() == {"name": "where", "result": json.loads(json.dumps(memory.where("ball", t).as_dict()))}
    assert tools_client.post("/v1/tools/objects", json={}).json()["result"] == [o.as_dict() for o in memory.objects()]


@pytest.mark.parametrize(("name", "body", "status", "code"), [
    ("drop_tables", {"arguments": {}}, 404, "tool_not_found"),
    ("where", {"arguments": {"obj": "unicorn"}}, 400, "tool_error"),      # no such object
    ("where", {"arguments": {"obj": "cup", "extra": 1}}, 400, "tool_error"),
    ("where", {"arguments": []}, 400, None),
    ("where", {"arguments": {}}, 400, "tool_error"),                     # obj is required
])
def test_tool_calls_it_cannot_answer_are_4xx_in_openais_shape(tools_client, name, body, status, code):
    response = tools_client.post(f"/v1/tools/{name}", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()["error"]) == {"message", "type", "param", "code"} and response.json()["error"]["code"] == code


def test_tools_want_the_key_and_a_server_without_scene_serves_none(tools_client, tiny_llava):
    from fastapi.testclient import TestClient
    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
    from memstream.streaming.videomem.serve import create_app
    from memstream.streaming.videomem.service import VideoQAService

    assert tools_client.get("/v1/tools", headers={"Authorization": "Bearer wrong"}).status_code == 401
    plain = TestClient(create_app(VideoQAService(lambda _s: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), "tiny")),
                       base_url="http://127.0.0.1")
    assert plain.get("/v1/tools").json()["data"] == []
    assert plain.post("/v1/tools/where", json={"arguments": {"obj": "cup"}}).status_code == 404


def test_serve_refuses_a_scene_folder_that_is_not_a_run(tiny_llava_dir, tmp_path, capsys):
    assert main(["serve", "--model", str(tiny_llava_dir), "--scene", str(tmp_path / "missing")]) == 2
    assert "no run folder" in capsys.readouterr().err
