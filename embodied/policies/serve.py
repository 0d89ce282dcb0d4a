"""Serve a memory policy to robots over a WebSocket, as openpi's policy server does, one bank per client.

``memstream policy-serve --policy runs/policy --port 8765 --api-key-file keys.txt`` (or
``python -m memstream.embodied.policies.serve`` with the same options)

Each connection is one robot: it gets the server's metadata, then sends ``reset`` at the start of
every episode and ``infer`` with each observation, and receives action chunks (the wire format is
:mod:`memstream.embodied.policies.wire`).

openpi's client (``openpi_client.websocket_client_policy.WebsocketClientPolicy``) is served too:
it sends each observation as a bare map (no ``type`` key; ``prompt`` is taken for ``task``) and gets
``{"actions": float32 (K, A), "server_timing": {"infer_ms": float}}``, or an error as one text frame
(its client raises ``RuntimeError`` with it). Its ``reset()`` sends nothing, so an episode starts
with a connection's first observation, with the first one after an error, and with any observation
carrying ``"episode_start": True``. ``GET /healthz`` answers 200, as openpi's server does.

Every client has its **own bank** (the policy's memory,
``capacity`` entries: bounded) and action queue; the encoders and the action head are shared and
run one call at a time. Bounds: ``max_clients`` connections (more are refused at the handshake
with 503; connections past the bound that race through the handshake together are closed with 1013,
"try again later"), ``max_message_bytes`` per message (larger ones close the connection with 1009),
``max_task_chars`` per instruction, ``idle_timeout_s`` without a message closes the connection, and
a client that does not read its replies for ``idle_timeout_s`` is disconnected. With API keys, the
handshake must carry one ``Authorization: Bearer <key>`` (401 otherwise); without keys the server
only binds to loopback addresses.

A bad observation (missing key, wrong image size or dtype, non-finite state, or one whose actions
come out non-finite) is answered with one error naming the expected shape, and **drops that client's
episode** (its bank is cleared; the next ``infer`` needs a ``reset``, openpi's next observation starts
a new episode); other clients are not touched and the connection stays open.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hmac
import ipaddress
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np

from memstream.embodied.policies.wire import WireError, is_bare_map, packb, unpackb
from memstream.streaming.errors import ConfigError, MemstreamError


@dataclass(frozen=True)
class ServeLimits:
    """Bounds of one server: connections, message size (bytes), idle time (s)."""

    max_clients: int = 8
    max_message_bytes: int = 8 << 20
    idle_timeout_s: float = 600.0
    max_task_chars: int = 1000

    def __post_init__(self) -> None:
        if (self.max_clients < 1 or self.max_message_bytes < 1024 or self.idle_timeout_s <= 0
                or self.max_task_chars < 1):
            raise ConfigError(f"bad server limits {self}", "max_clients >= 1, max_message_bytes >= 1024, "
                                                           "idle_timeout_s > 0, max_task_chars >= 1")


class ObservationError(MemstreamError):
    """An observation that does not match what the served policy was trained on."""


class _Session:
    """One client's episode: a view of the policy with its own memory and action queue."""

    def __init__(self, policy: Any) -> None:
        view = copy.copy(policy)  # shares parameters and buffers; the containers replaced below are its own
        view._modules = dict(policy._modules)
        if getattr(policy, "memory", None) is not None:
            view._modules["memory"] = copy.deepcopy(policy.memory)
        view._queue = deque()
        view._places = None  # a readout track's places, per episode like the bank
        self.policy = view
        self.frame_index = -1  # -1: no episode (never reset, or dropped after a bad observation)

    def reset(self) -> None:
        self.policy.reset()
        self.frame_index = 0

    def drop(self) -> None:
        self.policy.reset()
        self.frame_index = -1


