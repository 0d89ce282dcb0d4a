"""What one stored KV block looks like: its shape, dtype, codec and byte layout.

A block is one frame's key/value cache for every decoder layer, ``(L, 2, H, T, D)`` (``L`` layers,
keys and values, ``H`` key/value heads, ``T`` tokens, ``D`` head size), plus a representative key
per layer ``(L, C)`` with ``C = H * D`` used for retrieval scoring.

Every tier stores blocks *encoded* in the same byte layout, so moving a block between tiers is a
byte copy: one layer's part of a block is ``layer_stride_bytes`` contiguous bytes holding its
sections (:meth:`BlockSpec.sections`), each starting on a 16-byte boundary so that any section can
be viewed as its dtype in place on CPU or GPU.

Codecs (``int8-*`` use the symmetric quantiser of ``memstream.kernels.quant8``):

* ``"none"``: keys and values stored in ``dtype``.
* ``"int8-channel"``: keys quantised per channel (scale per head and channel, shared by the block's
  tokens), values per token (scale per head and token) -- KIVI's choice for keys' outlier channels.
* ``"int8-token"``: keys and values both per token.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import torch

from memstream.streaming.errors import ConfigError, MemstreamError

CODECS = ("none", "int8-channel", "int8-token")
DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
ALIGN_BYTES = 16


class StoreError(MemstreamError):
    """A block store directory cannot be created, opened or used as asked."""


def _aligned(n_bytes: int) -> int:
    return -(-n_bytes // ALIGN_BYTES) * ALIGN_BYTES


@dataclass(frozen=True)
class Section:
    """One typed array inside a layer's part of a block.

    Attributes:
        name: ``"kv"`` (codec none), or ``"q"``, ``"k_scale"``, ``"v_scale"`` (int8 codecs).
        offset_bytes: start within the layer's bytes, a multiple of 16.
        shape: array shape, e.g. ``(2, H, T, D)`` for ``"kv"``/``"q"``, ``(H, 1, D)`` for per-channel
            key scales, ``(H, T, 1)`` for per-token scales.
        dtype: element dtype (``dtype`` of the spec, int8 or float32).
    """

    name: str
    offset_bytes: int
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        """Bytes of the array (without alignment padding)."""
        return _numel(self.shape) * _itemsize(self.dtype)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


@dataclass(frozen=True)
class BlockSpec:
    """Shape, dtype and codec of the KV blocks of one store.

    Attributes:
        n_layers: decoder layers ``L``.
        n_kv_heads: key/value heads per layer ``H``.
        head_dim: head size ``D``.
        block_tokens: tokens per block ``T`` (one frame's visual tokens).
        dtype: dtype of keys and values as returned by reads (float16, bfloat16 or float32);
            serialised by name.
        codec: ``"none"``, ``"int8-channel"`` or ``"int8-token"`` (see the module docstring).
        model_fingerprint: identifies the model and config that wrote the store; a store is never
            reopened by a model with another fingerprint.
    """

    n_layers: int
    n_kv_heads: int
    head_dim: int
    block_tokens: int
    dtype: torch.dtype = torch.float16
    codec: str = "none"
    model_fingerprint: str = ""

    def __post_init__(self) -> None:
        for name in ("n_layers", "n_kv_heads", "head_dim", "block_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"BlockSpec.{name} must be a positive int, got {value!r}")
        if self.dtype not in DTYPES.values():
            what = f"BlockSpec.dtype {self.dtype!r} is not supported"
            raise ConfigError(what, f"Use one of: {', '.join(DTYPES)}")
        if self.codec not in CODECS:
            what = f"BlockSpec.codec {self.codec!r} is unknown"
            raise ConfigError(what, f"Use one of: {', '.join(CODECS)}")
        if not isinstance(self.model_fingerprint, str):
            raise ConfigError(f"BlockSpec.model_fingerprint must be a str, got {self.model_fingerprint!r}")

    @property
    def repr_width(self) -> int:
        """Width ``C = n_kv_heads * head_dim`` of a representative key."""
        return self.n_kv_heads * self.head_dim

    @property
    def kv_shape(self) -> tuple[int, int, int, int, int]:
        """Shape ``(L, 2, H, T, D)`` of one block as given to ``put``."""
        return (self.n_layers, 2, self.n_kv_heads, self.block_tokens, self.head_dim)

    def sections(self) -> tuple[Section, ...]:
        """The arrays stored for one (layer, block), in byte order."""
        h, t, d = self.n_kv_heads, self.block_tokens, self.head_dim
        if self.codec == "none":
            return (Section("kv", 0, (2, h, t, d), self.dtype),)
        key_scale = (h, 1, d) if self.codec == "int8-channel" else (h, t, 1)
        q = Section("q", 0, (2, h, t, d), torch.int8)
        k_scale = Section("k_scale", _aligned(q.nbytes), key_scale, torch.float32)
        v_offset = _aligned(k_scale.offset_bytes + k_scale.nbytes)
        v_scale = Section("v_scale", v_offset, (h, t, 1), torch.float32)
        return (q, k_scale, v_scale)

    @cached_property
    def layer_nbytes(self) -> int:
        """Payload bytes of one (layer, block) for the codec, padding to 16 bytes included.

        This is the unit of the device cache and the stride between layers inside a block.
        """
        last = self.sections()[-1]
        return _aligned(last.offset_bytes + last.nbytes)

    @cached_property
    def block_nbytes(self) -> int:
        """Payload bytes of one whole block (all layers), without its representative keys."""
        return self.n_layers * self.layer_nbytes

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the dtype is written by name (``"float16"``)."""
        data = asdict(self)
        data["dtype"] = next(name for name, dt in DTYPES.items() if dt == self.dtype)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | str) -> BlockSpec:
        """Inverse of :meth:`to_json`; also accepts the dict as a JSON string.

        Raises:
            ConfigError: a key is missing or unknown, or a value is invalid.
        """
        fields = dict(json.loads(data) if isinstance(data, str) else data)
        expected = set(cls.__dataclass_fields__)
        if set(fields) != expected:
            raise ConfigError(
                f"block spec keys {sorted(fields)} do not match {sorted(expected)}",
                "Write specs with BlockSpec.to_json",
            )
        if fields["dtype"] not in DTYPES:
            what = f"block spec dtype {fields['dtype']!r} is unknown"
            raise ConfigError(what, f"Use one of: {', '.join(DTYPES)}")
        fields["dtype"] = DTYPES[fields["dtype"]]
        return cls(**fields)


