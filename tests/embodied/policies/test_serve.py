"""The policy server over loopback: per-client banks, authentication, bounds, bad observations."""

from __future__ import annotations

import importlib.util
import threading
import time

import numpy as np
import pytest

if importlib.util.find_spec("websockets") is None or importlib.util.find_spec("msgpack") is None:
    pytest.skip("needs websockets and msgpack (pip install 'memstream[serve]')", allow_module_level=True)

import torch  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

from memstream.embodied.policies import MemoryVLAConfig, MemoryVLAPolicy  # noqa: E402
from memstream.embodied.policies.serve import PolicyServer, ServeLimits, check_bind  # noqa: E402
from memstream.embodied.policies.wire import PolicyClient, WireError, packb, unpackb  # noqa: E402
from memstream.streaming.errors import ConfigError, MemstreamError  # noqa: E402

from tests.embodied.policies.util import SERVED, SERVED_FEATURES  # noqa: E402

IMAGE = "observation.images.base_camera"
KEY = "test-key-123"


@pytest.fixture(scope="module")
def server():
    torch.manual_seed(0)
    config = MemoryVLAConfig(**SERVED_FEATURES, **SERVED)
    server = PolicyServer(MemoryVLAPolicy(config), "touch the cube", api_keys=[KEY], limits=ServeLimits(max_clients=2))
    server.start()
    server.uri = f"ws://127.0.0.1:{server.port}"
    yield server
    server.stop()
    assert not server._thread.is_alive()


def observation(rng: np.random.Generator) -> dict:
    return {IMAGE: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "observation.state": rng.normal(size=7).astype(np.float32), "task": "touch the cube"}


def test_wire_round_trips_arrays_and_refuses_bad_ones():
    message = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [np.bool_(True), "x"], "c": np.int64(3)}
    back = unpackb(packb(message))
    np.testing.assert_array_equal(back["a"], message["a"])
    assert back["a"].dtype == np.float32
    assert back["c"] == 3 and back["b"][1] == "x"
    with pytest.raises(WireError, match="dtype"):
        packb({"x": np.array(["s"], dtype=object)})
    with pytest.raises(WireError, match="not valid msgpack"):
        unpackb(b"\xc1")
    short = packb({"x": {"__ndarray__": True, "data": bytes(4), "dtype": "<f4", "shape": [3]}})
    with pytest.raises(WireError, match="need 12"):
        unpackb(short)


@pytest.mark.parametrize("shape, data, match", [
    ([1.5e300], b"", "shape must be a list"),  # a float too large for an int: was an OverflowError, not a refusal
    ([-2, -2], bytes(16), "shape must be a list"),  # negative sizes whose product fits the data
    ([2**63, 2], b"", "need 73786976294838206464"),  # no 64-bit wrap of the size round to 0 bytes
    ([True, 2], bytes(8), "shape must be a list"),
    ("3", bytes(12), "shape must be a list"),
    ([1] * 33, bytes(4), "at most 32"),
    ([3], "abcdefghijkl", "not bytes"),
])
def test_wire_refuses_hostile_array_headers_with_one_wire_error(shape, data, match):
    import msgpack

    message = msgpack.packb({"x": {"__ndarray__": True, "data": data, "dtype": "<f4", "shape": shape}}, use_bin_type=True)
    with pytest.raises(WireError, match=match):
        unpackb(message)


@pytest.mark.parametrize("dtype, data, match", [
    (None, 1.0, "dtype must be a string"),  # np.dtype(None) is float64: not a silent default
    ("<f4", "1.5", "must be a number, not str"),
    ("|O", 1, "dtype object are not accepted"),
    ("|i1", 1000, "does not fit dtype int8"),
])
def test_wire_refuses_hostile_numpy_scalars_with_one_wire_error(dtype, data, match):
    import msgpack

    message = msgpack.packb({"x": {"__npgeneric__": True, "data": data, "dtype": dtype}}, use_bin_type=True)
    with pytest.raises(WireError, match=match):
        unpackb(message)


