"""``memstream batch``: many videos through a preset, locally and on a local Ray cluster.

Videos are tiny real H.264 files rendered from the synthetic demo scene; every video runs through a
real ``memstream run`` process. Kills are real ``SIGKILL``s of the process the attempt log names,
sent while the video is being processed (its ``config.yaml`` written, its ``summary.json`` not).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memstream.streaming import ConfigError
from memstream.streaming.batch import BatchConfig, ResultLog, read_inputs, run_batch
from memstream.streaming.batch.results import record
from memstream.streaming.cli import main
from memstream.streaming.config import load_config

SHORT, LONG = 12, 600  # frames; a LONG video keeps the default preset busy for ~0.9 s (idle), the window a kill
# aims at: 200 frames (0.3 s) could pass unseen while the killer thread waited for a core on a loaded machine


@pytest.fixture(scope="module")
def frames() -> list:
    from memstream.streaming import open_source

    with open_source(f"synthetic://demo?frames={LONG}&size=64x48") as source:
        return [frame.rgb for frame in source]


def _videos(folder: Path, frames: list, lengths: dict[str, int]) -> Path:
    from memstream.streaming import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for name, count in lengths.items():
        write_video(folder / f"{name}.mp4", frames[:count], fps=30)
    return folder


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "batch.jsonl").read_text().splitlines()]


def _by_id(out: Path) -> dict[str, dict]:
    lines = _lines(out)
    assert len({e["id"] for e in lines}) == len(lines), f"duplicate lines: {[e['id'] for e in lines]}"
    return {e["id"]: e for e in lines}


# -- inputs and the results file -----------------------------------------------------------------


def test_inputs_from_a_folder_and_from_manifests(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("b.mp4", "a.MKV", "a.mp4", "notes.txt", "c.jpg"):
        (folder / name).write_bytes(b"")
    assert [(i.id, Path(i.source).name) for i in read_inputs(folder)] == [("a.MKV", "a.MKV"), ("a.mp4", "a.mp4"), ("b", "b.mp4")]

    (tmp_path / "list.txt").write_text("# comment\nvideos/b.mp4\n\n/no/such.mp4\nsynthetic://demo?frames=3\n")
    items = read_inputs(tmp_path / "list.txt")
    assert [(i.id, i.source, i.error) for i in items] == [
        ("b", str(folder / "b.mp4"), None),  # relative to the manifest's folder
        ("such", "/no/such.mp4", "no such file: /no/such.mp4"),
        ("demo", "synthetic://demo?frames=3", None),
    ]
    (tmp_path / "list.jsonl").write_text(
        '{"path": "videos/b.mp4", "id": "cam1"}\n{"path": "videos/a.mp4", "id": "cam1"}\nnot json\n'
        '{"id": "x"}\n{"path": "videos/a.mp4", "id": "../up"}\n"videos/a.mp4"\n'
    )
    items = read_inputs(tmp_path / "list.jsonl")
    assert [i.id for i in items] == ["cam1", "#2", "#3", "#4", "#5", "a"]
    assert [i.error for i in items][1:5] == [
        "duplicate id 'cam1' (entry 1 has it too)",
        "manifest line is not JSON (Expecting value): not json",
        'manifest line has no "path" string: {"id": "x"}',
        "id '../up' cannot name an output folder (no '/', '\\', leading '.' or empty id)",
    ]
    (tmp_path / "list.csv").write_text("id,path\ncam7,videos/b.mp4\n,videos/a.mp4\n")
    assert [(i.id, i.error) for i in read_inputs(tmp_path / "list.csv")] == [("cam7", None), ("a", None)]
    (tmp_path / "bad.csv").write_text("file\nvideos/b.mp4\n")
    with pytest.raises(ConfigError, match="has no 'path' column"):
        read_inputs(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="no video files in"):
        read_inputs(tmp_path / "videos" / "..")  # tmp_path holds manifests, no videos
    with pytest.raises(ConfigError, match="no such folder or manifest"):
        read_inputs(tmp_path / "nope")


def test_the_results_file_survives_a_torn_line_and_keeps_one_line_per_id(tmp_path: Path) -> None:
    log = ResultLog(tmp_path / "batch.jsonl")
    log.append(record("a", "/a.mp4", "failed", reason="the video's process was killed by SIGKILL", attempts=3))
    log.append(record("b", "/b.mp4", "ok", out="b", attempts=1, frames=12))
    with open(log.path, "a") as handle:
        handle.write('{"id": "c", "source": "/c.mp4", "sta')  # a crash in the middle of a write
    assert list(log.read()) == ["a", "b"]
    log.append(record("a", "/a.mp4", "ok", out="a", attempts=1))  # appended after the torn line: still read
    assert {k: v["status"] for k, v in log.read().items()} == {"b": "ok", "a": "ok"}
    log.rewrite(log.read().values())
    assert [json.loads(line)["id"] for line in log.path.read_text().splitlines()] == ["b", "a"]
    with pytest.raises(ValueError, match="status must be one of"):
        record("a", "/a.mp4", "done")


def test_a_worker_that_cannot_see_the_batch_folder_records_why(tmp_path: Path) -> None:
    """On a cluster whose node does not mount OUT: the video fails with the reason, nothing runs."""
    from memstream.streaming.batch.attempt import BatchPlan, process_video

    entry = process_video("v", "/videos/v.mp4", BatchPlan(str(tmp_path / "not-mounted")))
    assert entry["status"] == "failed" and entry["attempts"] == 0
    assert entry["reason"].endswith(f"cannot see {tmp_path / 'not-mounted' / '.batch' / 'config.yaml'}: "
                                    "the batch folder must be on storage every node mounts at the same path")
    assert not (tmp_path / "not-mounted").exists()


# -- the local pool --------------------------------------------------------------------------------


def test_a_local_batch_writes_each_video_as_memstream_run_does(tmp_path: Path, frames: list, capsys) -> None:
    videos = _videos(tmp_path / "videos", frames, {"v1": SHORT, "v2": SHORT + 3, "v3": SHORT + 6})
    out = tmp_path / "out"
    assert main(["batch", str(videos), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    assert "3 videos: 3 ok, 0 failed, 0 skipped" in capsys.readouterr().out
    lines = _by_id(out)
    assert [(e["id"], e["status"], e["frames"], e["attempts"], e["out"]) for e in _lines(out)] == [
        ("v1", "ok", SHORT, 1, "v1"), ("v2", "ok", SHORT + 3, 1, "v2"), ("v3", "ok", SHORT + 6, 1, "v3")]
    assert all(e["reason"] is None and e["wall_s"] > 0 for e in lines.values())

    single = tmp_path / "single"
    assert main(["run", str(videos / "v2.mp4"), "--out", str(single), "--no-progress"]) == 0
    assert sorted(p.name for p in (out / "v2").iterdir()) == sorted(p.name for p in single.iterdir())
    assert (out / "v2" / "config.yaml").read_text() == (single / "config.yaml").read_text()
    batch_summary, run_summary = (json.loads((d / "summary.json").read_text()) for d in (out / "v2", single))
    assert batch_summary["source"]["uri"] == str(videos / "v2.mp4")
    assert batch_summary["stages"].keys() == run_summary["stages"].keys() == {"tracking", "video_writer"}
    assert batch_summary["stages"]["video_writer"]["outputs"]["frames_written"] == SHORT + 3
    summary = json.loads((out / "batch.json").read_text())
    assert (summary["ok"], summary["failed"], summary["ran"], summary["backend"], summary["workers"]) == (3, 0, 3, "local", 2)
    assert not list((out / ".batch" / "partial").iterdir())  # nothing left half-written


def test_bad_entries_are_recorded_and_the_batch_goes_on(tmp_path: Path, frames: list, capsys) -> None:
    videos = _videos(tmp_path / "videos", frames, {"good": SHORT})
    (videos / "notes.txt").write_text("not a video")
    (videos / "broken.mp4").write_bytes(b"\x00" * 64)
    manifest = tmp_path / "videos.jsonl"
    manifest.write_text("\n".join([
        '{"path": "videos/good.mp4"}', '{"path": "videos/missing.mp4"}', '{"path": "videos/notes.txt"}',
        '{"path": "videos/broken.mp4"}', "{oops", '{"path": "videos/good.mp4", "id": "good"}',
    ]) + "\n")
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--config", "decode_only", "--out", str(out), "--no-progress"]) == 1
    assert "6 videos: 1 ok, 5 failed, 0 skipped" in capsys.readouterr().out
    lines = _by_id(out)
    assert list(lines) == ["good", "missing", "notes", "broken", "#5", "#6"]
    assert lines["good"]["status"] == "ok" and lines["good"]["frames"] == SHORT
    reasons = {k: (v["status"], v["attempts"], v["reason"]) for k, v in lines.items() if k != "good"}
    assert reasons["missing"] == ("failed", 0, f"no such file: {videos / 'missing.mp4'}")
    assert reasons["notes"][:2] == ("failed", 1) and reasons["notes"][2].startswith(f"cannot tell what kind of source {str(videos / 'notes.txt')!r} is")
    assert reasons["broken"][:2] == ("failed", 1) and reasons["broken"][2].startswith(f"cannot decode {videos / 'broken.mp4'}")
    assert reasons["#5"][:2] == ("failed", 0) and reasons["#5"][2].startswith("manifest line is not JSON")
    assert reasons["#6"] == ("failed", 0, "duplicate id 'good' (entry 1 has it too)")
    assert sorted(p.name for p in out.iterdir()) == [".batch", "batch.json", "batch.jsonl", "good"]


def _kill_mid_video(out: Path, plan: dict[str, set[int]], pid_key: str, killed: list, stop: threading.Event) -> None:
    """Kill ``pid_key`` (``child_pid``: the video's process, ``worker_pid``: the worker running it) of
    each planned attempt once it is processing frames; ``killed`` gets (id, attempt)."""
    pending = {(item_id, attempt) for item_id, attempts in plan.items() for attempt in attempts}
    while pending and not stop.is_set():
        for item_id, attempt in sorted(pending):
            log = out / ".batch" / "attempts" / f"{item_id}.jsonl"
            starts = [json.loads(x) for x in log.read_text().splitlines() if '"start"' in x] if log.exists() else []
            start = next((s for s in starts if s["attempt"] == attempt), None)
            partial = out / ".batch" / "partial" / f"{item_id}.{attempt}"
            if start and (partial / "config.yaml").exists() and not (partial / "summary.json").exists():
                os.kill(start[pid_key], signal.SIGKILL)
                killed.append((item_id, attempt))
                pending.discard((item_id, attempt))
        time.sleep(0.002)


def test_a_video_whose_process_is_killed_is_retried_then_recorded_as_failed(tmp_path: Path, frames: list) -> None:
    videos = _videos(tmp_path / "videos", frames, {"once": LONG, "always": LONG, "calm": SHORT})
    out = tmp_path / "out"
    killed: list = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_mid_video, args=(out, {"once": {1}, "always": {1, 2}}, "child_pid", killed, stop))
    killer.start()
    try:
        summary = run_batch(videos, load_config("default"), out, BatchConfig(workers=2, retries=1))
    finally:
        stop.set()
        killer.join()
    assert sorted(killed) == [("always", 1), ("always", 2), ("once", 1)]
    lines = _by_id(out)
    assert [(k, e["status"], e["attempts"]) for k, e in lines.items()] == [("always", "failed", 2), ("calm", "ok", 1), ("once", "ok", 2)]
    assert lines["always"]["reason"] == "failed 2 attempts; last: the video's process was killed by SIGKILL"
    assert lines["once"]["frames"] == LONG and (out / "once" / "summary.json").is_file()
    assert not (out / "always").exists()  # a failed video leaves no folder that would read as done
    assert (summary["ok"], summary["failed"]) == (2, 1)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie that no one reaped yet has ended)."""
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].splitlines()[0]
    except FileNotFoundError:
        return False
    except OSError:  # no /proc (macOS): ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def test_a_rerun_after_a_crash_finishes_the_rest_without_duplicates(tmp_path: Path, frames: list) -> None:
    videos = _videos(tmp_path / "videos", frames, {f"v{i}": SHORT for i in range(4)})
    out = tmp_path / "out"
    driver = subprocess.Popen([sys.executable, "-m", "memstream.streaming.cli", "batch", str(videos), "--config", "decode_only",
                               "--out", str(out), "--workers", "1", "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and driver.poll() is None:
        if (out / "batch.jsonl").exists() and (out / "batch.jsonl").read_text().count("\n") >= 1:
            break
        time.sleep(0.005)
    driver.kill()  # the driver dies after one video, with the next one running
    assert driver.wait() == -signal.SIGKILL, driver.stderr.read()
    first = {e["id"]: e for e in _lines(out)}
    assert 1 <= len(first) < 4 and all(e["status"] == "ok" for e in first.values())
    done_at = {k: (out / k / "summary.json").stat().st_mtime_ns for k in first}
    logs = [[json.loads(x) for x in log.read_text().splitlines()] for log in (out / ".batch" / "attempts").glob("*.jsonl")]
    orphans = [entries[-1]["child_pid"] for entries in logs if entries[-1]["event"] == "start"]
    # the running video's process ends by itself once its worker is gone (its watchdog polls every 0.2 s;
    # 30 s leaves room for a loaded machine, where a process still importing torch is slow to be scheduled)
    deadline = time.monotonic() + 30
    while any(map(_running, orphans)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(_running, orphans))

    (out / "batch.jsonl").write_text((out / "batch.jsonl").read_text() + '{"id": "v3", "sta')  # and a torn line
    with pytest.raises(ConfigError, match="holds a batch run with another config"):
        run_batch(videos, load_config("decode_only", ["source.max_frames=5"]), out)
    summary = run_batch(videos, load_config("decode_only"), out, BatchConfig(workers=2))
    lines = _by_id(out)
    assert list(lines) == ["v0", "v1", "v2", "v3"] and all(e["status"] == "ok" for e in lines.values())
    assert {k: (out / k / "summary.json").stat().st_mtime_ns for k in first} == done_at  # not run again
    assert (summary["done_before"], summary["ran"], summary["ok"]) == (len(first), 4 - len(first), 4)

    (out / "v2" / "summary.json").unlink()  # a folder that is not complete runs again;
    for key in ("v0", "v1"):  # a complete one that batch.jsonl does not list is recorded as skipped
        lines.pop(key)
    ResultLog(out / "batch.jsonl").rewrite(lines.values())
    summary = run_batch(videos, load_config("decode_only"), out, BatchConfig(workers=2))
    lines = _by_id(out)
    assert [(k, e["status"]) for k, e in lines.items()] == [("v0", "skipped"), ("v1", "skipped"), ("v2", "ok"), ("v3", "ok")]
    assert lines["v0"]["reason"] == f"its outputs were already in {out.resolve() / 'v0'} (an earlier run)"
    assert (summary["ran"], summary["skipped"], summary["ok"]) == (1, 2, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "bad batch option: BatchConfig.workers=0: Input should be greater than or equal to 1. --workers takes"),
        (["--retries", "-1"], "bad batch option: BatchConfig.retries=-1: Input should be greater than or equal to 0."),
        (["--config", "nope"], "config 'nope' not found"),
        (["--gpus-per-video", "1"], "bad batch option: BatchConfig.gpus_per_video applies to Ray runs"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_code_2(tmp_path: Path, frames: list, capsys, args, message) -> None:
    videos = _videos(tmp_path / "videos", frames, {"v": SHORT})
    assert main(["batch", str(videos), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_an_out_folder_of_other_files_is_refused(tmp_path: Path, frames: list, capsys) -> None:
    videos = _videos(tmp_path / "videos", frames, {"v": SHORT})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert main(["batch", str(videos), "--out", str(tmp_path / "out")]) == 2
    assert "already exists and holds files" in capsys.readouterr().err
    assert main(["batch", str(videos), "--out", str(tmp_path / "out"), "--overwrite"]) == 2
    assert "no earlier memstream output" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_a_batch_folder_in_use_is_never_deleted_by_an_overwrite(tmp_path: Path, frames: list, capsys) -> None:
    # `batch --overwrite` (or `run --overwrite`) into the folder of a running batch once deleted it
    # under the batch, whose videos then went on into a fresh folder beside a second batch.
    from memstream.streaming.paths import output_lock

    videos = _videos(tmp_path / "videos", frames, {"v": SHORT})
    out = tmp_path / "out"
    assert main(["batch", str(videos), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    results = (out / "batch.jsonl").read_text()
    capsys.readouterr()
    with output_lock(out):  # what a running batch holds
        for command in (["batch", str(videos)], ["run", str(videos / "v.mp4")]):
            assert main([*command, "--out", str(out), "--overwrite", "--no-progress"]) == 2
            assert capsys.readouterr().err == f"error: another memstream command is writing into {out}. Wait for it to end, or choose another --out\n"
    assert (out / "batch.jsonl").read_text() == results and (out / "v" / "summary.json").is_file()


# -- Ray -------------------------------------------------------------------------------------------


def test_ray_missing_is_one_error_naming_the_extra(tmp_path: Path, frames: list, capsys, monkeypatch) -> None:
    videos = _videos(tmp_path / "videos", frames, {"v": SHORT})
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where Ray is not installed
    assert main(["batch", str(videos), "--out", str(tmp_path / "out"), "--ray", "auto"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ray needs Ray, which is not installed") and 'pip install "memstream[ray]"' in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("127.0.0.1:1", "error: cannot reach a Ray cluster at 127.0.0.1:1: Connection refused. Start one with `ray start --head`"),
        ("head-node", "error: --ray 'head-node' is not HOST:PORT, ray://HOST:PORT or auto."),
    ],
)
def test_an_unreachable_ray_address_is_one_error_and_exit_2(tmp_path: Path, frames: list, capsys, address, message) -> None:
    pytest.importorskip("ray")
    videos = _videos(tmp_path / "videos", frames, {"v": SHORT})
    assert main(["batch", str(videos), "--out", str(tmp_path / "out"), "--ray", address]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_data_runs_the_batch_and_retries_a_video_whose_worker_was_killed(tmp_path: Path, frames: list, ray_cluster) -> None:
    _videos(tmp_path / "videos", frames, {"killed": LONG, "calm": SHORT})
    manifest = tmp_path / "videos.csv"
    manifest.write_text("id,path\ncam-a,videos/killed.mp4\ncam-b,videos/calm.mp4\ncam-c,videos/missing.mp4\n")
    out = tmp_path / "out"
    killed: list = []
    stop = threading.Event()
    # the Ray worker itself (the task's process), not only the video's: Ray runs the task again
    killer = threading.Thread(target=_kill_mid_video, args=(out, {"cam-a": {1}}, "worker_pid", killed, stop))
    killer.start()
    try:
        summary = run_batch(manifest, load_config("default"), out, BatchConfig(ray="auto", workers=2, retries=1))
    finally:
        stop.set()
        killer.join()
    assert killed == [("cam-a", 1)]
    lines = _by_id(out)
    assert [(k, e["status"], e["attempts"]) for k, e in lines.items()] == [("cam-a", "ok", 2), ("cam-b", "ok", 1), ("cam-c", "failed", 0)]
    assert lines["cam-a"]["frames"] == LONG and lines["cam-b"]["frames"] == SHORT
    attempts = [json.loads(x) for x in (out / ".batch" / "attempts" / "cam-a.jsonl").read_text().splitlines()]
    assert [(e["event"], e["attempt"]) for e in attempts] == [("start", 1), ("start", 2), ("end", 2)]  # attempt 1's worker died
    assert attempts[0]["worker_pid"] != attempts[1]["worker_pid"]
    assert (summary["backend"], summary["ok"], summary["failed"]) == ("ray", 2, 1)

    with pytest.raises(ConfigError, match="--gpus-per-video 1, but the Ray cluster has 0 GPUs"):  # Ray would wait forever
        run_batch(manifest, load_config("default"), out, BatchConfig(ray="auto", gpus_per_video=1))
    again = run_batch(manifest, load_config("default"), out, BatchConfig(ray="auto", workers=2, retries=1))
    assert (again["done_before"], again["ran"], again["failed"]) == (2, 0, 1)  # nothing runs; the missing file is recorded again
    assert [(k, e["status"]) for k, e in _by_id(out).items()] == [("cam-a", "ok"), ("cam-b", "ok"), ("cam-c", "failed")]


def test_ray_tasks_queue_two_videos_behind_each_running_one_within_the_workers_cap() -> None:
    from memstream.streaming.batch.on_ray import QUEUED_PER_SLOT, plan_slots

    assert QUEUED_PER_SLOT == 2
    # (tasks submitted, one-CPU bundles reserved): the bundles cap the running videos at `workers`
    assert plan_slots(2, 2) == (6, 2) and plan_slots(1, 8) == (3, 1)
    assert plan_slots(4, 2) == (4, None)  # more workers than CPUs: the CPUs cap them, 2 tasks queue
    assert plan_slots(None, 8) == (24, None) and plan_slots(None, 0) == (3, None)


class _Cluster:
    """What :func:`_await_free_cpus` reads of Ray: the free CPUs, one value a call."""

    def __init__(self, free: list[float]) -> None:
        self.free, self.calls = free, 0

    def available_resources(self) -> dict:
        self.calls += 1
        return {"CPU": self.free[min(self.calls, len(self.free)) - 1]}


def test_a_placement_group_waits_for_the_cpus_an_earlier_one_is_returning_but_never_past_rays_retry() -> None:
    from memstream.streaming.batch.on_ray import PLACEMENT_RETRY_S, _await_free_cpus

    returning = _Cluster([0, 1, 1, 2])  # the last batch's group going away
    assert _await_free_cpus(returning, 2, poll_s=0.001) and returning.calls == 4
    busy = _Cluster([1])  # another job holds a CPU: no longer than Ray would wait itself
    started = time.monotonic()
    assert not _await_free_cpus(busy, 2, limit_s=0.05, poll_s=0.001)
    assert 0.05 <= time.monotonic() - started < PLACEMENT_RETRY_S
    assert _await_free_cpus(_Cluster([8]), 2) and PLACEMENT_RETRY_S == 1.0


def test_back_to_back_ray_placement_groups_find_their_cpus(ray_cluster) -> None:
    from ray.util.placement_group import placement_group, remove_placement_group

    from memstream.streaming.batch.on_ray import _await_free_cpus

    group = placement_group([{"CPU": 1}] * 2)
    ray_cluster.get(group.ready(), timeout=30)
    assert ray_cluster.available_resources().get("CPU", 0) < 2
    remove_placement_group(group)
    assert _await_free_cpus(ray_cluster, 2)  # returned within Ray's retry interval


def test_ray_releases_without_placement_groups_in_map_arguments_run_without_the_queue() -> None:
    from memstream.streaming.batch.on_ray import _takes_placement_group

    assert _takes_placement_group("2.60.0") and _takes_placement_group("2.63.1")
    assert not _takes_placement_group("2.64.0") and not _takes_placement_group("3.0.0.dev0")


def test_one_ray_worker_runs_one_video_at_a_time_with_the_next_queued(tmp_path: Path, frames: list, ray_cluster) -> None:
    videos = _videos(tmp_path / "videos", frames, {f"v{i}": SHORT + i for i in range(4)})
    out = tmp_path / "out"
    summary = run_batch(videos, load_config("default"), out, BatchConfig(ray="auto", workers=1))
    assert (summary["ok"], summary["workers"]) == (4, 1)
    spans = []
    for path in (out / ".batch" / "attempts").glob("*.jsonl"):
        events = [json.loads(x) for x in path.read_text().splitlines()]
        spans.append((events[0]["time"], events[-1]["time"]))
    spans.sort()
    assert len(spans) == 4 and all(end <= start for (_, end), (start, _) in zip(spans, spans[1:], strict=False))  # never two at once
    groups = ray_cluster.util.placement_group_table().values()
    assert all(group["state"] == "REMOVED" for group in groups)  # the batch's placement group is gone


def test_a_ray_batch_leaves_the_processes_ray_data_settings_as_it_found_them(ray_cluster) -> None:
    from memstream.streaming.batch.on_ray import _batch_context

    context = ray_cluster.data.DataContext.get_current()
    before = context.enable_progress_bars, context.op_resource_reservation_enabled, context.execution_options.resource_limits
    with pytest.raises(RuntimeError, match="inside"), _batch_context(context, submitted_cpus=4):
        assert (context.enable_progress_bars, context.op_resource_reservation_enabled) == (False, False)
        assert context.execution_options.resource_limits.cpu == 4  # the queued tasks are submitted too
        raise RuntimeError("inside")  # a batch that fails still restores them
    assert (context.enable_progress_bars, context.op_resource_reservation_enabled, context.execution_options.resource_limits) == before
