"""A local path that does not exist fails at once with one line, before a loader mistakes it for a
hub id; hub ids pass untouched."""

from __future__ import annotations

import pytest

from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import check_local_path, looks_like_local_path


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
def test_what_counts_as_a_local_path(value: str, is_path: bool) -> None:
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