def test_clients_get_chunks_and_keep_their_own_banks(server):
    rng = np.random.default_rng(0)
    with PolicyClient(server.uri, api_key=KEY) as a, PolicyClient(server.uri, api_key=KEY) as b:
        assert a.metadata["image_shape"] == [32, 32, 3] and a.metadata["chunk_size"] == 4
        a.reset()
        b.reset()
        for _ in range(5):
            chunk = a.infer(observation(rng))
            assert chunk.shape == (4, 7) and chunk.dtype == np.float32 and np.isfinite(chunk).all()
        b.infer(observation(rng))
        banks = sorted(int(s.policy.memory.bank_lengths[0]) for s in server.sessions.values())
        assert banks == [1, 3]  # b saw one frame; a saw five, bounded by the bank's capacity of 3
        a.reset()  # a new episode of a empties a's bank and leaves b's alone
        banks = {s.frame_index: s.policy.memory.bank_lengths for s in server.sessions.values()}
        assert banks[0] is None and banks[1].tolist() == [1]


def test_bad_observation_drops_only_that_clients_episode(server):
    rng = np.random.default_rng(1)
    with PolicyClient(server.uri, api_key=KEY) as a, PolicyClient(server.uri, api_key=KEY) as b:
        a.reset()
        b.reset()
        a.infer(observation(rng))
        b.infer(observation(rng))
        wrong = observation(rng)
        wrong[IMAGE] = np.zeros((64, 64, 3), np.uint8)
        with pytest.raises(MemstreamError, match=r"must be uint8 \(32, 32, 3\).*episode was dropped.*Resize"):
            a.infer(wrong)
        with pytest.raises(MemstreamError, match="no episode is running"):
            a.infer(observation(rng))
        missing = observation(rng)
        del missing["observation.state"]
        a.reset()
        with pytest.raises(MemstreamError, match="lacks 'observation.state'"):
            a.infer(missing)
        assert b.infer(observation(rng)).shape == (4, 7)  # b's episode goes on
        a.reset()
        assert a.infer(observation(rng)).shape == (4, 7)


def test_handshake_needs_the_key_and_a_free_slot(server):
    with pytest.raises(InvalidStatus) as info:
        PolicyClient(server.uri, api_key="wrong")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        PolicyClient(server.uri)
    with PolicyClient(server.uri, api_key=KEY), PolicyClient(server.uri, api_key=KEY):
        with pytest.raises(InvalidStatus) as info:
            PolicyClient(server.uri, api_key=KEY)
        assert info.value.response.status_code == 503


def test_no_key_means_loopback_only():
    check_bind("127.0.0.1", ())
    check_bind("0.0.0.0", ("k",))
    with pytest.raises(ConfigError, match="without an API key"):
        check_bind("0.0.0.0", ())


def test_task_must_be_a_short_string(server):
    rng = np.random.default_rng(2)
    with PolicyClient(server.uri, api_key=KEY) as client:
        client.reset()
        long = observation(rng)
        long["task"] = "touch " * 1000
        with pytest.raises(MemstreamError, match=r"at most 1000 characters, got 6000 characters.*dropped"):
            client.infer(long)
        client.reset()
        wrong = observation(rng)
        wrong["task"] = 7
        with pytest.raises(MemstreamError, match="task must be a string.*got int"):
            client.infer(wrong)
        client.reset()
        default = observation(rng)
        del default["task"]  # the server's instruction is used
        assert client.infer(default).shape == (4, 7)


def test_two_authorization_headers_are_refused_not_a_server_error(server):
    from websockets.sync.client import connect

    for values in (["Bearer wrong", f"Bearer {KEY}"], [f"Bearer {KEY}", f"Bearer {KEY}"]):
        with pytest.raises(InvalidStatus) as info:  # headers.get() raised MultipleValuesError: a 500
            connect(server.uri, additional_headers=[("Authorization", value) for value in values])
        assert info.value.response.status_code == 401


@pytest.mark.parametrize("state, match", [
    (np.full(7, 1e300), "past float32's range"),  # finite as float64, inf once cast to float32
    (np.full(7, 3e38, np.float32), "actions for this observation are not finite"),  # inf after normalisation
], ids=["float64-past-float32", "float32-near-max"])
def test_a_state_that_overflows_is_refused_never_answered_with_nan_actions(server, state, match):
    rng = np.random.default_rng(4)
    with PolicyClient(server.uri, api_key=KEY) as a, PolicyClient(server.uri, api_key=KEY) as b:
        a.reset()
        b.reset()
        b.infer(observation(rng))
        wild = observation(rng)
        wild["observation.state"] = state
        with pytest.raises(MemstreamError, match=f"{match}.*episode was dropped"):
            a.infer(wild)
        with pytest.raises(MemstreamError, match="no episode is running"):
            a.infer(observation(rng))
        a.reset()  # a new episode: a bank without the non-finite entry
        assert np.isfinite(a.infer(observation(rng))).all() and np.isfinite(b.infer(observation(rng))).all()


