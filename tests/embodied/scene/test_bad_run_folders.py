"""A run folder that is half-written or from another version, wherever a command reads one (issue 18,
bad input): `memstream query`, `run ... resume_from`, `ask --scene` and `serve --scene` each stop with
one error line naming the file and the fix, exit 2, and leave the folder exactly as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memstream.streaming.cli import main
from tests.embodied.scene.helpers import rendered, run
from tests.streaming.videomem.conftest import tiny_llava_dir  # noqa: F401 -- fixture

URI = "synthetic://stop_and_go?frames=6&size=64x48"


def _whole(folder: Path) -> str:
    text = json.dumps(run(rendered()[:20]).state_dict())
    (folder / "scene.json").write_text(text)
    return text


def half_written(folder: Path) -> None:
    """A scene.json cut in the middle (a copy interrupted, a disk that filled up)."""
    text = _whole(folder)
    (folder / "scene.json").write_text(text[: len(text) // 2])


def other_version(folder: Path) -> None:
    state = json.loads(_whole(folder))
    (folder / "scene.json").write_text(json.dumps({**state, "format": "memstream.scene/999"}))


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


BROKEN = [(half_written, "is not a scene memory"), (other_version, "memstream.scene/999")]


@pytest.mark.parametrize(("damage", "message"), BROKEN)
def test_query_refuses_and_leaves_the_folder(tmp_path, capsys, damage, message):
    damage(tmp_path)
    before = snapshot(tmp_path)
    assert main(["query", str(tmp_path), "where cup"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("damage", "message"), BROKEN)
def test_resuming_from_it_refuses_before_any_frame(tmp_path, capsys, damage, message):
    old = tmp_path / "old"
    old.mkdir()
    damage(old)
    before = snapshot(old)
    code = main(["run", URI, "--config", "scene", "--set", "stages.video_memory.enabled=false",
                 "--set", "stages.bank.enabled=false", "--set", f"stages.scene.options.resume_from={old}",
                 "--out", str(tmp_path / "new"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert snapshot(old) == before
    assert not (tmp_path / "new" / "scene.json").exists()


@pytest.mark.parametrize(("damage", "message"), BROKEN)
def test_ask_and_serve_refuse_it_before_the_model_loads(tmp_path, capsys, tiny_llava_dir, damage, message):  # noqa: F811
    damage(tmp_path)
    before = snapshot(tmp_path)
    assert main(["ask", URI, "Where is the cup?", "--model", "tiny-random", "--scene", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert main(["serve", "--model", str(tiny_llava_dir), "--scene", f"lab={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "lab=" in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before
