"""Synthetic footage raw and through H.264: one ground truth, frames that differ by the codec only."""

from __future__ import annotations

import numpy as np
import pytest

from memstream.streaming.errors import ConfigError
from memstream.streaming.videoio import write_video
from memstream.tracking.eval.footage import load_synthetic, parse_codec

URI = "synthetic://occlusion?seed=3&frames=12&size=96x64"


def mean_abs_error(a, b) -> float:
    return float(np.mean([np.abs(x.rgb.astype(np.int16) - y.rgb).mean() for x, y in zip(a.frames, b.frames)]))


def test_codec_names() -> None:
    assert parse_codec("raw") is None
    assert parse_codec("crf18") == 18 and parse_codec("crf0") == 0 and parse_codec("crf51") == 51
    for bad in ("crf52", "crf", "h264", "CRF18", "crf-1", "crf018"):
        with pytest.raises(ConfigError, match="unknown encoding"):
            parse_codec(bad)


def test_encodings_share_the_ground_truth_and_lose_more_at_higher_crf(tmp_path) -> None:
    raw = load_synthetic(URI)
    crf18 = load_synthetic(URI, "crf18", tmp_path)
    crf28 = load_synthetic(URI, "crf28", tmp_path)
    assert raw.video_path is None and raw.num_frames == crf18.num_frames == crf28.num_frames == 12
    for footage in (crf18, crf28):
        assert np.array_equal(footage.gt_xywh, raw.gt_xywh)
        assert np.array_equal(footage.target_visible, raw.target_visible)
        assert np.array_equal(footage.frames[5].gt.boxes_xywh, raw.frames[5].gt.boxes_xywh)
        assert [f.index for f in footage.frames] == list(range(12))
        assert footage.frames[0].rgb.shape == (64, 96, 3)
        assert footage.video_path is not None and footage.video_path.parent == tmp_path
    assert np.array_equal(raw.gt_xywh[0], raw.frames[0].gt.boxes_xywh[0])
    assert 0 < mean_abs_error(crf18, raw) < mean_abs_error(crf28, raw)


def test_each_encoding_is_written_once(tmp_path) -> None:
    first = load_synthetic(URI, "crf28", tmp_path)
    written = first.video_path.stat().st_mtime_ns
    again = load_synthetic(URI, "crf28", tmp_path)
    assert again.video_path == first.video_path and again.video_path.stat().st_mtime_ns == written
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.video_path.name]  # no temporary left
    other_scene = load_synthetic(URI.replace("seed=3", "seed=4"), "crf28", tmp_path)
    assert other_scene.video_path != first.video_path


def test_without_a_cache_nothing_is_kept() -> None:
    footage = load_synthetic(URI, "crf18")
    assert footage.video_path is None and footage.num_frames == 12


def test_a_source_without_ground_truth_is_refused(tmp_path) -> None:
    video = tmp_path / "plain.mp4"
    write_video(video, [np.zeros((48, 64, 3), np.uint8)] * 2, fps=10)
    with pytest.raises(ConfigError, match="no frames with ground truth"):
        load_synthetic(str(video), "crf18", tmp_path)
