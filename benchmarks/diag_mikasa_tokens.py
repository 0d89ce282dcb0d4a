"""Where do the RememberColor cubes fall in the policy's perceptual token grid? (issue 17)

The policy's image tokens are a ``grid x grid`` tiling of the 128 px base-camera image (max-pooled
over finer patches). Two cubes inside one token are one max-pooled feature vector: the readout that
scores "the token whose colour matches the remembered one" then scores a mixture of two colours
and places. This rolls out ``--episodes`` simulator episodes per task (seeds apart from the
demonstrations' and the evaluation's), projects each cube's centre into the base camera at the
first step after the cue phase (the suite's camera intrinsics and extrinsics), and counts how often
any two cubes, and the cued cube with another, share a token for each grid.

Measured (30 episodes a task, seeds 10000+): the cued cube shares its 32 px token (4x4 grid) with
another cube in 0.63 / 0.87 / 0.70 of RememberColor3 / 5 / 9 episodes, its 16 px token (8x8) in
0.00 / 0.13 / 0.30; the nearest two cubes are 19 / 12 / 6 px apart (median).

``--crop TOP LEFT SIZE`` (repeatable) adds an 8x8 grid over that square of the image, as a policy with
``MemoryVLAConfig.image_crop`` (``vla-train --image-crop``) tiles it; the cubes are projected with
the policy's own ``project_to_tokens``, so a cube outside the square counts as lost. Measured (100
episodes a task, seeds 10000+; stop 39): the cued cube shares its token with another in 0.39 of
RememberColor9 episodes at 8x8, 0.18 at 16x16 or 8x8 over the 64 px square at (40, 32), 0.05 over the
48 px square at (50, 40); RememberColor5 0.15 at 8x8 and 0.00 over either square. The 48 px square
loses a RememberColor3 cube in 0.03 of the episodes (its cubes stand wider) and none on five or nine.

    python benchmarks/diag_mikasa_tokens.py [--tasks RememberColor3 RememberColor5 RememberColor9] [--episodes 30] \
        [--crop 50 40 48]
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import print_table, save

IMAGE = 128
GRIDS = (4, 8, 16)
CROP_GRID = 8  # the grid laid over a --crop square


def cube_points(env) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every cube's centre (cubes, 3) in the world, colour-index order, and the base camera's
    intrinsic (3, 3) and extrinsic (3, 4)."""
    base = env.unwrapped
    params = base.scene.sensors["base_camera"].get_params()
    intrinsic = np.asarray(params["intrinsic_cv"][0], dtype=np.float64)
    extrinsic = np.asarray(params["extrinsic_cv"][0], dtype=np.float64)
    world = np.array([np.asarray(base.cubes[key].pose.p[0], dtype=np.float64) for key in sorted(base.cubes)])
    return world, intrinsic, extrinsic


def layouts(crops: list[tuple[int, int, int]]) -> list[tuple[str, int, tuple[int, int, int] | None]]:
    """(label, grid, crop) of every tiling measured: the whole image at :data:`GRIDS`, each crop at :data:`CROP_GRID`."""
    return [(f"{g}x{g}", g, None) for g in GRIDS] + [
        (f"{CROP_GRID}x{CROP_GRID} of {size} px at ({top}, {left})", CROP_GRID, (top, left, size)) for top, left, size in crops]


def measure(task: str, episodes: int, seed: int, crops: list[tuple[int, int, int]]) -> dict:
    from memstream.embodied.envs.mikasa import make_mikasa_env
    from memstream.embodied.policies.memvla.mikasa import project_to_tokens

    env = make_mikasa_env(task, seed=seed, cameras=("base_camera",), render=False)  # physics and camera parameters only
    still = np.zeros((1, 7), np.float32)
    tilings = layouts(crops)
    any_shared = {label: 0 for label, _, _ in tilings}
    cued_shared = {label: 0 for label, _, _ in tilings}
    lost = {label: 0 for label, _, _ in tilings}
    gaps = []
    try:
        env.reset()
        for _ in range(episodes):
            while env.in_cue_phase():
                env.step(still)
            world, intrinsic, extrinsic = cube_points(env)
            cued = int(env.hidden_info[0, 0])
            image = (world @ extrinsic[:, :3].T + extrinsic[:, 3]) @ intrinsic.T
            pixels = image[:, :2] / image[:, 2:]
            apart = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1) + np.diag(np.full(len(pixels), np.inf))
            gaps.append(float(apart.min()))
            for label, grid, crop in tilings:
                ids = project_to_tokens(world, intrinsic, extrinsic, IMAGE, grid, crop)
                lost[label] += int((ids < 0).any())
                seen = ids[ids >= 0]
                any_shared[label] += len(set(seen.tolist())) < len(seen)
                cued_shared[label] += int(ids[cued] >= 0 and (ids == ids[cued]).sum() > 1)
            while True:  # the arm stays still to the time limit; the next step starts a new episode
                _, _, terminated, truncated, _ = env.step(still)
                if terminated[0] or truncated[0]:
                    break
    finally:
        env.close()
    return {"task": task, "episodes": episodes, "seed": seed, "cubes": int(len(world)),
            "nearest_pair_px_median": round(float(np.median(gaps)), 1),
            "tilings": [{"tiling": label, "grid": grid, "crop": None if crop is None else list(crop),
                         "cued_shares": round(cued_shared[label] / episodes, 3),
                         "any_two_share": round(any_shared[label] / episodes, 3),
                         "a_cube_outside": round(lost[label] / episodes, 3)} for label, grid, crop in tilings]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", nargs="+", default=["RememberColor3", "RememberColor5", "RememberColor9"])
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--seed", type=int, default=10_000, help="first episode seed (apart from demonstrations and evaluation)")
    parser.add_argument("--crop", type=int, nargs=3, action="append", default=[], metavar=("TOP", "LEFT", "SIZE"),
                        help="also an 8x8 grid over this square (vla-train --image-crop); repeatable")
    args = parser.parse_args()
    rows = [measure(task, args.episodes, args.seed, [tuple(c) for c in args.crop]) for task in args.tasks]
    print_table("cubes sharing a perceptual token at the first move (share of episodes)",
                ["task", "cubes", "nearest pair px", "tiling", "cued shares", "any two share", "a cube outside"],
                [[r["task"], r["cubes"], r["nearest_pair_px_median"], t["tiling"], t["cued_shares"], t["any_two_share"],
                  t["a_cube_outside"]] for r in rows for t in r["tilings"]])
    save("mikasa_tokens", {"image_px": IMAGE, "rows": rows})


if __name__ == "__main__":
    main()