def encode_block(spec: BlockSpec, kv: torch.Tensor) -> torch.Tensor:
    """Encode one block's keys and values into its byte layout.

    Args:
        spec: the store's block spec.
        kv: ``(L, 2, H, T, D)`` floating keys (index 0) and values (index 1), any device.

    Returns:
        uint8 ``(L, spec.layer_nbytes)`` on ``kv``'s device, padding bytes zero.
    """
    n_layers = kv.shape[0]
    out = torch.zeros(n_layers, spec.layer_nbytes, dtype=torch.uint8, device=kv.device)
    if spec.codec == "none":
        arrays = {"kv": kv.to(spec.dtype)}
    else:
        from memstream.kernels.quant8 import quantize_int8

        # of (L, H, T, D): reduce -2 (tokens) = a scale per channel, -1 (head_dim) = per token
        key_dim = -2 if spec.codec == "int8-channel" else -1
        q_k, s_k = quantize_int8(kv[:, 0].contiguous(), reduce_dim=key_dim)
        q_v, s_v = quantize_int8(kv[:, 1].contiguous(), reduce_dim=-1)
        arrays = {"q": torch.stack([q_k, q_v], dim=1), "k_scale": s_k, "v_scale": s_v}
    for section in spec.sections():
        flat = arrays[section.name].to(section.dtype).contiguous().view(n_layers, -1).view(torch.uint8)
        out[:, section.offset_bytes : section.offset_bytes + section.nbytes] = flat
    return out


def decode_layers(spec: BlockSpec, raw: torch.Tensor) -> torch.Tensor:
    """Decode (layer, block) payloads back to keys and values.

    Args:
        spec: the store's block spec.
        raw: uint8 ``(n, spec.layer_nbytes)``, rows as written by :func:`encode_block` (one row
            per (layer, block)), any device; row stride a multiple of 16 bytes.

    Returns:
        ``(n, 2, H, T, D)`` in ``spec.dtype`` on ``raw``'s device, contiguous.
    """
    n = raw.shape[0]
    arrays = {}
    for section in spec.sections():
        part = raw[:, section.offset_bytes : section.offset_bytes + section.nbytes]
        arrays[section.name] = part.view(section.dtype).reshape(n, *section.shape)
    if spec.codec == "none":
        return arrays["kv"].contiguous()
    from memstream.kernels.quant8 import dequantize_int8

    q = arrays["q"]
    keys = dequantize_int8(q[:, 0].contiguous(), arrays["k_scale"].contiguous(), spec.dtype)
    values = dequantize_int8(q[:, 1].contiguous(), arrays["v_scale"].contiguous(), spec.dtype)
    return torch.stack([keys, values], dim=1)


@dataclass(frozen=True)
class BlockMeta:
    """Where one block came from in the stream.

    Attributes:
        block_id: dense id, 0, 1, 2, ... in insertion order; never reused, even after deletion.
        frame_index: stream frame index the block was encoded from.
        timestamp_s: stream time of that frame, seconds.
    """

    block_id: int
    frame_index: int
    timestamp_s: float
