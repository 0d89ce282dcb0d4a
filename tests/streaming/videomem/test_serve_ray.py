"""The QA service on Ray Serve (issue 20): the lease that keeps a stream in one replica (two
replica cores in this process, no Ray), then a local Ray cluster with two StreamReplica replicas
behind the frontend: sticky streams, a replica killed mid-ingest, the official openai client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time

import cv2
import numpy as np
import pytest
from memstream.streaming.cli import main
from memstream.streaming.configtypes import parse
from memstream.streaming.videomem.options import VideoMemoryOptions
from memstream.streaming.videomem.service import ServiceError, ServiceLimits
from memstream.streaming.videomem.service.persist import StreamStore
from memstream.streaming.videomem.service.ray_serve import RayServeSpec, StreamReplicaCore
from tests.streaming.videomem.util import jpeg



def spec_for(model_dir, store, **extra) -> RayServeSpec:
    options = parse(VideoMemoryOptions, {"model": str(model_dir), "device": "cpu", "dtype": "float32",
                                         "rekv": {"window_frames": 4, "topk": 3}}, "")
    return RayServeSpec(options=options, store=str(store), limits=ServiceLimits(max_tokens_cap=16), **extra)


# ---- the lease, without Ray ----------------------------------------------------------------------
def test_a_lease_is_exclusive_and_a_removed_lock_file_is_not_held(tmp_path):
    store = StreamStore(tmp_path, "tiny", "f" * 16)
    first = store.lease("cam")
    assert first is not None and first.valid()
    assert store.lease("cam", wait_s=0.2) is None  # another holder (another open file) waits, then gives up
    waiting = []
    thread = threading.Thread(target=lambda: waiting.append(store.lease("cam", wait_s=5)))
    thread.start()
    first.remove()  # the stream is deleted while held ...
    first.release()
    thread.join(10)
    assert waiting[0] is not None and waiting[0].valid()  # ... and the waiter took the new lock file, not the old one
    assert not first.valid()


def test_two_replicas_on_one_store_never_hold_a_stream_at_once(tiny_llava_dir, tmp_path):
    spec = spec_for(tiny_llava_dir, tmp_path, lease_wait_s=0.3, release_idle_s=3600.0)
    a, b = StreamReplicaCore(spec), StreamReplicaCore(spec)
    assert a.open_stream("cam", None, None, None) == "cam"
    assert [a.add_frame("cam", jpeg(i), float(i), None) for i in range(3)] == [1, 2, 3]
    with pytest.raises(ServiceError) as busy:
        b.add_frame("cam", jpeg(3), 3.0, None)  # a holds it and does not check for handoffs here
    assert busy.value.status == 503 and busy.value.code == "stream_busy" and busy.value.retry_after_s
    assert not a.store.wanted("cam")  # b withdrew its request when it gave up
    flag = b.store.want("cam")  # b asks again (as its next request does)
    assert a.release_idle() == ["cam"]  # a's sweep hands it over: memory closed, the store keeps it
    assert "cam" not in a.service.sessions
    b.store.unwant(flag)
    assert b.add_frame("cam", jpeg(3), 3.0, None) == 4  # b reopens it from the store and goes on
    assert b.service.session("cam").memory.frames_seen == 4
    assert b.release_idle() == []  # nobody asked, not idle: b keeps it


def test_a_waiting_replica_gets_the_stream_when_the_holder_hands_it_over(tiny_llava_dir, tmp_path):
    spec = spec_for(tiny_llava_dir, tmp_path, lease_wait_s=10.0, release_idle_s=3600.0)
    a, b = StreamReplicaCore(spec), StreamReplicaCore(spec)
    a.open_stream("cam", None, None, None)
    a.add_frame("cam", jpeg(0), 0.0, None)
    got = []
    waiter = threading.Thread(target=lambda: got.append(b.add_frame("cam", jpeg(1), 1.0, None)))
    waiter.start()
    deadline = time.monotonic() + 10
    while not a.release_idle() and time.monotonic() < deadline:  # a's sweep, as the replica runs it
        time.sleep(0.05)
    waiter.join(10)
    assert got == [2]
    with pytest.raises(ServiceError) as missing:
        b.add_frame("nope", jpeg(0), 0.0, None)
    assert missing.value.status == 404 and not (tmp_path / "leases" / "nope.lock").exists()  # nothing left behind
    b.close_stream("cam", None)
    assert not (tmp_path / "streams" / "cam").exists() and not (tmp_path / "leases" / "cam.lock").exists()
    assert a.open_stream("cam", None, None, None) == "cam"  # the id is free again, on either replica


def test_a_replica_refuses_a_store_path_that_is_not_the_servers_store(tiny_llava_dir, tmp_path):
    """A node that does not mount the shared store sees an empty (or another) directory at its path:
    the replica stops before loading the model and creates nothing there."""
    from memstream.streaming.errors import ConfigError

    shared = tmp_path / "shared"
    store_id = StreamStore.identify(shared)
    assert StreamStore.identify(shared) == store_id and len(store_id) == 32  # written once
    elsewhere = tmp_path / "not-mounted"
    with pytest.raises(ConfigError, match=r"not-mounted on node .* has no store \(expected store id "):
        StreamReplicaCore(spec_for(tiny_llava_dir, elsewhere, store_id=store_id))
    assert not elsewhere.exists()
    StreamStore.identify(elsewhere)  # another store at that path
    with pytest.raises(ConfigError, match="holds another store") as refused:
        StreamReplicaCore(spec_for(tiny_llava_dir, elsewhere, store_id=store_id))
    assert "Mount the shared store at the same path on every Ray node" in str(refused.value)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["store.id"]
    core = StreamReplicaCore(spec_for(tiny_llava_dir, shared, store_id=store_id))  # the right one opens
    assert core.open_stream("cam", None, None, None) == "cam"


# ---- a local Ray cluster -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_service(tiny_llava_dir, tmp_path_factory):
    ray = pytest.importorskip("ray")
    from memstream.streaming.videomem.service.ray_serve import build_app
    from ray import serve

    store = tmp_path_factory.mktemp("ray-store")
    spec = spec_for(tiny_llava_dir, store, replicas=2, streams_per_replica=4, replica_cpus=0.5, release_idle_s=30.0)
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(spec), name=spec.app_name, route_prefix="/")
        yield f"http://127.0.0.1:{port}", spec
    finally:
        serve.shutdown()
        ray.shutdown()


def _post(client, url: str, attempts: int = 60, **kwargs):
    """POST, retrying what a restarting replica answers (503 / connection errors) for up to a minute."""
    import httpx

    for _ in range(attempts):
        try:
            response = client.post(url, **kwargs)
        except httpx.HTTPError:
            time.sleep(1)
            continue
        if response.status_code not in (500, 503):
            return response
        time.sleep(1)
    raise AssertionError(f"{url} kept failing: {response.status_code} {response.text[:300]}")


def _ask(client, base: str, stream_id: str) -> dict:
    body = {"stream_id": stream_id, "messages": [{"role": "user", "content": "What moved?"}], "max_tokens": 2}
    response = _post(client, f"{base}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response.json()["memstream"]


@pytest.mark.network
@pytest.mark.timeout(400)
def test_streams_stick_to_their_replicas_and_answers_cover_exactly_their_frames(ray_service):
    import httpx

    base, _ = ray_service
    names = [f"cam{k}" for k in range(4)]
    with httpx.Client(timeout=60) as client:
        for name in names:
            assert client.post(f"{base}/v1/streams", json={"stream_id": name}).status_code == 200
        for i in range(6):  # frames and questions interleaved over the four streams
            for k, name in enumerate(names):
                r = client.post(f"{base}/v1/streams/{name}/frames", params={"timestamp_s": 1000 * k + i}, content=jpeg(i))
                assert r.json() == {"frames_seen": i + 1}, r.text
            if i % 2:
                for k, name in enumerate(names):
                    answer = _ask(client, base, name)
                    assert (answer["frames_seen"], answer["covered_until_s"]) == (i + 1, 1000.0 * k + i)
                    assert set(answer["retrieved_frames"]) <= set(range(i + 1))
        listed = {s["stream_id"]: s for s in client.get(f"{base}/v1/streams").json()["data"]}
        assert {n: (listed[n]["frames_seen"], listed[n]["covered_until_s"]) for n in names} == {
            n: (6, 1000.0 * k + 5) for k, n in enumerate(names)}
        assert client.get(f"{base}/v1/streams/nope").status_code == 404
        assert client.post(f"{base}/v1/streams", json={"stream_id": "cam0"}).status_code == 409
        for name in names:
            assert client.delete(f"{base}/v1/streams/{name}").status_code == 200
        assert client.get(f"{base}/v1/streams").json()["data"] == []


@pytest.mark.network
@pytest.mark.timeout(400)
def test_a_replica_killed_mid_ingest_comes_back_and_its_streams_answer_from_the_store(ray_service):
    import httpx
    import ray
    from openai import OpenAI

    base, spec = ray_service
    names = ["k0", "k1"]
    with httpx.Client(timeout=60) as client:
        for name in names:
            assert client.post(f"{base}/v1/streams", json={"stream_id": name}).status_code == 200
        for i in range(4):
            for name in names:
                assert client.post(f"{base}/v1/streams/{name}/frames", params={"timestamp_s": i}, content=jpeg(i)).status_code == 200
        replicas = [a for a in ray.util.list_named_actors(all_namespaces=True) if "StreamReplica" in a["name"]]
        assert len(replicas) == 2
        ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]), no_restart=False)
        acknowledged = dict.fromkeys(names, 4)
        for i in range(4, 8):  # ingest goes on while Serve brings the replica back
            for name in names:
                r = _post(client, f"{base}/v1/streams/{name}/frames", params={"timestamp_s": i}, content=jpeg(i))
                assert r.status_code == 200, r.text
                acknowledged[name] += 1
        for name in names:
            answer = _ask(client, base, name)
            assert answer["frames_seen"] == acknowledged[name] == 8 and answer["covered_until_s"] == 7.0
        openai = OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        reply = openai.chat.completions.create(model=spec.options.model, messages=[{"role": "user", "content": "What moved?"}],
                                               max_tokens=2, extra_body={"stream_id": "k1"})
        assert reply.model_extra["memstream"]["frames_seen"] == 8
        for name in names:
            client.delete(f"{base}/v1/streams/{name}")


@pytest.mark.network
@pytest.mark.timeout(200)
def test_frames_reach_the_replica_over_grpc_and_one_too_large_for_grpc_by_reference(ray_service):
    """Serve's gRPC between this process and the replicas carries requests by value; a replica's gRPC
    server takes at most 4 MiB a message, so a larger frame (the service allows 8 MiB) goes through
    Ray's object store instead, and both arrive."""
    from memstream.streaming.videomem.service.ray_serve import GRPC_MAX_PAYLOAD_BYTES, RayStreams

    _, spec = ray_service
    streams = RayStreams(spec)
    small = jpeg(0)
    large = cv2.imencode(".png", np.random.default_rng(1).integers(0, 256, (1300, 1300, 3), dtype=np.uint8))[1].tobytes()
    assert len(large) > 4 << 20 > GRPC_MAX_PAYLOAD_BYTES > len(small)
    assert streams._on("big", len(small)).handle_options._by_reference is False
    assert streams._on("big", len(large)).handle_options._by_reference is True
    assert RayStreams(RayServeSpec(spec.options, spec.store, transport="actor"))._on("big").handle_options._by_reference is True
    assert streams.open_stream("big") == "big"

    async def on_a_loop() -> list[int]:  # the HTTP handler's path: awaited, Serve's router on this loop
        return [await streams.add_frame_async("big", frame, float(i)) for i, frame in enumerate((small, large), start=3)]

    try:
        assert [streams.add_frame("big", frame, float(i)) for i, frame in enumerate((small, large, small))] == [1, 2, 3]
        assert asyncio.run(on_a_loop()) == [4, 5]
        assert streams.describe("big")["frames_seen"] == 5
    finally:
        streams.close_stream("big")


