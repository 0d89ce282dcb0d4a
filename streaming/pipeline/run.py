"""``memstream run``: open the source, build the configured stages, run, write the summary."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import is_dataclass, replace
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.config import RunConfig, dump_config
from memstream.streaming.configtypes import dump
from memstream.streaming.errors import OUTPUT_FIX, ConfigError, MemstreamError
from memstream.streaming.paths import output_lock
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

    ``out_dir`` is held (:func:`memstream.streaming.paths.output_lock`) until the summary is written:
    a second run, track or reconstruct into it, or an ``--overwrite`` of it, is refused meanwhile.

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
    with ExitStack() as held:
        if out_dir is not None:
            try:
                out_dir.mkdir(parents=True, exist_ok=True)
                held.enter_context(output_lock(out_dir))  # run, track, reconstruct: one writer a folder
                with _output_error(out_dir / "config.yaml"):
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
            except BaseException as exc:
                try:
                    _write_summary(out_dir, uri, source.info, runner.summary, runner.context.notices)
                except MemstreamError as unwritten:  # a full disk: the run's own error comes first
                    exc.add_note(f"and the summary was not written: {unwritten}")
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
        with _output_error(out_dir / "summary.json"):
            write_json_atomic(out_dir / "summary.json", data)
    return data


@contextmanager
def _output_error(path: Path) -> Iterator[None]:
    """An OSError writing ``path`` (a full disk, a folder made read-only) as one line with the fix."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}", OUTPUT_FIX) from exc


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for package in ("memstream", "numpy", "opencv-contrib-python-headless", "decord", "av", "torch"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
