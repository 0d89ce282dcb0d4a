"""The ingest status line: redrawn in place on a terminal, plain lines when asked without one, rates
to one decimal and never a rate before there is one."""

from __future__ import annotations

import io

from memstream.streaming.videomem.progress import IngestProgress, progress_wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_on_a_terminal_the_line_is_redrawn_in_place_with_the_rate() -> None:
    stream, clock = Terminal(), Clock()
    progress = IngestProgress(stream, enabled=True, clock=clock)
    assert progress.line() == "[read 0 frames, 0 kept for the memory]"  # no rate yet, never "None"
    progress.advance(0.0, kept=True)  # shown at once, before any time passed: no rate
    for i in range(1, 30):
        clock.now += 0.05
        progress.advance(i / 30, kept=i % 3 == 0)
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r[read 1 frames, 1 kept for the memory, stream at 0.0 s]\033[K")
    assert text.endswith("\r[read 30 frames, 10 kept for the memory, stream at 1.0 s; 20.7 frames/s]\033[K\n")
    assert text.count("\n") == 1 and "None" not in text


def test_without_a_terminal_it_writes_lines_every_two_seconds_only_when_asked() -> None:
    stream, clock = io.StringIO(), Clock()
    assert not progress_wanted("auto", stream) and progress_wanted("always", stream) and not progress_wanted("never", Terminal())
    assert progress_wanted("auto", Terminal())
    progress = IngestProgress(stream, enabled=True, clock=clock)
    for i in range(10):
        progress.advance(float(i), kept=True)
        clock.now += 0.5
    progress.close()
    assert stream.getvalue().splitlines() == [
        "[read 1 frames, 1 kept for the memory, stream at 0.0 s]",
        "[read 5 frames, 5 kept for the memory, stream at 4.0 s; 2.5 frames/s]",
        "[read 9 frames, 9 kept for the memory, stream at 8.0 s; 2.2 frames/s]",
        "[read 10 frames, 10 kept for the memory, stream at 9.0 s; 2.0 frames/s]",
    ]


def test_disabled_it_writes_nothing() -> None:
    stream = Terminal()
    progress = IngestProgress(stream, enabled=False)
    progress.advance(0.0, kept=True)
    progress.close()
    assert stream.getvalue() == ""
