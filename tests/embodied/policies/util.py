"""Shared settings and helpers of the policy tests."""

from __future__ import annotations

import argparse

import numpy as np
from memstream.embodied.bank import MemoryBankConfig
from memstream.embodied.envs.mikasa.dataset import _DatasetWriter
from memstream.embodied.policies.cli import add_commands
from memstream.streaming.errors import MemstreamError

# a tiny flow policy that replans every step with the deterministic sampler (ensembling, open loop)
TINY_DETERMINISTIC = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1,
                          head_heads=2, num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=1,
                          inference_noise=0.0, bank=MemoryBankConfig(capacity=4))
SIZE = 32  # image side of the tiny demonstration folders
# the tiny policy the WebSocket server tests serve: a 32 px camera and a 7-d state in, 7-d actions out
SERVED_FEATURES = dict(input_features={"observation.images.base_camera": (3, 32, 32), "observation.state": (7,)},
                       output_features={"action": (7,)})
SERVED = dict(perceptual_dim=16, perceptual_grid=2, cognitive_dim=16, hidden_dim=32, head_layers=1, head_heads=2,
              num_inference_steps=2, vocab_buckets=64, chunk_size=4, n_action_steps=2, bank=MemoryBankConfig(capacity=3))


def vla(argv: list[str]) -> int:
    """A ``vla-*`` command through the same boundary as ``memstream``'s main (error line, exit code)."""
    parser = argparse.ArgumentParser(prog="memstream")
    parser.add_argument("--debug", action="store_true")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except MemstreamError as error:
        print(f"error: {error.one_line()}")
        return error.exit_code


def down_camera(size: int = SIZE, height: float = 1.0) -> dict[str, list[list[float]]]:
    """A pinhole camera ``height`` m above the world origin looking straight down (OpenCV convention:
    image x along world x, image y along world -y), focal length ``size`` px: the world origin is the
    image centre and 0.1 m is 0.1 * size / (height - z) px."""
    return {"intrinsic_cv": [[float(size), 0.0, size / 2], [0.0, float(size), size / 2], [0.0, 0.0, 1.0]],
            "extrinsic_cv": [[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, height]]}


def tiny_demos(root, episodes: int = 3, length: int = 6, seed: int = 0, first_seed: int = 10,
               task: str = "RememberColor3", size: int = SIZE, camera_params: dict | None = None,
               expert_inputs: bool = False):
    """A real demonstration folder (Parquet + H.264, LeRobot v2.1 layout) of random tiny episodes with
    simulator seeds ``first_seed ..`` (``camera_params``: recorded as a collection records them,
    ``{"base_camera": {"intrinsic_cv", "extrinsic_cv"}}``; None, as folders written before).

    ``expert_inputs``: the folder stores random expert inputs (``observation.environment_state``, see
    :func:`expert_inputs_of`) and every action is the task's expert's label of them, as a collection
    since stop 51 writes; otherwise random actions and no inputs, as folders written before."""
    from memstream.embodied.envs.mikasa import ENVIRONMENT_STATE_NAMES, expert_action, resolve_task

    rng = np.random.default_rng(seed)
    kind = resolve_task(task).kind
    writer = _DatasetWriter(root, task, "touch the cube", size, cameras=("base_camera",), camera_params=camera_params,
                            environment_state=ENVIRONMENT_STATE_NAMES[kind] if expert_inputs else ())
    for i in range(episodes):
        shade = np.linspace(0, 200, size, dtype=np.float32)[None, :, None] + 10 * np.arange(length)[:, None, None, None]
        video = np.broadcast_to(np.clip(shade, 0, 255), (length, size, size, 3)).astype(np.uint8)
        episode = {"frames": {"observation.images.base_camera": video},
                   "states": rng.normal(size=(length, 7)).astype(np.float32),
                   "actions": rng.uniform(-1, 1, size=(length, 7)).astype(np.float32),
                   "rewards": np.zeros(length, np.float32), "success": True, "seed": first_seed + i,
                   "hidden_info": [int(rng.integers(3))], "reveal_frames": 2}
        if expert_inputs:
            inputs = expert_inputs_of(kind, length, rng)
            episode["environment_states"] = inputs
            episode["actions"] = np.stack([expert_action(kind, row, t) for t, row in enumerate(inputs)])
        writer.add(episode)
    return root


def expert_inputs_of(kind: str, length: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (length, E): random rows of what ``kind``'s expert acts on (``ENVIRONMENT_STATE_NAMES``),
    spread over the states a policy reaches: the tip low on the table or up, a still or rolling ball
    near it, a goal beyond it, the hand turned any way."""
    if kind == "remember_color":
        tip, cube = rng.uniform([-0.2, -0.2, 0.02], [0.2, 0.2, 0.3], (length, 3)), rng.uniform(-0.2, 0.2, (length, 3))
        return np.column_stack([tip, cube, rng.random(length) < 0.3]).astype(np.float64)
    tip = np.column_stack([rng.uniform(-0.2, 0.2, length), rng.uniform(-0.5, 0.1, length),
                           rng.choice([0.025, 0.03, 0.1], length)])
    ball = np.column_stack([tip[:, :2] + rng.uniform(-0.15, 0.15, (length, 2)), np.full(length, 0.02)])
    velocity = rng.uniform(-0.5, 0.5, (length, 3)) * (rng.random((length, 1)) < 0.5) * [1, 1, 0]
    goal = np.column_stack([ball[:, :2] + rng.uniform([-0.1, -0.4], [0.1, -0.2], (length, 2)), np.zeros(length)])
    angle = rng.uniform(0, 2 * np.pi, length)
    return np.column_stack([tip, ball, velocity, goal, np.cos(angle), np.sin(angle)]).astype(np.float64)
