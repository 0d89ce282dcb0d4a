"""What every video memory offers, and the registry the stage, ``memstream ask`` and ``serve`` pick
one from by name (``memory: rekv`` in YAML, ``--memory flash_vstream``).

ReKV (:class:`~memstream.streaming.videomem.rekv.ReKVMemory`: every frame's KV, retrieved per
question) and Flash-VStream
(:class:`~memstream.streaming.videomem.flash.video_memory.FlashVStreamMemory`: a fixed-size
clustered memory) are siblings behind :class:`VideoMemory`. A new memory is a factory registered in
:data:`VIDEO_MEMORIES`; its name is then accepted by the stage's options and ``--memory``::

    @VIDEO_MEMORIES.register("recent_only")
    def recent_only(llm: HFVideoLLM, options: VideoMemoryOptions) -> VideoMemory:
        return ReKVMemory(llm, replace(options.rekv, retrieval="recent"))
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from memstream.streaming.registry import Registry
from memstream.streaming.types import Frame
from memstream.streaming.videomem.types import Answer

if TYPE_CHECKING:
    from memstream.streaming.videomem.adapters.hf import HFVideoLLM
    from memstream.streaming.videomem.generation import SamplingConfig, TokenCallback
    from memstream.streaming.videomem.options import VideoMemoryOptions


@runtime_checkable
class VideoMemory(Protocol):
    """A Video-LLM's memory of one stream: frames in, answers about everything seen so far out.

    Frames may be pushed from one thread while questions are asked from others; a question sees
    the frames stored when it was asked.

    Attributes:
        frames_seen: frames stored so far (the next frame's stream index, after a resume too).
        covered_until_s: stream time of the newest stored frame, seconds (``-inf`` before any).

    A memory may also offer ``last_hidden``: float32 ``(hidden_size,)``, its newest encoded frame
    in the decoder's space (None before any); the ``video_memory`` stage hands it on to later stages
    (the bank's cognitive token). It is optional: the stage reads it with ``getattr``.
    """

    frames_seen: int
    covered_until_s: float

    def update(self, frame: Frame) -> None:
        """Add one frame (RGB uint8 ``(H, W, 3)``, its stream index and time in seconds). It may
        wait for the next ones to form a block (``chunk_frames``, Qwen2.5-VL's 2-frame patch)."""
        ...

    def flush(self) -> None:
        """Encode the frames still waiting for a full block (a partial block repeats its last frame)."""
        ...

    def check_question(self, question: str) -> None:
        """Raise the :class:`~memstream.streaming.videomem.questions.QuestionError` :meth:`ask`
        would raise (empty or too long, no frame yet), without answering."""
        ...

    def ask(
        self, question: str, sampling: SamplingConfig | None = None, on_text: TokenCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Answer ``question`` about everything stored when it is asked.

        Args:
            question: the question, in words.
            sampling: greedy by default.
            on_text: receives the answer's text piece by piece as it is generated.
            cancel: set from another thread to stop generating before the next token
                (:class:`~memstream.streaming.videomem.generation.GenerationCancelled` is raised).

        Returns:
            The answer, stamped with the stream time it covers (``covered_until_s``, seconds) and
            the frames it was built from (``retrieval``: int64 ``(L, k)`` per layer).
        """
        ...

    def memory_summary(self) -> dict[str, Any]:
        """JSON-serialisable figures: frames seen, bytes held per tier or cluster, tokens per answer."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a later session needs to resume (counters; ReKV's blocks live in its ``store_dir``)."""
        ...

    def close(self) -> None:
        """Encode waiting frames and release storage (flush the disk tier). Called once, at the end."""
        ...


#: Builds a memory around a loaded model from the ``video_memory`` options (each memory reads its
#: own section: ``options.rekv``, ``options.flash_vstream``).
VideoMemoryFactory = Callable[["HFVideoLLM", "VideoMemoryOptions"], VideoMemory]

#: Video memories by name. The built-in ones (``rekv``, ``flash_vstream``) are registered by
#: :mod:`memstream.streaming.videomem.factory`.
VIDEO_MEMORIES: Registry[VideoMemoryFactory] = Registry("video memory")
