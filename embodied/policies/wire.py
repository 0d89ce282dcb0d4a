"""The policy server's wire format: msgpack maps whose numpy arrays travel as openpi's do, and a client.

An array is the map ``{"__ndarray__": True, "data": <raw bytes>, "dtype": "<f4", "shape": [K, A]}``
and a numpy scalar ``{"__npgeneric__": True, "data": <number>, "dtype": "<i8"}`` (openpi's
``msgpack_numpy``; object, complex and string arrays are refused), so openpi's client decodes our
replies and we decode its observations. Two protocols share the socket; the server tells them
apart by the ``type`` key (see :mod:`memstream.embodied.policies.serve` for openpi's).
Messages (client -> server) of ours, the envelope protocol:

* ``{"type": "reset"}`` starts an episode: the client's bank is cleared. Reply ``{"ok": True}``.
* ``{"type": "infer", "observation": {key: array, "task": str}}`` feeds one frame; reply
  ``{"actions": float32 (K, A)}``, the action chunk.
* On connecting, the server first sends its metadata (task, observation keys and shapes, chunk size).
* Any error: ``{"error": what, "fix": fix}``; a bad observation also drops the client's episode.

Example::

    with PolicyClient("ws://127.0.0.1:8765", api_key="k") as client:
        client.reset()
        chunk = client.infer({"observation.images.base_camera": image, "observation.state": state,
                              "task": "..."})   # (K, A) float32
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from memstream.streaming.errors import MemstreamError

_KINDS = frozenset("biuf")  # bool, signed, unsigned, float: what the wire carries
MAX_DIMS = 32  # numpy's own limit is 64


class WireError(MemstreamError):
    """A message that is not valid msgpack, or an array the wire cannot carry."""


def _msgpack() -> Any:
    try:
        import msgpack
    except ModuleNotFoundError:
        raise MemstreamError("the policy server needs msgpack", "pip install 'memstream[serve]'") from None
    return msgpack


def _encode(obj: Any) -> Any:
    if isinstance(obj, (np.ndarray, np.generic)):
        if obj.dtype.kind not in _KINDS:
            raise WireError(f"cannot send an array of dtype {obj.dtype}", "Send bool, int or float arrays")
        if isinstance(obj, np.generic):  # as openpi's pack_array: its unpack_array makes it a scalar again
            return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(obj).tobytes(), b"dtype": obj.dtype.str,
                b"shape": list(obj.shape)}
    return obj


def _decode(obj: dict) -> Any:
    if b"__ndarray__" in obj or "__ndarray__" in obj:
        get = (lambda k: obj[k.encode()]) if b"__ndarray__" in obj else (lambda k: obj[k])
        dtype = np.dtype(get("dtype"))
        if dtype.kind not in _KINDS:
            raise WireError(f"arrays of dtype {dtype} are not accepted", "Send bool, int or float arrays")
        shape, data = _shape(get("shape")), get("data")
        if not isinstance(data, (bytes, bytearray)):
            raise WireError(f"an array's data is {type(data).__name__}, not bytes", "Send the raw bytes of the array")
        need = dtype.itemsize * math.prod(shape)  # Python ints: no overflow to wrap a huge shape round to a small size
        if len(data) != need:
            raise WireError(f"an array's data has {len(data)} bytes, its shape {shape} and dtype {dtype} need {need}",
                            "Send the raw bytes of the array")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
    if b"__npgeneric__" in obj or "__npgeneric__" in obj:
        return _scalar(obj.get(b"dtype", obj.get("dtype")), obj.get(b"data", obj.get("data")))
    return obj


def _scalar(dtype_str: Any, value: Any) -> np.generic:
    """A numpy scalar from openpi's ``__npgeneric__`` map: a bool, int or float ``value`` of ``dtype_str``."""
    if not isinstance(dtype_str, str):  # np.dtype(None) would be float64
        raise WireError(f"a numpy scalar's dtype must be a string, not {type(dtype_str).__name__}",
                        "Send the scalar's dtype.str, e.g. '<f4'")
    dtype = np.dtype(dtype_str)
    if dtype.kind not in _KINDS:
        raise WireError(f"numpy scalars of dtype {dtype} are not accepted", "Send bool, int or float scalars")
    if not isinstance(value, (bool, int, float)):
        raise WireError(f"a numpy scalar's data must be a number, not {type(value).__name__}",
                        "Send bool, int or float scalars")
    try:
        return dtype.type(value)
    except OverflowError:  # numpy 2 refuses e.g. 1000 as int8 instead of wrapping it
        raise WireError(f"the scalar {value} does not fit dtype {dtype}", "Send the scalar with a wider dtype") from None


def _shape(value: Any) -> tuple[int, ...]:
    """An array's shape from the wire: a list of at most :data:`MAX_DIMS` integers >= 0."""
    if (not isinstance(value, (list, tuple)) or len(value) > MAX_DIMS
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)):
        raise WireError(f"an array's shape must be a list of at most {MAX_DIMS} integers >= 0, not {str(value)[:80]}",
                        "Send the array's shape as a list of ints")
    return tuple(value)


def packb(message: Any) -> bytes:
    """msgpack bytes of ``message`` (dicts, lists, str, numbers, numpy arrays)."""
    return _msgpack().packb(message, default=_encode, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    """The message in ``data``; map keys come back as str.

    Raises:
        WireError: not msgpack, or a malformed array.
    """
    msgpack = _msgpack()
    try:
        message = msgpack.unpackb(data, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except (ValueError, TypeError, KeyError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as error:
        raise WireError(f"the message is not valid msgpack ({error})", "Pack messages with msgpack") from None
    return message


def is_bare_map(data: bytes) -> bool:
    """Whether ``data`` (which :func:`unpackb` refused) is a msgpack map without a ``type`` key: an
    observation from openpi's client, whose errors must come back as text frames."""
    msgpack = _msgpack()
    try:
        message = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return False
    return isinstance(message, dict) and "type" not in message


class PolicyClient:
    """A blocking client of :mod:`memstream.embodied.policies.serve` (one robot, one episode at a time).

    Args:
        uri: ``ws://host:port``. api_key: sent as ``Authorization: Bearer <key>``.
        timeout_s: for connecting and for each reply.

    Attributes:
        metadata: what the server announced (task, observation keys and shapes, chunk size).
    """

    def __init__(self, uri: str, api_key: str | None = None, timeout_s: float = 60.0) -> None:
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self.timeout_s = timeout_s
        self._ws = connect(uri, additional_headers=headers, max_size=None, open_timeout=timeout_s,
                           compression=None).__enter__()  # closed by close() / __exit__
        self.metadata = unpackb(self._ws.recv(timeout=timeout_s))

    def _call(self, message: dict[str, Any]) -> dict[str, Any]:
        self._ws.send(packb(message))
        reply = unpackb(self._ws.recv(timeout=self.timeout_s))
        if "error" in reply:
            raise MemstreamError(f"policy server: {reply['error']}", reply.get("fix"))
        return reply

    def reset(self) -> None:
        """Start a new episode (the server clears this client's bank)."""
        self._call({"type": "reset"})

    def infer(self, observation: dict[str, Any]) -> np.ndarray:
        """float32 (K, A): the action chunk for one unbatched observation."""
        return self._call({"type": "infer", "observation": observation})["actions"]

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