class PolicyServer:
    """Serves ``policy`` (a :class:`~memstream.embodied.policies.MemoryVLAPolicy`); see the module doc.

    Args:
        policy: the policy (put in eval mode). instruction: the ``task`` used when a client sends none.
        api_keys: accepted bearer keys; empty: no key asked (then only loopback binds are allowed).
        limits: connection, message and idle bounds.
    """

    def __init__(self, policy: Any, instruction: str = "", api_keys: Sequence[str] = (),
                 limits: ServeLimits | None = None) -> None:
        self.policy = policy.eval()
        self.instruction = instruction
        self.api_keys = tuple(api_keys)
        self.limits = limits or ServeLimits()
        config = policy.config
        self.image_key = config.image_key
        channels, height, width = config.input_features[self.image_key]
        self.image_shape = (int(height), int(width), int(channels))
        self.state_dim = int(config.state_dim)
        self.sessions: dict[int, _Session] = {}
        self._model_lock = threading.Lock()
        self.metadata = {"image_keys": [self.image_key], "image_shape": list(self.image_shape), "image_dtype": "uint8",
                         "state_dim": self.state_dim, "action_dim": int(config.action_dim),
                         "chunk_size": int(config.chunk_size), "instruction": instruction,
                         "bank_capacity": int(config.bank.capacity) if config.memory == "bank" else 0}

    # ----- checks -----

    def check_observation(self, observation: Any) -> dict[str, Any]:
        """The policy's batch (batch size 1) for one observation, or :class:`ObservationError`."""
        if not isinstance(observation, dict):
            raise ObservationError(f"an observation must be a map, got {type(observation).__name__}",
                                   f"Send {{{self.image_key!r}: uint8 {self.image_shape}, 'observation.state': ...}}")
        expected = [self.image_key] + (["observation.state"] if self.state_dim else [])
        missing = [key for key in expected if key not in observation]
        if missing:
            raise ObservationError(f"the observation lacks {', '.join(map(repr, missing))} (it has "
                                   f"{', '.join(map(repr, sorted(map(str, observation)))) or 'no keys'})",
                                   f"Send the keys {', '.join(expected)}")
        image = observation[self.image_key]
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != self.image_shape:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise ObservationError(f"{self.image_key} must be uint8 {self.image_shape} (the policy's training size), "
                                   f"got {got}", f"Resize the camera image to {self.image_shape[1]}x{self.image_shape[0]} RGB")
        batch: dict[str, Any] = {self.image_key: image[None]}
        if self.state_dim:
            state = observation["observation.state"]
            if not isinstance(state, np.ndarray) or state.shape != (self.state_dim,) or not np.isfinite(state).all():
                got = f"{state.dtype} {state.shape}" if isinstance(state, np.ndarray) else type(state).__name__
                raise ObservationError(f"observation.state must be {self.state_dim} finite numbers, got {got}",
                                       "Send the robot state the policy was trained with")
            with np.errstate(over="ignore"):
                state32 = state.astype(np.float32)  # float64 past 3.4e38 (finite above) becomes inf here
            if not np.isfinite(state32).all():
                raise ObservationError(f"observation.state must be {self.state_dim} finite float32 numbers, got "
                                       f"{state.dtype} values past float32's range",
                                       "Send the robot state the policy was trained with")
            batch["observation.state"] = state32[None]
        task = observation.get("task", observation.get("prompt", self.instruction))  # prompt: openpi's name
        if not isinstance(task, str) or len(task) > self.limits.max_task_chars:
            got = f"{len(task)} characters" if isinstance(task, str) else type(task).__name__
            raise ObservationError(f"task must be a string of at most {self.limits.max_task_chars} characters, "
                                   f"got {got}", "Send the instruction as a short string, or leave 'task' out "
                                                 "to use the server's")
        batch["task"] = [task]
        return batch

    def _authorized(self, header: str | None) -> bool:
        if not self.api_keys:
            return True
        scheme = next((s for s in ("Bearer ", "Api-Key ") if header and header.startswith(s)), None)
        if scheme is None:  # Api-Key: what openpi's client sends for its api_key
            return False
        given = header[len(scheme):].encode()
        return any(hmac.compare_digest(given, key.encode()) for key in self.api_keys)

    # ----- the protocol -----

    def handle(self, session: _Session, message: Any) -> dict[str, Any] | str:
        """The reply to one decoded message of ``session``'s client (runs in a worker thread): a map, or
        for openpi's client's errors a string (sent as a text frame)."""
        if isinstance(message, dict) and "type" not in message:
            return self._handle_openpi(session, message)
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "reset":
            session.reset()
            return {"ok": True}
        if kind != "infer":
            return {"error": f"unknown message type {repr(kind)[:60]}", "fix": "Send {'type': 'reset'} or {'type': 'infer', ...}"}
        if session.frame_index < 0:
            return {"error": "no episode is running (none was started, or the last was dropped after a bad "
                             "observation)", "fix": "Send {'type': 'reset'} first"}
        try:
            actions = self._step(session, message.get("observation"))
        except ObservationError as error:
            return {"error": f"{error.what}; this client's episode was dropped", "fix": error.fix}
        return {"actions": actions}

    def _handle_openpi(self, session: _Session, observation: dict[str, Any]) -> dict[str, Any] | str:
        """openpi's protocol: a bare observation map in, ``{"actions", "server_timing"}`` or an error text out."""
        start = time.monotonic()
        begin = observation.pop("episode_start", False)
        if not isinstance(begin, (bool, np.bool_)):
            session.drop()
            return (f"ObservationError: episode_start must be a bool, got {type(begin).__name__}; this client's "
                    "episode was dropped (its next observation starts a new one)\nfix: Send True on an episode's "
                    "first observation, or leave the key out")
        if begin or session.frame_index < 0:
            session.reset()
        try:
            actions = self._step(session, observation)
        except ObservationError as error:
            return (f"ObservationError: {error.what}; this client's episode was dropped (its next observation "
                    f"starts a new one)\nfix: {error.fix}")
        return {"actions": actions, "server_timing": {"infer_ms": (time.monotonic() - start) * 1000}}

    def _step(self, session: _Session, observation: Any) -> np.ndarray:
        """float32 (K, A): the chunk for the next frame of ``session``'s running episode.

        Raises:
            ObservationError: a bad observation, or non-finite actions; the episode is then dropped.
        """
        try:
            batch = self.check_observation(observation)
        except ObservationError:
            session.drop()
            raise
        batch["episode_start"] = np.array([session.frame_index == 0])
        batch["frame_index"] = np.array([session.frame_index])
        with self._model_lock:
            chunk = session.policy.predict_action_chunk(batch)
        actions = chunk[0].detach().cpu().numpy().astype(np.float32)
        if not np.isfinite(actions).all():  # a state far outside the training range overflows the normalisation
            session.drop()  # its bank now holds the non-finite entry
            raise ObservationError("the policy's actions for this observation are not finite (observation.state is "
                                   "far outside what it was trained on?)",
                                   "Send the robot state the policy was trained with, then start a new episode")
        session.frame_index += 1
        return actions

    async def _send(self, websocket: Any, reply: dict[str, Any] | str) -> None:
        # a client that stops reading fills the socket's buffers and would hold its slot for ever
        frame = reply if isinstance(reply, str) else packb(reply)  # str: a text frame, openpi's error
        await asyncio.wait_for(websocket.send(frame), timeout=self.limits.idle_timeout_s)

    async def _connection(self, websocket: Any) -> None:
        if len(self.sessions) >= self.limits.max_clients:  # handshakes that passed the check together
            await websocket.close(code=1013, reason=f"the server holds its maximum of {self.limits.max_clients} clients")
            return
        session = _Session(self.policy)
        key = id(websocket)
        self.sessions[key] = session
        try:
            await self._send(websocket, self.metadata)
            while True:
                try:
                    data = await asyncio.wait_for(websocket.recv(), timeout=self.limits.idle_timeout_s)
                except asyncio.TimeoutError:
                    await websocket.close(code=1000, reason="idle")
                    return
                try:
                    message = unpackb(data) if isinstance(data, bytes) else None
                except WireError as error:
                    reply = ({"error": error.what, "fix": error.fix} if not is_bare_map(data) else
                             f"WireError: {error.what}\nfix: {error.fix}")  # openpi's client takes text as an error
                else:
                    reply = (await asyncio.to_thread(self.handle, session, message) if message is not None else
                             {"error": "text frames are not accepted", "fix": "Send msgpack in binary frames"})
                await self._send(websocket, reply)
        except asyncio.TimeoutError:  # the client stopped reading its replies
            websocket.transport.abort()
        except Exception as error:  # noqa: BLE001 - a closed connection ends only this client's session
            from websockets.exceptions import ConnectionClosed

            if not isinstance(error, ConnectionClosed):
                raise
        finally:
            self.sessions.pop(key, None)

    def _process_request(self, connection: Any, request: Any) -> Any:
        if request.path == "/healthz":  # openpi's server answers this without a key; it tells only liveness
            return connection.respond(HTTPStatus.OK, "OK\n")
        given = request.headers.get_all("Authorization")  # .get() raises on two: a 500 for a hostile handshake
        if not self._authorized(given[0] if len(given) == 1 else None):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "missing or wrong API key: send Authorization: Bearer <key> "
                                                               "(or openpi's Api-Key <key>)\n")
        if len(self.sessions) >= self.limits.max_clients:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE,
                                      f"the server holds its maximum of {self.limits.max_clients} clients\n")
        return None

    async def serve(self, host: str, port: int, ready: Any = None) -> None:
        """Serve until cancelled; ``ready`` (a ``threading.Event``-like) is set with ``self.port`` known."""
        from websockets.asyncio.server import serve

        check_bind(host, self.api_keys)
        async with serve(self._connection, host, port, process_request=self._process_request, compression=None,
                         max_size=self.limits.max_message_bytes) as server:
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready.set()
            await asyncio.Future()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> threading.Thread:
        """Serve from a daemon thread (``port`` 0: any free port, then in ``self.port``); :meth:`stop` ends it."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []
        task = loop.create_task(self.serve(host, port, ready))

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                pass
            except BaseException as error:  # noqa: BLE001 - handed to the starting thread below
                failure.append(error)
                ready.set()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        thread = threading.Thread(target=run, name="policy-server", daemon=True)
        thread.start()
        ready.wait(timeout=30)
        if failure:
            raise failure[0]
        self._stop = lambda: loop.call_soon_threadsafe(task.cancel)
        self._thread = thread
        return thread

    def stop(self, timeout_s: float = 10.0) -> None:
        """Close the server started by :meth:`start` (its connections are closed)."""
        self._stop()
        self._thread.join(timeout=timeout_s)


def check_bind(host: str, api_keys: Sequence[str]) -> None:
    """Without API keys, only loopback addresses may be served."""
    if api_keys:
        return
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(f"refusing to serve a policy on {host!r} without an API key",
                          "Pass --api-key-file FILE (one key per line), or bind to 127.0.0.1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options (``memstream policy-serve`` and ``python -m memstream.embodied.policies.serve``)."""
    parser.add_argument("--policy", required=True, help="folder written by MemoryVLAPolicy.save_pretrained or vla-train")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key-file", help="accepted bearer keys, one per line (needed to bind beyond loopback)")
    parser.add_argument("--instruction", default="", help="task string used when a client sends none")
    parser.add_argument("--max-clients", type=int, default=8)
    parser.add_argument("--max-message-mb", type=float, default=8.0, help="largest message a client may send")
    parser.add_argument("--idle-timeout-s", type=float, default=600.0,
                        help="a client silent (or not reading) this long is disconnected")


