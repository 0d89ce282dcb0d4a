"""One video of a batch, on whichever worker runs it: attempts, retries, the final rename.

Each attempt is a child process (:mod:`memstream.streaming.batch.child`, i.e. ``memstream run``)
writing into ``OUT/.batch/partial/<id>.<attempt>/``; when it ends well the folder is renamed to
``OUT/<id>/`` (one rename: a folder named after a video is always complete). A process per video
keeps the worker alive whatever the video does: a decoder crash, the kernel's OOM killer or a
``kill -9`` ends only that process, and its exit status says so exactly (``killed by SIGKILL``).

Retries: a process that dies (a signal, or an exit status ``memstream run`` never uses) is run again,
up to ``retries`` more times. ``memstream run``'s own verdicts are final: status 2 (bad input: not a
video, a bad prompt) and status 1 (a stage failed) are recorded with the run's one ``error:`` line.

Every attempt is logged in ``OUT/.batch/attempts/<id>.jsonl`` (a ``start`` line with the worker's
and the child's pid, an ``end`` line with the outcome) before and after it runs, so attempts are
counted across workers too: when the worker itself dies mid-video (a Ray worker killed; Ray runs
the task again elsewhere), the attempt it started has no ``end`` line and counts as one that died.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memstream.streaming.batch.results import record
from memstream.streaming.threads import ENV as THREADS_ENV

BATCH_DIR = ".batch"  # OUT/.batch: the config, attempt logs, partial outputs
RETRYABLE = "retryable"
_TAIL_BYTES = 4096


@dataclass(frozen=True)
class BatchPlan:
    """What every worker needs besides the video (plain values: it travels to Ray workers).

    Attributes:
        out_dir: the batch folder, absolute; on a cluster, a path every node mounts.
        retries: runs of a video after its first one dies.
        threads_per_video: the threads of each video's process (``OMP_NUM_THREADS`` and
            ``MEMSTREAM_THREADS``, unless the user set them; None: leave them as they are).
    """

    out_dir: str
    retries: int = 2
    threads_per_video: int | None = None

    @property
    def root(self) -> Path:
        return Path(self.out_dir)

    @property
    def config_path(self) -> Path:
        return self.root / BATCH_DIR / "config.yaml"


def process_video(item_id: str, source: str, plan: BatchPlan, stop: threading.Event | None = None) -> dict[str, Any] | None:
    """Run one video to a record of ``batch.jsonl`` (never raises for a video's own failure).

    Returns:
        The record, or None when ``stop`` was set (the batch is being interrupted: the video is
        neither done nor failed, and the next run does it again).
    """
    if not plan.config_path.is_file():  # a cluster node that does not mount OUT
        return record(item_id, source, "failed", reason=f"{socket.gethostname()} cannot see {plan.config_path}: "
                      "the batch folder must be on storage every node mounts at the same path")
    final = plan.root / item_id
    log = AttemptLog(plan.root / BATCH_DIR / "attempts" / f"{item_id}.jsonl")
    started = time.perf_counter()
    while True:
        if (final / "summary.json").is_file():  # done by an earlier run of this task (a Ray retry)
            return _ok(item_id, source, final, log.count(), time.perf_counter() - started)
        if stop is not None and stop.is_set():
            return None
        attempt = log.count() + 1
        if attempt > plan.retries + 1:
            reason = f"failed {attempt - 1} attempts; last: {log.last_reason()}"
            return record(item_id, source, "failed", reason=reason, attempts=attempt - 1, wall_s=time.perf_counter() - started)
        partial = plan.root / BATCH_DIR / "partial" / f"{item_id}.{attempt}"
        outcome, reason = _run_child(source, partial, plan, log, attempt, stop)
        if outcome == "stopped":
            return None
        if outcome == "ok":
            try:
                if final.is_dir() and not (final / "summary.json").is_file():
                    shutil.rmtree(final)  # an incomplete folder of this batch's (its summary was deleted)
                os.rename(partial, final)
            except OSError as exc:
                if not (final / "summary.json").is_file():
                    reason, outcome = f"cannot move the outputs to {final}: {exc}", "failed"
            if outcome == "ok":
                _clean_partials(plan.root, item_id)
                return _ok(item_id, source, final, attempt, time.perf_counter() - started)
        if outcome == "failed":
            return record(item_id, source, "failed", reason=reason, attempts=attempt, wall_s=time.perf_counter() - started)


def safe_process_video(
    item_id: str, source: str, plan: BatchPlan, stop: threading.Event | None = None
) -> dict[str, Any] | None:
    """:func:`process_video`, with an error of the batch's own (a full disk under ``OUT/.batch``)
    recorded as the video's failure instead of ending the batch."""
    try:
        return process_video(item_id, source, plan, stop)
    except Exception as exc:  # noqa: BLE001 (recorded with its type and message, never hidden)
        return record(item_id, source, "failed", reason=f"the batch worker failed: {type(exc).__name__}: {exc}")


def _ok(item_id: str, source: str, final: Path, attempts: int, wall_s: float) -> dict[str, Any]:
    summary = json.loads((final / "summary.json").read_text())
    return record(item_id, source, "ok", out=final.name, attempts=attempts, wall_s=wall_s,
                  frames=summary.get("frames_processed"), fps=summary.get("fps"))


def _run_child(
    source: str, partial: Path, plan: BatchPlan, log: AttemptLog, attempt: int, stop: threading.Event | None
) -> tuple[str, str | None]:
    """One attempt: ``ok``, ``failed`` (final), ``retryable`` or ``stopped``, and the reason."""
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "memstream.streaming.batch.child", str(os.getpid()), "run", source,
               "--config", str(plan.config_path), "--out", str(partial), "--no-progress"]
    env = {**os.environ, "MEMSTREAM_PROGRESS": "0"}
    if plan.threads_per_video is not None:  # what the user set stays (theirs to tune)
        env.setdefault("OMP_NUM_THREADS", str(plan.threads_per_video))
        env.setdefault(THREADS_ENV, str(plan.threads_per_video))  # codecs, OpenCV, torch: memstream.streaming.threads
    output = partial.with_name(partial.name + ".log")
    with open(output, "wb") as sink:
        child = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        log.start(attempt, child.pid)
        code = _wait(child, stop)
    if code is None or (stop is not None and stop.is_set()):  # Ctrl-C reaches the child too (exit 130)
        log.end(attempt, "stopped", "the batch was interrupted")
        return "stopped", None
    outcome, reason = _verdict(code, partial, output)
    log.end(attempt, outcome, reason)
    return outcome, reason


