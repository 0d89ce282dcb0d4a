"""Shared by the benchmark scripts: machine facts, the results file, a printed table."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from importlib.metadata import PackageNotFoundError, version
from collections.abc import Iterator
from pathlib import Path

from memstream.streaming.atomic import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path(__file__).resolve().parent / "data"  # generated inputs, git-ignored


def machine() -> dict:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    for package in ("numpy", "decord", "av", "opencv-contrib-python-headless", "torch"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            pass
    return info


def rss_anon_kib() -> int:
    """The process's anonymous resident memory, KiB (``RssAnon``: its own pages, not the page cache
    of memory-mapped files)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    return 0


def save(name: str, payload: dict) -> Path:
    """``results/NAME.json``, renamed into place: a reader (or another run of the same benchmark
    for other agents, which rereads the file before it writes) never sees half a file."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "date": time.strftime("%Y-%m-%d"), "machine": machine(), **payload}
    write_json_atomic(path, payload)
    return path


def print_table(title: str, columns: list[str], rows: list[list]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    Console().print(table)


@contextlib.contextmanager
def local_serve() -> Iterator[dict]:
    """A 2-CPU local Ray cluster with Serve started (no HTTP proxy), shut down afterwards; yields a
    dict whose ``load_average_1min`` (start -> end) is filled in when the block ends."""
    import ray
    from ray import serve

    load = {"start": round(os.getloadavg()[0], 2)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        serve.start(proxy_location="Disabled")
        yield load
    finally:
        serve.shutdown()
        ray.shutdown()
        load["end"] = round(os.getloadavg()[0], 2)
