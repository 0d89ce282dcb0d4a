"""The runner: order, upstream results, backpressure, errors, stop, threads, bounded counters."""

from __future__ import annotations

import _thread
import signal
import threading
import time
import zlib
from typing import Any

import av
import numpy as np
import pytest

from memstream.streaming import ConfigError, StageError, open_source
from memstream.streaming.pipeline.metrics import LatencyStats
from memstream.streaming.pipeline.protocol import RunContext, Upstream
from memstream.streaming.pipeline.runner import Runner
from memstream.streaming.pipeline.stages import VideoWriterStage
from memstream.streaming.types import Frame, SourceInfo

URI = "synthetic://demo?frames=24&size=64x48"


class Checksum:
    """Returns a CRC of the image; records the order it saw frames in."""

    def __init__(self, name: str = "checksum", delay_s: float = 0.0, fail_at: int | None = None) -> None:
        self.name, self.delay_s, self.fail_at = name, delay_s, fail_at
        self.seen: list[int] = []
        self.events: list[str] = []
        self.thread: str | None = None

    def open(self, context: RunContext) -> None:
        self.events.append("open")
        self.context = context

    def update(self, frame: Frame, upstream: Upstream) -> int:
        if frame.index == self.fail_at:
            raise ValueError(f"boom at {frame.index}")
        self.thread = threading.current_thread().name
        time.sleep(self.delay_s)
        self.seen.append(frame.index)
        return zlib.crc32(frame.rgb.tobytes())

    def close(self) -> None:
        self.events.append("close")

    def summary(self) -> dict[str, Any]:
        return {"seen": len(self.seen)}


class ReadsUpstream(Checksum):
    """Checks that the previous stage's result for the same frame arrives with it."""

    def update(self, frame: Frame, upstream: Upstream) -> bool:
        self.seen.append(frame.index)
        return upstream["checksum"] == zlib.crc32(frame.rgb.tobytes()) and "nothing" not in upstream


class ListSource:
    """A fast in-memory source with an adjustable ``is_live`` flag (runner tests only)."""

    def __init__(self, n: int, live: bool = False) -> None:
        self.info = SourceInfo(uri="list://", num_frames=None if live else n, fps=30.0, is_live=live)
        self.frames = [Frame(i, i / 30, np.full((4, 4, 3), i % 256, np.uint8)) for i in range(n)]

    def __iter__(self):
        return iter(self.frames)

    def close(self) -> None:
        pass


def test_frames_flow_in_order_through_stages_with_upstream_results() -> None:
    first, second = Checksum(), ReadsUpstream("reader")
    seen_by_sink: list[int] = []
    with open_source(URI) as source:
        summary = Runner(source, [first, second], queue_size=2, on_frame=lambda f: seen_by_sink.append(f.index)).run()
    assert first.seen == second.seen == seen_by_sink == list(range(24))
    assert summary.frames_decoded == summary.frames_processed == 24 and summary.frames_dropped == 0
    assert summary.stop_reason == "end_of_stream" and summary.backpressure == "block"
    assert first.events == second.events == ["open", "close"]
    assert first.context.source.num_frames == 24
    stats = summary.as_dict()
    assert stats["stages"]["checksum"]["frames"] == 24 and stats["stages"]["checksum"]["outputs"] == {"seen": 24}
    assert first.thread == "memstream-checksum"


def test_drop_oldest_keeps_up_with_a_live_source_and_counts_drops() -> None:
    slow = Checksum(delay_s=0.01)
    summary = Runner(ListSource(300, live=True), [slow], queue_size=2).run()
    assert summary.backpressure == "drop_oldest"
    assert summary.frames_dropped > 0
    assert summary.frames_processed + summary.frames_dropped == summary.frames_decoded == 300
    assert slow.seen == sorted(slow.seen) and slow.seen[-1] == 299  # order kept, newest frame reached


def test_block_never_drops() -> None:
    slow = Checksum(delay_s=0.002)
    summary = Runner(ListSource(100), [slow], queue_size=1, backpressure="block").run()
    assert summary.frames_dropped == 0 and slow.seen == list(range(100))


def test_stage_error_names_stage_and_frame_and_closes_everything() -> None:
    before = threading.active_count()
    first, failing, after = Checksum("first"), Checksum("failing", fail_at=5), Checksum("after")
    runner = Runner(ListSource(50), [first, failing, after], queue_size=2)
    with pytest.raises(StageError) as info:
        runner.run()
    assert info.value.stage == "failing" and info.value.frame_index == 5
    assert isinstance(info.value.__cause__, ValueError)
    assert "stage 'failing' failed on frame 5" in str(info.value)
    assert all(s.events == ["open", "close"] for s in (first, failing, after))
    assert 5 not in after.seen and after.seen == list(range(len(after.seen)))
    assert runner.summary.stop_reason == "error"
    assert threading.active_count() == before
    assert not [t for t in threading.enumerate() if t.name.startswith("memstream-")]


