"""Batch runs on a Ray cluster through Ray Data: one row per video, one task per row.

``ray.data.from_items`` holds the videos (one block each, so no task waits behind another's
video), ``Dataset.map`` runs :func:`~memstream.streaming.batch.attempt.process_video` on each with
one CPU reserved and at most ``workers`` videos running at a time, and the driver reads the records
back as they stream in (``iter_rows``), so ``batch.jsonl`` grows while the cluster works.

Each running video has two more queued behind it in Ray itself (:data:`QUEUED_PER_SLOT`), so a
worker that ends a video starts the next at once on the same leased worker process. Without the
queue, Ray Data's scheduler submits a new task only after its ``ray.wait`` returns, and that waits
for *every* running task (up to 0.1 s) before it does: a worker's idle gap between two videos was
55 ms on average with 2 workers on an idle machine, 111-270 ms (median) at load 10-13. With one
queued task a slot it was 16-22 ms there, but when both workers ended their videos close together
both queued tasks started, and the next worker to finish found the queue empty until Ray Data's
loop refilled it (100-260 ms, 1-2 times a batch of 24, once 778 ms). With two (``bench_batch.py``,
24 videos, idle): a mean gap of 12 ms against 36, the longest 88 ms against 778; a batch's wall time
did not differ beyond the machine's noise (16 interleaved batches of 24 each way: medians 9.75 and
9.88 s with two, 10.08 and 9.56 s with one). The queue sits in the driver's Ray core worker (Ray
hands a queued task to whichever leased worker goes idle first), so a deeper queue does not bind
the last videos to one worker while the other idles.

The ``workers`` cap still holds with three times as many tasks submitted: they run in a placement
group of ``workers`` one-CPU bundles. (More workers than the cluster's CPUs: the cluster's CPUs are
the cap and the extra tasks are the queue; no ``workers``: as many as the cluster's CPUs, and twice
as many queued.) A placement group is ready in 2-4 ms on a settled cluster, but one made within
about a second of another's removal (batches back to back from one Python process) waited about 1 s
(Ray 2.60, either strategy): its first placement fails while the removed group's CPUs are on their
way back, and Ray tries again a second later. The CPUs are back in about 0.1 s, so the batch waits
for them first (:func:`_await_free_cpus`, at most :data:`PLACEMENT_RETRY_S`) and its group is then
ready in 2-3 ms.

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
import time
import warnings
from collections.abc import Iterator
from typing import Any

from memstream.streaming.batch.attempt import BatchPlan, safe_process_video
from memstream.streaming.batch.inputs import BatchItem
from memstream.streaming.errors import ConfigError

INSTALL = 'pip install "memstream[ray]"'
_CONNECT_TIMEOUT_S = 5.0

#: Tasks queued in Ray behind each running video (see the module's docstring); GPU videos (long
#: ones) are submitted one per worker as before.
QUEUED_PER_SLOT = 2

#: How long Ray waits before it tries again to place a placement group that did not fit (about a
#: second, measured with Ray 2.60): waiting longer than this for free CPUs would only add time.
PLACEMENT_RETRY_S = 1.0


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
    if gpus_per_video:
        submitted, reserved = workers, None
        resources: dict[str, Any] = {"num_gpus": gpus_per_video}
    else:
        submitted, reserved = plan_slots(workers, int(ray.cluster_resources().get("CPU", 0)))
        if reserved is not None and not _takes_placement_group(ray.__version__):
            submitted, reserved = workers, None  # no queue: the cap holds, the 0.1 s gaps return
        resources = {"num_cpus": 1}
    with _batch_context(ray.data.DataContext.get_current(), submitted if not gpus_per_video else None), \
            _reserved_workers(ray, reserved) as placement:
        with warnings.catch_warnings():  # the placement group's argument (see _reserved_workers), not the user's to act on
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            dataset = ray.data.from_items(rows, override_num_blocks=len(rows)).map(
                _run_row, fn_kwargs={"plan": plan}, **resources, **placement,
                compute=ray.data.TaskPoolStrategy(size=submitted) if submitted else None,
            )
        for row in dataset.iter_rows():
            yield json.loads(row["record"])


def plan_slots(workers: int | None, cluster_cpus: int) -> tuple[int, int | None]:
    """(tasks submitted at a time, one-CPU bundles to reserve for them or None) for ``workers``
    videos at a time on a cluster of ``cluster_cpus`` CPUs, with :data:`QUEUED_PER_SLOT` more
    tasks queued behind each running one.

    Examples:
        >>> plan_slots(2, 2), plan_slots(1, 8), plan_slots(4, 2), plan_slots(None, 8)
        ((6, 2), (3, 1), (4, None), (24, None))
    """
    cluster_cpus = max(1, cluster_cpus)
    if workers is None:  # as many as the cluster runs, the queue beside them
        return cluster_cpus * (1 + QUEUED_PER_SLOT), None
    if workers > cluster_cpus:  # the cluster's CPUs cap them; the extra tasks already queue
        return workers, None
    return workers * (1 + QUEUED_PER_SLOT), workers  # the placement group keeps the cap


def _takes_placement_group(version: str) -> bool:
    """Whether this Ray Data takes a placement group among a map's remote arguments: deprecated in
    2.60, its removal announced for 2.64. Later releases run without the queue (the batch stays
    correct and capped, with Ray Data's gaps between videos) until the cap is ported to them.

    Examples:
        >>> _takes_placement_group("2.60.0"), _takes_placement_group("2.64.0"), _takes_placement_group("3.0.0.dev0")
        (True, False, False)
    """
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) < (2, 64)


@contextlib.contextmanager
def _reserved_workers(ray: Any, bundles: int | None) -> Iterator[dict[str, Any]]:
    """The ``map`` arguments that run the batch's tasks in a placement group of ``bundles``
    one-CPU bundles (removed afterwards), so no more than ``bundles`` videos run at once however
    many tasks are submitted; ``{}`` (Ray's own scheduling) for None."""
    if bundles is None:
        yield {}
        return
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    _await_free_cpus(ray, bundles)
    group = placement_group([{"CPU": 1}] * bundles, strategy="SPREAD")
    try:
        # Ray Data 2.60 takes it among the tasks' remote arguments (deprecated there, to be removed
        # in Ray 2.64: this then needs Ray Data's own way to cap a map's running tasks)
        yield {"scheduling_strategy": PlacementGroupSchedulingStrategy(group)}
    finally:
        remove_placement_group(group)


def _await_free_cpus(ray: Any, cpus: int, limit_s: float = PLACEMENT_RETRY_S, poll_s: float = 0.01) -> bool:
    """Wait until the cluster shows ``cpus`` free CPUs, for at most ``limit_s``; whether it does.

    A placement group that does not fit when it is made is placed again only about a second later,
    so one made while an earlier group's CPUs are still being returned would wait that second; made
    once they are back it is ready at once. A cluster busy with other work is waited on no longer
    than Ray's own retry would take.
    """
    deadline = time.monotonic() + limit_s
    while ray.available_resources().get("CPU", 0) < cpus:
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll_s)
    return True


@contextlib.contextmanager
def _batch_context(context, submitted_cpus: int | None = None) -> Iterator[None]:
    """Ray Data settings for a batch, restored afterwards (the context is the process's):

    * no progress bars: the batch draws its own, in videos;
    * no per-operator resource reservation: it keeps part of the cluster's CPUs for operators
      other than the running one, and a batch has one operator (the map), so on a 2-CPU machine
      it ran one video at a time for the first second of every batch (measured with Ray 2.60:
      2 workers took 3.2 s for 8 half-second tasks with it, 2.45 s without; ideal 2.0);
    * ``submitted_cpus``: the CPUs Ray Data may count as in use, so it submits the queued tasks
      too (its limit is otherwise the cluster's CPUs; Ray's scheduler, not this count, decides
      what runs).
    """
    options = context.execution_options
    saved = context.enable_progress_bars, context.op_resource_reservation_enabled, options.resource_limits
    context.enable_progress_bars, context.op_resource_reservation_enabled = False, False
    if submitted_cpus is not None:
        options.resource_limits = options.resource_limits.copy(cpu=float(submitted_cpus))
    try:
        yield
    finally:
        context.enable_progress_bars, context.op_resource_reservation_enabled, options.resource_limits = saved


def _run_row(row: dict[str, Any], plan: BatchPlan) -> dict[str, Any]:
    """A Ray task: one video; the record as a JSON string (one column of one type in every block)."""
    return {"record": json.dumps(safe_process_video(row["id"], row["source"], plan))}