def _wait(child: subprocess.Popen, stop: threading.Event | None) -> int | None:
    """The child's exit status; None (after ending it) when ``stop`` is set first."""
    while True:
        try:
            return child.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            if stop is not None and stop.is_set():
                child.kill()
                child.wait()
                return None


def _verdict(code: int, partial: Path, output: Path) -> tuple[str, str | None]:
    if code == 0 and (partial / "summary.json").is_file():
        return "ok", None
    if code in (1, 2):  # memstream run's own verdict: bad input (2) or a failing stage (1)
        return "failed", _error_line(output) or f"memstream run exited with status {code}"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return RETRYABLE, f"the video's process was killed by {name}"
    return RETRYABLE, f"the video's process exited with status {code}" + (f": {line}" if (line := _error_line(output)) else "")


def _error_line(output: Path) -> str | None:
    """The run's ``error: ...`` line (the CLI prints one), else its last line, from the log's tail."""
    try:
        with open(output, "rb") as handle:
            handle.seek(max(0, output.stat().st_size - _TAIL_BYTES))
            lines = [line.strip() for line in handle.read().decode(errors="replace").splitlines() if line.strip()]
    except OSError:
        return None
    errors = [line for line in lines if line.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    return lines[-1] if lines else None


def _clean_partials(root: Path, item_id: str) -> None:
    for path in (root / BATCH_DIR / "partial").glob(f"{item_id}.*"):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


class AttemptLog:
    """``OUT/.batch/attempts/<id>.jsonl``: a ``start`` and an ``end`` line per attempt of one video.

    Only the worker running the video writes it (one at a time: the driver hands a video to one
    task, and Ray runs a task again only after its worker died).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        found = []
        for line in self.path.read_text().splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def count(self) -> int:
        """Attempts started so far."""
        return sum(1 for e in self.entries() if e.get("event") == "start")

    def last_reason(self) -> str:
        entries = self.entries()
        starts = [e for e in entries if e.get("event") == "start"]
        if not starts:
            return "no attempt"
        last = starts[-1]["attempt"]
        ends = [e for e in entries if e.get("event") == "end" and e.get("attempt") == last]
        if ends:
            return ends[-1].get("reason") or ends[-1].get("outcome", "")
        return f"the worker running attempt {last} ({starts[-1]['host']}, pid {starts[-1]['worker_pid']}) died"

    def start(self, attempt: int, child_pid: int) -> None:
        self._write({"event": "start", "attempt": attempt, "host": socket.gethostname(), "worker_pid": os.getpid(),
                     "child_pid": child_pid, "time": time.time()})

    def end(self, attempt: int, outcome: str, reason: str | None) -> None:
        self._write({"event": "end", "attempt": attempt, "outcome": outcome, "reason": reason, "time": time.time()})

    def _write(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
