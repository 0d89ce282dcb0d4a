"""openpi's own client (``openpi_client``, what robots run) against our policy server, over loopback.

The chunks it gets must be exactly the in-process policy's for the same observations, episode by
episode; its errors come back as text frames (its client raises ``RuntimeError``).
"""

from __future__ import annotations

import copy
import importlib.util
import urllib.request

import numpy as np
import pytest

if importlib.util.find_spec("websockets") is None or importlib.util.find_spec("msgpack") is None:
    pytest.skip("needs websockets and msgpack (pip install 'memstream[serve]')", allow_module_level=True)
pytest.importorskip("openpi_client")  # pins numpy<2: pip install --no-deps openpi-client==0.1.2

import torch  # noqa: E402
from openpi_client import msgpack_numpy  # noqa: E402
from openpi_client.action_chunk_broker import ActionChunkBroker  # noqa: E402
from openpi_client.websocket_client_policy import WebsocketClientPolicy  # noqa: E402
from websockets.exceptions import InvalidStatus  # noqa: E402

from memstream.embodied.policies import MemoryVLAConfig, MemoryVLAPolicy  # noqa: E402
from memstream.embodied.policies.serve import PolicyServer, ServeLimits  # noqa: E402
from memstream.embodied.policies.wire import PolicyClient, packb, unpackb  # noqa: E402

from tests.embodied.policies.util import SERVED, SERVED_FEATURES  # noqa: E402

pytestmark = [pytest.mark.timeout(120),  # openpi_client 0.1.2 calls connect() as websockets 14+ deprecates
              pytest.mark.filterwarnings("ignore:connect\\(\\) must be used as a context manager:DeprecationWarning")]

IMAGE = "observation.images.base_camera"
KEY = "openpi-key-7"


@pytest.fixture(scope="module")
def served():
    """(server, reference): the server and a copy of its policy to run in-process."""
    torch.manual_seed(0)
    config = MemoryVLAConfig(**SERVED_FEATURES, **SERVED, inference_noise=0.0)  # 0: one deterministic chunk per observation and bank
    policy = MemoryVLAPolicy(config).eval()
    reference = copy.deepcopy(policy)
    server = PolicyServer(policy, "touch the cube", api_keys=[KEY], limits=ServeLimits(max_clients=4))
    server.start()
    yield server, reference
    server.stop()


def observations(seed: int, count: int) -> list[dict]:
    """openpi-style flat observations: arrays, an instruction under openpi's ``prompt``, a numpy scalar."""
    rng = np.random.default_rng(seed)
    return [{IMAGE: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
             "observation.state": rng.normal(size=7).astype(np.float32), "prompt": "touch the cube",
             "gripper_open": np.bool_(True)} for _ in range(count)]


def in_process(reference: MemoryVLAPolicy, episode: list[dict]) -> list[np.ndarray]:
    """The (K, A) chunks of one episode run on the policy itself."""
    reference.reset()
    chunks = []
    for index, obs in enumerate(episode):
        batch = {IMAGE: obs[IMAGE][None], "observation.state": obs["observation.state"][None], "task": [obs["prompt"]],
                 "episode_start": np.array([index == 0]), "frame_index": np.array([index])}
        chunks.append(reference.predict_action_chunk(batch)[0].numpy())
    return chunks


