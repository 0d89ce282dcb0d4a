"""The memory policy on MIKASA-Robo: training on stored demonstrations, checkpoints, and evaluation.

The demonstrations are a folder written by :func:`~memstream.embodied.envs.mikasa.write_demonstrations`
(LeRobot v2.1 layout); the policy reads one camera (``observation.images.<camera>``) and
``observation.state`` and predicts chunks of the suite's 7-d ``pd_ee_delta_pose`` actions with the
flow-matching head. A trained folder holds the policy (``config.json`` + ``model.safetensors``) and
``mikasa.json``: the task, camera, rendering and action space it was trained for, which
:func:`load_mikasa_policy` checks before an evaluation.

Variants (:data:`VLA_VARIANTS`): ``bank`` (MemoryVLA's: token-merge consolidation + gate fusion),
``fifo`` (the oldest entry is dropped), ``no_memory`` (the current frame only); the memory length
L (bank capacity, MemoryVLA's 16; its ablation 4 / 16 / 64) is a separate setting. Every variant
starts from the same initial weights for one seed.

Example (needs the ``mikasa`` extra and a Vulkan device for the evaluation)::

    data = load_mikasa_demonstrations("demos/rc3")
    policy = mikasa_policy(data, "bank", memory_length=16, seed=0)
    train_with_checkpoints(policy, data, "runs/rc3_bank", steps=2000)
    rows = evaluate_mikasa(load_mikasa_policy("runs/rc3_bank"), episodes=100)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from memstream.embodied.bank import BankReadout, MemoryBankConfig
from memstream.embodied.envs.types import EpisodeDataset
from memstream.embodied.policies.memvla.configuration_memvla import check_crop
from memstream.embodied.policies.memvla.modeling_memvla import MemoryVLAPolicy
from memstream.embodied.policies.memvla.training import dataset_stats, episode_batch, optimizer_step
from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.errors import ConfigError, MemstreamError
from memstream.streaming.progress import progress as progress_bar

#: name -> MemoryVLAConfig overrides (``bank`` holds MemoryBankConfig overrides)
VLA_VARIANTS: dict[str, dict[str, Any]] = {
    "no_memory": {"memory": "none"},
    "bank": {},
    "fifo": {"bank": {"consolidation": "fifo"}},
}
ACTION_SPACE = {"control_mode": "pd_ee_delta_pose", "action_dim": 7}  # MemoryVLA's end-effector control
META_NAME = "mikasa.json"
CHECKPOINT_DIR = "checkpoint"
TRAINING_STATE = "training_state.pt"


def load_mikasa_demonstrations(root: str | Path | Sequence[str | Path], camera: str = "base_camera",
                               max_episodes: int | None = None) -> EpisodeDataset:
    """The episodes of one demonstration folder, or of several in the order given, as an
    :class:`EpisodeDataset` of one camera.

    Several folders let demonstrations be collected in parallel (one collector a seed range, as
    LeRobot's ``MultiLeRobotDataset`` joins datasets) and joined without copying: they must hold the
    same task, camera image size and rendering, and no simulator seed twice. ``max_episodes`` counts
    across the folders.

    Raises:
        MemstreamError: not a demonstration folder, no episodes yet, no such camera (names the
            cameras it has), or folders that do not match (names the first that differs).
    """
    readers = _demonstration_readers(root, camera)
    total = sum(len(reader) for reader in readers)
    key = f"observation.images.{camera}"
    count = total if max_episodes is None else min(max_episodes, total)
    if count < 1:
        raise MemstreamError(f"{_folders(readers)} holds no finished episode yet", "Collect demonstrations first")
    images, states, actions, frames, episodes, hidden, reveal, success = [], [], [], [], [], [], [], []
    for source, i in [(reader, i) for reader in readers for i in range(len(reader))][:count]:
        episode = source.episode(i)
        length = len(episode["actions"])
        if len(episode[key]) != length:
            raise MemstreamError(f"episode {i} of {str(source.root)!r} has {len(episode[key])} frames for {length} actions",
                                 "Re-collect that episode")
        episodes.append(np.full(length, len(actions)))
        images.append(episode[key])
        states.append(episode["states"])
        actions.append(episode["actions"])
        frames.append(np.arange(length))
        hidden.append(episode["meta"].get("hidden_info") or [])
        reveal.append(int(episode["meta"].get("reveal_frames", 0)))
        success.append(bool(episode["meta"].get("success", True)))
    lengths = np.array([len(a) for a in actions])
    width = max((len(h) for h in hidden), default=0)
    task = readers[0].info.get("memstream", {}).get("task", "")
    from memstream.embodied.envs.mikasa.env import continuous_rpy

    states_all = np.concatenate(states).astype(np.float32)
    states_all[:, 3:6] = continuous_rpy(states_all[:, 3:6])  # demonstrations stored before the roll was wrapped
    return EpisodeDataset(
        images=np.concatenate(images), states=states_all,
        actions=np.concatenate(actions).astype(np.float32), episode_index=np.concatenate(episodes).astype(np.int64),
        frame_index=np.concatenate(frames).astype(np.int64), task_index=np.zeros(int(lengths.sum()), np.int64),
        tasks=tuple(readers[0].tasks or [""]), episode_bounds=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        success=np.array(success), hidden_info=np.array([h + [0] * (width - len(h)) for h in hidden], np.int64).reshape(count, width),
        reveal_frames=np.array(reveal, np.int64), task_name=task, seed=int(readers[0].records[0].get("seed", 0)))


def demonstration_seeds(root: str | Path | Sequence[str | Path]) -> list[int]:
    """[first, last] simulator seed over every episode of the demonstration folder(s): an
    evaluation must avoid this range. Only reads the folders' records: whether they can train
    together is :func:`load_mikasa_demonstrations`'s check, made once."""
    from memstream.embodied.envs.mikasa.dataset import read_demonstrations

    readers = [read_demonstrations(path) for path in _roots(root)]
    seeds = [int(record["seed"]) for reader in readers for record in reader.records]
    if not seeds:
        raise MemstreamError(f"{_folders(readers)} holds no finished episode yet", "Collect demonstrations first")
    return [min(seeds), max(seeds)]


def _folders(readers: list[Any]) -> str:
    return ", ".join(repr(str(reader.root)) for reader in readers)


def _roots(root: str | Path | Sequence[str | Path]) -> list[str | Path]:
    roots = [root] if isinstance(root, (str, Path)) else list(root)
    if not roots:
        raise ConfigError("no demonstration folder given", "Pass at least one folder written by write_demonstrations")
    return roots


def _demonstration_readers(root: str | Path | Sequence[str | Path], camera: str | None = None) -> list[Any]:
    """Open each folder and check that they can train one policy together (see
    :func:`load_mikasa_demonstrations`); ``camera``, if given, must be in every one."""
    from memstream.embodied.envs.mikasa.dataset import check_joinable, read_demonstrations

    readers = [read_demonstrations(path) for path in _roots(root)]
    if camera is not None:
        key = f"observation.images.{camera}"
        for reader in readers:
            features = reader.info.get("features", {})
            if key not in features:
                cameras = [k.split(".")[-1] for k in features if k.startswith("observation.images.")]
                raise ConfigError(f"the demonstrations in {str(reader.root)!r} have no camera {camera!r}",
                                  f"Pick one of: {', '.join(cameras)}")
    check_joinable(readers, camera)
    return readers


def demonstration_camera(root: str | Path | Sequence[str | Path], camera: str = "base_camera") -> dict[str, np.ndarray]:
    """``camera``'s pinhole model for the demonstration folder(s): ``{"intrinsic": (3, 3), "extrinsic":
    (3, 4)}`` float64, OpenCV convention (world to camera), as ManiSkill's sensor reports it.

    Read from ``meta/info.json`` (recorded at collection); a folder written before that is answered
    by the simulator (the suite's world-fixed camera depends only on the task and the image size),
    which needs the ``mikasa`` extra and a Vulkan device.

    Raises:
        ConfigError: a camera that moves with the hand (no fixed projection), or folders that record
            different parameters. MemstreamError: none recorded and the simulator cannot start.
    """
    if camera == "hand_camera":
        raise ConfigError("the hand camera moves with the arm, so a world point has no fixed token in its image",
                          "Train the pointer loss on base_camera images")
    readers = _demonstration_readers(root, camera)
    recorded = [(reader, reader.info.get("memstream", {}).get("camera_params", {}).get(camera)) for reader in readers]
    recorded = [(reader, params) for reader, params in recorded if params is not None]
    for reader, params in recorded[1:]:
        if not np.allclose(np.asarray(params["extrinsic_cv"]), np.asarray(recorded[0][1]["extrinsic_cv"]), atol=1e-5) \
                or not np.allclose(np.asarray(params["intrinsic_cv"]), np.asarray(recorded[0][1]["intrinsic_cv"]), atol=1e-5):
            raise ConfigError(f"demonstration folders {str(recorded[0][0].root)!r} and {str(reader.root)!r} record different "
                              f"{camera} parameters", "Train on folders collected with the same camera")
    if recorded:
        params = recorded[0][1]
    else:
        from memstream.embodied.envs.mikasa import make_mikasa_env

        first = readers[0]
        own = first.info.get("memstream", {})
        size = int(first.info["features"][f"observation.images.{camera}"]["shape"][0])
        try:
            env = make_mikasa_env(own.get("task", ""), seed=0, image_size=size, cameras=(camera,),
                                  camera_housing=bool(own.get("camera_housing", False)))
        except MemstreamError as error:
            raise MemstreamError(f"{str(first.root)!r} was collected before the camera parameters were recorded, and the "
                                 f"simulator that could tell them does not start: {error.what}",
                                 "Install the mikasa extra (README, MIKASA-Robo) or collect the demonstrations again") from error
        try:
            env.reset()
            params = env.camera_params()[camera]
        finally:
            env.close()
    return {"intrinsic": np.asarray(params["intrinsic_cv"], np.float64).reshape(3, 3),
            "extrinsic": np.asarray(params["extrinsic_cv"], np.float64).reshape(3, 4)}


def project_to_pixels(points: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray) -> np.ndarray:
    """float64 ``(N, 2)``: where each world point ``(N, 3)`` lands in the image, ``(u, v)`` in pixels
    across and down from its top left corner (``floor`` gives the pixel, as :func:`project_to_tokens`
    reads it; a simulator test checks it against the render), through the pinhole camera
    (``intrinsic_cv`` 3x3, ``extrinsic_cv`` 3x4 world to camera, as ``MikasaEnv.camera_params``
    reports them); NaN for a point behind the camera. Scale ``intrinsic``'s first two rows by
    ``new_px / recorded_px`` for an image of another size."""
    points = np.asarray(points, np.float64).reshape(-1, 3)
    extrinsic = np.asarray(extrinsic, np.float64).reshape(3, 4)
    seen = (points @ extrinsic[:, :3].T + extrinsic[:, 3]) @ np.asarray(intrinsic, np.float64).reshape(3, 3).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(seen[:, 2:] > 0, seen[:, :2] / seen[:, 2:], np.nan)


def _in_crop(uv: np.ndarray, image_px: int, crop: tuple[int, int, int] | None) -> np.ndarray:
    """Pixel places ``(N, 2)`` of an ``image_px`` square image as the policy's encoder sees them: with
    ``crop = (top, left, size)`` (``MemoryVLAConfig.image_crop``) in that square scaled up to
    ``image_px``; unchanged without one."""
    if crop is None:
        return uv
    top, left, size = check_crop(crop, (image_px, image_px))
    return (uv - np.array([left, top], np.float64)) * (image_px / size)


def project_to_tokens(points: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray, image_px: int,
                      grid: int, crop: tuple[int, int, int] | None = None) -> np.ndarray:
    """int64 ``(N,)``: the token of a ``grid x grid`` image-token grid (row-major from the top left, as
    the perceptual encoders order them) that each world point ``(N, 3)`` projects into through the
    pinhole camera; -1 for a point behind the camera or outside the ``image_px`` square image. With
    ``crop = (top, left, size)`` (``MemoryVLAConfig.image_crop``) the grid covers that square only,
    as the policy's encoder sees it, and a point outside it is -1."""
    uv = _in_crop(project_to_pixels(points, intrinsic, extrinsic), image_px, crop)
    inside = np.isfinite(uv).all(1) & (uv >= 0).all(1) & (uv < image_px).all(1)
    cells = np.floor(np.where(inside[:, None], uv, 0.0) / (image_px / grid)).astype(np.int64).clip(0, grid - 1)
    return np.where(inside, cells[:, 1] * grid + cells[:, 0], -1)


def end_point_tokens(data: EpisodeDataset, camera: dict[str, np.ndarray], grid: int,
                     crop: tuple[int, int, int] | None = None) -> np.ndarray:
    """int64 ``(N,)``: per episode, the image token of the object where its expert stops, -1 where it
    leaves the image: the tip's x, y at the last frame (``observation.state[:2]``; RememberColor: above
    the cued cube) at the height of the objects' centres. The tip itself stops a few cm above the
    cube, which projects one token higher in 40 % of RememberColor5's episodes. The targets of
    ``MemoryVLAConfig.pointer_loss_weight``; ``crop`` the policy's ``image_crop``."""
    from memstream.embodied.envs.mikasa.experts import OBJECT_CENTRE_Z_M

    last = data.episode_bounds[1:] - 1
    points = np.concatenate([data.states[last, :2], np.full((len(last), 1), OBJECT_CENTRE_Z_M)], axis=1)
    return project_to_tokens(points, camera["intrinsic"], camera["extrinsic"], int(data.images.shape[1]), grid, crop)


#: The Intercept ball's colour test: red minus twice the larger of green and blue. The ball renders
#: pure red (about 190, 2, 2: score ~185, ~140 after the dataset's H.264 coding); the table's wood
#: and the target's red and white rings stay below 80 (measured on 8 expert episodes, 128 px, coded).
BALL_SCORE_MIN = 100
BALL_SCORE_FLOOR = 60  # pixels around the peak weigh by their score above this


def ball_pixels(images: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """float64 ``(N, 2)``: where the Intercept tasks' rolling ball is in each RGB frame ``(N, H, W, 3)``
    uint8, ``(u, v)`` pixels across and down (pixel centres at +0.5, as :func:`project_to_pixels`),
    NaN where no pixel is red enough (the ball out of view or behind the arm).

    From the pixels alone, so it labels stored demonstrations without their simulator: the
    score-weighted centroid of the pixels within ``max(4, W // 32)`` of the frame's reddest one (see
    :data:`BALL_SCORE_MIN`). Checked against the simulator's ball on H.264-coded expert frames
    (tests/embodied/envs/test_mikasa_sim.py): median 0.3 px off. The targets of
    ``MemoryVLAConfig.keypoint_loss_weight``."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ConfigError(f"ball_pixels needs RGB frames (N, H, W, 3), got shape {images.shape}",
                          "Pass the dataset's images, e.g. EpisodeDataset.images")
    n, height, width = images.shape[:3]
    radius = max(4, width // 32)
    out = np.full((n, 2), np.nan)
    for begin in range(0, n, chunk):
        frames = images[begin:begin + chunk].astype(np.int16)
        score = frames[..., 0] - 2 * np.maximum(frames[..., 1], frames[..., 2])
        flat = score.reshape(len(frames), -1)
        peak = flat.argmax(axis=1)
        for i in np.flatnonzero(flat[np.arange(len(frames)), peak] >= BALL_SCORE_MIN).tolist():
            v0, u0 = divmod(int(peak[i]), width)
            top, left = max(v0 - radius, 0), max(u0 - radius, 0)
            weight = np.clip(score[i, top:v0 + radius + 1, left:u0 + radius + 1] - BALL_SCORE_FLOOR, 0, None).astype(np.float64)
            vs, us = np.mgrid[top:top + weight.shape[0], left:left + weight.shape[1]]
            out[begin + i] = ((weight * (us + 0.5)).sum(), (weight * (vs + 0.5)).sum())
            out[begin + i] /= weight.sum()
    return out


def pixels_to_grid(uv: np.ndarray, image_px: int, grid: int, crop: tuple[int, int, int] | None = None) -> np.ndarray:
    """float64 ``(N, 2)``: pixel places ``(N, 2)`` (``(u, v)``, pixel centres at +0.5) in the coordinates
    of a ``grid x grid`` spatial readout (x, y: -1 and 1 at the corner tokens' centres, see
    ``SpatialReadout``), clipped to -1 .. 1 (a place in the outer half of an edge token maps to its
    centre); NaN stays NaN, and with ``crop = (top, left, size)`` (``MemoryVLAConfig.image_crop``) a
    place outside the crop is NaN."""
    if grid < 2:
        raise ConfigError(f"a spatial readout needs a grid of at least 2 x 2 tokens, got {grid}", "Pass e.g. 8")
    uv = _in_crop(np.asarray(uv, np.float64).reshape(-1, 2), image_px, crop)
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(uv).all(1) & (uv >= 0).all(1) & (uv <= image_px).all(1)
    token = image_px / grid
    where = np.clip(-1.0 + 2.0 * (uv / token - 0.5) / (grid - 1), -1.0, 1.0)
    return np.where(inside[:, None], where, np.nan)


def mikasa_policy(data: EpisodeDataset, variant: str = "bank", memory_length: int = 16, seed: int = 0,
                  camera: str = "base_camera", bank_heads: int = 1, **overrides: Any) -> MemoryVLAPolicy:
    """A fresh flow-matching policy for ``data`` with ``variant``'s memory of length ``memory_length``.

    ``bank_heads`` is the bank's retrieval attention heads (``MemoryBankConfig.num_heads``:
    MemoryVLA's openvla code 1, its dexbotic code 4); the head count changes no parameter shape, so
    the initial weights are the same for every count.

    Every variant (and length) starts from the same weights: the ``bank`` policy of length 16 is
    built under ``torch.manual_seed(seed)`` and each parameter the new one shares with it (same
    name and shape) is copied over, so only the memory differs.

    Raises:
        ConfigError: unknown variant, or a memory length < 2.
    """
    if variant not in VLA_VARIANTS:
        raise ConfigError(f"unknown policy variant {variant!r}", f"Choose among {', '.join(VLA_VARIANTS)}")
    if memory_length < 2:
        raise ConfigError(f"the memory length must be >= 2, got {memory_length}", "Pass 4, 16 or 64")
    if isinstance(bank_heads, bool) or not isinstance(bank_heads, int) or bank_heads < 1:
        raise ConfigError(f"the bank's retrieval heads must be an int >= 1, got {bank_heads!r}", "Pass 1 or 4")
    height, width = data.images.shape[1:3]
    features = {f"observation.images.{camera}": (3, height, width), "observation.state": (data.states.shape[1],)}

    stats = dataset_stats(data)

    def build(name: str, length: int, heads: int = 1) -> MemoryVLAPolicy:
        from memstream.embodied.policies.memvla.configuration_memvla import MemoryVLAConfig

        settings = {**{k: v for k, v in VLA_VARIANTS[name].items() if k != "bank"}, **overrides}
        bank = dataclasses.replace(MemoryBankConfig(), capacity=length, num_heads=heads,
                                   **VLA_VARIANTS[name].get("bank", {}))
        config = dataclasses.replace(MemoryVLAConfig(), input_features=features,
                                     output_features={"action": (data.actions.shape[1],)}, bank=bank, **settings)
        torch.manual_seed(seed)
        return MemoryVLAPolicy(config, stats)

    policy, reference = build(variant, memory_length, bank_heads), build("bank", 16).state_dict()
    own = policy.state_dict()
    policy.load_state_dict({k: v for k, v in reference.items() if k in own and own[k].shape == v.shape}, strict=False)
    return policy


def _batch(policy: MemoryVLAPolicy, data: EpisodeDataset, episodes: np.ndarray,
           pointer_tokens: np.ndarray | None = None, prefix: bool = False,
           keypoints: np.ndarray | None = None) -> dict:
    """:func:`episode_batch` under the policy's image key, with ``pointer_target`` when ``pointer_tokens``
    is given (each episode's end-point token from its first moving frame on: the cubes are in view)
    and ``keypoint_target`` ``(B, T, 2)`` when ``keypoints`` (one grid place per dataset frame) is
    (NaN past an episode's end); ``prefix`` cuts each episode just after that frame (frames 0 .. first
    move), and the batch to the longest such prefix."""
    batch = episode_batch(data, episodes, policy.config.chunk_size)
    batch[policy.config.image_key] = batch.pop("observation.image")
    onset = batch["action_onset"].numpy()
    steps = onset.shape[1]
    first = np.where(onset.any(1), onset.argmax(1), steps)  # no action at all: the whole episode
    if pointer_tokens is not None:
        after = (np.arange(steps)[None] >= first[:, None]) & batch["valid"].numpy()
        batch["pointer_target"] = torch.from_numpy(np.where(after, pointer_tokens[episodes][:, None], -1))
    if keypoints is not None:
        rows = data.episode_bounds[episodes][:, None] + batch["frame_index"].numpy()
        batch["keypoint_target"] = torch.from_numpy(
            np.where(batch["valid"].numpy()[..., None], keypoints[rows], np.nan).astype(np.float32))
    if prefix:
        keep = int(min(first.max() + 1, steps))
        batch["valid"] = batch["valid"] & torch.from_numpy(np.arange(steps)[None] <= first[:, None])
        frames = (policy.config.image_key, "observation.state", "action", "action_is_pad", "valid", "frame_index",
                  "action_onset", "pointer_target", "keypoint_target")  # the per-frame entries (B, T, ...); goal_state and task are per episode
        for key in frames:
            if key in batch:
                batch[key] = batch[key][:, :keep]
    return batch


def train_with_checkpoints(policy: MemoryVLAPolicy, data: EpisodeDataset, out: str | Path, steps: int,
                           meta: dict[str, Any], batch_episodes: int = 8, seed: int = 0, checkpoint_every: int = 100,
                           resume: bool = False, log: Callable[[str], None] | None = None,
                           progress: bool | None = None, pointer_tokens: np.ndarray | None = None,
                           prefix_episodes: int = 0, keypoints: np.ndarray | None = None) -> list[float]:
    """AdamW (the config's preset, cosine decay over ``steps``) on batches of whole episodes.

    Every ``checkpoint_every`` steps and at the end, ``out/checkpoint/`` gets the policy, the
    optimizer and scheduler, the sampler's random state and the losses so far (written to a
    temporary folder and renamed: a stop leaves the previous checkpoint whole). ``resume`` continues
    from it (an interrupted run resumed with the same ``steps`` ends with the weights of an
    uninterrupted one); the final policy and ``mikasa.json`` (``meta`` plus the training's figures)
    go to ``out``. ``pointer_tokens`` ``(N,)`` (:func:`end_point_tokens`) is what a policy with
    ``pointer_loss_weight > 0`` is trained to look at; ``keypoints`` ``(frames, 2)`` (one grid place per
    dataset frame, NaN where none: :func:`pixels_to_grid` of :func:`ball_pixels`) what a policy with
    ``keypoint_loss_weight > 0`` is trained to point its readout's last head at.

    ``prefix_episodes``: each step also draws that many episodes cut just after the arm's first move
    (frames 0 .. first move: the cue, the wait and the decision, about a third of an episode's frames)
    and trains on the sum of both batches' losses. Why: the decision is one frame an episode, so how
    many different episodes a step decides on, not how many frames it sees, is what the choice learns
    from. The binding diagnostic learned it from 32 decisions a step; whole episodes of 25 frames
    give 8 for the same compute.

    Raises:
        ConfigError: ``resume`` without a checkpoint, or a checkpoint of another task, variant or
            action space than ``meta`` says; a pointer loss without ``pointer_tokens``; a keypoint
            loss without ``keypoints`` (or with another count than the dataset's frames).
    """
    out = Path(out)
    config = policy.config
    if isinstance(prefix_episodes, bool) or not isinstance(prefix_episodes, int) or prefix_episodes < 0:
        raise ConfigError(f"prefix_episodes must be an int >= 0, got {prefix_episodes!r}", "Pass 0 (off) or e.g. 24")
    if config.pointer_loss_weight > 0 and (pointer_tokens is None or len(pointer_tokens) != data.num_episodes):
        raise ConfigError("the policy's pointer loss needs one target token per demonstration",
                          "Pass pointer_tokens=end_point_tokens(data, demonstration_camera(folders), grid)")
    if config.pointer_loss_weight == 0:
        pointer_tokens = None
    if config.keypoint_loss_weight > 0 and (keypoints is None or np.shape(keypoints) != (len(data.images), 2)):
        raise ConfigError("the policy's keypoint loss needs one (x, y) grid place per demonstration frame",
                          "Pass keypoints=pixels_to_grid(ball_pixels(data.images), image size, grid)")
    keypoints = None if config.keypoint_loss_weight == 0 else np.asarray(keypoints, np.float64)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=config.optimizer_lr, weight_decay=config.optimizer_weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    rng = np.random.default_rng(seed)
    # the same episodes each time the keypoint's error is logged (their own generator: the sampler's
    # draws, and so a resumed run's, do not change)
    probe = np.random.default_rng(seed + 1).choice(data.num_episodes, size=min(16, data.num_episodes), replace=False)
    losses: list[float] = []
    start = 0
    if resume:
        start, losses = _restore(policy, optimizer, schedule, rng, out / CHECKPOINT_DIR,
                                 {**meta, "prefix_episodes": prefix_episodes}, steps)
    else:
        torch.manual_seed(seed)
    policy.train()
    started = time.perf_counter()
    with progress_bar("train MemoryVLA on MIKASA-Robo", steps, unit="steps", show=progress) as bar:
        bar.advance(start)
        for step in range(start, steps):
            episodes = rng.choice(data.num_episodes, size=min(batch_episodes, data.num_episodes), replace=False)
            batches = [_batch(policy, data, episodes, pointer_tokens, keypoints=keypoints)]
            if prefix_episodes:
                more = rng.choice(data.num_episodes, size=min(prefix_episodes, data.num_episodes), replace=False)
                batches.append(_batch(policy, data, more, pointer_tokens, prefix=True, keypoints=keypoints))
            losses.append(optimizer_step(policy, batches, optimizer, schedule))
            bar.advance()
            bar.status(f"loss {np.mean(losses[-10:]):.4f}")
            done = step + 1
            if done % checkpoint_every == 0 or done == steps:
                _checkpoint(policy, optimizer, schedule, rng, out / CHECKPOINT_DIR,
                            {**meta, "seed": seed, "batch_episodes": batch_episodes, "prefix_episodes": prefix_episodes},
                            done, losses)
                if log is not None:
                    pointing = "" if keypoints is None else \
                        f", keypoint {keypoint_rms_px(policy, data, keypoints, probe):.2f} px rms"
                    log(f"step {done}/{steps} loss {np.mean(losses[-checkpoint_every:]):.4f} "
                        f"({(done - start) / (time.perf_counter() - started):.2f} steps/s){pointing}, checkpoint saved")
    policy.eval()
    policy.reset()
    policy.save_pretrained(out)
    tail = losses[-20:] or [float("nan")]
    seconds = time.perf_counter() - started
    _write_json(out / META_NAME, {**meta, "steps": steps, "batch_episodes": batch_episodes,
                                  "prefix_episodes": prefix_episodes, "seed": seed,
                                  "final_loss": float(np.mean(tail)), "demonstrations": data.num_episodes,
                                  "frames": int(len(data.images)), "bank_gradients": bool(config.bank_gradients),
                                  "loss_frames": config.loss_frames, "threads": torch.get_num_threads(),
                                  # this invocation only (a resumed run counts the steps it ran itself)
                                  "train_seconds": round(seconds, 1),
                                  "train_steps_per_s": round((steps - start) / seconds, 3) if seconds > 0 else None,
                                  **({} if keypoints is None else
                                     {"keypoint_rms_px": round(keypoint_rms_px(policy, data, keypoints, probe), 3),
                                      "keypoint_frames": int(np.isfinite(keypoints).all(1).sum())})})
    return losses


@torch.no_grad()
def keypoint_rms_px(policy: MemoryVLAPolicy, data: EpisodeDataset, keypoints: np.ndarray, episodes: np.ndarray) -> float:
    """Root mean square distance, in image pixels, between the chunk prior readout's last head's
    pooled place and ``keypoints`` (grid places per dataset frame) over the frames of ``episodes``
    that have one (``MemoryVLAConfig.keypoint_loss_weight``'s loss, undone). NaN with none.

    Raises:
        ConfigError: the policy has no keypoint loss (``keypoint_loss_weight`` 0).
    """
    config = policy.config
    if not config.keypoint_loss_weight > 0:
        raise ConfigError("keypoint_rms_px reads the policy's keypoint loss, and its keypoint_loss_weight is 0",
                          "Build the policy with keypoint_loss_weight > 0 (vla-train --keypoint-loss 1)")
    batch = _batch(policy, data, np.asarray(episodes), keypoints=keypoints)
    if not np.isfinite(batch["keypoint_target"].numpy()).all(-1).any():
        return float("nan")
    was_training = policy.training
    policy.eval()
    try:
        with torch.random.fork_rng(devices=[]):  # the loss draws noise: the training's own draws stay as they were
            _, parts = policy(batch)
    finally:
        policy.train(was_training)
        policy.reset()
    token_px = data.images.shape[2] / config.perceptual_grid if config.image_crop is None else \
        config.image_crop[2] / config.perceptual_grid
    mean_square_tokens = parts.get("keypoint_loss", parts["loss"]) / config.keypoint_loss_weight
    return float(np.sqrt(mean_square_tokens) * token_px)


def _checkpoint(policy: MemoryVLAPolicy, optimizer: Any, schedule: Any, rng: np.random.Generator, folder: Path,
                meta: dict[str, Any], step: int, losses: list[float]) -> None:
    import shutil

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    policy.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "losses": losses}, tmp / TRAINING_STATE)
    _write_json(tmp / META_NAME, {**meta, "checkpoint_step": step})
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def _restore(policy: MemoryVLAPolicy, optimizer: Any, schedule: Any, rng: np.random.Generator, folder: Path,
             meta: dict[str, Any], steps: int) -> tuple[int, list[float]]:
    from safetensors.torch import load_file

    if not (folder / TRAINING_STATE).is_file():
        raise ConfigError(f"no checkpoint to resume in {str(folder.parent)!r}", "Drop --resume to start a new run")
    saved = json.loads((folder / META_NAME).read_text())
    # checkpoints written before these settings existed had their defaults
    before = {"bank_heads": 1, "perceptual_pool": "avg", "perceptual_grid": 4, "perceptual_subgrid": 4,
              "perceptual_fine_position": False, "prior_readout_heads": 0, "head_film": False,
              "chunk_prior": False, "goal_loss_weight": 0.0, "onset_loss_weight": 1.0, "pointer_loss_weight": 0.0,
              "prefix_episodes": 0, "image_crop": None, "keypoint_loss_weight": 0.0, "prior_readout_offsets": False,
              "prior_readout_track": 0}
    for key, value in before.items():
        saved.setdefault(key, value)
    # every setting with a default in `before` is checked too, in that order
    for key in ("task", "variant", "memory_length", *before, "camera", "image_size", "control_mode", "action_dim"):
        wanted = meta.get(key, before.get(key))
        if saved.get(key) != wanted:
            raise ConfigError(f"the checkpoint in {str(folder.parent)!r} was trained with {key}={saved.get(key)!r}, "
                              f"this run asks for {wanted!r}", "Resume with the same settings or use a new --out")
    try:
        policy.load_state_dict(load_file(str(folder / "model.safetensors")))
    except RuntimeError as error:
        raise ConfigError(f"the checkpoint's weights do not fit this policy: {str(error).splitlines()[0]}",
                          "Resume with the same settings or use a new --out") from error
    state = torch.load(folder / TRAINING_STATE, weights_only=False)
    if state["step"] > steps:
        raise ConfigError(f"the checkpoint is at step {state['step']}, past --steps {steps}", f"Pass --steps > {state['step']}")
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    if schedule.T_max != max(steps, 1):
        # a longer --steps stretches the rest of the cosine over the new total. The scheduler's update
        # is recursive (each lr from the previous one), so changing T_max alone kept a finished run's
        # lr at 0 forever: the "resumed" steps moved no weight. Restart the recursion from the
        # closed form at this step of the new schedule.
        schedule.T_max = max(steps, 1)
        for group, base in zip(optimizer.param_groups, schedule.base_lrs, strict=True):
            group["lr"] = schedule.eta_min + (base - schedule.eta_min) * (1 + np.cos(np.pi * state["step"] / schedule.T_max)) / 2
        schedule._last_lr = [group["lr"] for group in optimizer.param_groups]
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"]), list(state["losses"])


def load_mikasa_policy(folder: str | Path, task: str | None = None) -> tuple[MemoryVLAPolicy, dict[str, Any]]:
    """A policy trained by :func:`train_with_checkpoints` and its ``mikasa.json``.

    Raises:
        ConfigError: the folder holds no MIKASA-Robo policy (another env's, or no ``mikasa.json``),
            its action space is not the suite's 7-d end-effector delta pose, or it was trained for
            another task than ``task``.
    """
    folder = Path(folder)
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        raise ConfigError(f"{str(folder)!r} holds no MIKASA-Robo policy (no {META_NAME}): it was trained for another "
                          "environment or action space", "Give a folder written by memstream vla-train")
    meta = json.loads(meta_path.read_text())
    policy = MemoryVLAPolicy.from_pretrained(folder)
    action = (meta.get("control_mode"), meta.get("action_dim"), policy.config.action_head, policy.config.action_dim)
    if action != (ACTION_SPACE["control_mode"], ACTION_SPACE["action_dim"], "flow", ACTION_SPACE["action_dim"]):
        raise ConfigError(f"{str(folder)!r} was trained for the action space {action[0]} ({action[2]} head, "
                          f"{action[3]}-d), not MIKASA-Robo's {ACTION_SPACE['control_mode']} (7-d, flow head)",
                          "Train one with memstream vla-train")
    if task is not None:
        from memstream.embodied.envs.mikasa import resolve_task

        if resolve_task(task).name != meta.get("task"):
            raise ConfigError(f"{str(folder)!r} was trained for {meta.get('task')!r}, not {resolve_task(task).name!r}",
                              f"Evaluate it with --task {meta.get('task')} or train one for {task}")
    return policy, meta


def init_from_trained(policy: MemoryVLAPolicy, folder: str | Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Start ``policy`` from the weights (and normalisation statistics) of a policy trained by
    :func:`train_with_checkpoints` in ``folder`` (a finished run or its ``checkpoint/``), to train on
    with other training-only settings (a loss weight, extra episodes, a fresh learning-rate schedule);
    the optimizer starts anew. Returns the trained folder's ``mikasa.json``.

    Raises:
        ConfigError: another task, camera, image size, image crop or action space than ``meta`` (the
            new run's), or weights of another architecture.
    """
    trained, trained_meta = load_mikasa_policy(folder, task=meta["task"])
    for key in ("camera", "image_size", "camera_housing", "image_crop"):  # the same weights on another view learn anew
        if trained_meta.get(key) != meta.get(key):
            raise ConfigError(f"{str(folder)!r} was trained with {key}={trained_meta.get(key)!r}, this run has {meta.get(key)!r}",
                              "Start from a policy trained on the same camera, rendering and --image-crop")
    weights = trained.state_dict()
    # readout offsets start at zero (the readout as without them): a policy trained without them goes on with them
    own = policy.state_dict()
    added = {k: v for k, v in own.items() if k.startswith("prior.readout.offset.") and k not in weights}
    # a readout track's inputs are the prior MLP's last columns: zero there, a policy trained without
    # one goes on from its function with it
    first = "prior.mlp.0.weight"
    track = getattr(policy.prior, "track", 0)
    if track and first in weights and trained.config.prior_readout_track == 0 \
            and own[first].shape[1] - weights[first].shape[1] == 2 * policy.config.prior_readout_heads * track:
        added[first] = torch.cat([weights[first], torch.zeros_like(own[first][:, weights[first].shape[1]:])], dim=1)
    try:
        policy.load_state_dict({**weights, **added})
    except RuntimeError as error:
        raise ConfigError(f"the weights in {str(folder)!r} do not fit this policy: {str(error).splitlines()[0]}",
                          "Pass the architecture settings it was trained with (its mikasa.json)") from error
    return trained_meta


def check_memory_wipe(policy: MemoryVLAPolicy, meta: dict[str, Any]) -> None:
    """Refuse :func:`evaluate_mikasa`'s ``wipe_memory`` where it means nothing.

    Raises:
        ConfigError: the task does not freeze the arm during a cue (the bank is wiped at the cue's end)
            or the policy has no bank.
    """
    from memstream.embodied.envs.mikasa import resolve_task

    if not resolve_task(meta["task"]).freeze_cue_phase:
        raise ConfigError(f"wiping the memory clears the bank when the cue phase ends, and {meta['task']} has no "
                          "frozen cue phase", "Drop --wipe-memory (it is a control for the RememberColor tasks)")
    if policy.memory is None:
        raise ConfigError(f"the policy has no bank to wipe (variant {meta.get('variant')!r})",
                          "Drop --wipe-memory, or evaluate a policy trained with a bank (--variant bank or fifo)")


class MikasaPolicyDriver:
    """A trained policy acting in a MIKASA env one step at a time, as an evaluation runs it.

    ``start_episode()`` empties the policy's memory; each call returns the policy's action for the
    observation (every frame reaches the bank). Where the task freezes the arm while it shows the
    cue (RememberColor), the queued or temporally ensembled actions are dropped at the first step
    the arm obeys again (see :func:`evaluate_mikasa`), and ``wipe_memory`` empties the bank there too.
    ``vla-collect --policy`` drives DAgger rollouts with it.
    """

    def __init__(self, policy: MemoryVLAPolicy, env: Any, wipe_memory: bool = False) -> None:
        self.policy, self.env, self.wipe_memory = policy, env, wipe_memory
        self._frozen = False

    def start_episode(self) -> None:
        self.policy.reset()
        self._frozen = bool(self.env.task.freeze_cue_phase)

    def __call__(self, obs: dict[str, Any]) -> np.ndarray:
        if self._frozen and not self.env.in_cue_phase():
            self.policy.drop_queued_actions()  # plans made while the arm was frozen and no cube shown
            if self.wipe_memory:
                self.policy.memory.reset()
            self._frozen = False
        return self.policy.select_action(obs).cpu().numpy()


def evaluate_mikasa(policy: MemoryVLAPolicy, meta: dict[str, Any], episodes: int, seed: int,
                    videos: int = 0, video_dir: str | Path | None = None,
                    on_episode: Callable[[dict[str, Any]], None] | None = None,
                    wipe_memory: bool = False) -> list[dict[str, Any]]:
    """Roll ``policy`` out on ``episodes`` episodes of its task (seeds ``seed`` ..), one at a time.

    Returns one row per episode: index, seed, success (the suite's ``success_once``), length,
    seconds in the policy and in the simulator, and the video's file name for the first ``videos``.
    RememberColor rows add where the tip was before the last step: ``tip_to_target_m``,
    ``tip_to_nearest_m`` and ``nearest_is_target`` (the cube chosen, apart from the touch's precision),
    and ``tip_offset_m``, the tip minus the nearest cube's centre (x, y, z; which way a touch misses).
    Intercept rows add ``closest_tip_to_ball_m`` and ``closest_ball_to_goal_m`` (over the episode,
    the latter on the table plane; a ball rolls on through the goal), ``ball_to_goal_start_m`` and
    where the hand was when the rolling ball reached it (``catch_*``: :func:`~memstream.embodied.envs.mikasa.catch_geometry`).
    ``on_episode`` sees each row as it ends.

    Where the task freezes the arm while it shows the cue (RememberColor), the policy's queued or
    temporally ensembled actions are dropped at the first step the arm obeys again: they were planned
    while no cube was in view and actions did nothing (with ACT's ensembling, M = 0.01, keeping them
    cost RememberColor3 the choice: success 0.10 against 0.58 when dropped, 60 episodes). The bank
    keeps every frame; replanning every step (``n_action_steps`` 1) is unchanged by it.

    ``wipe_memory`` (a control, not a way to run a policy) also empties the bank at that step: the
    cue it saw is gone, everything after is kept. A policy that reads the cue from its bank falls to
    the task's chance level; one that succeeds anyway did not need the memory.

    Raises:
        ConfigError: ``wipe_memory`` for a task that does not freeze the arm during a cue (the step to
            wipe at is the cue's end) or a policy without a bank.
    """
    from memstream.embodied.envs.mikasa import catch_geometry, make_mikasa_env

    if wipe_memory:
        check_memory_wipe(policy, meta)

    camera = meta["camera"]
    env = make_mikasa_env(meta["task"], seed=seed, image_size=int(meta["image_size"]), cameras=(camera,),
                          camera_housing=bool(meta.get("camera_housing", False)))
    rows: list[dict[str, Any]] = []
    driver = MikasaPolicyDriver(policy, env, wipe_memory=wipe_memory)
    try:
        obs = env.reset()
        for index in range(episodes):
            driver.start_episode()
            frames: list[np.ndarray] = []
            policy_s = sim_s = 0.0
            target = int(env.hidden_info[0, 0]) if env.hidden_info.shape[1] else -1
            ball: list[np.ndarray] = []
            motion: list[np.ndarray] = []
            while True:
                offsets = env.cube_offsets()  # before the step: the auto-reset would hide the last state
                ball.append(env.ball_distances())
                motion.append(env.ball_motion())
                if index < videos:
                    frames.append(obs[f"observation.images.{camera}"][0])
                started = time.perf_counter()
                action = driver(obs)
                policy_s += time.perf_counter() - started
                started = time.perf_counter()
                obs, _, terminated, truncated, info = env.step(action)
                sim_s += time.perf_counter() - started
                if terminated[0] or truncated[0]:
                    break
            row = {"episode": index, "seed": env.episode_seed(index), "success": bool(info["success"][0]),
                   "length": int(info["episode_length"][0]), "policy_s": round(policy_s, 3), "sim_s": round(sim_s, 3)}
            if len(offsets):
                distances = np.linalg.norm(offsets, axis=1)
                nearest = int(distances.argmin())
                row.update(tip_to_target_m=round(float(distances[target]), 4), tip_to_nearest_m=round(float(distances[nearest]), 4),
                           nearest_is_target=nearest == target,
                           tip_offset_m=[round(float(v), 4) for v in offsets[nearest]])
            if len(ball[0]):
                track = np.stack(ball)
                row.update(closest_tip_to_ball_m=round(float(track[:, 0].min()), 4),
                           closest_ball_to_goal_m=round(float(track[:, 1].min()), 4),
                           ball_to_goal_start_m=round(float(track[0, 1]), 4), **catch_geometry(np.stack(motion)))
            if index < videos and video_dir is not None:
                row["video"] = _write_video(Path(video_dir) / f"episode_{index:03d}.mp4", frames)
            rows.append(row)
            if on_episode is not None:
                on_episode(row)
    finally:
        env.close()
    return rows


def demonstration_frame(data: EpisodeDataset, image_key: str, low: int, t: int) -> dict[str, Any]:
    """Frame ``t`` of the stored episode that starts at row ``low`` as a batch of one observation, the
    way an evaluation hands it to the policy (``episode_start`` at ``t == 0``)."""
    return {image_key: data.images[low + t][None], "observation.state": data.states[low + t][None],
            "task": [data.tasks[int(data.task_index[low + t])]], "episode_start": np.array([t == 0]),
            "frame_index": np.array([t])}


def open_loop_metrics(policy: MemoryVLAPolicy, data: EpisodeDataset, episodes: list[int] | np.ndarray,
                      wipe_at_first_move: bool = False, seed: int = 0,
                      pointer_tokens: np.ndarray | None = None) -> dict[str, Any]:
    """How the policy's chunks compare with the expert's on stored episodes (no simulator).

    Each episode streams through the policy frame by frame as in an evaluation (the bank sees every
    frame); at every frame the predicted chunk is compared with the expert's next actions.

    Returns:
        ``mse_frozen`` / ``mse_move``: mean squared error of the position actions (x, y, z) in units
        of the demonstrations' action std, before the arm may move (cue and empty phases: the
        suite zeroes actions there) and after; ``target_agreement``: at the first frame the arm may
        move, the share of episodes whose predicted chunk heads for the same cube as the expert's
        (sideways displacement of the chunk, classed left / middle / right at half the expert's
        typical displacement; chance 1/3 for RememberColor3); ``classes_expert`` / ``classes_policy``
        (counts per class); ``heading_error_deg_median`` and ``heading_within_20deg``: the angle between
        the policy's and the expert's planar (x, y) displacement over that chunk
        (:func:`heading_error_deg`), which needs no left / middle / right classes and so also scores
        RememberColor5 / 9, whose cubes stand on an arc. ``wipe_at_first_move`` clears the bank just
        before that frame: a policy that read the cue from the bank falls to chance.
        ``pointer_on_target`` (with ``pointer_tokens``, :func:`end_point_tokens` of all of ``data``'s
        episodes, and a prior readout): at that frame, the share of episodes whose prior readout's
        first head puts its largest weight on the end point's token (what ``--pointer-loss`` trains).
    """
    policy.eval()
    scores: list[torch.Tensor] = []
    hook = None
    if pointer_tokens is not None and policy.prior is not None and policy.prior.readout is not None:
        # the readout's token scores of the last chunk prediction (B, N, H)
        hook = policy.prior.readout.score.register_forward_hook(lambda module, args, out: scores.append(out.detach()))
    pointed: list[bool] = []
    try:
        std = policy.action_std.detach().cpu().numpy().clip(1e-3)
        key = policy.config.image_key
        errors: dict[str, list[float]] = {"frozen": [], "move": []}
        predicted, expert, headings = [], [], []
        generator = torch.Generator().manual_seed(seed)
        for episode in episodes:
            low, high = int(data.episode_bounds[episode]), int(data.episode_bounds[episode + 1])
            first = first_move_frame(data, episode)
            policy.reset()
            for t in range(high - low):
                if wipe_at_first_move and t == first and policy.memory is not None:
                    policy.memory.reset()
                obs = demonstration_frame(data, key, low, t)
                torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
                scores.clear()
                chunk = policy.predict_action_chunk(obs)[0].cpu().numpy()
                k = min(len(chunk), high - low - t)
                target = data.actions[low + t: low + t + k]
                errors["frozen" if t < first else "move"].append(float((((chunk[:k] - target) / std) ** 2)[:, :3].mean()))
                if t == first:
                    predicted.append(float(chunk[:k, 1].sum()))
                    expert.append(float(target[:, 1].sum()))
                    headings.append(heading_error_deg(chunk[:k, :2].sum(0), target[:, :2].sum(0)))
                    if hook is not None and pointer_tokens[episode] >= 0:
                        pointed.append(int(scores[-1][0, :, 0].argmax()) == int(pointer_tokens[episode]))
    finally:
        if hook is not None:
            hook.remove()
    policy.reset()
    predicted_a, expert_a = np.array(predicted), np.array(expert)
    sideways = np.abs(expert_a)[np.abs(expert_a) > 0.5]
    scale = float(np.median(sideways)) if len(sideways) else 1.0
    classes = [-scale / 2, scale / 2]
    p_class, e_class = np.digitize(predicted_a, classes), np.digitize(expert_a, classes)
    return {"episodes": len(predicted), "mse_frozen": float(np.mean(errors["frozen"] or [np.nan])),
            "mse_move": float(np.mean(errors["move"] or [np.nan])),
            "target_agreement": float((p_class == e_class).mean()) if len(predicted) else float("nan"),
            "classes_expert": np.bincount(e_class, minlength=3).tolist(),
            "classes_policy": np.bincount(p_class, minlength=3).tolist(),
            "heading_error_deg_median": float(np.nanmedian(headings)) if np.isfinite(headings).any() else float("nan"),
            "heading_within_20deg": float((np.asarray(headings) < 20.0).mean()) if headings else float("nan"),
            **({"pointer_on_target": float(np.mean(pointed)) if pointed else float("nan")} if hook is not None else {})}


def heading_error_deg(predicted: np.ndarray, expert: np.ndarray) -> float:
    """Degrees (0 .. 180) between two planar displacements; NaN when either is zero (no heading)."""
    p, e = np.asarray(predicted, dtype=np.float64), np.asarray(expert, dtype=np.float64)
    norms = float(np.linalg.norm(p) * np.linalg.norm(e))
    if norms == 0.0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(p @ e / norms, -1.0, 1.0))))


def first_move_frame(data: EpisodeDataset, episode: int) -> int:
    """The first frame of ``episode`` whose expert action moves the arm (the episode's length if none)."""
    low, high = int(data.episode_bounds[episode]), int(data.episode_bounds[episode + 1])
    moving = np.nonzero(np.abs(data.actions[low:high, :3]).sum(1) > 0)[0]
    return int(moving[0]) if len(moving) else high - low


@torch.no_grad()
def cue_probe(policy: MemoryVLAPolicy, data: EpisodeDataset, train_episodes: list[int] | np.ndarray,
              test_episodes: list[int] | np.ndarray, probe_steps: int = 500, seed: int = 0) -> dict[str, float]:
    """Where the cue's identity (``hidden_info[:, 0]``, RememberColor's colour) is linearly decodable.

    Each episode streams through the policy up to its first moving frame (as in an evaluation); at
    that frame the policy's tokens are collected, and a linear classifier (standardised features,
    Adam, ``probe_steps`` full-batch steps, weight decay 1e-3) is fitted on ``train_episodes`` and
    scored on ``test_episodes``.

    Returns:
        held-out accuracy per feature: ``cue_frame_perceptual`` (the tokens the encoder writes at
        frame 0, i.e. what the bank stores of the cue), ``retrieved_perceptual`` /
        ``retrieved_cognitive`` (what the bank's read-out returns at the first move), and
        ``fused_perceptual`` / ``fused_cognitive`` (after the gate: what the action head gets). A
        policy without memory has only ``cue_frame_perceptual`` and the current frame's tokens
        (``fused_*``). Chance is the test split's largest class share.
    """
    policy.eval()
    key = policy.config.image_key
    features: dict[str, list[np.ndarray]] = {}

    def add(name: str, value: torch.Tensor) -> None:
        features.setdefault(name, []).append(value.flatten().float().cpu().numpy())

    episodes = [int(e) for e in (*train_episodes, *test_episodes)]
    for episode in episodes:
        low = int(data.episode_bounds[episode])
        policy.reset()
        for t in range(first_move_frame(data, episode) + 1):
            readout, _ = policy._observe(demonstration_frame(data, key, low, t))
            if t == 0:
                add("cue_frame_perceptual", policy.perceptual_encoder(policy._images(data.images[low][None], time_axis=False)))
        if isinstance(readout, BankReadout):
            add("retrieved_perceptual", readout.retrieved_perceptual)
            add("retrieved_cognitive", readout.retrieved_cognitive)
            add("fused_perceptual", readout.perceptual)
            add("fused_cognitive", readout.cognitive)
        else:
            add("fused_perceptual", readout[0])
            add("fused_cognitive", readout[1])
    policy.reset()
    labels = torch.as_tensor(data.hidden_info[episodes, 0], dtype=torch.long)
    train = np.arange(len(train_episodes))
    test = np.arange(len(train_episodes), len(episodes))
    classes = int(labels.max()) + 1
    scores = {}
    for name, rows in features.items():
        x = np.stack(rows).astype(np.float32)
        x = torch.as_tensor((x - x[train].mean(0)) / (x[train].std(0) + 1e-6))
        torch.manual_seed(seed)
        probe = torch.nn.Linear(x.shape[1], classes)
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2, weight_decay=1e-3)
        with torch.enable_grad():
            for _ in range(probe_steps):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(probe(x[train]), labels[train]).backward()
                optimizer.step()
        scores[name] = float((probe(x[test]).argmax(1) == labels[test]).float().mean())
    return scores


def _write_video(path: Path, frames: list[np.ndarray]) -> str:
    from memstream.embodied.envs.mikasa.dataset import FPS
    from memstream.streaming.videoio import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, FPS, codec="h264", crf=18) as writer:
        for frame in frames:
            writer.write(frame)
    return path.name


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_json_atomic(path, data, indent=1)
