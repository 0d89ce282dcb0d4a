"""Moves frames from a source through stages: one thread per stage, bounded queues between them.

::

    caller's thread (decode) ──q0──► stage 1 thread ──q1──► stage 2 thread ──► ... ──► on_frame (last stage's thread)

Each stage sees frames in stream order, one at a time; stages overlap across frames (pipelining).
Decoding runs in the caller's thread, so a run without stages starts no thread at all and Ctrl-C
lands where decoding stops.
Backpressure on the first queue: ``block`` makes decoding wait (files: nothing is lost),
``drop_oldest`` discards the oldest waiting frame so live sources stay real-time; ``auto`` picks
``drop_oldest`` for live sources and ``block`` otherwise. Later queues always block.

Stopping: at the end of the stream every queued frame is processed. :meth:`Runner.stop` (or Ctrl-C
in the caller's thread) stops decoding and lets the frames already queued finish, so stage outputs
stay consistent; a second Ctrl-C drops the queued frames instead. Either way every opened stage is
closed, in a thread Ctrl-C does not reach, so its files are finished (a video playable, a results
file whole) however late the Ctrl-C comes. An exception in a stage aborts at once: no further frame
is processed, every opened stage is closed, and :class:`StageError` names the stage and the frame
(an input error a stage raises itself, a :class:`MemstreamError` such as a bad prompt, is re-raised
as it is). An error of the source (e.g. a video truncated mid-stream) stops decoding, lets the
frames decoded before it go through every stage, closes the stages, and is then re-raised as it is.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memstream.streaming.errors import ConfigError, MemstreamError, StageError
from memstream.streaming.pipeline.metrics import LatencyStats
from memstream.streaming.pipeline.protocol import RunContext, Stage, Upstream
from memstream.streaming.sources.protocol import Source
from memstream.streaming.types import Frame

BACKPRESSURE = ("auto", "block", "drop_oldest")
_END = object()
_POLL_S = 0.05


@dataclass
class RunSummary:
    """What a run did; ``as_dict`` is what ``summary.json`` holds."""

    frames_decoded: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    wall_s: float = 0.0
    stop_reason: str = "end_of_stream"
    backpressure: str = "block"
    decode: LatencyStats = field(default_factory=LatencyStats)
    stages: dict[str, LatencyStats] = field(default_factory=dict)
    queue_wait: dict[str, LatencyStats] = field(default_factory=dict)
    stage_summaries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "frames_decoded": self.frames_decoded,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "wall_s": round(self.wall_s, 6),
            "fps": round(self.fps, 2),
            "stop_reason": self.stop_reason,
            "backpressure": self.backpressure,
            "decode": self.decode.as_dict(),
            "stages": {
                name: {**stats.as_dict(), "queue_wait_mean_ms": self.queue_wait[name].as_dict()["mean_ms"],
                       **({"outputs": self.stage_summaries[name]} if self.stage_summaries.get(name) else {})}
                for name, stats in self.stages.items()
            },
        }


class Runner:
    """Runs ``stages`` over ``source`` until the stream ends, :meth:`stop` is called, or a stage fails.

    Args:
        source: an opened source; the runner iterates it but does not close it.
        stages: in pipeline order; names must be unique.
        queue_size: capacity of each queue between threads (frames).
        backpressure: ``auto``, ``block`` or ``drop_oldest`` (see the module docstring).
        out_dir: passed to stages through :class:`RunContext`.
        config: the resolved configuration, passed to stages.
        on_frame: called after each frame leaves the last stage (progress), from that stage's thread.

    Example:
        >>> from memstream.streaming import open_source
        >>> with open_source("synthetic://demo?frames=4&size=64x48") as source:
        ...     summary = Runner(source, []).run()
        >>> summary.frames_processed
        4
    """

    def __init__(
        self,
        source: Source,
        stages: Sequence[Stage],
        *,
        queue_size: int = 8,
        backpressure: str = "auto",
        out_dir: Path | None = None,
        config: dict[str, Any] | None = None,
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        if backpressure not in BACKPRESSURE:
            raise ConfigError(f"unknown backpressure {backpressure!r}", f"Use one of: {', '.join(BACKPRESSURE)}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}", "Use e.g. 8")
        names = [stage.name for stage in stages]
        if len(set(names)) != len(names):
            raise ConfigError(f"stage names must be unique, got {names}", "Give each stage its own name")
        self.source = source
        self.stages = list(stages)
        self.queue_size = queue_size
        if backpressure == "auto":
            backpressure = "drop_oldest" if source.info.is_live else "block"
        self.summary = RunSummary(backpressure=backpressure)
        self.context = RunContext(source.info, out_dir, config or {})
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._queues: list[queue.Queue] = []
        self._threads: list[threading.Thread] = []

    def stop(self) -> None:
        """Stop decoding; frames already queued still go through every stage. Thread-safe."""
        self._stop.set()

    def run(self) -> RunSummary:
        """Run to completion and return the summary; raises StageError / the source's error."""
        opened = self._open_stages()
        start = time.perf_counter()
        try:
            self._start_threads()
            try:
                self._decode_loop()
            except KeyboardInterrupt:
                self._interrupted()
        finally:
            self._finish(opened, start)
        if self._error is not None:
            self.summary.stop_reason = "error"
            raise self._error
        return self.summary

    def _interrupted(self) -> None:
        """Ctrl-C: the first stops decoding (the queued frames still finish), a later one drops them."""
        if self.summary.stop_reason == "interrupted":
            self._abort.set()
        self.summary.stop_reason = "interrupted"
        self.stop()

    def _finish(self, opened: list[Stage], start: float) -> None:
        """Join the stage threads and close the stages, in a thread of their own.

        Ctrl-C (and the CLI's SIGTERM) lands in the caller's thread only, so here it cannot leave a
        stage unclosed (a video without its index) or half closed, nor turn into a stage's error: a
        Ctrl-C while the queued frames finish counts as one during decoding (:meth:`_interrupted`),
        one while the stages close is recorded, and closing goes on.
        """
        done = threading.Event()

        def join_and_close() -> None:
            try:
                self._join()
                self.summary.wall_s = time.perf_counter() - start
                self._close_stages(opened)
            except BaseException as exc:  # this thread's own failure reaches run(), not the thread's hook
                self._fail(exc)
            finally:
                done.set()

        if not opened:  # no stage, no thread: nothing a Ctrl-C could cut short
            join_and_close()
            return
        threading.Thread(target=join_and_close, name="memstream-close", daemon=True).start()
        # Waiting on an Event, in bounded steps: Ctrl-C is seen on every platform, and never inside
        # Thread.join, which Python 3.11 leaves saying "stopped" for a thread that still runs.
        while not done.is_set():
            try:
                done.wait(_POLL_S)
            except KeyboardInterrupt:
                self._interrupted()

    # -- threads -----------------------------------------------------------------------------
    def _open_stages(self) -> list[Stage]:
        opened: list[Stage] = []
        for stage in self.stages:
            try:
                stage.open(self.context)
            except BaseException as exc:
                self._close_stages(opened)
                if isinstance(exc, KeyboardInterrupt):
                    self.summary.stop_reason = "interrupted"
                    raise
                if isinstance(exc, MemstreamError):  # bad input the user can fix: reported as it is
                    raise
                raise StageError(stage.name, -1, exc) from exc
            opened.append(stage)
            self.summary.stages[stage.name] = LatencyStats()
            self.summary.queue_wait[stage.name] = LatencyStats()
        return opened

    def _close_stages(self, opened: list[Stage]) -> None:
        for stage in opened:
            try:
                stage.close()
                summary = getattr(stage, "summary", None)
                self.summary.stage_summaries[stage.name] = summary() if callable(summary) else {}
            except BaseException as exc:  # recorded, never hidden: the first error is raised by run()
                self._fail(StageError(stage.name, -1, exc), exc)

    def _start_threads(self) -> None:
        self._queues = [queue.Queue(self.queue_size) for _ in self.stages]
        self._threads = []
        for i, stage in enumerate(self.stages):
            self._threads.append(
                threading.Thread(target=self._stage_loop, args=(i, stage), name=f"memstream-{stage.name}", daemon=True)
            )
        for thread in self._threads:
            thread.start()

    def _fail(self, error: BaseException, cause: BaseException | None = None, *, drain: bool = False) -> None:
        """Record the first error and stop; ``drain`` lets queued frames finish (source errors)."""
        with self._error_lock:
            if self._error is None:
                if cause is not None and error is not cause:
                    error.__cause__ = cause
                self._error = error
        if not drain:
            self._abort.set()
        self._stop.set()

    def _put(self, q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the run aborts; False if abandoned."""
        while not self._abort.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._abort.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END

    def _decode_loop(self) -> None:
        """Iterate the source in the caller's thread and hand frames to the first stage (or deliver)."""
        first = self._queues[0] if self._queues else None
        drop = self.summary.backpressure == "drop_oldest"
        try:
            frames = iter(self.source)
            while not self._stop.is_set():
                started = time.perf_counter()
                frame = next(frames, _END)
                if frame is _END:
                    break
                self.summary.decode.add(time.perf_counter() - started)
                self.summary.frames_decoded += 1
                if first is None:
                    self._deliver(frame)
                elif drop:
                    self._put_dropping_oldest(first, (frame, Upstream()))
                elif not self._put(first, (frame, Upstream())):
                    return
        except Exception as exc:
            # The frames decoded before the failure still go through every stage.
            self._fail(exc, drain=True)
        finally:
            if first is not None:
                self._put(first, _END)

    def _put_dropping_oldest(self, q: queue.Queue, item: Any) -> None:
        while True:
            try:
                q.put_nowait(item)
                return
            except queue.Full:
                try:
                    q.get_nowait()
                    self.summary.frames_dropped += 1
                except queue.Empty:
                    pass

    def _stage_loop(self, i: int, stage: Stage) -> None:
        inbox = self._queues[i]
        outbox = self._queues[i + 1] if i + 1 < len(self._queues) else None
        stats, waits = self.summary.stages[stage.name], self.summary.queue_wait[stage.name]
        frame_index = -1
        try:
            while True:
                waited = time.perf_counter()
                item = self._get(inbox)
                if item is _END:
                    break
                frame, upstream = item
                frame_index = frame.index
                started = time.perf_counter()
                waits.add(started - waited)
                result = stage.update(frame, upstream)
                stats.add(time.perf_counter() - started)
                if outbox is None:
                    self._deliver(frame)
                elif not self._put(outbox, (frame, upstream.with_result(stage.name, result))):
                    return
        except BaseException as exc:
            self._fail(exc if _user_error(exc) else StageError(stage.name, frame_index, exc), exc)
        finally:
            if outbox is not None:
                self._put(outbox, _END)

    def _deliver(self, frame: Frame) -> None:
        """A frame has left the last stage; called from one thread only (the last stage's, or the caller's)."""
        self.summary.frames_processed += 1
        if self.on_frame is not None:
            self.on_frame(frame)

    def _join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)
            if thread.is_alive():
                self._fail(RuntimeError(f"thread {thread.name} did not stop within 30 s"))
        if self._stop.is_set() and self.summary.stop_reason == "end_of_stream" and self._error is None:
            self.summary.stop_reason = "stopped"


def _user_error(exc: BaseException) -> bool:
    """An input error a stage raised (a bad prompt, a missing file): it already says what to fix."""
    return isinstance(exc, MemstreamError) and not isinstance(exc, StageError)
