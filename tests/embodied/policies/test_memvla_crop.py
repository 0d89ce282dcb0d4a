"""``MemoryVLAConfig.image_crop``: the policy sees one square of every image, resized back to full size,
everywhere it takes images (training, ``select_action``, the binding warm start), the pointer targets
are projected into that square, and ``vla-train --image-crop`` records it and refuses a square that
leaves the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from memstream.embodied.policies.memvla import MemoryVLAConfig, MemoryVLAPolicy
from memstream.embodied.policies.memvla.binding import binding_samples, policy_binding_model
from memstream.embodied.policies.memvla.modeling_memvla import PolicyInputError, crop_images
from memstream.streaming.errors import ConfigError

from tests.embodied.policies.test_memvla_binding import SIZE, cue_scenes, policy_for
from tests.embodied.policies.util import down_camera, tiny_demos, vla

CROP = (8, 4, 16)  # top, left, size in the 32 px scenes
TINY = ["--steps", "2", "--batch-episodes", "2", "--threads", "1", "--no-progress"]


def outside_changed(images: np.ndarray) -> np.ndarray:
    """``images (..., H, W, 3)`` uint8 with every pixel outside :data:`CROP` replaced by noise."""
    top, left, size = CROP
    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, images.shape, dtype=np.uint8)
    out[..., top:top + size, left:left + size, :] = images[..., top:top + size, left:left + size, :]
    return out


def test_the_crop_is_the_square_resized_back_to_the_full_image():
    images = torch.zeros(2, 3, 32, 32)
    images[:, 0, 8:24, 4:12] = 1.0  # the square's left half red, its right half blue
    images[:, 2, 8:24, 12:20] = 1.0
    out = crop_images(images, CROP)
    assert out.shape == images.shape
    # bilinear x2: output column x samples the square at (x + 0.5) / 2 - 0.5, so columns 0-14 see only
    # the red half, 15 and 16 the seam, 17-31 only the blue half
    assert torch.equal(out[:, :, :, :15], torch.tensor([1.0, 0, 0])[None, :, None, None].expand(2, 3, 32, 15))
    assert torch.equal(out[:, :, :, 17:], torch.tensor([0, 0, 1.0])[None, :, None, None].expand(2, 3, 32, 15))
    noisy = torch.rand_like(images)
    noisy[..., 8:24, 4:20] = images[..., 8:24, 4:20]
    assert torch.equal(crop_images(noisy, CROP), out)  # nothing outside the square reaches it
    assert torch.equal(crop_images(images, (0, 0, 32)), images) and crop_images(images, None) is images
    frames = torch.rand(2, 5, 3, 32, 32)  # a time axis: every frame cut the same way
    assert torch.equal(crop_images(frames, CROP)[1, 3], crop_images(frames[1, 3], CROP))


@pytest.mark.parametrize("crop, says", [
    ((8, 4), "three whole numbers"),
    ((8, 4, 16.0), "three whole numbers"),
    ((True, 4, 16), "three whole numbers"),
    ((8, 4, 0), "not a square inside the 32 x 32 image"),
    ((-1, 4, 16), "not a square inside"),
    ((20, 4, 16), "top \\+ size <= 32"),
    ((8, 20, 16), "not a square inside"),
])
def test_a_crop_that_is_not_a_square_inside_the_image_is_refused(crop, says):
    with pytest.raises(ConfigError, match=says):
        policy_for(cue_scenes(2), image_crop=crop)


def test_the_policy_acts_on_the_square_alone_and_keeps_the_crop_when_saved(tmp_path):
    data = cue_scenes(4)
    policy = policy_for(data, image_crop=CROP, inference_noise=0.0, n_action_steps=1).eval()
    frame = data.images[3:4]  # a frame with the coloured patches

    def act(image: np.ndarray) -> torch.Tensor:
        policy.reset()
        return policy.select_action({"observation.image": image, "observation.state": data.states[3:4],
                                     "task": ["touch the cued cube"]})

    action = act(frame)
    assert torch.equal(act(outside_changed(frame)), action)
    inside = frame.copy()
    inside[:, 12:16, 8:12] = 255
    assert not torch.equal(act(inside), action)
    with pytest.raises(PolicyInputError, match="16 x 16 px, but the policy's image_crop"):
        act(frame[:, :16, :16])
    policy.save_pretrained(tmp_path / "p")
    loaded = MemoryVLAPolicy.from_pretrained(tmp_path / "p")
    assert loaded.config.image_crop == CROP
    assert json.loads((tmp_path / "p" / "config.json").read_text())["image_crop"] == list(CROP)
    assert MemoryVLAConfig().image_crop is None


def test_the_binding_warm_start_sees_the_square_the_policy_sees():
    data = cue_scenes(4)
    model = policy_binding_model(policy_for(data, image_crop=CROP)).eval()
    samples = binding_samples(data)
    with torch.no_grad():
        out = model(samples["memory"], samples["query"])
        pointer = model.pointer.clone()
        changed = model(torch.from_numpy(outside_changed(samples["memory"].numpy())),
                        torch.from_numpy(outside_changed(samples["query"].numpy())))
    assert torch.equal(changed, out) and torch.equal(model.pointer, pointer)
    uncropped = policy_binding_model(policy_for(data)).eval()
    with torch.no_grad():
        assert not torch.equal(uncropped(torch.from_numpy(outside_changed(samples["memory"].numpy())), samples["query"]),
                               uncropped(samples["memory"], samples["query"]))


def test_world_points_project_into_the_tokens_of_the_square():
    from memstream.embodied.policies.memvla.mikasa import project_to_tokens

    camera = down_camera(32)
    k, e = np.asarray(camera["intrinsic_cv"]), np.asarray(camera["extrinsic_cv"])
    points = np.array([[0.0, 0.0, 0.0],     # pixel (16, 16): the square's (12, 8) of 16, i.e. (24, 16) of 32
                       [-0.1, 0.1, 0.02],   # pixel (12.7, 12.7): the square's (17.4, 9.4) of 32
                       [-0.3, -0.3, 0.0]])  # pixel (6.4, 25.6): inside the image, below the square
    assert project_to_tokens(points, k, e, 32, 2).tolist() == [3, 0, 2]
    assert project_to_tokens(points, k, e, 32, 2, CROP).tolist() == [3, 1, -1]
    assert project_to_tokens(points, k, e, 32, 4, CROP).tolist() == [2 * 4 + 3, 1 * 4 + 2, -1]
    with pytest.raises(ConfigError, match="not a square inside"):
        project_to_tokens(points, k, e, 32, 2, (20, 20, 16))


def test_train_records_the_crop_projects_the_pointer_targets_into_it_and_refuses_a_bad_one(tmp_path, capsys):
    demos = tiny_demos(tmp_path / "d", episodes=4, camera_params={"base_camera": down_camera(32, 20.0)})  # ends near the centre
    readout = ["--demos", str(demos), "--chunk-prior", "--prior-readout", "2", "--pointer-loss", "1"]
    assert vla(["vla-train", *readout, *TINY, "--image-crop", *map(str, CROP), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "mikasa.json").read_text())["image_crop"] == list(CROP)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["image_crop"] == list(CROP)
    capsys.readouterr()
    # every end point lies near the image centre: a square in the top-left corner holds none of them
    assert vla(["vla-train", *readout, *TINY, "--image-crop", "0", "0", "8", "--out", str(tmp_path / "corner")]) == 2
    assert "so --pointer-loss has nothing to train" in capsys.readouterr().out
    for crop, says in ((["20", "4", "16"], "is not a square inside the 32 x 32 image"),
                       (["-1", "4", "16"], "--image-crop needs TOP, LEFT >= 0 and SIZE >= 1, got -1 4 16")):
        assert vla(["vla-train", *readout, *TINY, "--image-crop", *crop, "--out", str(tmp_path / "bad")]) == 2, says
        printed = capsys.readouterr().out
        assert says in printed and printed.count("\n") == 1, printed
    assert not (tmp_path / "corner").exists() and not (tmp_path / "bad").exists()
    # a resumed run keeps its square
    assert vla(["vla-train", *readout, "--steps", "3", *TINY[2:], "--out", str(tmp_path / "run"), "--resume"]) == 2
    assert "was trained with image_crop=[8, 4, 16], this run asks for None" in capsys.readouterr().out
    assert vla(["vla-train", *readout, "--steps", "3", *TINY[2:], "--image-crop", *map(str, CROP),
                "--out", str(tmp_path / "run"), "--resume"]) == 0
    # and a run started from its weights sees the same square
    capsys.readouterr()
    assert vla(["vla-train", *readout, *TINY, "--init-from", str(tmp_path / "run"), "--out", str(tmp_path / "on")]) == 2
    assert "was trained with image_crop=[8, 4, 16], this run has None" in capsys.readouterr().out
    assert not (tmp_path / "on").exists()
    assert vla(["vla-train", *readout, *TINY, "--image-crop", *map(str, CROP), "--init-from", str(tmp_path / "run"),
                "--out", str(tmp_path / "on")]) == 0
    assert SIZE == 32
