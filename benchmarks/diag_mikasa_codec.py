"""Do the stored demonstrations' frames differ from the simulator's in a way an InterceptMedium policy
feels? (issue 17)

Policies train on frames read back from H.264 (intra only, yuv420p, crf 18:
:func:`~memstream.embodied.envs.mikasa.write_demonstrations`) and act on the simulator's raw renders.
The rolling ball is 2.5 px wide at 128 px (``diag_mikasa_push.py view``) and yuv420p keeps its colour
at half that resolution, so the question is whether the policy's catch, a pixel off its line, comes
from this gap.

``appearance``: expert episodes rendered (evaluation seeds), each written as the dataset writes it and
read back; for every frame with the ball inside the image, the ball's peak redness (red minus the
mean of green and blue), the 5 x 5 pixels around it (mean absolute difference), and its centroid
(``diag_mikasa_push.ball_centroid``: ``ball_pixels``) raw and stored: how far the stored frames move it.

``eval``: ``memstream vla-eval`` with every camera frame coded and decoded with the dataset's settings
before the policy sees it, so it acts on frames like those it trained on. Each frame is coded alone:
the stored episodes are coded as sequences and x264's rate control looks across frames (a stored
episode's frames coded alone differ from their sequence-coded twins by 1.8 levels on average, where
raw and stored differ by 4.9), so this is the closest an online evaluation comes. Compare its results
file with a plain ``vla-eval`` of the same policy with the same arguments.

Measured (stop 44, ``benchmarks/MIKASA.md``; 20 episodes, 1,096 frames with the ball): the stored
ball's peak redness is 0.76 of the raw one's (median 170 against 224), the 5 x 5 pixels around it
differ by 14 levels (the whole image by 4.9), and its centroid moves 0.26 px (90th percentile 0.48
px; stop 45: stop 44's 0.12 came from a centroid that read its search window). Stop 43's
``im_dagger2`` evaluated on coded frames succeeds in 0.17 against 0.23 on raw ones (the same 100
seeds), its catch unchanged (1.7 against 1.8 cm across the ball's line, median): the
gap is not what holds the catch back.

    python benchmarks/diag_mikasa_codec.py appearance --episodes 20
    python benchmarks/diag_mikasa_codec.py eval --policy runs/im_dagger2 --episodes 100 --out runs/e100_coded \\
        --temporal-ensemble 0.01
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import print_table, save
from diag_mikasa_push import ball_centroid, expert_episode, redness, search_radius


def code_and_decode(frames: np.ndarray, folder: Path) -> np.ndarray:
    """``frames`` (T, H, W, 3) uint8 written with the dataset's video settings and read back with its reader."""
    from memstream.embodied.envs.mikasa.dataset import CRF, FPS, KEYINT, _decode
    from memstream.streaming.videoio import VideoWriter

    path = folder / "frames.mp4"
    with VideoWriter(path, FPS, codec="h264", crf=CRF, keyint=KEYINT) as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))
    return _decode(path)


