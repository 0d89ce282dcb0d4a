"""The threads one memstream process may use for its codecs and image operations.

``MEMSTREAM_THREADS=N`` caps, in the process that reads it: FFmpeg's decoder threads
(:mod:`memstream.streaming.sources`), x264's encoder threads
(:class:`~memstream.streaming.videoio.VideoWriter`), OpenCV's pool and torch's intra-op threads
(:func:`apply_thread_budget`, at the start of ``memstream run``). Unset, each library takes its own
default (one thread per core, or more), which suits one run on a machine of its own. ``memstream
batch`` sets it for each video's process to the CPUs that video gets (``cores // workers`` in the
local pool, the task's one CPU on Ray): with several videos on the same cores, per-video codec
threads only add synchronisation and context switches (every stage already runs on a thread of its
own), and on tiny videos they cost more CPU than they save.
"""

from __future__ import annotations

import os
import sys

from memstream.streaming.errors import ConfigError

ENV = "MEMSTREAM_THREADS"


def thread_budget() -> int | None:
    """``MEMSTREAM_THREADS`` as a positive int, or None when unset or empty.

    Raises:
        ConfigError: it is set to something else.
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{ENV}={raw!r} is not a number of threads", f"Set {ENV} to 1 or more, or unset it")
    return value


def apply_thread_budget() -> int | None:
    """Cap OpenCV's and torch's threads at :func:`thread_budget` for this process (before torch is
    imported: through ``OMP_NUM_THREADS``, unless that is set; after: ``torch.set_num_threads``).
    Returns the budget (None: nothing changed)."""
    budget = thread_budget()
    if budget is None:
        return None
    import cv2

    cv2.setNumThreads(budget)
    os.environ.setdefault("OMP_NUM_THREADS", str(budget))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(budget)
    return budget
