"""``memstream run``: open the source, build the configured stages, run, write the summary."""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Any

from memstream.streaming.config import RunConfig, dump_config
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.protocol import Stage
from memstream.streaming.pipeline.runner import Runner, RunSummary
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.sources import open_source
from memstream.streaming.types import SourceInfo


def run_pipeline(uri: str, config: RunConfig, out_dir: Path | None, *, progress: bool = False) -> dict[str, Any]:
    """Run ``config``'s stages over ``uri``; writes ``summary.json`` and ``config.yaml`` to ``out_dir``.

    ``config.yaml`` is the resolved configuration: each stage's options as the stage parsed them,
    defaults included, so a run can be repeated from it with ``--config OUT/config.yaml``.

    The summary is written even when the run is interrupted or a stage fails (with the stop reason),
    so what was processed before stays documented; the error is re-raised afterwards.

    Returns:
        The summary as written to ``summary.json``.
    """
    src = config.source
    stages = [build_stage(stage.name, stage.options) for stage in config.enabled_stages]
    config = resolved(config, stages)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(dump_config(config))
    source = open_source(
        uri, kind=src.kind, stride=src.stride, max_frames=src.max_frames, start_s=src.start_s,
        target_fps=src.target_fps, resize=src.resize, **src.options,
    )
    with source, _progress_bar(source.info, enabled=progress) as advance:
        runner = Runner(
            source, stages, queue_size=config.runner.queue_size, backpressure=config.runner.backpressure,
            out_dir=out_dir, config=dump(config), on_frame=advance,
        )
        try:
            summary = runner.run()
        except BaseException:
            _write_summary(out_dir, uri, source.info, runner.summary, runner.context.notices)
            raise
    return _write_summary(out_dir, uri, source.info, summary, runner.context.notices)


def resolved(config: RunConfig, stages: list[Stage]) -> RunConfig:
    """``config`` with each enabled stage's options replaced by the options the stage parsed
    (a config dataclass or model in its ``options`` attribute), defaults included."""
    parsed = {stage.name: getattr(stage, "options", None) for stage in stages}
    entries = []
    for entry in config.stages:
        options = parsed.get(entry.name) if entry.enabled else None
        if is_dataclass(options) or hasattr(options, "model_dump"):
            entry = replace(entry, options=dump(options))
        entries.append(entry)
    return replace(config, stages=entries)


def _write_summary(
    out_dir: Path | None, uri: str, info: SourceInfo, summary: RunSummary, notices: list[str]
) -> dict[str, Any]:
    data = {
        "source": {"uri": uri, **{k: v for k, v in vars(info).items() if k != "uri"}},
        **summary.as_dict(),
        "notices": list(notices),
        "versions": versions(),
    }
    if out_dir is not None:
        write_json_atomic(out_dir / "summary.json", data)
    return data


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to a temporary file in the same folder, then rename: readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)
    os.replace(tmp, path)


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("memstream", "numpy", "opencv-contrib-python-headless", "decord", "av", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found


class _progress_bar:  # noqa: N801 (used as a context manager)
    """A rich progress bar on stderr when enabled and stderr is a terminal; yields an ``advance(frame)``."""

    def __init__(self, info: SourceInfo, enabled: bool) -> None:
        self.info = info
        self.enabled = enabled and sys.stderr.isatty()
        self._progress = None

    def __enter__(self):
        if not self.enabled:
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from rich.console import Console

        self._progress = Progress(
            TextColumn("[bold]memstream run"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.speed} fps"),
            TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        )
        self._progress.start()
        task = self._progress.add_task("frames", total=self.info.num_frames)
        return lambda frame: self._progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
