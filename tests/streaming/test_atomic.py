"""The one atomic writer (streaming/atomic.py): whole files or none, no temporary left behind, one
temporary per writer, the first exclusive writer wins, and outputs as readable as any other file."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from memstream.streaming.atomic import temporary_beside, write_bytes_atomic, write_json_atomic, write_text_atomic


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_writes_whole_and_replaces(tmp_path):
    path = tmp_path / "summary.json"
    assert write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
    assert path.read_text().endswith("}\n")
    assert write_json_atomic(path, [1, 2], indent=None)
    assert path.read_text() == "[1, 2]\n"
    assert write_text_atomic(tmp_path / "t.txt", "héllo")
    assert (tmp_path / "t.txt").read_bytes() == "héllo".encode()
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01", sync=True)
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert leftovers(tmp_path) == []


def test_data_that_is_not_json_leaves_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert leftovers(tmp_path) == []


def test_a_failed_rename_removes_the_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("x")  # a non-empty folder: the rename over it fails
    with pytest.raises(OSError):
        write_text_atomic(target, "text")
    assert (target / "inside").read_text() == "x"
    assert leftovers(tmp_path) == []


def test_exclusive_keeps_the_first_writer(tmp_path):
    path = tmp_path / "service.json"
    assert write_json_atomic(path, {"model": "a"}, exclusive=True)
    assert not write_json_atomic(path, {"model": "b"}, exclusive=True)
    assert json.loads(path.read_text()) == {"model": "a"}
    assert leftovers(tmp_path) == []


def test_racing_writers_each_use_their_own_temporary(tmp_path):
    """Threads write one path at once (replicas opening one store): every write is whole, exactly one
    exclusive writer wins per file, and no temporary file is left."""
    rounds, threads = 30, 6
    winners: list[list[int]] = [[] for _ in range(rounds)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def writer(index):
        try:
            for r in range(rounds):
                barrier.wait()
                write_json_atomic(tmp_path / f"plain{r}.json", {"writer": index, "pad": "x" * 4096})
                if write_json_atomic(tmp_path / f"first{r}.json", {"writer": index}, exclusive=True):
                    winners[r].append(index)
        except BaseException as error:  # reported below, on the test's thread
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    for r in range(rounds):
        assert json.loads((tmp_path / f"plain{r}.json").read_text())["writer"] in range(threads)
        assert len(winners[r]) == 1
        assert json.loads((tmp_path / f"first{r}.json").read_text())["writer"] == winners[r][0]
    assert leftovers(tmp_path) == []


def test_mode_follows_the_umask_and_names_are_per_writer(tmp_path):
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "out.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "out.txt").stat().st_mode & 0o777 == 0o644
    name = temporary_beside(tmp_path / "out.txt").name
    assert name.startswith(".out.txt.") and str(os.getpid()) in name and str(threading.get_ident()) in name


def test_replaced_on_success_gives_a_named_file_that_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    from memstream.streaming.atomic import replaced_on_success

    target = tmp_path / "clip.mp4"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder"), replaced_on_success(target) as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder died")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    with replaced_on_success(target) as tmp:
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not yet
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
