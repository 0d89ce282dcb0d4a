"""The checks of user-named paths: model and checkpoint arguments, output folders."""

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
        check_local_path(str(tmp_path), what="checkpoint file", fix="Pass a .pt file")
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
