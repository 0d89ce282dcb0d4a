"""The ``video_memory`` stage of ``memstream run``: a Video-LLM's KV memory of the stream.

Registered through the ``memstream.stages`` entry point. Frames are sub-sampled to ``sample_fps``
(ReKV evaluates at 0.5-1 fps) and pushed into the memory; questions listed in the options are asked
when the stream reaches their time, and each answer is appended to ``OUT/answers.jsonl`` as soon as
it is generated. Other threads may call ``stage.memory.ask(...)`` at any time while the run goes on.

Example config::

    stages:
      - name: video_memory
        options:
          model: llava-hf/llava-onevision-qwen2-0.5b-ov-hf
          rekv: {window_frames: 76, topk: 64}
          questions: [{at_s: 30, text: "What did the person pick up?"}]
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.stages import parse_options
from memstream.streaming.types import Frame
from memstream.streaming.videomem.generation import SamplingConfig
from memstream.streaming.videomem.options import TINY_RANDOM, VideoMemoryOptions
from memstream.streaming.videomem.types import Answer

log = logging.getLogger(__name__)


def load_model(options: VideoMemoryOptions):
    """The Video-LLM of the options (``tiny-random`` is built in a temporary directory).

    Models that time frames by their rate (Qwen2.5-VL spaces temporal positions by seconds) are
    told the rate the memory samples at, ``sample_fps``.
    """
    llm = _load(options)
    if options.sample_fps is not None and hasattr(llm, "frames_per_second"):
        llm.frames_per_second = float(options.sample_fps)
    return llm


def _load(options: VideoMemoryOptions):
    from memstream.streaming.videomem.adapters import load_video_llm

    if options.model == TINY_RANDOM:
        from memstream.streaming.videomem.tiny import build_tiny_llava_onevision

        log.warning("model tiny-random has random weights: its answers are noise")
        path = build_tiny_llava_onevision(Path(tempfile.mkdtemp(prefix="memstream-tiny-")))
        return load_video_llm(str(path), device=options.device, dtype=options.dtype)
    return load_video_llm(options.model, device=options.device, dtype=options.dtype)


def memory_for(llm, options: VideoMemoryOptions):
    """The configured video memory (ReKV or Flash-VStream) around a loaded model."""
    if options.memory == "flash_vstream":
        from memstream.streaming.videomem.flash.video_memory import FlashVStreamMemory

        return FlashVStreamMemory(llm, options.flash_vstream.to_config())
    from memstream.streaming.videomem.rekv import ReKVMemory

    return ReKVMemory(llm, options.rekv.to_config())


def build_memory(options: VideoMemoryOptions):
    """The configured video memory around a freshly loaded model."""
    if options.memory == "flash_vstream":
        options.flash_vstream.to_config()  # a bad option fails before the model loads
    else:
        options.rekv.to_config()
    return memory_for(load_model(options), options)


def answer_record(answer: Answer) -> dict[str, Any]:
    """An answer as one JSON-serialisable line."""
    return {
        "question": answer.question,
        "answer": answer.text,
        "covered_until_s": answer.covered_until_s,
        "frames_seen": answer.frames_seen,
        "retrieved_frames": answer.retrieval.frames(),
        "retrieval": answer.retrieval.method,
        "time_to_first_token_s": round(answer.time_to_first_token_s, 4),
        "total_s": round(answer.total_s, 4),
    }


class FrameSampler:
    """Keeps one frame per ``1 / fps`` seconds of stream time (all frames when fps is None)."""

    def __init__(self, fps: float | None) -> None:
        self.period_s = None if fps is None else 1.0 / fps
        self._next_s: float | None = None

    def keep(self, frame: Frame) -> bool:
        if self.period_s is None:
            return True
        t = frame.timestamp_s
        if self._next_s is not None and t < self._next_s - 1e-9:
            return False
        self._next_s = (t if self._next_s is None else self._next_s) + self.period_s
        while self._next_s <= t + 1e-9:  # a gap in the stream: stay on the grid
            self._next_s += self.period_s
        return True


class VideoMemoryStage:
    """Feeds sampled frames to the video memory and answers scheduled questions."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options: VideoMemoryOptions = parse_options(VideoMemoryOptions, name, options)
        self.memory = None
        self._sampler = FrameSampler(self.options.sample_fps)
        self._questions = sorted(self.options.questions, key=lambda q: q.at_s)
        self._answers_path: Path | None = None
        self._answers: list[dict[str, Any]] = []
        self._frames_kept = 0
        self._last_time_s = 0.0

    def open(self, context: RunContext) -> None:
        self.memory = build_memory(self.options)
        if context.out_dir is not None:
            self._answers_path = Path(context.out_dir) / self.options.answers_file
            self._answers_path.parent.mkdir(parents=True, exist_ok=True)
            self._answers_path.write_text("")

    def update(self, frame: Frame, upstream: Upstream) -> list[Answer] | None:
        assert self.memory is not None, "open() was not called"
        self._last_time_s = frame.timestamp_s
        if self._sampler.keep(frame):
            self.memory.update(frame)
            self._frames_kept += 1
        due = []
        while self._questions and self._questions[0].at_s <= frame.timestamp_s and self._frames_kept:
            due.append(self._ask(self._questions.pop(0).text))
        return due or None

    def _ask(self, question: str) -> Answer:
        answer = self.memory.ask(question, SamplingConfig(**self.options.generation.model_dump()))
        record = answer_record(answer)
        self._answers.append(record)
        if self._answers_path is not None:
            with self._answers_path.open("a") as handle:  # one whole line per answer
                handle.write(json.dumps(record) + "\n")
        return answer

    def close(self) -> None:
        if self.memory is None:
            return
        # Questions timed after the last frame are answered on everything seen.
        while self._questions and self._frames_kept:
            self._ask(self._questions.pop(0).text)
        self.memory.close()

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"frames_in_memory": self._frames_kept, "answers": len(self._answers)}
        if self.memory is not None:
            summary["memory"] = self.memory.memory_summary()
        return summary


def make_stage(name: str, options: Mapping[str, Any]) -> VideoMemoryStage:
    """Entry point of the ``memstream.stages`` group."""
    return VideoMemoryStage(name, options)
