"""``memstream run``: open the source, build the configured stages, run, write the summary."""

from __future__ import annotations

import platform
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.config import RunConfig, dump_config
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.protocol import Stage
from memstream.streaming.pipeline.runner import Runner, RunSummary
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.progress import progress as progress_bar
from memstream.streaming.sources import open_source
from memstream.streaming.types import SourceInfo


def run_pipeline(
    uri: str, config: RunConfig, out_dir: Path | None, *, progress: bool = False, label: str = "memstream run"
) -> dict[str, Any]:
    """Run ``config``'s stages over ``uri``; writes ``summary.json`` and ``config.yaml`` to ``out_dir``.

    ``progress`` shows a bar named ``label`` on stderr when it is a terminal (see
    :mod:`memstream.streaming.progress`). ``out_dir`` is created if needed; the commands check it
    first with :func:`memstream.streaming.paths.prepare_output_dir`. ``config.yaml`` is the resolved
    configuration: each stage's options as the stage parsed them, defaults included, so a run can be
    repeated from it with ``--config OUT/config.yaml``.

    The summary is written even when the run is interrupted or a stage fails (with the stop reason),
    so what was processed before stays documented; the error is re-raised afterwards.

    Returns:
        The summary as written to ``summary.json``.
    """
    src = config.source
    stages = [build_stage(stage.name, stage.options) for stage in config.enabled_stages]
    config = resolved(config, stages)
    source = open_source(  # before anything is written: a wrong path leaves the output folder empty
        uri, kind=src.kind, stride=src.stride, max_frames=src.max_frames, start_s=src.start_s,
        target_fps=src.target_fps, resize=src.resize, **src.options,
    )
    if out_dir is not None:
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "config.yaml").write_text(dump_config(config))
        except BaseException:
            source.close()
            raise
    bar = progress_bar(label, source.info.num_frames, unit="frames", show=None if progress else False)
    with source, bar as shown:
        runner = Runner(
            source, stages, queue_size=config.runner.queue_size, backpressure=config.runner.backpressure,
            out_dir=out_dir, config=dump(config), on_frame=lambda frame: shown.advance(),
        )
        try:
            summary = runner.run()
        except BaseException:
            _write_summary(out_dir, uri, source.info, runner.summary, runner.context.notices)
            raise
    return _write_summary(out_dir, uri, source.info, summary, runner.context.notices)


def resolved(config: RunConfig, stages: list[Stage]) -> RunConfig:
    """``config`` with each enabled stage's options replaced by the options the stage parsed
    (the config dataclass in its ``options`` attribute), defaults included."""
    parsed = {stage.name: getattr(stage, "options", None) for stage in stages}
    entries = []
    for entry in config.stages:
        options = parsed.get(entry.name) if entry.enabled else None
        if is_dataclass(options):
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




def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("memstream", "numpy", "opencv-contrib-python-headless", "decord", "av", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