def test_openpi_client_gets_the_policys_own_chunks_episode_by_episode(served):
    server, reference = served
    first, second = observations(0, 4), observations(1, 3)
    client = WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=KEY)
    try:
        metadata = client.get_server_metadata()
        assert metadata["image_keys"] == [IMAGE] and metadata["image_shape"] == [32, 32, 3]
        assert metadata["chunk_size"] == 4
        for obs, expected in zip(first, in_process(reference, first), strict=True):
            result = client.infer(obs)
            assert set(result) == {"actions", "server_timing"} and result["server_timing"]["infer_ms"] > 0
            assert result["actions"].dtype == np.float32 and result["actions"].shape == (4, 7)
            np.testing.assert_array_equal(result["actions"], expected)
        client.reset()  # openpi's reset() sends nothing: the episode_start key starts the next episode
        continuing = in_process(reference, first + second[:1])[-1]
        for index, (obs, expected) in enumerate(zip(second, in_process(reference, second), strict=True)):
            actions = client.infer({**obs, "episode_start": index == 0})["actions"]
            np.testing.assert_array_equal(actions, expected)
            if index == 0:  # the bank was emptied: not what the old episode's bank would have given
                assert not np.allclose(actions, continuing)
    finally:
        client._ws.close()


def test_openpi_chunk_broker_steps_through_the_served_chunks(served):
    server, reference = served
    episode = observations(2, 4)
    expected = in_process(reference, episode[::2])  # the broker asks the server every second step
    broker = ActionChunkBroker(WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=KEY), action_horizon=2)
    try:
        steps = [broker.infer(obs)["actions"] for obs in episode]
    finally:
        broker._policy._ws.close()
    np.testing.assert_array_equal(np.stack(steps), np.stack([chunk[i] for chunk in expected for i in range(2)]))


def test_openpi_client_sees_errors_and_its_next_observation_starts_a_new_episode(served):
    server, reference = served
    episode = observations(3, 2)
    client = WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=KEY)
    try:
        client.infer(episode[0])
        wrong = {**episode[0], IMAGE: np.zeros((64, 64, 3), np.uint8)}
        with pytest.raises(RuntimeError, match=r"must be uint8 \(32, 32, 3\).*episode was dropped(?s:.*)fix: Resize"):
            client.infer(wrong)
        with pytest.raises(RuntimeError, match="episode_start must be a bool"):
            client.infer({**episode[0], "episode_start": "yes"})
        with pytest.raises(RuntimeError, match=r"WireError: arrays of dtype <U1 are not accepted"):
            client.infer({**episode[0], "tags": np.array(["a", "b"])})  # a string array: readable, refused
        for obs, expected in zip(episode, in_process(reference, episode), strict=True):
            np.testing.assert_array_equal(client.infer(obs)["actions"], expected)  # a fresh episode
    finally:
        client._ws.close()


def test_openpi_api_key_header_is_accepted_and_checked(served):
    server, _ = served
    with pytest.raises(InvalidStatus) as info:
        WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key="wrong")
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus):
        WebsocketClientPolicy(host="127.0.0.1", port=server.port)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=10) as response:
        assert response.status == 200  # openpi's health check, without a key


def test_our_client_and_openpi_client_share_one_server(served):
    server, _ = served
    rng = np.random.default_rng(4)
    obs = {IMAGE: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "observation.state": np.zeros(7, np.float32)}
    openpi = WebsocketClientPolicy(host="127.0.0.1", port=server.port, api_key=KEY)
    try:
        with PolicyClient(f"ws://127.0.0.1:{server.port}", api_key=KEY) as ours:
            ours.reset()
            np.testing.assert_array_equal(ours.infer(obs), openpi.infer(obs)["actions"])  # both first frames
    finally:
        openpi._ws.close()


def test_wire_reads_openpi_msgpack_numpy_and_openpi_reads_ours():
    message = {"image": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "state": np.linspace(0, 1, 7),
               "scalars": [np.float32(0.5), np.int64(-3), np.bool_(True)], "prompt": "pick"}
    for back in (unpackb(msgpack_numpy.packb(message)), msgpack_numpy.unpackb(packb(message))):
        assert set(back) == set(message) and back["prompt"] == "pick"
        for key in ("image", "state"):
            np.testing.assert_array_equal(back[key], message[key])
            assert back[key].dtype == message[key].dtype
        assert [type(value) for value in back["scalars"]] == [np.float32, np.int64, np.bool_]
        assert back["scalars"] == message["scalars"]
