"""What every transformers Video-LLM adapter shares: the decoder seen as layers of (un-rotated) KV.

The memory keeps keys *before* RoPE, as ReKV does: a stored frame can then be re-inserted at any
position by rotating it once with the model's own rotary embedding, which gives bit-for-bit the keys
the model would have cached at that position (``tests/streaming/videomem/test_adapters.py``).
Un-rotated keys, values and queries are read with forward hooks on each attention layer's
``k_proj`` / ``v_proj`` / ``q_proj``; nothing of the model is patched or subclassed.

A subclass says how frames become decoder inputs (:meth:`HFVideoLLM._frame_features`), how positions
look (1-D or M-RoPE) and how the model applies RoPE (:meth:`HFVideoLLM.rotate`).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers.cache_utils import Cache

from memstream.streaming.videomem.types import VideoLLMSpec


@dataclass(frozen=True)
class PromptFormat:
    """The text around the video, in the model's chat format.

    Attributes:
        sink: the text before the first frame (system prompt and the user turn's opening). Its
            tokens stay in every attention context as attention sinks (ReKV's ``init_prompt``).
        answer: the text after the retrieved frames, with ``{question}``; it ends where the
            assistant's answer begins.
        retrieval: the text whose queries select frames (ReKV: the bare question).
    """

    sink: str
    answer: str
    retrieval: str = "{question}"


@dataclass
class RunOutput:
    """What one decoder forward pass returns.

    Attributes:
        hidden: ``(n, hidden_size)`` last hidden states of the tokens of the pass.
        keys: ``(L, Hkv, n, D)`` un-rotated keys of those tokens, when asked for.
        values: ``(L, Hkv, n, D)`` values of those tokens, when asked for.
    """

    hidden: torch.Tensor
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None


def writable(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The images, copied when read-only (frames are): processors wrap them with ``torch.from_numpy``,
    which warns on read-only arrays."""
    return [image if image.flags.writeable else image.copy() for image in images]


def cache_keyword(module: torch.nn.Module) -> str:
    """The keyword ``module.forward`` takes its KV cache under: ``cache`` from transformers 5.25 on,
    ``past_key_values`` before.

    transformers 5.25 renamed the argument and keeps the old name only through a ``deprecate_kwarg``
    shim (a ``FutureWarning`` now, removal announced for 5.40). The shim wraps ``forward`` with
    ``functools.wraps``, so the signature shows the name the model really takes; a model that takes
    neither by name (only ``**kwargs``) gets the old one, which every 5.x release accepts.
    """
    parameters = inspect.signature(module.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def cache_kwargs(module: torch.nn.Module, cache: Cache) -> dict[str, Cache]:
    """``{keyword: cache}`` for a call of ``module`` (a decoder or a whole model), see :func:`cache_keyword`.

    Example::

        out = model(inputs_embeds=embeds, use_cache=True, **cache_kwargs(model, cache))
    """
    return {cache_keyword(module): cache}


class _Capture:
    """Where the attention hooks write during one forward pass (None outside a pass)."""

    def __init__(self, kv: bool, query: bool) -> None:
        self.kv, self.query = kv, query
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}
        self.query_mean: dict[int, torch.Tensor] = {}


class HFVideoLLM:
    """A transformers Video-LLM seen by the memory: frames in, per-layer KV out.

    Args:
        model: a loaded ``*ForConditionalGeneration`` in eval mode.
        processor: its processor (tokenizer plus image/video processor).
        name: the path or hub id it came from (for messages and the fingerprint).
        prompt: the chat text around the video.

    Thread safety: one forward pass at a time; callers hold :attr:`lock` around a sequence of passes
    that share hook state (the memory does).
    """

    model_type = ""
    position_rows = 1

    def __init__(self, model, processor, *, name: str, prompt: PromptFormat, fingerprint: str) -> None:
        self.model = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.name = name
        self.prompt = prompt
        self.lock = threading.RLock()
        self.decoder = model.get_decoder()
        text = model.config.get_text_config(decoder=True)
        n_heads = text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // n_heads
        self.spec = VideoLLMSpec(
            model_type=self.model_type,
            n_layers=text.num_hidden_layers,
            n_heads=n_heads,
            n_kv_heads=text.num_key_value_heads,
            head_dim=head_dim,
            hidden_size=text.hidden_size,
            position_rows=self.position_rows,
            dtype=model.dtype,
            fingerprint=fingerprint,
        )
        self._capture: _Capture | None = None
        self._cache_keyword = cache_keyword(self.decoder)  # read once: forward passes are hot
        self._install_hooks()

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- hooks -------------------------------------------------------------------------------
    def _install_hooks(self) -> None:
        for index, layer in enumerate(self.decoder.layers):
            attn = layer.self_attn
            if hasattr(attn, "k_norm") or hasattr(attn, "q_norm"):
                raise NotImplementedError(f"{self.model_type}: attention with q/k norms is not supported yet")
            attn.q_proj.register_forward_hook(self._query_hook(index))
            attn.k_proj.register_forward_hook(self._kv_hook(index, "keys"))
            attn.v_proj.register_forward_hook(self._kv_hook(index, "values"))

    def _kv_hook(self, index: int, kind: str):
        spec = self.spec

        def hook(module, inputs, output):
            capture = self._capture
            if capture is not None and capture.kv:
                heads = output.view(output.shape[1], spec.n_kv_heads, spec.head_dim).transpose(0, 1)
                getattr(capture, kind)[index] = heads

        return hook

    def _query_hook(self, index: int):
        spec = self.spec

        def hook(module, inputs, output):
            capture = self._capture
            if capture is not None and capture.query:
                q = output[0].float().view(-1, spec.n_kv_heads, spec.group_size, spec.head_dim)
                # ReKV's query is the mean over the question's tokens of all heads' un-rotated queries,
                # scored against the GQA-expanded mean key: sum over the heads of a group is the same.
                capture.query_mean[index] = q.mean(0).sum(1).reshape(-1)

        return hook

    # ---- text --------------------------------------------------------------------------------
    def tokenize(self, text: str) -> torch.Tensor:
        """int64 ``(n,)`` token ids of ``text`` (no special tokens added)."""
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids[0]
        return ids.to(self.device)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text of generated ids, special tokens removed."""
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """``(n, hidden_size)`` input embeddings of token ids ``(n,)``."""
        return self.model.get_input_embeddings()(ids.to(self.device))

    @property
    def eos_token_ids(self) -> set[int]:
        """Ids that end an answer: the tokenizer's and the generation config's end tokens."""
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, getattr(self.model.generation_config, "eos_token_id", None)):
            if value is not None:
                ids.update(value if isinstance(value, (list, tuple)) else [value])
        return ids

    # ---- frames ------------------------------------------------------------------------------
    def embed_frames(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Decoder input embeddings of RGB frames, one block of ``T`` tokens per frame.

        Args:
            frames: ``n`` images, uint8 ``(H, W, 3)``.

        Returns:
            ``(n, T, hidden_size)`` in the model's dtype.
        """
        if len(frames) == 0:
            raise ValueError("embed_frames needs at least one frame")
        frames = writable(frames)
        with torch.inference_mode():
            return self._frame_features(frames)

    def _frame_features(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        raise NotImplementedError

    def frame_grid(self, tokens_per_frame: int) -> tuple[int, int]:
        """The (rows, columns) layout of the ``T`` tokens of the frames embedded last (square for
        models that resize every frame to one square size)."""
        side = round(tokens_per_frame**0.5)
        if side * side != tokens_per_frame:
            raise ValueError(f"{tokens_per_frame} tokens per frame do not form a square grid")
        return side, side

    # ---- positions and RoPE ------------------------------------------------------------------
    def text_positions(self, start: int, n_tokens: int) -> tuple[torch.Tensor, int]:
        """Positions of ``n_tokens`` text tokens placed at ``start``: int64 ``(R, n)`` and the next start."""
        pos = torch.arange(start, start + n_tokens, device=self.device)
        return pos.expand(self.position_rows, -1), start + n_tokens

    def frame_positions(self, start: int, n_blocks: int, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Positions of a video segment of ``n_blocks`` blocks placed at ``start``.

        Args:
            start: position of the segment's first token.
            n_blocks: frame blocks in the segment.
            grid: ``(rows, columns)`` of one block's tokens (:meth:`frame_grid` of the stream).

        Returns:
            int64 ``(R, n_blocks * rows * columns)`` and the position of the token after the segment.
            1-D RoPE numbers the tokens one after another.
        """
        return self.text_positions(start, n_blocks * grid[0] * grid[1])

    def grid_positions(self, start: int, temporal_ids: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, int]:
        """Positions of token grids that stand at given moments (Flash-VStream's AM-RoPE).

        Args:
            start: position of the first token.
            temporal_ids: int64 ``(G,)`` the moment of each grid, in frame blocks from the segment's
                start (M-RoPE spaces them like video frames; 1-D RoPE ignores them).
            grid: ``(rows, columns)`` of every grid's tokens.

        Returns:
            int64 ``(R, G * rows * columns)`` and the position after the segment.
        """
        return self.text_positions(start, len(temporal_ids) * grid[0] * grid[1])

    def rotate(self, keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Apply the model's RoPE to un-rotated keys.

        Args:
            keys: ``(Hkv, n, D)`` or ``(1, Hkv, n, D)``.
            positions: int64 ``(R, n)``.

        Returns:
            Rotated keys of the same shape and dtype, equal to what the model caches at those positions.
        """
        raise NotImplementedError

    def _position_ids(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[0][None] if self.position_rows == 1 else positions[:, None]

    # ---- decoder -----------------------------------------------------------------------------
    def run(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        cache: Cache,
        *,
        capture_kv: bool = False,
        capture_query: bool = False,
    ) -> RunOutput:
        """One decoder pass of ``n`` tokens after the past held in ``cache``.

        Args:
            embeds: ``(n, hidden_size)`` input embeddings.
            positions: int64 ``(R, n)`` their positions.
            cache: the past (see :mod:`memstream.streaming.videomem.adapters.context`); updated in place.
            capture_kv: return the pass's un-rotated keys and values.
            capture_query: record each layer's mean query for lazy retrieval (read with
                :meth:`query_mean` from inside a cache fetcher).
        """
        capture = _Capture(kv=capture_kv, query=capture_query)
        with self.lock, torch.inference_mode():
            self._capture = capture
            try:
                out = self.decoder(
                    inputs_embeds=embeds[None].to(self.spec.dtype),
                    position_ids=self._position_ids(positions),
                    use_cache=True,
                    **{self._cache_keyword: cache},
                )
            finally:
                self._capture = None
        result = RunOutput(hidden=out.last_hidden_state[0])
        if capture_kv:
            result.keys = torch.stack([capture.keys[i] for i in range(self.spec.n_layers)])
            result.values = torch.stack([capture.values[i] for i in range(self.spec.n_layers)])
        return result

    def query_mean(self, layer: int) -> torch.Tensor:
        """During a pass with ``capture_query``: layer ``layer``'s mean query, float32 ``(Hkv*D,)``
        (summed over the query heads that share a key head)."""
        if self._capture is None or layer not in self._capture.query_mean:
            raise RuntimeError("query_mean is only available inside a pass with capture_query=True")
        return self._capture.query_mean[layer]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """float32 ``(..., vocab)`` next-token logits of last hidden states ``(..., hidden_size)``."""
        with torch.inference_mode():
            return self.model.lm_head(hidden).float()
