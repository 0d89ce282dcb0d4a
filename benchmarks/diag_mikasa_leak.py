"""Does a stored RememberColor demonstration show the cue after the cue is hidden? (issue 17)

The cue colour should be unknowable from any frame after the cue phase: that is what makes the task
need memory. This fits a linear classifier (kernel ridge on the pixels of the band of rows that
holds the cubes) of the cue colour on one frame per stored episode, the last frame before the arm
first moves (the suite's "empty" phase, or the first frame with the three cubes), choosing its
regularisation on held-out episodes, and then scores it on the same frame of fresh simulator
episodes three ways: rendered raw, and after H.264 as the dataset stores them, inter-coded (x264's
default key-frame interval) and intra-only (every frame a key frame, ``VideoWriter(keyint=1)``, what
:func:`~memstream.embodied.envs.mikasa.write_demonstrations` writes now).

Measured (250 stored RememberColor3 episodes written inter-coded, 24 fresh ones, seeds 5000+):
held out on the stored frames 1.00; on the fresh frames raw 0.42 (the largest class share: chance),
inter-coded 1.00 (0.96 in a first run), intra-only 0.25. The 250 collected again intra-only (seeds
0-249, 182 s on the idle machine): held out on the stored frames 0.40, chance like the fresh ones.
H.264's inter-coded frames carry a faint residue of the hidden cue cube that the classifier reads,
and a policy can too: trained on such demonstrations it needs no memory, and the simulator's raw
frames then show it nothing.

    python benchmarks/diag_mikasa_leak.py --demos DIR [--episodes 24] [--seed 5000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import RESULTS, print_table, save

BAND = slice(60, 95)  # the rows of a 128 px base-camera image that hold the cubes


def _features(frames: np.ndarray) -> np.ndarray:
    return frames[:, BAND].reshape(len(frames), -1).astype(np.float64)


def fit(frames: np.ndarray, labels: np.ndarray, held_out: int) -> tuple:
    """Kernel ridge on standardised pixels; the regularisation with the best held-out accuracy."""
    x = _features(frames)
    train = len(x) - held_out
    mean, std = x[:train].mean(0), x[:train].std(0) + 1e-3
    z = (x - mean) / std
    targets = np.eye(3)[labels]
    best = None
    for lam in (1e1, 1e2, 1e3, 1e4):
        alpha = np.linalg.solve(z[:train] @ z[:train].T + lam * np.eye(train), targets[:train])
        accuracy = float(((z[train:] @ z[:train].T @ alpha).argmax(1) == labels[train:]).mean())
        if best is None or accuracy > best[0]:
            best = (accuracy, lam, alpha)
    accuracy, lam, alpha = best

    def predict(other: np.ndarray) -> np.ndarray:
        return (((_features(other) - mean) / std) @ z[:train].T @ alpha).argmax(1)

    return accuracy, lam, predict


def fresh_episodes(episodes: int, seed: int) -> dict:
    """The frame before the first move of ``episodes`` simulator episodes: raw, and after H.264."""
    from memstream.embodied.envs.mikasa import make_mikasa_env
    from memstream.embodied.envs.mikasa.dataset import FPS, _decode
    from memstream.streaming.videoio import VideoWriter

    env = make_mikasa_env("RememberColor3-VLA-v0", seed=seed, cameras=("base_camera",))
    out: dict = {"raw": [], "inter-coded H.264": [], "intra-only H.264": [], "labels": []}
    try:
        obs = env.reset()
        for _ in range(episodes):
            out["labels"].append(int(env.hidden_info[0][0]))
            frames = []
            while True:
                frames.append(obs["observation.images.base_camera"][0].copy())
                action = env.expert_actions()
                if np.abs(action[0, :3]).sum() > 0:
                    break
                obs, *_ = env.step(action)
            out["raw"].append(frames[-2])
            for name, keyint in (("inter-coded H.264", None), ("intra-only H.264", 1)):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "episode.mp4"
                    with VideoWriter(path, FPS, codec="h264", crf=18, keyint=keyint) as writer:
                        for frame in frames:
                            writer.write(frame)
                    out[name].append(_decode(path)[-2])
            while True:
                obs, _, terminated, truncated, _ = env.step(env.expert_actions())
                if terminated[0] or truncated[0]:
                    break
            obs = env.reset()
    finally:
        env.close()
    return {k: np.array(v) for k, v in out.items()}


def main() -> None:
    from memstream.embodied.policies.memvla.mikasa import first_move_frame, load_mikasa_demonstrations

    parser = argparse.ArgumentParser()
    parser.add_argument("--demos", required=True, help="a RememberColor3 folder written by write_demonstrations")
    parser.add_argument("--episodes", type=int, default=24, help="fresh simulator episodes")
    parser.add_argument("--seed", type=int, default=5000, help="their first seed (apart from the demonstrations')")
    parser.add_argument("--held-out", type=int, default=50, help="stored episodes held out to pick the regularisation")
    args = parser.parse_args()
    data = load_mikasa_demonstrations(args.demos)
    labels = data.hidden_info[:, 0].astype(int)
    stored = np.stack([data.images[int(data.episode_bounds[e]) + max(first_move_frame(data, e) - 1, 0)]
                       for e in range(data.num_episodes)])
    accuracy, lam, predict = fit(stored, labels, args.held_out)
    fresh = fresh_episodes(args.episodes, args.seed)
    shares = np.bincount(fresh["labels"], minlength=3) / len(fresh["labels"])
    rows = [["stored frames, held out", args.held_out, round(accuracy, 3)]]
    for name in ("raw", "inter-coded H.264", "intra-only H.264"):
        rows.append([f"fresh frames, {name}", args.episodes, round(float((predict(fresh[name]) == fresh["labels"]).mean()), 3)])
    print_table(f"cue colour from the last frame before the first move (kernel ridge, lambda {lam:g}); "
                f"fresh class shares {np.round(shares, 2).tolist()}", ["frames", "episodes", "accuracy"], rows)
    video = data_info(args.demos)
    run = {"demos": str(args.demos), "stored_video_g": video.get("video.g"), "stored_episodes": int(data.num_episodes),
           "held_out": args.held_out, "lambda": lam, "fresh_episodes": args.episodes, "fresh_seed": args.seed,
           "fresh_class_shares": shares.round(3).tolist(), "accuracy": {row[0]: row[2] for row in rows}}
    previous = RESULTS / "mikasa_leak.json"  # one row per dataset: this run replaces its own
    runs = json.loads(previous.read_text()).get("runs", []) if previous.is_file() else []
    save("mikasa_leak", {"runs": [r for r in runs if r["demos"] != run["demos"]] + [run]})


def data_info(demos: str) -> dict:
    """The base camera's video entry of the dataset's ``meta/info.json`` (``video.g``: 1 for intra-only)."""
    info = json.loads((Path(demos) / "meta" / "info.json").read_text())
    return info["features"]["observation.images.base_camera"]["info"]


if __name__ == "__main__":
    main()
