"""Batch runs on a Ray cluster through Ray Data: one row per video, one task per row.

``ray.data.from_items`` holds the videos (one block each, so no task waits behind another's
video), ``Dataset.map`` runs :func:`~memstream.streaming.batch.attempt.process_video` on each with
one CPU reserved and at most ``workers`` tasks at a time, and the driver reads the records back as
they stream in (``iter_rows``), so ``batch.jsonl`` grows while the cluster works.

Failures: a video's process that dies is retried by the worker itself (attempt.py). A worker that
dies is Ray's: Ray Data runs the task again (its default for tasks is to retry system failures
without limit), and the new run of :func:`process_video` counts the dead worker's attempt from the
attempt log on the shared folder, so the video still ends after ``retries`` more runs.

On a real cluster the inputs and the batch folder must sit at the same path on every node (NFS, a
mounted bucket): a node that cannot see the folder records its video as failed and says so.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

from memstream.streaming.batch.attempt import BatchPlan, safe_process_video
from memstream.streaming.batch.inputs import BatchItem
from memstream.streaming.errors import ConfigError

INSTALL = 'pip install "memstream[ray]"'
_CONNECT_TIMEOUT_S = 5.0


def import_ray() -> Any:
    """``ray`` with Ray Data, or one clear error saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--ray needs Ray, which is not installed ({exc})", f"Install it with {INSTALL}, or leave out --ray") from exc
    return ray


def connect(address: str) -> bool:
    """Connect this process to the cluster at ``address`` (``auto``: the running one); True when
    this call connected (the caller disconnects), False when Ray was already initialised here.

    Raises:
        ConfigError: Ray is missing, or no cluster answers at ``address``.
    """
    ray = import_ray()
    fix = "Start one with `ray start --head` (or pass its HOST:PORT), or leave out --ray to run on this machine"
    if address != "auto":
        _check_reachable(address, fix)
    if ray.is_initialized():  # a notebook or a test that started Ray itself: used as it is
        return False
    try:
        ray.init(address=address, log_to_driver=False, logging_level="WARNING")
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot connect to a Ray cluster at {address!r}: {str(exc).splitlines()[0]}", fix) from exc
    return True


def _check_reachable(address: str, fix: str) -> None:
    """A TCP connection to ``HOST:PORT`` first: ``ray.init`` retries an unreachable GCS for a minute."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r} is not HOST:PORT, ray://HOST:PORT or auto", fix)
    try:
        socket.create_connection((host, int(port)), timeout=_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address}: {exc.strerror or exc}", fix) from exc


def check_gpus(gpus_per_video: float) -> None:
    """Refuse a GPU request the connected cluster cannot meet (Ray would wait for it forever)."""
    if not gpus_per_video:
        return
    have = import_ray().cluster_resources().get("GPU", 0)
    if have < gpus_per_video:
        raise ConfigError(f"--gpus-per-video {gpus_per_video:g}, but the Ray cluster has {have:g} GPUs",
                          "Connect to a cluster with GPU nodes, or leave out --gpus-per-video")


def run_on_ray(
    items: list[BatchItem], plan: BatchPlan, workers: int | None, gpus_per_video: float = 0.0
) -> Iterator[dict[str, Any]]:
    """The records of ``items`` as their tasks finish (any order); each task reserves one CPU, or
    ``gpus_per_video`` GPUs when that is set."""
    ray = import_ray()
    rows = [{"id": item.id, "source": item.source} for item in items]
    with _batch_context(ray.data.DataContext.get_current()):
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
            _run_row, fn_kwargs={"plan": plan}, **({"num_gpus": gpus_per_video} if gpus_per_video else {"num_cpus": 1}),
            compute=ray.data.TaskPoolStrategy(size=workers) if workers else None,
        )
        for row in dataset.iter_rows():
            yield json.loads(row["record"])


@contextlib.contextmanager
def _batch_context(context) -> Iterator[None]:
    """Ray Data settings for a batch, restored afterwards (the context is the process's):

    * no progress bars: the batch draws its own, in videos;
    * no per-operator resource reservation: it keeps part of the cluster's CPUs for operators
      other than the running one, and a batch has one operator (the map), so on a 2-CPU machine
      it ran one video at a time for the first second of every batch (measured with Ray 2.60:
      2 workers took 3.2 s for 8 half-second tasks with it, 2.45 s without; ideal 2.0).
    """
    saved = context.enable_progress_bars, context.op_resource_reservation_enabled
    context.enable_progress_bars, context.op_resource_reservation_enabled = False, False
    try:
        yield
    finally:
        context.enable_progress_bars, context.op_resource_reservation_enabled = saved


def _run_row(row: dict[str, Any], plan: BatchPlan) -> dict[str, Any]:
    """A Ray task: one video; the record as a JSON string (one column of one type in every block)."""
    return {"record": json.dumps(safe_process_video(row["id"], row["source"], plan))}