def serve_policy(args: argparse.Namespace) -> int:
    """Load the policy and serve it until interrupted.

    Raises:
        MemstreamError: a policy folder that cannot be loaded, an unreadable key file, bad limits, or
            a non-loopback bind without keys.
    """
    from memstream.embodied.policies.memvla import MemoryVLAPolicy

    keys: tuple[str, ...] = ()
    if args.api_key_file:
        try:
            with open(args.api_key_file) as handle:
                keys = tuple(line.strip() for line in handle if line.strip())
        except OSError as error:
            raise ConfigError(f"cannot read the API key file {args.api_key_file}: {error.strerror}",
                              "Pass --api-key-file FILE with one key per line") from error
    check_bind(args.host, keys)
    limits = ServeLimits(max_clients=args.max_clients, max_message_bytes=int(args.max_message_mb * (1 << 20)),
                         idle_timeout_s=args.idle_timeout_s)
    server = PolicyServer(MemoryVLAPolicy.from_pretrained(args.policy), args.instruction, keys, limits)
    class Announce:  # serve() calls set() once it listens
        def set(self) -> None:
            print(f"serving {args.policy} on ws://{args.host}:{server.port}", flush=True)

    try:
        asyncio.run(server.serve(args.host, args.port, Announce()))
    except KeyboardInterrupt:
        print("stopped")
    except OSError as error:  # the port is taken, or the address is not this machine's
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {error.strerror or error}",
                          "Pass another --port, or a --host address of this machine") from error
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a MemoryVLA-style policy to robots over a WebSocket.")
    add_arguments(parser)
    try:
        return serve_policy(parser.parse_args(argv))
    except MemstreamError as error:
        print(f"error: {error}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
