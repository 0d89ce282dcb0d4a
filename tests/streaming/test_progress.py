"""The one progress bar: rates rounded, never ``None``, quiet off a terminal unless forced."""

from __future__ import annotations

from types import SimpleNamespace

from memstream.streaming.progress import _rate_column, format_rate, progress, progress_shown


def test_rates_have_one_decimal_and_no_none() -> None:
    assert format_rate(55.376886645553554, "fps") == "55.4 fps"
    assert format_rate(0.04, "steps/s") == "0.0 steps/s"
    assert format_rate(None, "fps") == ""
    column = _rate_column("fps")
    assert column.render(SimpleNamespace(speed=55.376886645553554, finished_speed=None)).plain == "55.4 fps"
    assert column.render(SimpleNamespace(speed=None, finished_speed=None)).plain == ""
    assert column.render(SimpleNamespace(speed=None, finished_speed=12.04)).plain == "12.0 fps"  # done: rich's final rate


def test_quiet_off_a_terminal_unless_forced(capsys, monkeypatch) -> None:
    monkeypatch.delenv("MEMSTREAM_PROGRESS", raising=False)
    assert not progress_shown()  # pytest's captured stderr is not a terminal
    with progress("quiet", 3) as bar:
        for _ in range(3):
            bar.advance()
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("MEMSTREAM_PROGRESS", "1")
    assert progress_shown() and not progress_shown(False)
    with progress("forced", 3, unit="steps", transient=False) as bar:
        for _ in range(3):
            bar.advance()
        bar.status("loss 0.1234")
    err = capsys.readouterr().err
    assert "forced" in err and "3/3" in err and "loss 0.1234" in err and "None" not in err
