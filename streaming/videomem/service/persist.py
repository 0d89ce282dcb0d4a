"""Streams that outlive the server process: ``memstream serve --store DIR``.

Layout of ``DIR``::

    service.json            {"format": "memstream.serve.store", "version": 1,
                             "model": NAME, "model_fingerprint": HASH}   written once
    streams/ID/stream.json  the stream's record (:class:`StreamRecord`), replaced atomically
    streams/ID/kv/          its video memory's block store (ReKV's crash-safe tiered store)
    trash/                  deleted streams on their way out (a crash mid-delete leaves them here;
                            the next start removes them)
    leases/ID.lock          flock'd by the one process holding the stream's memory (:class:`Lease`)
    leases/ID.wanted.TOKEN  one per process waiting for that lease (a handoff request)
    store.id                a random id, written once by ``serve --ray`` (:meth:`StreamStore.identify`):
                            each replica checks it finds the same store at the same path

A stream exists once its ``stream.json`` does (written before its memory is made), and is gone
once its folder has been renamed into ``trash/`` (one atomic rename), so a ``kill -9`` at any point
leaves each stream either listed with what its store committed, or deleted. The block store keeps
its own promise (a frame's blocks are committed by one index line), so after a crash a stream
answers from every frame whose blocks were committed; its record's counters (bytes received, the
first frame's time) are those of its last stored frame.

A store is bound to the model that wrote it: a server started on it with another model (another
config or other weights) refuses to start, naming both, rather than read KV its model cannot use.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.errors import ConfigError
from memstream.streaming.videomem.service.limits import check_stream_id

log = logging.getLogger(__name__)

FORMAT = "memstream.serve.store"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StreamSettings:
    """What a new stream's memory is built with (the server's defaults, or less where the client
    asked for less).

    Attributes:
        stream_id: the stream.
        store_dir: its memory's block store directory, or None (RAM only, gone with the process).
        max_blocks: frames its memory keeps, the oldest deleted first; None keeps all.
        ram_budget_mb: the memory's RAM tier; older blocks stay on disk only (needs ``store_dir``).
    """

    stream_id: str
    store_dir: str | None = None
    max_blocks: int | None = None
    ram_budget_mb: float | None = None

    def rekv(self, config):
        """``config`` (a :class:`~memstream.streaming.videomem.rekv.ReKVConfig`) with this stream's
        store directory and budgets."""
        return replace(config, store_dir=self.store_dir, max_blocks=self.max_blocks, ram_budget_mb=self.ram_budget_mb)


@dataclass
class StreamRecord:
    """A stream's ``stream.json``: who owns it, its budgets and its counters.

    Attributes:
        owner: the id of the API key that opened it (:meth:`AccessPolicy.key_id`), or None.
        clock: ``"client"`` when its first frame carried ``timestamp_s``, ``"server"`` when the
            server stamped it, None before the first frame.
        scene: the name of the scene memory its answers are grounded on (``--scene NAME=RUN_DIR``),
            or None.
    """

    stream_id: str
    owner: str | None = None
    max_blocks: int | None = None
    ram_budget_mb: float | None = None
    frames_seen: int = 0
    first_s: float | None = None
    last_s: float | None = None
    bytes_received: int = 0
    clock: str | None = None
    scene: str | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StreamRecord:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)

    def listing(self, persistent: bool) -> dict[str, Any]:
        """What ``GET /v1/streams`` shows of the stream (never its owner)."""
        return {"stream_id": self.stream_id, "frames_seen": self.frames_seen, "covered_from_s": self.first_s,
                "covered_until_s": self.last_s, "bytes_received": self.bytes_received,
                "max_blocks": self.max_blocks, "persistent": persistent, "scene": self.scene}


class Lease:
    """The right to hold one stream's memory in this process: an exclusive ``flock`` on
    ``DIR/leases/ID.lock``, released by :meth:`release` or by the process's death (the kernel drops
    the lock), so a stream's memory is open in at most one server at a time even when several
    share a store (Ray Serve replicas)."""

    def __init__(self, path: Path, handle) -> None:
        self.path, self._handle = path, handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def valid(self) -> bool:
        """Held, and its lock file is still the one at ``path`` (a lock file is removed with its
        stream while locked; a process that was waiting on it then holds a lock on nothing)."""
        if self._handle is None:
            return False
        try:
            return os.fstat(self._handle.fileno()).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def remove(self) -> None:
        """Remove the lock file (the stream is deleted), before :meth:`release`."""
        self.path.unlink(missing_ok=True)


class StreamStore:
    """The ``--store`` directory of one server (see the module docstring).

    Args:
        root: the directory (created when missing).
        model: the served model's name, and ``fingerprint`` its config-and-weights hash.

    Raises:
        ConfigError: the path is a file or not writable, holds something else, or was written by
            another model.
    """

    def __init__(self, root: str | Path, model: str, fingerprint: str, expect_id: str | None = None) -> None:
        self.root = Path(root)
        if expect_id is not None:
            self.check_identity(root, expect_id)
        try:
            (self.root / "streams").mkdir(parents=True, exist_ok=True)
            (self.root / "trash").mkdir(exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--store {root} cannot be used as a directory ({exc.strerror})",
                              "Give a writable directory (it is created when missing)") from exc
        if not os.access(self.root, os.W_OK):
            raise ConfigError(f"--store {root} is not writable", "Fix its permissions or give another directory")
        self._check_model(model, fingerprint)
        self._empty_trash()

    @staticmethod
    def identify(root: str | Path) -> str:
        """The store's id (``store.id``), written now if it has none; ``serve --ray`` hands it to
        every replica, which opens the store only where it finds that id (``expect_id``).

        Raises:
            ConfigError: the directory cannot be created or written.
        """
        path = Path(root) / "store.id"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "x") as file:  # exclusive: two starts on one new store agree on the first id
                file.write(uuid.uuid4().hex)
        except FileExistsError:
            pass
        except OSError as exc:
            raise ConfigError(f"--store {root} cannot be used as a directory ({exc.strerror})",
                              "Give a writable directory every Ray node mounts at the same path") from exc
        return path.read_text().strip()

    @staticmethod
    def check_identity(root: str | Path, expected: str) -> None:
        """Refuse to open (or create) a store other than the one the server identified: a node
        that does not mount the shared store would otherwise start a private one at that path.

        Raises:
            ConfigError: no ``store.id`` at ``root``, or another one.
        """
        try:
            found = (Path(root) / "store.id").read_text().strip()
        except OSError:
            found = None
        if found != expected:
            where = "has no store" if found is None else "holds another store"
            raise ConfigError(f"--store {root} on node {socket.gethostname()} {where} (expected store id {expected})",
                              "Mount the shared store at the same path on every Ray node (NFS, CephFS, Lustre, GPFS)")

    @classmethod
    def reader(cls, root: str | Path) -> StreamStore:
        """The store at ``root`` for reading its records only (a frontend with no model): nothing
        is created or checked."""
        store = cls.__new__(cls)
        store.root = Path(root)
        return store

    def _check_model(self, model: str, fingerprint: str) -> None:
        header = self.root / "service.json"
        if not header.exists():  # replicas open a new store together: the first header written stays
            fields = {"format": FORMAT, "version": FORMAT_VERSION, "model": model, "model_fingerprint": fingerprint}
            write_json_atomic(header, fields, indent=None, exclusive=True)
        try:
            stored = json.loads(header.read_text())
            ok = stored["format"] == FORMAT and isinstance(stored["model_fingerprint"], str)
        except (OSError, ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            raise ConfigError(f"{header} is not a memstream serve store header",
                              "Give --store a directory of its own (empty or made by memstream serve)")
        if stored["model_fingerprint"] != fingerprint:
            raise ConfigError(
                f"--store {self.root} holds streams written by model {stored.get('model')!r} "
                f"(fingerprint {stored['model_fingerprint']}), not by {model!r} (fingerprint {fingerprint})",
                f"Serve it with --model {stored.get('model')}, or give this model another --store directory",
            )

    def _empty_trash(self) -> None:
        for path in (self.root / "trash").iterdir():
            shutil.rmtree(path, ignore_errors=True)

    def lease(self, stream_id: str, wait_s: float = 0.0, poll_s: float = 0.05) -> Lease | None:
        """Take the stream's lease, waiting up to ``wait_s``; None when another process holds it."""
        path = self.root / "leases" / f"{check_stream_id(stream_id)}.lock"
        path.parent.mkdir(exist_ok=True)
        deadline = time.monotonic() + wait_s
        while True:
            handle = open(path, "a+b")  # noqa: SIM115 -- owned by the Lease
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                if time.monotonic() >= deadline:
                    return None
                time.sleep(poll_s)
                continue
            lease = Lease(path, handle)
            if lease.valid():
                return lease
            lease.release()  # locked a lock file that was removed meanwhile: take the new one

    def want(self, stream_id: str) -> Path:
        """Ask the process holding the stream's lease to hand it over (it checks :meth:`wanted`);
        returns this request's flag, to withdraw with :meth:`unwant` once served or given up."""
        path = self.root / "leases" / f"{check_stream_id(stream_id)}.wanted.{uuid.uuid4().hex[:8]}"
        path.parent.mkdir(exist_ok=True)
        path.touch()
        return path

    def wanted(self, stream_id: str) -> bool:
        """Whether another process waits for the stream's lease."""
        return any((self.root / "leases").glob(f"{check_stream_id(stream_id)}.wanted.*"))

    def unwant(self, flag: Path | None = None, stream_id: str | None = None) -> None:
        """Withdraw one request (``flag``), or every request for ``stream_id`` (it was deleted)."""
        if flag is not None:
            flag.unlink(missing_ok=True)
        if stream_id is not None:
            for path in (self.root / "leases").glob(f"{check_stream_id(stream_id)}.wanted.*"):
                path.unlink(missing_ok=True)

    def record(self, stream_id: str) -> StreamRecord | None:
        """The stream's record, or None when the store holds no such stream."""
        path = self.stream_dir(stream_id) / "stream.json"
        try:
            return StreamRecord.from_json(json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"{path} cannot be read ({exc})", f"Move {path.parent} out of the store (or restore it)") from exc

    def stream_dir(self, stream_id: str) -> Path:
        return self.root / "streams" / check_stream_id(stream_id)

    def kv_dir(self, stream_id: str) -> str:
        return str(self.stream_dir(stream_id) / "kv")

    def records(self) -> list[StreamRecord]:
        """Every stored stream's record, by id.

        Raises:
            ConfigError: a stream folder has no readable record (it is left as it is).
        """
        found = []
        streams = self.root / "streams"
        for path in sorted(streams.iterdir()) if streams.is_dir() else []:
            record_path = path / "stream.json"
            try:
                record = StreamRecord.from_json(json.loads(record_path.read_text()))
                if record.stream_id != path.name:
                    raise ValueError(f"it names stream {record.stream_id!r}")
            except (OSError, ValueError, TypeError) as exc:
                raise ConfigError(f"{record_path} cannot be read ({exc})",
                                  f"Move {path} out of {self.root / 'streams'} (or restore it from a backup)") from exc
            found.append(record)
        return found

    def create(self, record: StreamRecord) -> None:
        """Make the stream's folder and record; a 409-worthy :class:`FileExistsError` when the
        folder is already there."""
        path = self.stream_dir(record.stream_id)
        path.mkdir()  # FileExistsError: the caller's "already exists"
        self.save(record)

    def save(self, record: StreamRecord) -> None:
        """Replace the stream's record atomically (no fsync: it survives the process, not a power cut)."""
        write_json_atomic(self.stream_dir(record.stream_id) / "stream.json", asdict(record), indent=None)

    def delete(self, stream_id: str) -> None:
        """Remove the stream: one rename into ``trash/`` (after which it is gone, even if the process
        dies before the files are removed), then the files."""
        path = self.stream_dir(stream_id)
        if not path.exists():
            return
        trash = self.root / "trash" / f"{stream_id}-{uuid.uuid4().hex[:8]}"
        path.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
