"""The service's answers grounded on a scene memory (issue 18, part 3): a stream bound by name to a
run folder the server was started with (never a path from the client) gets that run's facts before
each question and lists them in the response, from the newest save of a run that is still going;
and every way a client can get the binding wrong is one clear 4xx/5xx, with the run folder untouched.

Through the real app (FastAPI's TestClient on loopback, API keys on), with the tiny random-weight
Video-LLM (its answers are noise; the facts and their plumbing are what is checked)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from memstream.embodied.scene.grounding import RunFolderTools, facts_from_run
from memstream.embodied.scene.stage import SceneStage
from memstream.streaming.cli import main
from memstream.streaming.errors import ConfigError
from memstream.streaming.pipeline import RunContext, Upstream
from memstream.streaming.types import SourceInfo
from memstream.streaming.videomem.service.persist import StreamRecord
from memstream.streaming.videomem.service.scenes import SceneSet, parse_scene_flags
from tests.embodied.scene.helpers import gt_tracking, rendered
from tests.streaming.videomem.conftest import tiny_llava, tiny_llava_dir  # noqa: F401 -- fixtures

KEY = "sk-scene-1234567"
QUESTION = "Where is the cup now?"


def jpeg(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


class LiveRun:
    """A scene stage writing ``scene.json`` into a run folder every 5 frames, as ``memstream run``
    does while it goes on (the folder is what the server reads)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.done = folder, 0
        self.stage = SceneStage("scene", {"save_every_frames": 5})
        self.stage.open(RunContext(SourceInfo(uri="synthetic://stop_and_go"), folder))

    def advance(self, frames: int) -> None:
        for frame in rendered()[self.done:self.done + frames]:
            self.stage.update(frame, Upstream({"tracking": gt_tracking(frame)}))
        self.done += frames


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def client_for(service_scenes, tiny_llava, store=None):  # noqa: F811
    from fastapi.testclient import TestClient

    from memstream.streaming.videomem.rekv import ReKVConfig, ReKVMemory
    from memstream.streaming.videomem.serve import create_app
    from memstream.streaming.videomem.service import AccessPolicy, VideoQAService

    service = VideoQAService(lambda _s: ReKVMemory(tiny_llava, ReKVConfig(window_frames=4, topk=3)), "tiny",
                             scenes=service_scenes, store=store)
    app = create_app(service, AccessPolicy(api_keys=(KEY, "sk-other-7654321")))
    return TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {KEY}"})


def stream_with_frames(client, **fields) -> str:
    opened = client.post("/v1/streams", json={"stream_id": "cam0", **fields})
    assert opened.status_code == 200, opened.text
    for i in range(3):
        assert client.post(f"/v1/streams/cam0/frames?timestamp_s={i * 0.5}", content=jpeg(i)).status_code == 200
    return "cam0"


def ask(client, stream: bool = False):
    return client.post("/v1/chat/completions", json={
        "stream_id": "cam0", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 2, "stream": stream})


@pytest.fixture()
def live(tmp_path):
    run = LiveRun(tmp_path / "lab")
    run.folder.mkdir()
    run.advance(10)
    return run


def test_a_bound_streams_answers_carry_the_live_runs_newest_facts(live, tiny_llava):  # noqa: F811
    client = client_for(SceneSet({"lab": RunFolderTools(live.folder)}), tiny_llava)
    stream_with_frames(client, scene="lab")
    assert client.get("/v1/streams/cam0").json()["scene"] == "lab"
    assert client.get("/v1/streams").json()["data"][0]["scene"] == "lab"
    first = ask(client)
    assert first.status_code == 200, first.text
    grounding = first.json()["memstream"]
    assert grounding["scene"] == "lab" and grounding["facts"] == facts_from_run(live.folder, QUESTION)
    assert grounding["facts"][0].startswith("cup (#1): at (") and "at 0.30 s" in grounding["facts"][0]  # frame 9's save
    live.advance(30)  # the run goes on and saves again: the next answer sees it
    second = ask(client).json()["memstream"]["facts"]
    assert second == facts_from_run(live.folder, QUESTION) and "at 1.30 s" in second[0]  # frame 39 at 30 fps
    # a streamed answer lists the same facts in its last chunk
    events = [json.loads(line[6:]) for line in ask(client, stream=True).text.splitlines()
              if line.startswith("data: {")]
    assert events[-1]["memstream"]["facts"] == second and events[-1]["memstream"]["scene"] == "lab"


def test_one_scene_binds_every_stream_unless_the_client_says_none(live, tiny_llava):  # noqa: F811
    client = client_for(SceneSet({"default": RunFolderTools(live.folder)}), tiny_llava)
    stream_with_frames(client)
    assert ask(client).json()["memstream"]["scene"] == "default"
    client.delete("/v1/streams/cam0")
    stream_with_frames(client, scene=None)
    answer = ask(client).json()["memstream"]
    assert "facts" not in answer and "scene" not in answer


@pytest.mark.parametrize(("scene", "code"), [
    ("../../etc", "scene_not_found"),            # a path is never a scene name
    (str(Path("/tmp")), "scene_not_found"),
    ("dock", "scene_not_found"),                 # not served
    (5, "scene_not_found"),
])
def test_a_stream_cannot_name_a_folder_or_an_unserved_scene(live, tiny_llava, scene, code):  # noqa: F811
    client = client_for(SceneSet({"lab": RunFolderTools(live.folder)}), tiny_llava)
    before = snapshot(live.folder)
    refused = client.post("/v1/streams", json={"stream_id": "cam0", "scene": scene})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == code
    assert "lab" in refused.json()["error"]["message"]  # the fix lists the served names
    assert client.get("/v1/streams").json()["data"] == []  # nothing was opened
    assert snapshot(live.folder) == before