def appearance(episodes: int, seed: int, camera: str, image_size: int) -> dict:
    from memstream.embodied.envs.mikasa import make_mikasa_env
    from memstream.embodied.policies.memvla.mikasa import project_to_pixels

    env = make_mikasa_env("InterceptMedium", seed=seed, image_size=image_size, cameras=(camera,))
    peak_raw, peak_stored, near, shift, whole = [], [], [], [], []
    radius = search_radius(image_size)
    try:
        obs = env.reset()
        params = env.camera_params()[camera]
        with tempfile.TemporaryDirectory() as folder:
            for _ in range(episodes):
                frames, balls, _, obs = expert_episode(env, obs, camera)
                centres = project_to_pixels(balls, params["intrinsic_cv"], params["extrinsic_cv"])
                raw = np.stack(frames)
                stored = code_and_decode(raw, Path(folder))
                whole.append(float(np.abs(raw.astype(int) - stored).mean()))
                for a, b, uv in zip(raw, stored, centres, strict=True):
                    if not (np.isfinite(uv).all() and (uv >= radius).all() and (uv < image_size - radius).all()):
                        continue
                    u, v = int(uv[0]), int(uv[1])
                    window_raw, window_stored = a[v - 2:v + 3, u - 2:u + 3], b[v - 2:v + 3, u - 2:u + 3]
                    peak_raw.append(float(redness(window_raw).max()))
                    peak_stored.append(float(redness(window_stored).max()))
                    near.append(float(np.abs(window_raw.astype(int) - window_stored).mean()))
                    found_raw, found_stored = ball_centroid(a, uv, radius), ball_centroid(b, uv, radius)
                    if found_raw is not None and found_stored is not None:
                        shift.append(float(np.linalg.norm(found_stored - found_raw)))
    finally:
        env.close()

    def quartiles(values: list) -> list | None:
        return [round(float(q), 2) for q in np.percentile(values, [25, 50, 75])] if values else None

    return {"camera": camera, "image_size": image_size, "episodes": episodes, "seed": seed, "frames_with_the_ball": len(near),
            "centroid": "ball_pixels", "image_mean_abs_difference": round(float(np.mean(whole)), 2),
            "ball_5x5_mean_abs_difference": round(float(np.mean(near)), 2) if near else None,
            "ball_peak_redness_raw_quartiles": quartiles(peak_raw), "ball_peak_redness_stored_quartiles": quartiles(peak_stored),
            "ball_centroid_shift_px_quartiles": quartiles(shift),
            "ball_centroid_shift_px_p90": round(float(np.percentile(shift, 90)), 2) if shift else None}


def evaluate_on_coded_frames(argv: list[str]) -> int:
    """``memstream vla-eval ARGV`` with every observed camera frame coded and decoded first."""
    import memstream.embodied.envs.mikasa as mikasa
    from memstream.streaming.cli import main as cli

    folder = Path(tempfile.mkdtemp(prefix="coded-"))
    make = mikasa.make_mikasa_env

    def coded(obs: dict) -> dict:
        return {key: (np.stack([code_and_decode(frame[None], folder)[0] for frame in value])
                      if key.startswith("observation.images.") else value) for key, value in obs.items()}

    def make_coded(*args, **kwargs):
        env = make(*args, **kwargs)
        reset, step = env.reset, env.step
        env.reset = lambda *a, **k: coded(reset(*a, **k))

        def stepped(*a, **k):
            obs, *rest = step(*a, **k)
            return (coded(obs), *rest)

        env.step = stepped
        return env

    # evaluate_mikasa imports make_mikasa_env from the package when it runs: the coded env replaces it there
    mikasa.make_mikasa_env = make_coded
    try:
        return cli(["vla-eval", *argv])
    finally:
        mikasa.make_mikasa_env = make


def main() -> None:
    if sys.argv[1:2] == ["eval"]:
        sys.exit(evaluate_on_coded_frames(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    look = sub.add_parser("appearance", help="the ball in raw and stored frames of expert episodes")
    look.add_argument("--episodes", type=int, default=20)
    look.add_argument("--seed", type=int, default=4242424242, help="first episode seed (default: the evaluation's)")
    look.add_argument("--camera", default="base_camera", choices=["base_camera", "hand_camera"])
    look.add_argument("--image-size", type=int, default=128)
    sub.add_parser("eval", help="memstream vla-eval's arguments follow; frames are coded before the policy sees them")
    args = parser.parse_args()
    row = appearance(args.episodes, args.seed, args.camera, args.image_size)
    print_table("the InterceptMedium ball in raw and stored (H.264 intra, yuv420p, crf 18) frames",
                ["image px", "frames with the ball", "image |raw - stored|", "5x5 at the ball", "peak redness raw",
                 "peak redness stored", "centroid shift px (quartiles)", "p90"],
                [[row["image_size"], row["frames_with_the_ball"], row["image_mean_abs_difference"],
                  row["ball_5x5_mean_abs_difference"], row["ball_peak_redness_raw_quartiles"],
                  row["ball_peak_redness_stored_quartiles"], row["ball_centroid_shift_px_quartiles"],
                  row["ball_centroid_shift_px_p90"]]])
    save("mikasa_codec", {"appearance": row})


if __name__ == "__main__":
    main()