@pytest.mark.network
@pytest.mark.timeout(200)
def test_the_http_process_awaits_answers_and_forgets_a_stream_another_server_deleted(ray_service):
    """The HTTP path awaits answers on its loop (``complete_async``) with the same answer as the
    thread path, and a client that left cancels it; a stream this process found once is not looked
    up in the store again, so one deleted by another server is the replica's 404, which makes this
    process look it up again (it is found once reopened)."""
    from memstream.streaming.videomem.generation import GenerationCancelled
    from memstream.streaming.videomem.service.chat import parse_chat_request
    from memstream.streaming.videomem.service.ray_serve import RayStreams

    _, spec = ray_service
    here, other = RayStreams(spec), RayStreams(spec)
    question = parse_chat_request({"stream_id": "gone", "messages": [{"role": "user", "content": "What moved?"}], "max_tokens": 2},
                                  spec.options.model, spec.limits, 2)
    assert here.open_stream("gone") == "gone"

    async def on_one_loop() -> None:  # as in the server: one event loop for the process's life
        assert [await here.add_frame_async("gone", jpeg(i), float(i)) for i in range(2)] == [1, 2]
        assert (await here.complete_async(question))["memstream"]["frames_seen"] == 2
        assert (await asyncio.to_thread(here.complete, question))["memstream"]["frames_seen"] == 2  # the thread path agrees
        left = threading.Event()
        left.set()
        with pytest.raises(GenerationCancelled, match="the client left"):
            await here.complete_async(question, left)
        assert (await here.complete_async(question))["memstream"]["frames_seen"] == 2  # and the stream still answers
        await asyncio.to_thread(other.close_stream, "gone")  # another server deletes it; this one still knows it
        with pytest.raises(ServiceError) as missing:
            await here.add_frame_async("gone", jpeg(3), 3.0)
        assert missing.value.status == 404 and "gone" not in here._existing
        assert await asyncio.to_thread(other.open_stream, "gone") == "gone"
        assert await here.add_frame_async("gone", jpeg(4), 4.0) == 1  # looked up again, found

    try:
        asyncio.run(on_one_loop())
    finally:
        with contextlib.suppress(ServiceError):
            other.close_stream("gone")


