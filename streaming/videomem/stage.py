"""The ``video_memory`` stage of ``memstream run``: a Video-LLM's KV memory of the stream.

Registered through the ``memstream.stages`` entry point. Frames are sub-sampled to ``sample_fps``
(ReKV evaluates at 0.5-1 fps, by the sources' own ``target_fps`` rule) and pushed into the memory
chosen by ``memory`` (a name in ``VIDEO_MEMORIES``); questions listed in the options are asked
when the stream reaches their time, and each answer is appended to ``OUT/answers.jsonl`` as soon as
it is generated. Each frame's result, for later stages, is a
:class:`~memstream.streaming.videomem.types.VideoMemoryStep` (the answers given on it, and the
memory's newest frame in the decoder's space: the bank stage's cognitive token). Other threads may
call ``stage.memory.ask(...)`` at any time while the run goes on.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from memstream.streaming.configtypes import parse
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.sources.protocol import SourceOptions
from memstream.streaming.sources.schedule import FrameSchedule
from memstream.streaming.types import Frame
from memstream.streaming.videomem.factory import build_memory
from memstream.streaming.videomem.options import VideoMemoryOptions
from memstream.streaming.videomem.protocol import VideoMemory
from memstream.streaming.videomem.types import Answer, VideoMemoryStep


def answer_record(answer: Answer, asked_at_s: float | None = None) -> dict[str, Any]:
    """An answer as one JSON-serialisable line; ``asked_at_s``, when given, is the stream time the
    question was meant for (``covered_until_s`` is earlier when the stream ended before it)."""
    record = {
        "question": answer.question,
        "answer": answer.text,
        "covered_until_s": answer.covered_until_s,
        "frames_seen": answer.frames_seen,
        "retrieved_frames": answer.retrieval.frames(),
        "retrieval": answer.retrieval.method,
        "time_to_first_token_s": round(answer.time_to_first_token_s, 4),
        "total_s": round(answer.total_s, 4),
    }
    if asked_at_s is not None:
        record["asked_at_s"] = asked_at_s
    return record


def frame_schedule(sample_fps: float | None) -> FrameSchedule:
    """Which frames the memory is given: at most ``sample_fps`` per second of stream time, by the
    rule every source applies for ``target_fps`` (one rule, one tolerance); all when None."""
    return FrameSchedule(SourceOptions(target_fps=sample_fps))


class VideoMemoryStage:
    """Feeds sampled frames to the video memory and answers scheduled questions."""

    def __init__(self, name: str, options: Mapping[str, Any]) -> None:
        self.name = name
        self.options: VideoMemoryOptions = parse(VideoMemoryOptions, options, f"stages.{name}.options")
        self.memory: VideoMemory | None = None
        self._schedule = frame_schedule(self.options.sample_fps)
        self._questions = sorted(self.options.questions, key=lambda q: q.at_s)
        self._answers_path: Path | None = None
        self._answers: list[dict[str, Any]] = []
        self._frames_kept = 0

    def open(self, context: RunContext) -> None:
        if not self._questions:
            context.notice(
                self.name,
                f"no questions to answer, so no {self.options.answers_file} is written. Add some, e.g. "
                f"--set 'stages.{self.name}.options.questions=[{{\"at_s\": 30, \"text\": \"What happened?\"}}]', "
                "or ask with: memstream ask VIDEO \"QUESTION\" --model ...",
            )
        self.memory = build_memory(self.options)
        if context.out_dir is not None and self._questions:
            self._answers_path = Path(context.out_dir) / self.options.answers_file
            self._answers_path.parent.mkdir(parents=True, exist_ok=True)
            self._answers_path.write_text("")

    def update(self, frame: Frame, upstream: Upstream) -> VideoMemoryStep:
        assert self.memory is not None, "open() was not called"
        stored = self._schedule.keep(frame.timestamp_s)
        if stored:
            self.memory.update(frame)
            self._frames_kept += 1
        due = []
        while self._questions and self._questions[0].at_s <= frame.timestamp_s and self._frames_kept:
            question = self._questions.pop(0)
            due.append(self._ask(question.text, question.at_s))
        return VideoMemoryStep(frame.index, stored, getattr(self.memory, "last_hidden", None), tuple(due))

    def _ask(self, question: str, at_s: float) -> Answer:
        answer = self.memory.ask(question, self.options.generation)
        record = answer_record(answer, asked_at_s=at_s)
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
            question = self._questions.pop(0)
            self._ask(question.text, question.at_s)
        self.memory.close()

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"frames_in_memory": self._frames_kept, "answers": len(self._answers)}
        if self.memory is not None:
            summary["memory"] = self.memory.memory_summary()
        return summary


def make_stage(name: str, options: Mapping[str, Any]) -> VideoMemoryStage:
    """Entry point of the ``memstream.stages`` group."""
    return VideoMemoryStage(name, options)