def test_a_server_without_scenes_refuses_a_binding(tiny_llava):  # noqa: F811
    client = client_for(None, tiny_llava)
    refused = client.post("/v1/streams", json={"stream_id": "cam0", "scene": "lab"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "scene_not_found"
    stream_with_frames(client)
    assert "facts" not in ask(client).json()["memstream"]


def test_an_unreadable_scene_refuses_the_answer_and_changes_nothing(live, tiny_llava):  # noqa: F811
    client = client_for(SceneSet({"lab": RunFolderTools(live.folder)}), tiny_llava)
    stream_with_frames(client, scene="lab")
    (live.folder / "scene.json").write_text('{"format": "scene-memory", "version": 999}')  # another version
    before = snapshot(live.folder)
    for stream in (False, True):
        refused = ask(client, stream=stream)
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "scene_unavailable" and "'lab'" in refused.json()["error"]["message"]
    assert snapshot(live.folder) == before


def test_the_binding_is_behind_the_key_and_tools_pick_a_scene_by_name(live, tmp_path, tiny_llava):  # noqa: F811
    other = LiveRun(tmp_path / "dock")
    other.folder.mkdir()
    other.advance(20)
    client = client_for(SceneSet({"lab": RunFolderTools(live.folder), "dock": RunFolderTools(other.folder)}), tiny_llava)
    stream_with_frames(client)  # several scenes: no default binding
    assert client.get("/v1/streams/cam0").json()["scene"] is None
    foreign = client.post("/v1/chat/completions", headers={"Authorization": "Bearer sk-other-7654321"}, json={
        "stream_id": "cam0", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 2})
    assert foreign.status_code == 404  # another key's stream does not exist for it
    assert client.post("/v1/tools/last_seen", json={"arguments": {"obj": "cup"}}).json()["error"]["code"] == "scene_required"
    lab = client.post("/v1/tools/last_seen", json={"arguments": {"obj": "cup"}, "scene": "lab"}).json()["result"]
    dock = client.post("/v1/tools/last_seen", json={"arguments": {"obj": "cup"}, "scene": "dock"}).json()["result"]
    assert (lab["seen_frame"], dock["seen_frame"]) == (9, 19)
    bad = client.post("/v1/tools/last_seen", json={"arguments": {"obj": "cup"}, "scene": "../dock"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "scene_not_found"
    assert client.post("/v1/tools/where", json={"arguments": {"obj": "cup"}},
                       headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.parametrize(("name", "raw"), [
    ("where", '{"obj": "cup", "at_s": 1%s}'),
    ("trajectory", '{"obj": "cup", "t0_s": 1%s}'),
    ("visible_at", '{"at_s": 1%s}'),
    ("objects_near", '{"point": [1%s, 0, 0], "radius_m": 1}'),
])
def test_a_tool_argument_past_float_range_is_a_400_tool_error(live, tiny_llava, name, raw):  # noqa: F811
    """A JSON integer float() cannot hold raised OverflowError out of the tool: a 500."""
    client = client_for(SceneSet({"lab": RunFolderTools(live.folder)}), tiny_llava)
    refused = client.post(f"/v1/tools/{name}", content='{"arguments": ' + raw % ("0" * 400) + "}")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "tool_error", refused.text
    assert client.post("/v1/tools/where", json={"arguments": {"obj": "cup"}}).status_code == 200


def test_scene_flags_name_folders_once(tmp_path):
    assert parse_scene_flags(["runs/a"]) == {"default": "runs/a"}
    assert parse_scene_flags(["lab=runs/a", "dock=runs/b=c"]) == {"lab": "runs/a", "dock": "runs/b=c"}
    assert parse_scene_flags(["runs/x=1"]) == {"default": "runs/x=1"}  # a path with "=" in it
    with pytest.raises(ConfigError, match="names the scene 'lab' twice"):
        parse_scene_flags(["lab=runs/a", "lab=runs/b"])
    with pytest.raises(ConfigError, match="twice"):
        parse_scene_flags(["runs/a", "runs/b"])
    with pytest.raises(ConfigError, match="is not a scene name"):
        parse_scene_flags(["a b=runs/a"])
    with pytest.raises(ConfigError, match="names no run folder"):
        parse_scene_flags(["lab="])
    assert StreamRecord.from_json({"stream_id": "s"}).scene is None  # a record saved before scenes existed
    assert StreamRecord.from_json({"stream_id": "s", "scene": "lab"}).listing(True)["scene"] == "lab"


def test_serve_refuses_a_scene_named_twice_or_missing_before_loading_the_model(live, tiny_llava_dir, tmp_path, capsys):  # noqa: F811
    before = snapshot(live.folder)
    assert main(["serve", "--model", str(tiny_llava_dir), "--scene", f"lab={live.folder}",
                 "--scene", f"lab={tmp_path}"]) == 2
    assert "names the scene 'lab' twice" in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_llava_dir), "--scene", f"lab={live.folder}",
                 "--scene", f"dock={tmp_path / 'missing'}"]) == 2
    err = capsys.readouterr().err
    assert "dock=" in err and "no run folder" in err and len(err.strip().splitlines()) == 1
    assert snapshot(live.folder) == before
