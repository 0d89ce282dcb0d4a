"""ReKV: a Video-LLM watches an endless stream once and answers from retrieved frames' KV.

How it works (Becomebright/ReKV, ICLR 2025, ported to transformers 5.x without patching the model):

1. **Encoding.** The chat text before the video (the *sink*) is encoded once; its KV stays in every
   context as attention sinks. Frames are encoded ``chunk_frames`` at a time; each pass attends to
   the sinks, the last ``window_frames`` frames and itself, at contiguous positions starting after
   the sinks (StreamingLLM's rule), so positions never outgrow the model's trained range however long
   the stream runs. With a window longer than the stream this is exactly full attention
   (``tests/streaming/videomem/test_rekv.py``).
2. **Storage.** Each frame becomes one block: its keys *before* RoPE and its values in every layer,
   plus a representative key per layer (the mean of its un-rotated keys). Blocks go to a
   :class:`~memstream.streaming.videomem.store.BlockStore` (device LRU cache, RAM, memory-mapped disk).
3. **Answering.** The bare question is run once over the sinks plus, in each layer, the frames that
   layer's :class:`~memstream.streaming.videomem.rekv.retrieval.RetrievalPolicy` picks from that layer's
   question queries (internal retrieval); the chosen frames are rotated to contiguous positions after
   the sinks. The question's own KV is dropped, the answer prompt is prefilled on sinks + frames and
   the answer is generated token by token.

Threads: frames may be pushed from one thread while questions are asked from others. A question
sees the frames stored when it was asked (its answer is stamped with that stream time) and
generation interleaves with encoding one decoder pass at a time.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers.cache_utils import Cache

from memstream.streaming.errors import MemstreamError
from memstream.streaming.types import Frame
from memstream.streaming.videomem.adapters.context import context_cache, keep_new_tokens
from memstream.streaming.videomem.adapters.hf import HFVideoLLM
from memstream.streaming.videomem.generation import SamplingConfig, TokenCallback, generate
from memstream.streaming.videomem.questions import no_frames_error, question_ids
from memstream.streaming.videomem.rekv.config import ReKVConfig
from memstream.streaming.videomem.rekv.retrieval import RetrievalPolicy, retrieval_for
from memstream.streaming.videomem.store import BlockSpec, BlockStore, StoreError
from memstream.streaming.videomem.types import Answer, Retrieval


#: Written beside the block store: what re-positioning stored blocks needs after a restart.
_LAYOUT_FILE = "memory.json"
_LAYOUT_FORMAT = "memstream.videomem.rekv/1"


@dataclass
class AnswerContext:
    """The context an answer is generated from, built by a question's retrieval pass.

    Attributes:
        cache: per layer, the sinks' and the retrieved frames' KV (rotated to their new positions);
            prefill the answer prompt on it.
        length: the position of the first token after the context.
        retrieval: which frames each layer retrieved.
        covered_until_s: stream time of the newest stored frame when the question was taken.
        frames_seen: frames stored when the question was taken.
    """

    cache: Cache
    length: int
    retrieval: Retrieval
    covered_until_s: float
    frames_seen: int


class ReKVMemory:
    """The ReKV video KV memory (see the module docstring).

    Args:
        llm: the Video-LLM, from :func:`~memstream.streaming.videomem.adapters.load_video_llm`.
        config: window, retrieval and storage settings.
        retrieval: a retrieval policy object overriding ``config.retrieval``.

    Example::

        memory = ReKVMemory(load_video_llm("llava-hf/llava-onevision-qwen2-0.5b-ov-hf"))
        for frame in open_source("video.mp4"):
            memory.update(frame)
        print(memory.ask("What did the person pick up?").text)
    """

    def __init__(self, llm: HFVideoLLM, config: ReKVConfig | None = None, *, retrieval: RetrievalPolicy | None = None) -> None:
        self.llm = llm
        self.config = config or ReKVConfig()
        self.retrieval = retrieval or self._default_retrieval()
        self._state_lock = threading.RLock()  # window, pending frames, counters; taken before llm.lock
        self._store_lock = threading.RLock()  # the block store; taken after llm.lock, never before it
        self._sink_kv: torch.Tensor | None = None
        self._window: deque[torch.Tensor] = deque(maxlen=self.config.window_frames)
        self._pending: list[Frame] = []
        self.store: BlockStore | None = None
        self.tokens_per_frame: int | None = None
        self.frame_grid: tuple[int, int] | None = None  # (rows, columns) of a block's tokens
        self.frames_seen = 0
        self.covered_until_s = float("-inf")
        self.last_hidden: torch.Tensor | None = None  # float32 (hidden_size,), set by each encoded block
        self._index_offset = 0
        self._time_offset_s = 0.0
        self._clock_checked = True
        if self.config.store_dir is not None and (Path(self.config.store_dir) / "store.json").exists():
            self._resume()

    def _default_retrieval(self) -> RetrievalPolicy:
        return retrieval_for(self.config, self.llm.device)

    # ---- storage -------------------------------------------------------------------------------
    def _spec(self, tokens_per_frame: int) -> BlockSpec:
        spec = self.llm.spec
        return BlockSpec(
            n_layers=spec.n_layers,
            n_kv_heads=spec.n_kv_heads,
            head_dim=spec.head_dim,
            block_tokens=tokens_per_frame,
            dtype=spec.dtype,
            codec=self.config.codec,
            model_fingerprint=spec.fingerprint,
        )

    def _store_options(self) -> dict:
        budget = self.config.ram_budget_mb
        return dict(
            ram_budget_bytes=None if budget is None else int(budget * 2**20),
            device_cache_blocks=self.config.device_cache_blocks,
            device=self.llm.device,
            max_blocks=self.config.max_blocks,
            eviction=self.config.eviction,
        )

    def _ensure_store(self, tokens_per_frame: int, grid: tuple[int, int]) -> None:
        if self.store is not None:
            if tokens_per_frame != self.tokens_per_frame or tuple(grid) != tuple(self.frame_grid):
                raise MemstreamError(
                    f"frames now give a {grid[0]}x{grid[1]} token grid, earlier ones {self.frame_grid[0]}x{self.frame_grid[1]}",
                    "Keep the frame size constant within a stream",
                )
            return
        self.tokens_per_frame, self.frame_grid = tokens_per_frame, tuple(grid)
        self.store = BlockStore(self._spec(tokens_per_frame), self.config.store_dir, **self._store_options())
        if self.config.store_dir is not None:  # what positions need on resume, beside the blocks
            layout = {"format": _LAYOUT_FORMAT, "frame_grid": list(grid), "frames_per_block": self.frames_per_block}
            (Path(self.config.store_dir) / _LAYOUT_FILE).write_text(json.dumps(layout) + "\n")

    def _resume(self) -> None:
        """Reopen a store directory written by an earlier session and rebuild the window from it."""
        tokens = BlockStore.read_spec(self.config.store_dir).block_tokens
        self.tokens_per_frame = tokens
        self.store = BlockStore.open(self.config.store_dir, self._spec(tokens), **self._store_options())
        layout_path = Path(self.config.store_dir) / _LAYOUT_FILE
        try:
            layout = json.loads(layout_path.read_text())
            self.frame_grid = tuple(layout["frame_grid"])
        except (OSError, ValueError, KeyError) as exc:
            self.store.close()
            raise StoreError(f"{layout_path} is missing or unreadable ({exc})", "Delete the store directory to start over") from exc
        live = self.store.live_ids()
        if not live:
            return
        for block_id in live[-self.config.window_frames :]:
            self._window.append(self.store.get_blocks([block_id], device=self.llm.device)[0])
        last = self.store.meta(live[-1])
        # A block is stamped with its first frame; a clean close also recorded the last one.
        self.frames_seen = max(last.frame_index + 1, layout.get("frames_seen", 0))
        self.covered_until_s = max(last.timestamp_s, layout.get("covered_until_s", float("-inf")))
        self._clock_checked = False

    def _continue_clock(self, frame: Frame) -> None:
        """After a resume, a source whose clock restarts (a camera reopened, a file read again) is
        appended after the stored frames: its indices and times are shifted to follow them."""
        self._clock_checked = True
        if frame.index < self.frames_seen:
            self._index_offset = self.frames_seen - frame.index
        if frame.timestamp_s <= self.covered_until_s:
            self._time_offset_s = self.covered_until_s - frame.timestamp_s + 1e-3

    # ---- encoding ------------------------------------------------------------------------------
    def _sink(self) -> torch.Tensor:
        """``(L, 2, Hkv, n_sink, D)`` KV of the sink text (keys un-rotated), encoded once."""
        if self._sink_kv is None:
            ids = self.llm.tokenize(self.llm.prompt.sink)
            positions, _ = self.llm.text_positions(0, len(ids))
            out = self.llm.run(self.llm.embed_text(ids), positions, context_cache([None] * self.llm.spec.n_layers), capture_kv=True)
            self._sink_kv = torch.stack([out.keys, out.values], dim=1)
        return self._sink_kv

    @property
    def frames_per_block(self) -> int:
        """Frames one KV block holds: 1 for LLaVA-OneVision, 2 for Qwen2.5-VL (its temporal patch)."""
        return getattr(self.llm, "frames_per_block", 1)

    def update(self, frame: Frame) -> None:
        """Add one frame; frames are encoded once ``chunk_frames`` of them (rounded up to whole
        blocks) are waiting."""
        per_block = self.frames_per_block
        needed = -(-self.config.chunk_frames // per_block) * per_block
        with self._state_lock:
            self._pending.append(frame)
            if len(self._pending) >= needed:
                self._encode_pending()

    def flush(self) -> None:
        """Encode the frames still waiting for a full chunk (a partial block repeats its last frame,
        as video processors pad a clip to whole temporal patches)."""
        with self._state_lock:
            if self._pending:
                self._encode_pending()

    def _encode_pending(self) -> None:
        frames, self._pending = self._pending, []
        images = [frame.rgb for frame in frames]
        images += [images[-1]] * (-len(images) % self.frames_per_block)
        with self.llm.lock:  # the grid read belongs to these frames, not another stream's
            embeds = self.llm.embed_frames(images)
            grid = self.llm.frame_grid(embeds.shape[1])
        self._encode(embeds, frames, grid)

    def update_embeddings(self, embeds: torch.Tensor, frames: Sequence[Frame], grid: tuple[int, int] | None = None) -> None:
        """Add frames whose decoder input embeddings were computed elsewhere (precomputed video
        features, or a planted event in a test).

        Args:
            embeds: ``(blocks, T, hidden_size)`` what :meth:`HFVideoLLM.embed_frames` returns.
            frames: the frames they come from (``frames_per_block`` per block), for their indices
                and times; their pixels are not read.
            grid: ``(rows, columns)`` of a block's tokens; by default the stream's, or the model's
                for its last embedded frames.
        """
        if embeds.dim() != 3 or embeds.shape[-1] != self.llm.spec.hidden_size:
            raise ValueError(f"embeds must be (blocks, T, {self.llm.spec.hidden_size}), got {tuple(embeds.shape)}")
        if len(frames) != embeds.shape[0] * self.frames_per_block:
            raise ValueError(f"{embeds.shape[0]} blocks need {embeds.shape[0] * self.frames_per_block} frames, got {len(frames)}")
        with self._state_lock:
            if self._pending:
                self._encode_pending()
            grid = grid or self.frame_grid or self.llm.frame_grid(embeds.shape[1])
            self._encode(embeds.to(self.llm.device, self.llm.spec.dtype), list(frames), grid)

    def _encode(self, embeds: torch.Tensor, frames: list[Frame], grid: tuple[int, int]) -> None:
        per_block = self.frames_per_block
        self._ensure_store(embeds.shape[1], grid)
        tokens, n_new = self.tokens_per_frame, embeds.shape[0]
        sink = self._sink()
        past = torch.cat([sink, *self._window], dim=3)  # (L, 2, Hkv, P, D)
        sink_pos, cursor = self.llm.text_positions(0, sink.shape[3])
        # The window and the new blocks form one video segment (M-RoPE numbers a segment's frames
        # from a shared start), placed right after the sinks.
        frame_pos, _ = self.llm.frame_positions(cursor, len(self._window) + n_new, self.frame_grid)
        split = len(self._window) * tokens
        rotated = self.llm.rotate(past[:, 0], torch.cat([sink_pos, frame_pos[:, :split]], dim=1))
        cache = context_cache([(rotated[i][None], past[i, 1][None]) for i in range(past.shape[0])])
        out = self.llm.run(embeds.reshape(-1, embeds.shape[-1]), frame_pos[:, split:], cache, capture_kv=True)
        if not self._clock_checked:
            self._continue_clock(frames[0])
        observe = getattr(self.retrieval, "observe", None)
        for i in range(n_new):
            part = slice(i * tokens, (i + 1) * tokens)
            kv = torch.stack([out.keys[:, :, part], out.values[:, :, part]], dim=1)  # (L, 2, Hkv, T, D)
            representative = kv[:, 0].float().mean(dim=2).reshape(kv.shape[0], -1)  # ReKV: mean un-rotated key
            first = frames[i * per_block]
            with self._store_lock:
                meta = self.store.put(kv, representative, first.index + self._index_offset, first.timestamp_s + self._time_offset_s)
            self._window.append(kv)
            if observe is not None:  # external retrieval embeds the block's frames once, now
                observe(meta.block_id, [f.rgb for f in frames[i * per_block : (i + 1) * per_block]])
        self.frames_seen = frames[-1].index + self._index_offset + 1
        self.covered_until_s = frames[-1].timestamp_s + self._time_offset_s
        # the newest block's tokens' last hidden states, averaged: a summary of what was just seen in
        # the decoder's own space (the bank stage's cognitive token, MemoryVLA's VLM hidden state)
        self.last_hidden = out.hidden[-tokens:].float().mean(dim=0).cpu()

    # ---- questions -----------------------------------------------------------------------------
    def _question_ids(self, question: str) -> tuple[torch.Tensor, torch.Tensor]:
        return question_ids(self.llm, question, self.config.max_question_tokens)

    def _snapshot(self) -> tuple[list[int], torch.Tensor, float, int]:
        with self._state_lock:
            if self._pending:
                self._encode_pending()
            if self.store is None or len(self.store) == 0:
                raise no_frames_error()
            with self._store_lock:
                return self.store.live_ids(), self.store.repr_keys(), self.covered_until_s, self.frames_seen

    def answer_context(self, question: str, policy: RetrievalPolicy | None = None) -> AnswerContext:
        """Run ``question``'s retrieval pass and return the context its answer is generated from.

        Args:
            question: the question.
            policy: a retrieval policy for this question only (evaluation compares policies on
                the same memory); the memory's own by default.
        """
        retrieval_ids, _ = self._question_ids(question)
        live, block_keys, covered, seen = self._snapshot()
        llm, policy, tokens = self.llm, policy or self.retrieval, self.tokens_per_frame
        n_layers = llm.spec.n_layers
        policy.prepare(question, live)
        k = policy.count(len(live))
        sink = self._sink()
        sink_pos, cursor = llm.text_positions(0, sink.shape[3])
        frame_pos, cursor = llm.frame_positions(cursor, k, self.frame_grid)
        sink_keys = llm.rotate(sink[:, 0], sink_pos)
        chosen: dict[int, torch.Tensor] = {}

        def fetcher(layer: int):
            def fetch():
                query = llm.query_mean(layer) if policy.needs_query else None
                picked = policy.select(layer, query, block_keys[layer]).cpu()
                chosen[layer] = torch.tensor([live[i] for i in picked.tolist()], dtype=torch.int64)
                with self._store_lock:
                    kv = self.store.get(layer, chosen[layer].tolist(), device=llm.device)  # (k, 2, Hkv, T, D)
                kv = kv.to(llm.spec.dtype).permute(1, 2, 0, 3, 4).reshape(2, llm.spec.n_kv_heads, k * tokens, -1)
                return llm.rotate(kv[0], frame_pos)[None], kv[1][None]

            return fetch

        cache = context_cache(
            [(sink_keys[i][None], sink[i, 1][None]) for i in range(n_layers)],
            fetchers=[fetcher(i) for i in range(n_layers)],
            pending_length=k * tokens,
            keep_new=False,
        )
        positions, _ = llm.text_positions(cursor, len(retrieval_ids))
        llm.run(llm.embed_text(retrieval_ids), positions, cache, capture_query=policy.needs_query)
        keep_new_tokens(cache)
        block_ids = torch.stack([chosen[i] for i in range(n_layers)])
        with self._store_lock:
            metas = [[self.store.meta(int(b)) for b in row] for row in block_ids.tolist()]
        retrieval = Retrieval(
            block_ids=block_ids,
            frame_indices=torch.tensor([[m.frame_index for m in row] for row in metas], dtype=torch.int64).reshape(n_layers, k),
            timestamps_s=torch.tensor([[m.timestamp_s for m in row] for row in metas], dtype=torch.float64).reshape(n_layers, k),
            method=policy.name,
        )
        return AnswerContext(cache, cursor, retrieval, covered, seen)

    def check_question(self, question: str) -> None:
        """Raise the :class:`QuestionError` that :meth:`ask` would raise for ``question``, without
        answering (a service refuses bad input before it starts streaming)."""
        self._question_ids(question)
        with self._state_lock:
            if self.store is None and not self._pending:
                raise no_frames_error()

    def retrieve(self, question: str) -> Retrieval:
        """The frames each layer would answer ``question`` from, without generating."""
        return self.answer_context(question).retrieval

    def ask(
        self, question: str, sampling: SamplingConfig | None = None, on_text: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer a question about everything seen so far.

        Args:
            question: the question, in words.
            sampling: greedy by default; see :class:`~memstream.streaming.videomem.generation.SamplingConfig`.
            on_text: receives the answer's text piece by piece as it is generated.
            cancel: set from another thread to stop generating before the next token
                (:class:`~memstream.streaming.videomem.generation.GenerationCancelled` is raised).

        Raises:
            QuestionError: the question is empty or too long, or no frame has been seen.
        """
        start = time.perf_counter()
        _, answer_ids = self._question_ids(question)
        context = self.answer_context(question)
        retrieved_at = time.perf_counter()
        out = generate(self.llm, context.cache, answer_ids, context.length, sampling or SamplingConfig(), on_text, cancel)
        end = time.perf_counter()
        return Answer(
            question=question,
            text=self.llm.decode(out.token_ids),
            token_ids=torch.tensor(out.token_ids, dtype=torch.int64),
            covered_until_s=context.covered_until_s,
            frames_seen=context.frames_seen,
            retrieval=context.retrieval,
            time_to_first_token_s=out.first_token_at - start,
            total_s=end - start,
            prompt_tokens=out.prompt_tokens,
            finished_by_eos=out.finished_by_eos,
            timings_s={"retrieval_s": retrieved_at - start, "generation_s": end - retrieved_at},
        )

    # ---- state ---------------------------------------------------------------------------------
    def memory_summary(self) -> dict:
        """Frames, window and sink sizes, and the store's bytes per tier."""
        window_bytes = sum(kv.numel() * kv.element_size() for kv in self._window)
        summary = {"frames_seen": self.frames_seen, "window_frames": len(self._window), "window_bytes": window_bytes}
        if self.store is not None:
            with self._store_lock:
                summary["store"] = self.store.memory_summary()
        return summary

    def state_dict(self) -> dict:
        """Counters of the session. The blocks themselves persist in ``config.store_dir``: a new
        :class:`ReKVMemory` on the same directory resumes (window rebuilt from the newest blocks)."""
        return {"frames_seen": self.frames_seen, "covered_until_s": self.covered_until_s, "tokens_per_frame": self.tokens_per_frame}

    def close(self) -> None:
        """Encode waiting frames and close the store (flushing the disk tier)."""
        self.flush()
        if self.store is None:
            return
        with self._store_lock:
            self.store.close()
        if self.config.store_dir is not None and self.frame_grid is not None:
            path = Path(self.config.store_dir) / _LAYOUT_FILE
            layout = {**json.loads(path.read_text()), "frames_seen": self.frames_seen, "covered_until_s": self.covered_until_s}
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(layout) + "\n")
            tmp.replace(path)

    def __enter__(self) -> ReKVMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self) -> Sequence[int]:
        """Frame indices of the stored blocks, oldest first."""
        with self._store_lock:
            return [self.store.meta(b).frame_index for b in self.store.live_ids()] if self.store else []