def test_a_transport_that_does_not_exist_is_refused(tiny_llava_dir, tmp_path):
    from memstream.streaming.errors import ConfigError

    with pytest.raises(ConfigError, match="Ray transport 'http' is not one of grpc, actor"):
        spec_for(tiny_llava_dir, tmp_path, transport="http")


@pytest.mark.network
@pytest.mark.timeout(200)
def test_replicas_that_cannot_start_are_one_error_quoting_the_replicas_reason(ray_service, tiny_llava_dir, tmp_path):
    from memstream.streaming.errors import ConfigError
    from memstream.streaming.videomem.service.ray_serve import deploy, replica_deployment
    from ray import serve

    spec = spec_for(tiny_llava_dir, tmp_path / "unmounted", replicas=1, replica_cpus=0.3, app_name="unreachable",
                    store_id="0" * 32)
    try:
        with pytest.raises(ConfigError, match=r"Ray Serve could not start 'unreachable': StreamReplica: .*has no store"):
            deploy(replica_deployment(spec), spec.app_name, route_prefix=None)
    finally:
        serve.delete(spec.app_name)
    assert not (tmp_path / "unmounted").exists()


# ---- the command line ----------------------------------------------------------------------------
def _children(pid: int) -> list[int]:
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.network
@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="reads process priorities from /proc (Linux)")
def test_replicas_keep_the_servers_priority_not_rays_worker_niceness(ray_service):
    """Ray starts workers at nice +15; the replicas are the request path and keep nice 0 relative to
    the process that started the cluster (this one), so other work on the node does not come first."""
    import ray  # noqa: F401 -- the fixture's cluster is running

    def nice(pid: int) -> int:
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[16])

    def cmdline(pid: int) -> str:
        try:
            return open(f"/proc/{pid}/cmdline").read()
        except OSError:
            return ""

    ours = nice(os.getpid())
    raylets = [pid for pid in _children(os.getpid()) if "raylet" in cmdline(pid)]
    workers = [pid for raylet in raylets for pid in _children(raylet)]
    replicas = [pid for pid in workers if "StreamReplica" in cmdline(pid)]
    assert len(replicas) == 2, [cmdline(pid)[:80] for pid in workers]
    assert [nice(pid) for pid in replicas] == [ours, ours]
    controllers = [pid for pid in workers if "ServeController" in cmdline(pid)]
    assert controllers and all(nice(pid) == min(ours + 15, 19) for pid in controllers)  # Ray's own workers: +15
    # Serve reads where to run the replica's handlers from its environment at import: it is there from the start
    environments = [open(f"/proc/{pid}/environ", "rb").read().split(b"\0") for pid in replicas]
    assert all(b"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0" in env for env in environments)


@pytest.mark.parametrize(("flags", "expected"), [
    (["--ray", "2"], "--ray needs --store DIR"),
    (["--ray", "1", "--store", "s", "--replica-niceness", "20"], "--replica-niceness 20 is not a nice value"),
    (["--ray", "0", "--store", "s"], "--ray 0 is not a number of replicas"),
    (["--ray", "1", "--store", "s", "--ray-address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--ray", "1", "--store", "s", "--ray-address", "nohost"], "is not HOST:PORT"),
])
def test_serve_on_ray_refuses_what_cannot_work(tiny_llava_dir, tmp_path, monkeypatch, capsys, flags, expected):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    assert main(["serve", "--model", str(tiny_llava_dir), *flags]) == 2
    assert expected in capsys.readouterr().err