def test_an_oversized_message_closes_only_that_connection(server):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    rng = np.random.default_rng(3)
    big = packb({"type": "infer", "observation": {IMAGE: np.zeros(server.limits.max_message_bytes + 1, np.uint8)}})
    with PolicyClient(server.uri, api_key=KEY) as other:
        other.reset()
        with connect(server.uri, additional_headers={"Authorization": f"Bearer {KEY}"}, max_size=None) as raw:
            raw.recv(timeout=10)  # metadata
            raw.send(big)
            with pytest.raises(ConnectionClosed) as info:
                raw.recv(timeout=10)
            assert info.value.rcvd.code == 1009  # message too big
        assert other.infer(observation(rng)).shape == (4, 7)
    deadline = time.monotonic() + 10
    while server.sessions and time.monotonic() < deadline:  # both slots are given back
        time.sleep(0.05)
    assert not server.sessions


def test_idle_clients_are_disconnected_and_the_slot_bound_holds_under_a_race():
    from websockets.exceptions import ConnectionClosed

    config = MemoryVLAConfig(**SERVED_FEATURES, **SERVED)
    quick = PolicyServer(MemoryVLAPolicy(config), api_keys=[KEY], limits=ServeLimits(max_clients=2, idle_timeout_s=1.0))
    quick.start()
    uri = f"ws://127.0.0.1:{quick.port}"
    try:
        with PolicyClient(uri, api_key=KEY) as idle:
            time.sleep(1.5)
            with pytest.raises(ConnectionClosed):
                idle.reset()
        opened, refused, barrier = [], [], threading.Barrier(5)

        def connect_one() -> None:
            barrier.wait()
            try:
                client = PolicyClient(uri, api_key=KEY, timeout_s=10)
                client.reset()
                opened.append(client)
            except (InvalidStatus, ConnectionClosed) as error:
                refused.append(error)

        threads = [threading.Thread(target=connect_one) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(opened) == 2 and len(refused) == 3 and len(quick.sessions) == 2
        for client in opened:
            client.close()
    finally:
        quick.stop()


def _tiny_policy_folder(folder) -> str:
    config = MemoryVLAConfig(**SERVED_FEATURES, **SERVED)
    MemoryVLAPolicy(config).save_pretrained(folder)
    return str(folder)


def test_memstream_policy_serve_serves_until_ctrl_c_and_refuses_bad_starts(tmp_path):
    import signal
    import socket
    import subprocess
    import sys

    policy = _tiny_policy_folder(tmp_path / "policy")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"{KEY}\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "memstream.streaming.cli", "policy-serve", "--policy", policy, "--port", str(port)]
    # a shell's background job ('cmd &') ignores SIGINT and its children inherit that: the server
    # would then never see the Ctrl-C below (found hung with SIGINT in its ignored set)
    server = subprocess.Popen(command + ["--api-key-file", str(keys)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert "serving" in server.stdout.readline()
        with PolicyClient(f"ws://127.0.0.1:{port}", api_key=KEY) as client:
            client.reset()
            assert client.infer(observation(np.random.default_rng(4))).shape == (4, 7)
            taken = subprocess.run(command, capture_output=True, text=True, timeout=120)  # the same port again
            assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stdout + taken.stderr
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert server.returncode == 0 and "Traceback" not in err, err
    for args, message in (([], None), (["--host", "0.0.0.0"], "without an API key"),
                          (["--api-key-file", str(tmp_path / "none.txt")], "cannot read the API key file")):
        if not args:
            args, message = ["--policy", str(tmp_path)], "has no config.json"
        run = subprocess.run(command + args, capture_output=True, text=True, timeout=120)
        lines = [line for line in (run.stdout + run.stderr).splitlines() if line.strip()]
        assert run.returncode == 2 and len(lines) == 1 and message in lines[0], lines