def test_source_error_mid_stream_is_reraised_after_closing_stages() -> None:
    class Broken(ListSource):
        def __iter__(self):
            yield from self.frames[:3]
            raise OSError("disk vanished")

    stage = Checksum()
    with pytest.raises(OSError, match="disk vanished"):
        Runner(Broken(10), [stage]).run()
    assert stage.seen == [0, 1, 2] and stage.events == ["open", "close"]


def test_stop_from_another_thread_drains_and_reports() -> None:
    stage = Checksum(delay_s=0.005)
    runner = Runner(ListSource(10_000), [stage], queue_size=4)
    timer = threading.Timer(0.1, runner.stop)
    timer.start()
    summary = runner.run()
    timer.join()
    assert summary.stop_reason == "stopped"
    assert 0 < summary.frames_processed < 10_000
    assert summary.frames_processed == summary.frames_decoded == len(stage.seen)  # queued frames finished


class SlowToClose(Checksum):
    """Takes ``close_s`` to close (a video's last frames encoded, a results file written)."""

    def __init__(self, close_s: float) -> None:
        super().__init__("slow_to_close")
        self.close_s, self.closed = close_s, False

    def close(self) -> None:
        time.sleep(self.close_s)
        self.closed = True
        super().close()


def _ctrl_c_after(*delays_s: float) -> list[threading.Timer]:
    """Ctrl-C in this (the main) thread after each delay, as a terminal sends it."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # pytest started as a script's background job (`cmd &`)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # ignores Ctrl-C; interrupt_main would do nothing
    timers = [threading.Timer(delay, _thread.interrupt_main) for delay in delays_s]
    for timer in timers:
        timer.start()
    return timers


@pytest.mark.parametrize("presses", [1, 2])
def test_ctrl_c_while_the_queued_frames_finish_still_closes_every_stage(tmp_path, presses) -> None:
    # Decoding is done at once (the queue holds every frame); the caller waits for the stage. A Ctrl-C
    # there once escaped that wait: no stage was closed (video.mp4 without its index, unreadable).
    stage, writer = Checksum(delay_s=0.05), VideoWriterStage("video_writer", {})
    timers = _ctrl_c_after(*[0.3, 0.5][:presses])
    try:
        summary = Runner(ListSource(20), [writer, stage], queue_size=32, out_dir=tmp_path).run()
    finally:
        for timer in timers:
            timer.join()
    assert summary.stop_reason == "interrupted" and stage.events == ["open", "close"]
    assert summary.frames_processed == len(stage.seen)
    if presses == 1:  # the first Ctrl-C lets the queued frames finish
        assert summary.frames_processed == 20
    else:  # a second drops them
        assert summary.frames_processed < 20
    with av.open(str(tmp_path / "video.mp4")) as container:  # finished, so it decodes
        assert sum(1 for _ in container.decode(video=0)) == writer.summary()["frames_written"] == 20


def test_ctrl_c_while_a_stage_closes_lets_it_finish_and_is_no_stage_error() -> None:
    # Once: the Ctrl-C cut the close short and came out as "stage failed on frame -1: KeyboardInterrupt".
    stage = SlowToClose(close_s=1.0)
    timers = _ctrl_c_after(0.4)
    try:
        summary = Runner(ListSource(2), [stage]).run()
    finally:
        timers[0].join()
    assert stage.closed and summary.stop_reason == "interrupted" and summary.frames_processed == 2


def test_ctrl_c_while_a_stage_opens_is_an_interrupt_not_a_stage_error() -> None:
    class InterruptedOpen(Checksum):
        def open(self, context: RunContext) -> None:
            raise KeyboardInterrupt

    first = Checksum()
    runner = Runner(ListSource(2), [first, InterruptedOpen("second")])
    with pytest.raises(KeyboardInterrupt):
        runner.run()
    assert first.events == ["open", "close"] and runner.summary.stop_reason == "interrupted"


def test_invalid_runner_settings() -> None:
    with pytest.raises(ConfigError, match="unknown backpressure"):
        Runner(ListSource(1), [], backpressure="drop_newest")
    with pytest.raises(ConfigError, match="queue_size"):
        Runner(ListSource(1), [], queue_size=0)
    with pytest.raises(ConfigError, match="unique"):
        Runner(ListSource(1), [Checksum(), Checksum()])


def test_latency_stats_are_exact_where_promised_and_bounded() -> None:
    stats = LatencyStats(capacity=256)
    values = np.random.default_rng(0).uniform(0, 1, 100_000)
    for v in values:
        stats.add(float(v))
    assert stats.count == 100_000 and stats.sample_size == 256
    assert stats.total_s == pytest.approx(values.sum()) and stats.max_s == values.max()
    assert abs(stats.quantile_s(0.5) - 0.5) < 0.1 and abs(stats.quantile_s(0.95) - 0.95) < 0.05
    assert stats.as_dict()["frames"] == 100_000
