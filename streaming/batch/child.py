"""The process that runs one video of a batch: ``memstream run`` that ends when its worker does.

``python -m memstream.streaming.batch.child PARENT_PID run SOURCE --config ... --out ...`` is
``memstream run`` plus a watchdog thread: when the worker that started it is gone (killed, its Ray
task cancelled), the run ends too (exit status 70) instead of writing on, an orphan, beside the
retry of the same video. Linux's ``PR_SET_PDEATHSIG`` would do the same, but only there, and only
from a ``preexec_fn``, which is unsafe in a process with threads (the local pool's workers are
threads).
"""

from __future__ import annotations

import os
import sys
import threading
import time

ORPHANED_EXIT = 70  # EX_SOFTWARE: the worker that owned this run is gone
_POLL_S = 0.2


def _watch(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(ORPHANED_EXIT)
        time.sleep(_POLL_S)


def main(argv: list[str]) -> int:
    parent_pid, *command = argv
    threading.Thread(target=_watch, args=(int(parent_pid),), name="memstream-batch-watchdog", daemon=True).start()
    from memstream.streaming.cli import main as memstream

    return memstream(command)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
