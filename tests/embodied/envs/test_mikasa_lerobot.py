"""Demonstrations as a LeRobot v3.0 dataset (``export_lerobot`` / ``vla-export``): the files and
statistics without lerobot, then the real ``lerobot.datasets.LeRobotDataset`` opening the export.

The lerobot test needs lerobot and torchcodec (lerobot's only video decoder that works with
torchvision >= 0.24, which has no ``VideoReader`` for its "pyav" backend) and FFmpeg's shared libraries::

    pip install --no-deps lerobot==0.4.4 && pip install datasets==5.2.0 jsonlines==4.0.0 torchcodec==0.17.0
    apt-get install libavformat59 libavfilter8 libswscale6 libavdevice59   # Debian 12; or any FFmpeg 4-8
"""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
from memstream.embodied.envs.mikasa import export_lerobot, read_demonstrations
from memstream.embodied.envs.mikasa.lerobot_export import DATA_PATH, EPISODES_PATH, VIDEO_PATH
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.util import tiny_demos, vla

CAMERA = "observation.images.base_camera"


def test_export_writes_lerobot_v3_files_with_exact_statistics(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet  # noqa: F401

    source = tiny_demos(tmp_path / "demos", episodes=3, length=6)
    info = export_lerobot(source, tmp_path / "v3")
    ours = read_demonstrations(source)
    episodes = list(ours.episodes())
    out = tmp_path / "v3"
    assert info["codebase_version"] == "v3.0" and json.loads((out / "meta" / "info.json").read_text()) == info
    assert info["total_episodes"] == 3 and info["total_frames"] == 18 and info["data_path"] == DATA_PATH
    assert "total_chunks" not in info and info["features"]["action"]["fps"] == 20
    assert ours.info["codebase_version"] == "v2.1"  # the source is left as it was
    rows = pa.parquet.read_table(out / EPISODES_PATH).to_pylist()
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [(0, 6), (6, 12), (12, 18)]
    assert [r["seed"] for r in rows] == [10, 11, 12] and rows[1]["tasks"] == ["touch the cube"]
    for i, row in enumerate(rows):  # videos copied byte for byte: every frame still a key frame
        assert filecmp.cmp(out / VIDEO_PATH.format(video_key=CAMERA, chunk_index=0, file_index=i),
                           source / ours.info["video_path"].format(episode_chunk=0, video_key=CAMERA, episode_index=i),
                           shallow=False)
        assert row[f"videos/{CAMERA}/to_timestamp"] == pytest.approx(6 / 20)
    data = pa.parquet.read_table(out / DATA_PATH.format(chunk_index=0, file_index=0))
    actions = np.concatenate([e["actions"] for e in episodes])
    np.testing.assert_array_equal(np.asarray(data.column("action").to_pylist(), np.float32), actions)
    assert data.column("index").to_pylist() == list(range(18))
    stats = json.loads((out / "meta" / "stats.json").read_text())
    np.testing.assert_allclose(stats["action"]["mean"], actions.astype(np.float64).mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats["action"]["q50"], np.median(actions.astype(np.float64), 0), rtol=0, atol=1e-12)
    assert stats["action"]["count"] == [18] and np.shape(stats["next.done"]["max"]) == (1,)
    frames = np.concatenate([e[CAMERA] for e in episodes]).astype(np.float64) / 255
    assert np.shape(stats[CAMERA]["mean"]) == (3, 1, 1) and stats[CAMERA]["count"] == [18]
    np.testing.assert_allclose(np.ravel(stats[CAMERA]["mean"]), frames.mean((0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.ravel(stats[CAMERA]["std"]), frames.std((0, 1, 2)), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.ravel(stats[CAMERA]["max"]), frames.max((0, 1, 2)))
    assert rows[2][f"stats/{CAMERA}/count"] == [6]


def test_export_starts_a_new_data_file_past_the_size_limit(tmp_path, monkeypatch):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet  # noqa: F401
    from memstream.embodied.envs.mikasa import lerobot_export

    monkeypatch.setattr(lerobot_export, "DATA_FILE_MB", 0)  # every episode past the limit
    source = tiny_demos(tmp_path / "demos", episodes=3, length=5)
    export_lerobot(source, tmp_path / "v3")
    rows = pa.parquet.read_table(tmp_path / "v3" / EPISODES_PATH).to_pylist()
    assert [(r["data/chunk_index"], r["data/file_index"]) for r in rows] == [(0, 0), (0, 1), (0, 2)]
    tables = [pa.parquet.read_table(tmp_path / "v3" / DATA_PATH.format(chunk_index=0, file_index=i)) for i in range(3)]
    assert [t.column("index").to_pylist() for t in tables] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14]]
    assert lerobot_export._next_file(0, 999) == (1, 0)  # 1,000 files a chunk, as LeRobot's


def test_export_refuses_a_folder_with_files_and_the_command_an_overlapping_one(tmp_path, capsys):
    source = tiny_demos(tmp_path / "demos", episodes=1, length=4)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        export_lerobot(source, tmp_path / "full")
    assert vla(["vla-export", "--demos", str(source), "--out", str(source / "v3"), "--overwrite"]) == 2
    assert "overlap" in capsys.readouterr().out and (source / "meta" / "info.json").exists()
    assert vla(["vla-export", "--demos", str(source), "--out", str(tmp_path / "v3")]) == 0
    assert "exported 1 episodes (4 frames)" in capsys.readouterr().out


def _torchcodec_decodes(path) -> str | None:
    """None when torchcodec can decode ``path`` here, else why not (FFmpeg's libraries missing)."""
    decoders = pytest.importorskip("torchcodec.decoders")
    try:
        decoders.VideoDecoder(str(path))
    except (OSError, RuntimeError) as error:
        return f"torchcodec cannot load FFmpeg here: {str(error).splitlines()[0]}"
    return None


def test_lerobot_dataset_opens_the_export_as_our_reader_reads_the_source(tmp_path, monkeypatch):
    pytest.importorskip("lerobot")
    datasets = pytest.importorskip("datasets")
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet  # noqa: F401
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # its Arrow copies
    source = tiny_demos(tmp_path / "demos", episodes=3, length=6, expert_inputs=True)  # with the expert's inputs
    export_lerobot(source, tmp_path / "v3")
    reason = _torchcodec_decodes(tmp_path / "v3" / VIDEO_PATH.format(video_key=CAMERA, chunk_index=0, file_index=0))
    if reason:
        pytest.skip(reason)
    dataset = LeRobotDataset("local/rc3", root=tmp_path / "v3", video_backend="torchcodec")
    episodes = list(read_demonstrations(source).episodes())
    assert len(dataset) == 18 and dataset.num_episodes == 3 and dataset.fps == 20
    assert list(dataset.meta.episodes["dataset_from_index"]) == [0, 6, 12]
    assert list(dataset.meta.episodes["dataset_to_index"]) == [6, 12, 18]
    item = dataset[7]  # episode 1, frame 1
    assert (int(item["episode_index"]), int(item["frame_index"]), item["task"]) == (1, 1, "touch the cube")
    np.testing.assert_array_equal(item["observation.state"].numpy(), episodes[1]["states"][1])
    np.testing.assert_array_equal(item["action"].numpy(), episodes[1]["actions"][1])
    # LeRobot's key for privileged state (what vla-relabel labels from): stored float64, LeRobot's
    # tensors are float32
    state = item["observation.environment_state"].numpy()
    assert state.shape == (7,) and pa.parquet.read_table(tmp_path / "v3" / "data" / "chunk-000" / "file-000.parquet") \
        .schema.field("observation.environment_state").type.value_type == pa.float64()
    np.testing.assert_array_equal(state, episodes[1]["observation.environment_state"][1].astype(state.dtype))
    frame = np.rint(item[CAMERA].permute(1, 2, 0).numpy() * 255).astype(np.int16)
    # two decoders (torchcodec on the system's FFmpeg, ours PyAV's own) turn YUV into RGB: equal here
    assert frame.shape == (32, 32, 3) and np.abs(frame - episodes[1][CAMERA][1]).max() <= 2
    np.testing.assert_allclose(dataset.meta.stats["action"]["mean"],
                               np.concatenate([e["actions"] for e in episodes]).astype(np.float64).mean(0), atol=1e-12)
    ahead = LeRobotDataset("local/rc3", root=tmp_path / "v3", video_backend="torchcodec",
                           delta_timestamps={"action": [0.0, 0.05, 0.1]})
    assert ahead[5]["action_is_pad"].tolist() == [False, True, True]  # the episode's last frame: nothing after it
    np.testing.assert_array_equal(ahead[4]["action"].numpy(), episodes[0]["actions"][[4, 5, 5]])  # held at the end
