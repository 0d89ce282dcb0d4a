"""Flash-VStream (v2) as a video memory for a transformers Video-LLM: a fixed token budget whatever
the stream length.

Per frame block the Video-LLM's visual tokens are computed once. A low-resolution copy (the tokens
average-pooled 2x2 on their grid) enters the :class:`~memstream.streaming.videomem.flash.memory.FlashMemory`
(the time-ordered weighted k-means CSM); the full-resolution tokens are kept only for the frames the
DAM can still pick (:meth:`FlashMemory.retained_frame_ids`), so host memory is bounded too (the
anchor keeps every frame's features, its issue #9).

A question is answered from ``[sinks, DAM frames (full resolution, time order), CSM centroids (time
order), question]``, prefilled from scratch: at most ``dam_frames * T + csm_clusters * T / 4``
visual tokens, so the time to the first token does not grow with the stream.

Positions follow the anchor's AM-RoPE (``calc_am_rope``) on M-RoPE models (Qwen2.5-VL): a DAM
grid's temporal id is its frame's, a CSM grid's the rounded weighted mean of its members' frames,
both counted from the oldest remembered moment and spaced like video frames; the CSM grids form a
second segment after the DAM grids (the anchor shifts them by the DAM token count instead), and
the question follows the largest id. On 1-D RoPE models (LLaVA-OneVision) positions are contiguous:
there is no temporal section to re-time.

The low-resolution path differs from the anchor's, which pools *pixels* 2x2 before Qwen2-VL's ViT:
LLaVA-OneVision's processor resizes every frame to a fixed size, which would undo a pixel pool, so
the pool is applied to the projected tokens instead (same 4x fewer tokens).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field

from memstream.streaming.configtypes import strict_config

from memstream.streaming.types import Frame
from memstream.streaming.videomem.adapters.context import context_cache
from memstream.streaming.videomem.adapters.hf import HFVideoLLM
from memstream.streaming.videomem.flash.config import FlashMemoryConfig
from memstream.streaming.videomem.flash.memory import FlashMemory
from memstream.streaming.videomem.generation import SamplingConfig, TokenCallback, generate
from memstream.streaming.videomem.questions import no_frames_error, question_ids
from memstream.streaming.videomem.types import Answer, Retrieval


@strict_config
@dataclass(frozen=True)
class FlashVStreamConfig:
    """Flash-VStream's settings.

    Attributes:
        memory: the Flash Memory's clustering and DAM settings (anchor defaults: 60 CSM
            centroids, 30 DAM frames).
        low_res_pool: side of the average pool that makes the CSM's low-resolution tokens (2: the
            anchor's ``temporal_poolsize``).
        max_question_tokens: longer questions are refused.
    """

    memory: FlashMemoryConfig = field(default_factory=FlashMemoryConfig)
    low_res_pool: Annotated[int, Field(ge=1)] = 2
    max_question_tokens: Annotated[int, Field(ge=1)] = 512

    def __post_init__(self) -> None:  # a config built in Python; parse() checks the fields first
        if self.low_res_pool < 1:
            raise ValueError(f"low_res_pool must be >= 1, got {self.low_res_pool}")
        if self.max_question_tokens < 1:
            raise ValueError(f"max_question_tokens must be >= 1, got {self.max_question_tokens}")


class FlashVStreamMemory:
    """A Video-LLM answering from a Flash-VStream memory (see the module docstring).

    Args:
        llm: the Video-LLM, from :func:`~memstream.streaming.videomem.adapters.load_video_llm`.
        config: memory settings.

    Example::

        memory = FlashVStreamMemory(load_video_llm("llava-hf/llava-onevision-qwen2-0.5b-ov-hf"))
        for frame in frames:
            memory.update(frame)
        print(memory.ask("What happened first?").text)
    """

    def __init__(self, llm: HFVideoLLM, config: FlashVStreamConfig | None = None) -> None:
        self.llm = llm
        self.config = config or FlashVStreamConfig()
        self.flash = FlashMemory(self.config.memory)
        self._lock = threading.RLock()
        self._full: dict[int, torch.Tensor] = {}  # frame id -> (T, hidden), DAM candidates only
        self._frames: dict[int, tuple[int, float]] = {}  # frame id -> (stream index, time), same ids
        self._pending: list[Frame] = []
        self._next_id = 0
        self.frames_seen = 0
        self.covered_until_s = float("-inf")
        self.last_hidden: torch.Tensor | None = None  # float32 (hidden_size,), set by each encoded block
        self.tokens_per_frame: int | None = None
        self.frame_grid: tuple[int, int] | None = None

    @property
    def frames_per_block(self) -> int:
        return getattr(self.llm, "frames_per_block", 1)

    @property
    def low_res_grid(self) -> tuple[int, int]:
        """``(rows, columns)`` of a CSM grid: the frame grid pooled ``low_res_pool`` x ``low_res_pool``."""
        pool = self.config.low_res_pool
        return -(-self.frame_grid[0] // pool), -(-self.frame_grid[1] // pool)

    def _low_res(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(T, hidden)`` -> ``(T / pool^2, hidden)``: average pool on the frame's token grid."""
        rows, cols = self.frame_grid
        grid = tokens.float().T.reshape(1, -1, rows, cols)
        pooled = F.avg_pool2d(grid, self.config.low_res_pool, ceil_mode=True)
        return pooled.flatten(2)[0].T.to(tokens.dtype)

    def update(self, frame: Frame) -> None:
        """Add one frame (a block once ``frames_per_block`` frames are waiting)."""
        with self._lock:
            self._pending.append(frame)
            if len(self._pending) >= self.frames_per_block:
                self._encode_pending()

    def flush(self) -> None:
        """Encode a partial block (its last frame repeated)."""
        with self._lock:
            if self._pending:
                self._encode_pending()

    def _encode_pending(self) -> None:
        frames, self._pending = self._pending, []
        images = [f.rgb for f in frames] + [frames[-1].rgb] * (-len(frames) % self.frames_per_block)
        with self.llm.lock:  # the grid read belongs to these frames
            blocks = self.llm.embed_frames(images)  # (n, T, hidden)
            self.frame_grid = self.llm.frame_grid(blocks.shape[1])
        self.tokens_per_frame = blocks.shape[1]
        for i, full in enumerate(blocks):
            first = frames[i * self.frames_per_block]
            frame_id, self._next_id = self._next_id, self._next_id + 1
            self.flash.update(self._low_res(full), frame_id, first.timestamp_s)
            self._full[frame_id] = full.cpu()
            self._frames[frame_id] = (first.index, first.timestamp_s)
        keep = set(self.flash.retained_frame_ids().tolist())
        for frame_id in [i for i in self._full if i not in keep]:
            del self._full[frame_id], self._frames[frame_id]
        self.frames_seen = frames[-1].index + 1
        self.covered_until_s = frames[-1].timestamp_s
        self.last_hidden = blocks[-1].float().mean(dim=0).cpu()  # the newest frame's visual tokens, averaged

    def _context_embeds(self) -> tuple[torch.Tensor, torch.Tensor, int, Retrieval, float, int]:
        with self._lock:
            if self._pending:
                self._encode_pending()
            if len(self.flash) == 0:
                raise no_frames_error()
            readout = self.flash.readout()
            dam = [self._full[int(i)] for i in readout.dam_frame_ids]
            meta = [self._frames[int(i)] for i in readout.dam_frame_ids]
            covered, seen = self.covered_until_s, self.frames_seen
        device, dtype = self.llm.device, self.llm.spec.dtype
        visual = [t.to(device, dtype) for t in dam] + [c.to(device, dtype) for c in readout.csm_features]
        sink = self.llm.embed_text(self.llm.tokenize(self.llm.prompt.sink))
        embeds = torch.cat([sink, *visual])
        positions, cursor = self._positions(len(sink), readout)
        rows = self.llm.spec.n_layers
        retrieval = Retrieval(
            block_ids=readout.dam_frame_ids.repeat(rows, 1),
            frame_indices=torch.tensor([m[0] for m in meta], dtype=torch.int64).repeat(rows, 1),
            timestamps_s=torch.tensor([m[1] for m in meta], dtype=torch.float64).repeat(rows, 1),
            method="flash_vstream",
        )
        return embeds, positions, cursor, retrieval, covered, seen

    def _positions(self, n_sink: int, readout) -> tuple[torch.Tensor, int]:
        """Sinks, then the DAM grids, then the CSM grids (AM-RoPE on M-RoPE models, see the module)."""
        dam_ids = readout.dam_frame_ids
        csm_ids = readout.csm_frame_positions.round().long()
        oldest = int(torch.cat([dam_ids, csm_ids]).min())
        sink, cursor = self.llm.text_positions(0, n_sink)
        dam, cursor = self.llm.grid_positions(cursor, dam_ids - oldest, self.frame_grid)
        csm, cursor = self.llm.grid_positions(cursor, csm_ids - oldest, self.low_res_grid)
        return torch.cat([sink, dam, csm], dim=1), cursor

    def check_question(self, question: str) -> None:
        """Raise the error :meth:`ask` would raise for ``question``, without answering."""
        question_ids(self.llm, question, self.config.max_question_tokens)
        with self._lock:
            if len(self.flash) == 0 and not self._pending:
                raise no_frames_error()

    def ask(
        self, question: str, sampling: SamplingConfig | None = None, on_text: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer a question from the memory's fixed token budget (arguments as
        :meth:`memstream.streaming.videomem.rekv.ReKVMemory.ask`)."""
        start = time.perf_counter()
        _, answer_ids = question_ids(self.llm, question, self.config.max_question_tokens)
        embeds, positions, cursor, retrieval, covered, seen = self._context_embeds()
        cache = context_cache([None] * self.llm.spec.n_layers)
        self.llm.run(embeds, positions, cache)
        prefilled = time.perf_counter()
        out = generate(self.llm, cache, answer_ids, cursor, sampling or SamplingConfig(), on_text, cancel)
        end = time.perf_counter()
        return Answer(
            question=question,
            text=self.llm.decode(out.token_ids),
            token_ids=torch.tensor(out.token_ids, dtype=torch.int64),
            covered_until_s=covered,
            frames_seen=seen,
            retrieval=retrieval,
            time_to_first_token_s=out.first_token_at - start,
            total_s=end - start,
            prompt_tokens=out.prompt_tokens,
            finished_by_eos=out.finished_by_eos,
            timings_s={"memory_prefill_s": prefilled - start, "generation_s": end - prefilled},
        )

    def memory_summary(self) -> dict:
        """Frames seen, visual tokens an answer reads, and bytes held (clusters + kept frames)."""
        with self._lock:
            full_bytes = sum(t.numel() * t.element_size() for t in self._full.values())
            tokens = 0
            if self.tokens_per_frame and len(self.flash):
                readout = self.flash.readout()
                tokens = readout.dam_frame_ids.numel() * self.tokens_per_frame + readout.csm_features[:, :, 0].numel()
            return {
                "frames_seen": self.frames_seen,
                "visual_tokens_per_answer": tokens,
                "full_res_frames_kept": len(self._full),
                "full_res_bytes": full_bytes,
                "flash": self.flash.memory_summary(),
            }

    def state_dict(self) -> dict:
        """Everything needed to resume: the Flash Memory and the kept full-resolution frames."""
        with self._lock:
            return {
                "flash": self.flash.state_dict(),
                "full": {k: v.clone() for k, v in self._full.items()},
                "frames": dict(self._frames),
                "next_id": self._next_id,
                "frames_seen": self.frames_seen,
                "covered_until_s": self.covered_until_s,
                "tokens_per_frame": self.tokens_per_frame,
                "frame_grid": self.frame_grid,
            }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (same config)."""
        with self._lock:
            self.flash.load_state_dict(state["flash"])
            self._full = {int(k): v.clone() for k, v in state["full"].items()}
            self._frames = {int(k): tuple(v) for k, v in state["frames"].items()}
            self._next_id = state["next_id"]
            self.frames_seen = state["frames_seen"]
            self.covered_until_s = state["covered_until_s"]
            self.tokens_per_frame = state["tokens_per_frame"]
            self.frame_grid = None if state["frame_grid"] is None else tuple(state["frame_grid"])

    def close(self) -> None:
        """Encode waiting frames."""
        self.flush()
