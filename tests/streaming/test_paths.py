"""The checks of user-named paths: a model or checkpoint argument that looks local and does not exist
fails at once with one line (before a loader mistakes it for a hub id; hub ids pass untouched), and
the output-folder rule of every command."""

from __future__ import annotations

import pytest

from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import check_local_path, looks_like_local_path, prepare_output_dir


@pytest.mark.parametrize(
    ("value", "local"),
    [
        ("/no/such/file.pt", True), ("~/models/sam2.pt", True), ("./weights", True), ("../weights", True),
        ("C:\\models\\x.pt", True), ("a/b/c", True), ("sam2.1_hiera_tiny.pt", True),
        ("facebook/sam2.1-hiera-tiny", False), ("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf", False),
        ("Qwen2-VL-2B", False),
    ],
)
def test_what_looks_like_a_local_path(value, local) -> None:
    assert looks_like_local_path(value, suffixes=(".pt",)) is local


def test_a_missing_local_path_is_one_clear_error_and_hub_ids_pass(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"^no such checkpoint file: /no/such/file.pt\. Pass a \.pt file$"):
        check_local_path("/no/such/file.pt", what="checkpoint file", fix="Pass a .pt file")
    with pytest.raises(ConfigError, match="no such model folder: /no/such/dir"):
        check_local_path("/no/such/dir", what="model folder", kind="folder", fix="Check it")
    with pytest.raises(ConfigError, match=f"{tmp_path} is a folder, not a checkpoint file"):
        check_local_path(str(tmp_path), what="checkpoint file", kind="file", fix="Pass a .pt file")
    (tmp_path / "w.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="is a file, not a model folder"):
        check_local_path(tmp_path / "w.pt", what="model folder", kind="folder", fix="Check it")
    check_local_path(tmp_path / "w.pt", what="checkpoint file", fix="-")  # exists: the loader reads it
    check_local_path("facebook/sam2.1-hiera-tiny", what="checkpoint file", fix="-")  # a hub id: the loader's
    check_local_path(None, what="checkpoint file", fix="-")


def test_an_output_folder_is_created_refused_or_replaced(tmp_path) -> None:
    out = prepare_output_dir(tmp_path / "a" / "b")
    assert out.is_dir()
    (out / "1.txt").write_text("earlier")
    with pytest.raises(ConfigError, match=r"already exists and holds files \(1.txt\)\. Pass --overwrite"):
        prepare_output_dir(out)
    with pytest.raises(ConfigError, match="no earlier memstream output"):  # not ours: never deleted
        prepare_output_dir(out, overwrite=True)
    assert (out / "1.txt").read_text() == "earlier"
    (out / "summary.json").write_text("{}")
    prepare_output_dir(out, overwrite=True)
    assert out.is_dir() and list(out.iterdir()) == []  # no stale file of the earlier run is left
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        prepare_output_dir(tmp_path / "file", overwrite=True)
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize(
    ("value", "is_path"),
    [
        ("/no/such/dir", True),
        ("./model", True),
        ("../model", True),
        ("~/models/llava", True),
        (".", True),
        ("C:\\models\\llava", True),
        ("a/b/c", True),  # a hub id has at most one '/'
        ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", False),
        ("Qwen/Qwen2.5-VL-7B-Instruct", False),
        ("tiny-random", False),
        ("gpt2", False),
        ("", False),
    ],
)
def test_what_counts_as_a_local_path_without_suffixes(value: str, is_path: bool) -> None:
    assert looks_like_local_path(value) is is_path


def test_org_slash_name_is_a_path_when_its_first_part_is_a_local_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert not looks_like_local_path("models/llava")
    (tmp_path / "models").mkdir()
    assert looks_like_local_path("models/llava")
    with pytest.raises(ConfigError, match=r"^no such model folder: models/llava \(models exists, 'llava' is not in it\)\. "):
        check_local_path("models/llava")


def test_a_missing_path_is_one_line_naming_it_and_the_fix(tmp_path) -> None:
    missing = tmp_path / "ckpt" / "sam2.pt"
    with pytest.raises(ConfigError) as info:
        check_local_path(str(missing), what="checkpoint")
    line = info.value.one_line()
    assert line.startswith(f"no such checkpoint: {missing} ({tmp_path} exists, 'ckpt' is not in it). ")
    assert "hub id" in line and "\n" not in line
    with pytest.raises(ConfigError, match=r"^no such model folder: /no/such/dir\. Check the path"):
        check_local_path("/no/such/dir")


def test_existing_paths_and_hub_ids_pass(tmp_path, monkeypatch) -> None:
    assert check_local_path(str(tmp_path)) == str(tmp_path)
    assert check_local_path("llava-hf/llava-onevision-qwen2-0.5b-ov-hf") == "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "models").mkdir()
    assert check_local_path("~/models") == str(tmp_path / "models")  # expanded: loaders do not expand ~
