"""``memstream vla-relabel``: a collection's frames labelled again by a changed expert from the inputs it
stored (``observation.environment_state``), the rollouts kept byte for byte; merging and training beside
folders that store no inputs; the refusals. Simulator collections are checked in test_vla_collect.py."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
from memstream.embodied.envs.mikasa import ENVIRONMENT_STATE_NAMES, expert_action, experts, merge_demonstrations, read_demonstrations
from memstream.embodied.envs.mikasa.dataset import ENVIRONMENT_STATE, relabel_demonstrations
from memstream.embodied.policies.memvla.mikasa import load_mikasa_demonstrations
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.util import tiny_demos, vla


def _video(root, index: int) -> str:
    reader = read_demonstrations(root)
    return str(reader.video_file(index, "observation.images.base_camera"))


def test_the_same_expert_gives_every_stored_label_again_and_the_rollouts_are_copied_unchanged(tmp_path):
    source = tiny_demos(tmp_path / "d", episodes=3, length=20, task="InterceptMedium", expert_inputs=True)
    before = read_demonstrations(source)
    assert before.info["features"][ENVIRONMENT_STATE] == {"dtype": "float64", "shape": [14],
                                                          "names": list(ENVIRONMENT_STATE_NAMES["intercept"])}
    info = relabel_demonstrations(tmp_path / "r", source)
    assert (info["changed_frames"], info["frames"], info["changed_episodes"]) == (0, 60, 0)
    after = read_demonstrations(tmp_path / "r")
    assert after.info["memstream"]["relabelled"] == {"source": str(source), "expert": None, "expert_labels": None,
                                                     "changed_frames": 0, "frames": 60, "changed_episodes": 0}
    assert after.info["memstream"]["expert_labels"] == {"low_clear_m": experts.LOW_CLEAR_M}
    assert after.info["features"] == before.info["features"] and after.records == before.records
    for i in range(3):
        got, want = after.episode(i), before.episode(i)
        for key in ("actions", "states", ENVIRONMENT_STATE, "frame_index", "next.reward", "index"):
            np.testing.assert_array_equal(got[key], want[key])
        assert got[ENVIRONMENT_STATE].dtype == np.float64
        assert filecmp.cmp(_video(tmp_path / "r", i), _video(source, i), shallow=False)


def test_a_changed_expert_relabels_exactly_the_frames_it_now_labels_otherwise(tmp_path, monkeypatch):
    source = tiny_demos(tmp_path / "d", episodes=4, length=30, seed=3, task="InterceptMedium", expert_inputs=True)
    stored = [read_demonstrations(source).episode(i) for i in range(4)]
    # the lifting expert of before stop 50: a hand down off its run-up point never slides there
    monkeypatch.setattr(experts, "LOW_CLEAR_M", 10.0)
    info = relabel_demonstrations(tmp_path / "r", source)
    relabelled = read_demonstrations(tmp_path / "r")
    changed = 0
    for i, old in enumerate(stored):
        new = relabelled.episode(i)
        want = np.stack([expert_action("intercept", row, int(t))
                         for row, t in zip(old[ENVIRONMENT_STATE], old["frame_index"], strict=True)])
        np.testing.assert_array_equal(new["actions"], want)
        np.testing.assert_array_equal(new["states"], old["states"])
        changed += int(np.any(want != old["actions"], axis=1).sum())
    assert 0 < info["changed_frames"] == changed < info["frames"] == 120  # random states where the hand slid
    assert relabelled.info["memstream"]["expert_labels"] == {"low_clear_m": 10.0}
    assert relabelled.info["memstream"]["relabelled"]["expert_labels"] is None  # the source's record: none here
    # a relabelled folder merges with folders labelled the same way, not with those labelled otherwise
    other = tiny_demos(tmp_path / "e", episodes=1, first_seed=99, task="InterceptMedium", expert_inputs=True)
    relabel_demonstrations(tmp_path / "re", other)
    assert merge_demonstrations(tmp_path / "m", [tmp_path / "r", tmp_path / "re"])["total_episodes"] == 5
    _stamp(other, {**relabelled.info["memstream"]["expert"]}, {"low_clear_m": 0.055})
    with pytest.raises(ConfigError, match="were labelled differently"):
        merge_demonstrations(tmp_path / "m2", [tmp_path / "r", other])


def _stamp(root, expert: dict, labels: dict) -> None:
    """Record ``expert`` / ``expert_labels`` in ``root``'s ``meta/info.json`` as a collection does."""
    path = root / "meta" / "info.json"
    info = json.loads(path.read_text())
    info["memstream"].update({"expert": expert, "expert_labels": labels})
    path.write_text(json.dumps(info))


