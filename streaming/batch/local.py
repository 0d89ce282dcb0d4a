"""The local pool: ``workers`` videos at a time on this machine, no cluster needed.

Each worker is a thread that supervises one video's ``memstream run`` process at a time
(:func:`~memstream.streaming.batch.attempt.process_video`). Threads rather than a
``ProcessPoolExecutor``: the processes that do the work are already one per video, and a process
pool cannot say which of its videos a dead worker was running (Python 3.11's ``BrokenProcessPool``
fails every running future and terminates the other workers), where a supervised child's exit
status names the video and the signal exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any

from memstream.streaming.batch.attempt import BatchPlan, safe_process_video
from memstream.streaming.batch.inputs import BatchItem


def run_local(items: list[BatchItem], plan: BatchPlan, workers: int) -> Iterator[dict[str, Any]]:
    """The records of ``items`` as they finish. Closing the iterator early (Ctrl-C, an error in the
    caller) ends the running videos' processes and starts no more; those videos are left unrecorded."""
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="memstream-batch")
    futures: list[Future] = [pool.submit(safe_process_video, item.id, item.source, plan, stop) for item in items]
    try:
        for future in as_completed(futures):
            entry = future.result()
            if entry is not None:
                yield entry
    finally:
        stop.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True)
