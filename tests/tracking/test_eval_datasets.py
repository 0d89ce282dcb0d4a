"""Dataset readers on tiny fake LaSOT / GOT-10k folders and a real ``memstream synth`` scene; box files."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from memstream.streaming import open_source
from memstream.streaming.synthetic import write_scene
from memstream.tracking.eval import (
    DatasetError,
    evaluate_sequence,
    open_dataset,
    read_boxes,
    read_flags,
    write_boxes,
)

TINY = np.zeros((6, 8, 3), np.uint8)  # 8x6 px frames


def write_frames(folder: Path, count: int, suffix: str = ".jpg") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):  # 00000001.jpg ... as in LaSOT and GOT-10k
        assert cv2.imwrite(str(folder / f"{i + 1:08d}{suffix}"), TINY + 10 * i)


def make_lasot_sequence(folder: Path, boxes: list[str], occlusion: str, out_of_view: str) -> None:
    write_frames(folder / "img", len(boxes))
    (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    (folder / "full_occlusion.txt").write_text(occlusion + "\n")
    (folder / "out_of_view.txt").write_text(out_of_view + "\n")


def make_got10k_sequence(
    folder: Path, boxes: list[str], absence: list[int] | None, cover: list[int] | None
) -> None:
    write_frames(folder, 3)
    (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
    if absence is not None:
        (folder / "absence.label").write_text("".join(f"{v}\n" for v in absence))
    if cover is not None:
        (folder / "cover.label").write_text("".join(f"{v}\n" for v in cover))


@pytest.fixture
def lasot_root(tmp_path: Path) -> Path:
    root = tmp_path / "LaSOT"
    make_lasot_sequence(root / "bird" / "bird-2", ["1,2,3,4", "5,6,7,8", "9,10,11,12"], "0,0,1", "0,0,0")
    make_lasot_sequence(root / "bird" / "bird-10", ["1,1,2,2", "2,2,2,2"], "0,0", "0,1")
    make_lasot_sequence(root / "airplane" / "airplane-1", ["0,0,5,5"], "0", "0")
    return root


def test_lasot_nested_layout_in_natural_order(lasot_root: Path) -> None:
    dataset = open_dataset(lasot_root)
    assert dataset.kind == "lasot" and dataset.names == ("airplane-1", "bird-2", "bird-10")
    bird = dataset.sequence("bird-2")
    assert bird.gt_xywh.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]]
    assert bird.target_visible.tolist() == [True, True, False]  # full_occlusion 0,0,1
    assert dataset.sequence("bird-10").target_visible.tolist() == [True, False]  # out_of_view 0,1
    assert bird.first_box_xywh.tolist() == [1, 2, 3, 4] and bird.protocol == "lasot"
    assert [p.name for p in bird.frame_paths] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    with open_source(bird.source_uri) as source:
        frames = list(source)
    assert len(frames) == 3 and frames[0].rgb.shape == (6, 8, 3)
    assert abs(int(frames[2].rgb.mean()) - 20) <= 1  # frame order follows the file names


def test_lasot_testing_set_selects_and_orders(lasot_root: Path) -> None:
    (lasot_root / "testing_set.txt").write_text("bird-10\nairplane-1\n")
    assert open_dataset(lasot_root).names == ("bird-10", "airplane-1")
    (lasot_root / "testing_set.txt").write_text("bird-10\ncat-3\n")
    with pytest.raises(DatasetError, match="testing_set.txt names 1 sequence.*'cat-3'"):
        open_dataset(lasot_root)


def test_lasot_flat_layout_with_tabs_and_a_single_sequence(tmp_path: Path) -> None:
    make_lasot_sequence(tmp_path / "ext" / "seq-1", ["1\t2\t3\t4", "5\t6\t7\t8"], "0,0", "0,0")
    dataset = open_dataset(tmp_path / "ext")
    assert dataset.kind == "lasot" and dataset.names == ("seq-1",)
    assert next(iter(dataset)).gt_xywh.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert open_dataset(tmp_path / "ext" / "seq-1").names == ("seq-1",)


def test_lasot_mismatches_are_reported(lasot_root: Path) -> None:
    (lasot_root / "bird" / "bird-2" / "out_of_view.txt").write_text("0,0\n")
    with pytest.raises(DatasetError, match=r"out_of_view.txt has 2 flags for 3 frames"):
        open_dataset(lasot_root).sequence("bird-2")
    (lasot_root / "bird" / "bird-2" / "img" / "00000003.jpg").unlink()
    with pytest.raises(DatasetError, match=r"img has 2 images but .*groundtruth.txt has 3 boxes"):
        open_dataset(lasot_root).sequence("bird-2")


def test_got10k_split_with_list_and_labels(tmp_path: Path) -> None:
    val = tmp_path / "GOT-10k" / "val"
    boxes = ["10.5,20,30,40", "11,21,31,41", "12,22,32,42"]
    make_got10k_sequence(val / "GOT-10k_Val_000001", boxes, absence=[0, 1, 0], cover=[8, 0, 0])
    make_got10k_sequence(val / "GOT-10k_Val_000002", boxes, absence=None, cover=None)
    (val / "list.txt").write_text("GOT-10k_Val_000002\nGOT-10k_Val_000001\n")
    for root in (val, tmp_path / "GOT-10k"):  # a split folder, or the root holding the splits
        dataset = open_dataset(root)
        assert dataset.kind == "got10k" and dataset.names == ("GOT-10k_Val_000002", "GOT-10k_Val_000001")
    first = dataset.sequence("GOT-10k_Val_000001")
    assert first.gt_xywh[0].tolist() == [10.5, 20, 30, 40] and first.protocol == "got10k"
    assert first.target_visible.tolist() == [True, False, False]  # absent on 1, cover 0 on 1 and 2
    assert dataset.sequence("GOT-10k_Val_000002").target_visible.all()
    assert first.source_path == val / "GOT-10k_Val_000001" and len(first.frame_paths) == 3


def test_got10k_test_split_publishes_only_the_first_box(tmp_path: Path) -> None:
    make_got10k_sequence(tmp_path / "test" / "GOT-10k_Test_000001", ["1,2,3,4"], None, None)
    spec = next(iter(open_dataset(tmp_path / "test")))
    assert spec.num_frames == 3 and spec.first_box_xywh.tolist() == [1, 2, 3, 4]
    assert np.isnan(spec.gt_xywh[1:]).all() and spec.target_visible.tolist() == [True, False, False]


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_scene("occlusion?frames=12&size=64x48", root / "occ")
    write_scene("demo?frames=4&size=64x48&seed=1", root / "demo")
    return root


def test_synthetic_sequence_matches_the_written_files(synthetic_root: Path) -> None:
    folder = synthetic_root / "occ"
    spec = next(iter(open_dataset(folder)))
    lines = (folder / "gt" / "1.txt").read_text().split()  # object 1 is the target
    assert spec.gt_xywh.tolist() == [[float(v) for v in line.split(",")] for line in lines]
    occluded = (folder / "gt" / "1_full_occlusion.txt").read_text().strip().split(",")
    out = (folder / "gt" / "1_out_of_view.txt").read_text().strip().split(",")
    assert spec.target_visible.tolist() == [o == "0" and v == "0" for o, v in zip(occluded, out)]
    assert not spec.target_visible.all()  # the occlusion preset hides the target for a while
    assert (spec.gt_xywh[~spec.target_visible] == 0).all() and spec.protocol == "lasot"
    assert spec.source_path == folder / "rgb" and spec.num_frames == 12
    with open_source(spec.source_uri) as source:
        frames = list(source)
    assert len(frames) == 12 and frames[0].rgb.shape == (48, 64, 3)
    assert evaluate_sequence(spec.gt_xywh, spec.gt_xywh, spec.target_visible).precision < 1.0


def test_folder_of_synthetic_sequences_and_video_fallback(synthetic_root: Path, tmp_path: Path) -> None:
    (synthetic_root / "stale.partial").mkdir(exist_ok=True)  # an interrupted `memstream synth`
    dataset = open_dataset(synthetic_root)
    assert dataset.kind == "synthetic" and dataset.names == ("demo", "occ")
    copy = tmp_path / "demo"
    write_scene("demo?frames=4&size=64x48&seed=1", copy)
    for png in (copy / "rgb").iterdir():
        png.unlink()
    spec = open_dataset(copy).sequence("demo")
    assert spec.source_path == copy / "video.mp4" and spec.frame_paths == ()
    with open_source(spec.source_uri) as source:
        assert source.info.num_frames == 4


def test_unknown_layouts_name_the_path_and_the_layouts(tmp_path: Path, lasot_root: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value) and "LaSOT" in info.value.fix
    assert "GOT-10k" in info.value.fix and "memstream synth" in info.value.fix
    with pytest.raises(DatasetError, match="is not a folder"):
        open_dataset(tmp_path / "missing")
    make_got10k_sequence(lasot_root / "GOT-10k_Val_000001", ["1,2,3,4"] * 3, None, None)
    with pytest.raises(DatasetError, match="mixes sequence layouts"):
        open_dataset(lasot_root)


def test_box_files_round_trip_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    boxes = rng.integers(-10**7, 10**7, (50, 4)) / 10**4  # values with at most 4 decimals
    boxes[3] = [0, 0, 0, 0]
    path = write_boxes(tmp_path / "results" / "tracker" / "seq.txt", boxes)
    assert np.array_equal(read_boxes(path), boxes)
    assert [p.name for p in path.parent.iterdir()] == ["seq.txt"]  # no temporary file left
    write_boxes(path, [[1.5, 2, 3.25, 4.00004], [-0.00001, 0.123456, 7, 8]])
    assert path.read_text() == "1.5,2,3.25,4\n0,0.1235,7,8\n"
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        write_boxes(path, np.zeros((2, 3)))


def test_a_failed_write_leaves_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = write_boxes(tmp_path / "seq.txt", [[1, 2, 3, 4]])

    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_boxes(path, [[5, 6, 7, 8]] * 100)
    assert path.read_text() == "1,2,3,4\n" and [p.name for p in tmp_path.iterdir()] == ["seq.txt"]


def test_read_boxes_separators_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "boxes.txt"
    path.write_text("1,2,3,4\n5\t6\t7\t8\n9 10  11 12\n13, 14, 15, 16,\nnan,nan,nan,nan\n\n\n")
    boxes = read_boxes(path)
    assert boxes[:4].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    assert boxes.shape == (5, 4) and np.isnan(boxes[4]).all()
    path.write_text("1,2,3,4\n5,6,7\n")
    with pytest.raises(DatasetError, match=r"boxes.txt, line 2: expected 4 numbers x,y,w,h, got '5,6,7'"):
        read_boxes(path)
    path.write_text("1,2,3,4\n\n1,2,x,4\n")
    with pytest.raises(DatasetError, match=r"line 2: expected 4 numbers"):
        read_boxes(path)
    with pytest.raises(DatasetError, match="cannot read .*absent.txt"):
        read_boxes(tmp_path / "absent.txt")


def test_read_flags_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "cover.label"
    path.write_text("0\n8\nthree\n")
    with pytest.raises(DatasetError, match=r"cover.label, line 3: 'three' is not an integer flag"):
        read_flags(path, 3)
    path.write_text("0,1,0\n")
    assert read_flags(path, 3).tolist() == [0, 1, 0]
