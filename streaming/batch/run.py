"""``memstream batch``: a pipeline preset over many videos, one task per video, resumable.

The batch folder::

    OUT/<id>/           one video's outputs, exactly as ``memstream run --out`` writes them
    OUT/batch.jsonl     one line per video: ok / failed with the reason / skipped (results.py)
    OUT/batch.json      the last run's counts and timing
    OUT/.batch/         the run config every video uses, attempt logs, partial outputs, a lock

Running the same command again resumes: videos whose folder is complete are not run again (a video
done before ``batch.jsonl`` recorded it, after a crash, is recorded as ``skipped``), failed ones are
tried again. A folder started with another config is refused rather than mixed.

Videos run in a local pool of ``workers`` (threads, each supervising one ``memstream run`` process
at a time; see attempt.py for why a process per video), or, with ``ray``, as tasks of a Ray Data
pipeline on a cluster (on_ray.py).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.batch.attempt import BATCH_DIR, BatchPlan
from memstream.streaming.batch.inputs import BatchItem, read_inputs
from memstream.streaming.batch.results import FILE_NAME, ResultLog, record
from memstream.streaming.config import RunConfig, dump_config
from memstream.streaming.configtypes import strict_config
from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import output_lock, prepare_output_dir
from memstream.streaming.progress import progress as progress_bar


@strict_config
@dataclass(frozen=True)
class BatchConfig:
    """How a batch runs (the pipeline itself is a :class:`~memstream.streaming.config.RunConfig`).

    Attributes:
        workers: videos at a time; None: half the CPUs here (at least 1), or as many as the Ray
            cluster has CPUs for.
        retries: runs of a video after one whose process died (killed, crashed); 0: none.
        ray: None to run here; ``auto`` (the running cluster, as ``ray.init(address="auto")``
            finds it) or a cluster address (``HOST:6379``, ``ray://HOST:10001``).
        gpus_per_video: GPUs Ray reserves for each video's task (a SAM 2 or Video-LLM preset);
            0: one CPU instead. Ray only: here every video's process sees the machine's GPUs.
    """

    workers: Annotated[int | None, Field(ge=1)] = None
    retries: Annotated[int, Field(ge=0)] = 2
    ray: str | None = None
    gpus_per_video: Annotated[float, Field(ge=0)] = 0.0

    def __post_init__(self) -> None:
        if self.gpus_per_video and self.ray is None:
            raise ValueError("BatchConfig.gpus_per_video applies to Ray runs (ray=...): a local run uses the GPUs it sees")


def run_batch(
    inputs: str | Path, config: RunConfig, out_dir: str | Path, batch: BatchConfig = BatchConfig(), *,
    overwrite: bool = False, progress: bool = False,
) -> dict[str, Any]:
    """Run ``config`` over every video of ``inputs`` (a folder or a manifest) into ``out_dir``.

    Returns:
        What ``OUT/batch.json`` holds: counts (``ok``, ``failed``, ``skipped``, ``done_before``),
        ``ran`` (videos run by this call), ``wall_s``, ``videos_per_s`` and where things are.

    Raises:
        ConfigError: bad inputs or output folder, a folder holding a batch of another config, Ray
            missing or its cluster unreachable. A bad video is never an error: it is recorded.
    """
    items = read_inputs(inputs)
    root = Path(out_dir).expanduser().resolve()
    started_ray = False
    if batch.ray is not None:
        from memstream.streaming.batch.on_ray import connect

        started_ray = connect(batch.ray)
    try:
        if batch.ray is not None:
            from memstream.streaming.batch.on_ray import check_gpus

            check_gpus(batch.gpus_per_video)
        config_text = dump_config(config)
        _open_folder(root, config_text, overwrite)
        with output_lock(root):  # one command at a time: two batches would run the same videos into one results file
            return _run(items, root, batch, progress)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _run(items: list[BatchItem], root: Path, batch: BatchConfig, progress: bool) -> dict[str, Any]:
    start = time.perf_counter()
    log = ResultLog(root / FILE_NAME)
    previous = log.read()
    keep, now, todo = _plan(items, previous, root)
    log.rewrite(keep)  # drops what runs again, and any torn line of a crash
    for folder in ("attempts", "partial"):
        shutil.rmtree(root / BATCH_DIR / folder, ignore_errors=True)
    for entry in now:
        log.append(entry)
    recorded = {entry["id"] for entry in [*keep, *now]}
    workers = batch.workers or (None if batch.ray else max(1, (os.cpu_count() or 2) // 2))
    # Each video's threads: the CPUs it gets (a Ray task reserves one, as Ray's own OMP_NUM_THREADS says).
    plan = BatchPlan(str(root), batch.retries, 1 if batch.ray else max(1, (os.cpu_count() or 1) // (workers or 1)))
    with progress_bar("memstream batch", len(todo), unit="videos", show=None if progress else False) as bar:
        for entry in _records(todo, plan, batch, workers):
            if entry["id"] in recorded:  # a video Ray ran twice (its task retried after the first ended)
                continue
            log.append(entry)
            recorded.add(entry["id"])
            bar.advance()
            bar.status(f"{entry['id']}: {entry['status']}")
    final = log.read()
    order = [item.id for item in items if item.id in final] + [i for i in final if i not in {item.id for item in items}]
    log.rewrite(final[i] for i in order)
    ran = [e for e in final.values() if e["id"] in {item.id for item in todo}]
    summary = {
        "videos": len(items),
        **{status: sum(1 for i in items if final.get(i.id, {}).get("status") == status) for status in ("ok", "failed", "skipped")},
        "done_before": len(keep),
        "ran": len(ran),
        "wall_s": round(time.perf_counter() - start, 3),
        "videos_per_s": round(sum(1 for e in ran if e["status"] == "ok") / max(time.perf_counter() - start, 1e-9), 3),
        "backend": "ray" if batch.ray else "local",
        "workers": workers,
        "retries": batch.retries,
        "results": str(root / FILE_NAME),
    }
    write_json_atomic(root / "batch.json", summary)
    return summary


def _records(todo: list[BatchItem], plan: BatchPlan, batch: BatchConfig, workers: int | None) -> Iterator[dict[str, Any]]:
    if not todo:
        return iter(())
    if batch.ray is not None:
        from memstream.streaming.batch.on_ray import run_on_ray

        return run_on_ray(todo, plan, workers, batch.gpus_per_video)
    from memstream.streaming.batch.local import run_local

    return run_local(todo, plan, workers or 1)


def _plan(
    items: list[BatchItem], previous: dict[str, dict[str, Any]], root: Path
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[BatchItem]]:
    """(records to keep, records to add now, items to run). A video is done when its folder holds
    ``summary.json``; its earlier ok/skipped line is kept, or a ``skipped`` line is added."""
    keep, now, todo = [], [], []
    ids = {item.id for item in items}
    keep += [entry for key, entry in previous.items() if key not in ids and (root / key / "summary.json").is_file()]
    for item in items:
        done = (root / item.id / "summary.json").is_file() and item.error is None
        earlier = previous.get(item.id)
        if item.error is not None:
            now.append(record(item.id, item.source, "failed", reason=item.error))
        elif done and earlier is not None and earlier["status"] in ("ok", "skipped"):
            keep.append(earlier)
        elif done:
            now.append(record(item.id, item.source, "skipped", out=item.id,
                              reason=f"its outputs were already in {root / item.id} (an earlier run)"))
        else:
            todo.append(item)
    return keep, now, todo


def _open_folder(root: Path, config_text: str, overwrite: bool) -> None:
    """Resume the batch in ``root`` (same config), or start one in a new, empty or ``overwrite``-n folder."""
    marker = root / BATCH_DIR / "config.yaml"
    if marker.is_file() and not overwrite:
        if marker.read_text() != config_text:
            raise ConfigError(
                f"{root} holds a batch run with another config ({marker})",
                "Resume it with the same --config and --set, pass --overwrite to start over, or choose another --out",
            )
        return
    prepare_output_dir(root, overwrite=overwrite)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(config_text)