def test_remember_color_labels_come_back_from_the_cube_and_the_cue_phase(tmp_path):
    source = tiny_demos(tmp_path / "d", episodes=2, length=12, task="RememberColor3", expert_inputs=True)
    episode = read_demonstrations(source).episode(0)
    frozen = episode[ENVIRONMENT_STATE][:, 6] > 0
    assert frozen.any() and not np.abs(episode["actions"][frozen]).any()  # zero while the cue froze the arm
    assert relabel_demonstrations(tmp_path / "r", source)["changed_frames"] == 0


def test_folders_with_and_without_stored_inputs_train_side_by_side_and_merge_without_them(tmp_path):
    stored = tiny_demos(tmp_path / "a", episodes=2, first_seed=0, expert_inputs=True)
    plain = tiny_demos(tmp_path / "b", episodes=1, first_seed=2)
    assert load_mikasa_demonstrations([stored, plain]).num_episodes == 3  # no policy reads the expert's inputs
    mixed = merge_demonstrations(tmp_path / "m", [stored, plain])
    assert ENVIRONMENT_STATE not in mixed["features"]
    assert ENVIRONMENT_STATE not in read_demonstrations(tmp_path / "m").episode(0)
    kept = merge_demonstrations(tmp_path / "k", [stored, tiny_demos(tmp_path / "c", episodes=1, first_seed=5,
                                                                     expert_inputs=True)])
    assert kept["features"][ENVIRONMENT_STATE]["shape"] == [7]
    np.testing.assert_array_equal(read_demonstrations(tmp_path / "k").episode(1)[ENVIRONMENT_STATE],
                                  read_demonstrations(stored).episode(1)[ENVIRONMENT_STATE])


def test_vla_relabel_writes_the_copy_and_says_how_many_labels_changed(tmp_path, capsys):
    source = tiny_demos(tmp_path / "d", episodes=2, length=5, task="InterceptMedium", expert_inputs=True)
    assert vla(["vla-relabel", "--demos", str(source), "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"relabelled 2 episodes of {source}: 0 of 10 frames (0 episodes) have new labels: {tmp_path / 'r'}"
    assert json.loads((tmp_path / "r" / "meta" / "info.json").read_text())["total_episodes"] == 2


@pytest.mark.parametrize(("make", "out", "says"), [
    # a folder collected before the expert's inputs were stored: nothing to label from
    (lambda tmp: tiny_demos(tmp / "d", episodes=1), "r", "stores no observation.environment_state"),
    (lambda tmp: tiny_demos(tmp / "d", episodes=1, expert_inputs=True), "d/inner", "overlap"),
    (lambda tmp: tmp / "nothing", "r", "is not a demonstration dataset"),
])
def test_vla_relabel_refusals_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, make, out, says):
    source = make(tmp_path)
    assert vla(["vla-relabel", "--demos", str(source), "--out", str(tmp_path / out), "--no-progress"]) == 2
    line = capsys.readouterr().out.strip()
    assert line.startswith("error: ") and says in line and len(line.splitlines()) == 1
    assert not (tmp_path / out / "meta").exists()


def test_inputs_stored_under_other_names_are_refused(tmp_path):
    source = tiny_demos(tmp_path / "d", episodes=1, task="InterceptMedium", expert_inputs=True)
    info_path = source / "meta" / "info.json"
    info = json.loads(info_path.read_text())
    info["features"][ENVIRONMENT_STATE]["names"][0] = "elbow_x"  # another expert's inputs
    info_path.write_text(json.dumps(info))
    with pytest.raises(ConfigError, match="the InterceptMedium expert reads"):
        relabel_demonstrations(tmp_path / "r", source)
    assert not (tmp_path / "r").exists()


def test_expert_action_names_a_row_of_the_wrong_length():
    with pytest.raises(ConfigError, match="no scripted expert acts on a 'intercept' state of 7 values"):
        expert_action("intercept", np.zeros(7), 0)
