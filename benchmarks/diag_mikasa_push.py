"""How a policy pushes the InterceptMedium ball, and how the scripted expert's push is shaped (issue 17).

``open-loop``: stored expert episodes stream through a trained policy frame by frame, as in an
evaluation (the bank sees every frame), and at each frame the policy's first action is compared with
the expert's. Push frames are those where the expert's tip is low (under 4.5 cm) and its planar
action is large (norm over 0.6); for them the script reports the heading error of the planar action
and its strength (policy norm / expert norm); for the other moving frames the heading error.

``expert``: the scripted expert on ``--episodes`` simulator seeds (cameras off) with the push's
constants overridden (``experts.RUN_UP_M`` / ``PUSH_SPEED`` / ``LINE_TOL_M`` / ``LINE_GAIN``): its
success, how many steps it pushes per episode (tip low and a planar action over 0.6), and where its
hand is as the rolling ball reaches it (``catch_geometry``: down on the table, how far across its line),
the reference for a policy's ``catch_*`` evaluation fields. ``--line-error`` makes it misjudge the
incoming ball's line by that much (alternately to either side), the precision a policy's catch needs.

``view``: the rolling ball as a policy's camera sees it along the expert's episodes (cameras off; the
camera's recorded pinhole model): the first step its centre is inside the image, how many steps it is
in view before it reaches the hand, and at that step its apparent diameter and how many pixels one
centimetre across its line and along it spans: the precision ``--line-error`` asks for, in pixels.

``line``: how precisely the rendered frames alone pin the ball's line, the information a policy has to
catch it: along the expert's episodes, rendered at each ``--image-size``, the ball where
``ball_pixels`` (the keypoint loss's targets) finds it in every frame before the catch (kept where it
is within a few pixels of its projected centre), carried back onto the table plane through the
camera's pinhole model, a straight line fitted to the first k frames with the ball in view, and that line's distance from the
ball's centre at the catch step (``catch_geometry``), beside the same fit through the true positions
(the ball rolls straight: about 0). A hand-made estimator, a reference rather than a bound: a policy
that reads the line as well catches within that distance.

``handover``: who loses the episode, the catch or what follows it. A trained policy and the scripted
expert share each evaluation episode: one drives until ``--after`` steps past the step the rolling
ball reaches the hand (``catch_geometry``, detected as the episode runs), the other from there to the
end (``policy-expert``: the policy catches, the expert pushes; ``expert-policy``: the expert catches,
the policy pushes). The policy sees every frame either way (its bank and its temporal ensemble run
on as in an evaluation); an episode whose ball never reaches the hand is driven by the first one
throughout. Paired seed by seed with the policy's own evaluation (``--eval``, a ``vla-eval`` folder
on the same seeds), it splits the policy's failures into catches the expert could not have pushed
home and pushes the policy lost. Each episode also records what followed the handover
(``push_record``): the policy's action against the expert's at every state from there (whoever acts:
closed loop when the policy pushes, open loop along the expert's push otherwise), and what the ball
did: its top speed, its heading against the goal's direction then, the closest it came to the goal.
``--expert-axes`` lets the expert drive some components of the policy's actions (``yaw``, ``z``, ``x y``
...): which part of its action the policy's half loses.

Measured (stop 41, ``benchmarks/MIKASA.md``): stop 40's policy, trained on the one-step kick, at 2.7 deg
median heading error on 23 push frames of 20 held-out episodes but 0.60 of the expert's strength
(0.56 on training episodes); the expert with an 11 cm run-up at speed 0.8 succeeds on 100 / 100
seeds and pushes for 3.8 steps an episode. ``line`` (stop 45, 20 episodes; stop 44's figures came
from a centroid that read its search window, see ``ball_centroid``): the line through the first 8 / 12
frames in view misses the ball at the catch by 0.22 / 0.16 cm (median) at 128 px and 0.17 / 0.16 cm
at 256 px, where the policies catch 1.8-2.0 cm off.

    python benchmarks/diag_mikasa_push.py open-loop --policy runs/im_g8 runs/im_runup --demos demos_im_held \
        demos_im_runup_held --episodes 20
    python benchmarks/diag_mikasa_push.py expert --run-up 0.11 0.14 --speed 0.8 --episodes 100
    python benchmarks/diag_mikasa_push.py view --episodes 100 --seed 4242424242 --image-size 128
    python benchmarks/diag_mikasa_push.py line --episodes 20 --image-size 128 256
    python benchmarks/diag_mikasa_push.py handover --policy runs/kd3 --mode policy-expert --episodes 100 \
        --eval runs/e100_kd3
    python benchmarks/diag_mikasa_push.py handover --policy runs/kd4 --mode expert-policy --temporal-ensemble -0.5 \
        --expert-axes yaw --eval runs/e100n_kd4
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
from _common import RESULTS, print_table, save
from bench_mikasa import catch_summary

LOW_TIP_M = 0.045  # the expert's tip height while it pushes (experts.TIP_Z_M 0.025 + 0.015, with margin)
PUSH_NORM = 0.6  # a planar action at least this large while the tip is low is a push
ACTION_AXES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")  # pd_ee_delta_pose's components, in order


def open_loop(policy_dir: str, demos: str, episodes: int, noise: float | None) -> dict:
    import torch

    from memstream.embodied.policies.memvla.mikasa import (demonstration_frame, heading_error_deg, load_mikasa_demonstrations,
                                                           load_mikasa_policy)

    def heading_deg(predicted: np.ndarray, expert: np.ndarray) -> float:
        angle = heading_error_deg(predicted, expert)  # NaN for a zero prediction: no heading, counted as 90 deg off
        return 90.0 if np.isnan(angle) else angle

    policy, meta = load_mikasa_policy(policy_dir, task="InterceptMedium")
    policy.eval()
    if noise is not None:
        policy.config.inference_noise = noise
    data = load_mikasa_demonstrations(demos, camera=meta["camera"], max_episodes=episodes)
    key = policy.config.image_key
    push_heading, push_strength, other_heading = [], [], []
    generator = torch.Generator().manual_seed(0)
    for episode in range(data.num_episodes):
        low, high = int(data.episode_bounds[episode]), int(data.episode_bounds[episode + 1])
        policy.reset()
        for t in range(high - low):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            predicted = policy.predict_action_chunk(demonstration_frame(data, key, low, t))[0, 0].cpu().numpy()[:2]
            expert = data.actions[low + t][:2]
            if np.linalg.norm(expert) < 0.2:  # still or nearly: no heading to compare
                continue
            if data.states[low + t][2] < LOW_TIP_M and np.linalg.norm(expert) > PUSH_NORM:
                push_heading.append(heading_deg(predicted, expert))
                push_strength.append(float(np.linalg.norm(predicted) / np.linalg.norm(expert)))
            else:
                other_heading.append(heading_deg(predicted, expert))
    push, other = np.array(push_heading), np.array(other_heading)
    return {"policy": policy_dir, "demos": demos, "episodes": data.num_episodes, "inference_noise": policy.config.inference_noise,
            "push_frames": len(push), "push_heading_median_deg": round(float(np.median(push)), 2) if len(push) else None,
            "push_heading_within_10deg": round(float((push < 10).mean()), 3) if len(push) else None,
            "push_strength_median": round(float(np.median(push_strength)), 3) if len(push) else None,
            "other_frames": len(other), "other_heading_median_deg": round(float(np.median(other)), 2) if len(other) else None,
            "other_heading_within_20deg": round(float((other < 20).mean()), 3) if len(other) else None}


def expert(run_up: float, speed: float, line_tol: float, line_gain: float, episodes: int, seed: int,
           line_error: float = 0.0) -> dict:
    from memstream.embodied.envs.mikasa import catch_geometry, experts, make_mikasa_env
    from memstream.embodied.envs.mikasa import env as env_module
    from memstream.embodied.envs.mikasa.env import _np

    saved = {name: getattr(experts, name) for name in ("RUN_UP_M", "PUSH_SPEED", "LINE_TOL_M", "LINE_GAIN")}
    experts.RUN_UP_M, experts.PUSH_SPEED, experts.LINE_TOL_M, experts.LINE_GAIN = run_up, speed, line_tol, line_gain
    error = [0.0]  # this episode's misjudged line, metres across (+x), while the ball rolls in toward the hand

    def misjudging(tcp, ball, velocity, goal, hand_y, step):
        ball = np.array(ball, float)
        if experts.ball_rolls_in(tcp, ball, velocity):  # while the expert lines up its catch
            ball[0] += error[0]
        return experts.intercept_action(tcp, ball, velocity, goal, hand_y, step)

    env_module.intercept_action = misjudging
    env = make_mikasa_env("InterceptMedium", seed=seed, render=False)
    wins, pushes, catches = [], [], []
    try:
        env.reset()
        for episode in range(episodes):
            error[0] = line_error if episode % 2 else -line_error
            steps, motion = 0, []
            while True:
                motion.append(env.ball_motion())
                action = env.expert_actions()
                steps += int(_np(env.unwrapped.agent.tcp.pose.p)[0][2] < LOW_TIP_M and np.linalg.norm(action[0, :2]) > PUSH_NORM)
                _, _, terminated, truncated, info = env.step(action)
                if terminated[0] or truncated[0]:
                    break
            wins.append(bool(info["success"][0]))
            pushes.append(steps)
            catches.append(catch_geometry(np.stack(motion)))
    finally:
        env.close()
        env_module.intercept_action = experts.intercept_action
        for name, value in saved.items():
            setattr(experts, name, value)
    return {"run_up_m": run_up, "push_speed": speed, "line_tol_m": line_tol, "line_gain": line_gain,
            "low_clear_m": experts.LOW_CLEAR_M, "line_error_m": line_error, "episodes": episodes, "seed": seed,
            "success_rate": float(np.mean(wins)), "failed_seeds": [seed + i for i, won in enumerate(wins) if not won],
            "push_steps_mean": round(float(np.mean(pushes)), 2),
            **catch_summary(catches)}


def expert_episode(env, obs: dict, camera: str | None = None) -> tuple[list, np.ndarray, np.ndarray, dict]:
    """Run one InterceptMedium episode with the scripted expert from ``obs`` (the env's current
    observation). Returns the frames of ``camera`` (empty without one), the ball's centre ``(T, 3)``
    and :meth:`MikasaEnv.ball_motion` ``(T, 6)`` before each step, and the observation the env's
    auto-reset gives for the next episode."""
    from memstream.embodied.envs.mikasa.env import _np

    images, balls, motion = [], [], []
    while True:
        if camera is not None:
            images.append(obs[f"observation.images.{camera}"][0])
        balls.append(_np(env.unwrapped.ball.pose.p)[0].astype(np.float64))
        motion.append(env.ball_motion())
        obs, _, terminated, truncated, _ = env.step(env.expert_actions())
        if terminated[0] or truncated[0]:
            return images, np.stack(balls), np.stack(motion), obs


def ball_view(episodes: int, seed: int, camera: str, image_size: int) -> dict:
    from memstream.embodied.envs.mikasa import catch_geometry, make_mikasa_env
    from memstream.embodied.envs.mikasa.experts import BALL_RADIUS_M
    from memstream.embodied.policies.memvla.mikasa import project_to_pixels

    env = make_mikasa_env("InterceptMedium", seed=seed, render=False)
    first, in_view, diameter, across, along = [], [], [], [], []
    try:
        obs = env.reset()
        params = env.camera_params()[camera]  # recorded for the env's image size: scaled to image_size
        scale = image_size / env.config.image_size
        intrinsic = np.asarray(params["intrinsic_cv"], np.float64) * np.array([[scale], [scale], [1.0]])
        for _ in range(episodes):
            _, balls, motion, obs = expert_episode(env, obs)
            uv = project_to_pixels(balls, intrinsic, params["extrinsic_cv"])
            inside = np.isfinite(uv).all(1) & (uv >= 0).all(1) & (uv < image_size).all(1)
            first.append(int(np.argmax(inside)) if inside.any() else None)
            caught = catch_geometry(motion)
            if not caught["ball_reached_hand"] or not inside.any():
                continue
            step = caught["catch_step"]
            in_view.append(int(inside[:step + 1].sum()))
            ball, velocity = balls[step], np.asarray(motion[step][3:5], np.float64)
            heading = np.append(velocity / np.linalg.norm(velocity), 0.0)
            side = np.array([-heading[1], heading[0], 0.0])
            up = np.array([0.0, 0.0, BALL_RADIUS_M])
            ends = project_to_pixels(np.stack([ball, ball + 0.01 * side, ball + 0.01 * heading, ball - up, ball + up]),
                                     intrinsic, params["extrinsic_cv"])
            across.append(float(np.linalg.norm(ends[1] - ends[0])))
            along.append(float(np.linalg.norm(ends[2] - ends[0])))
            diameter.append(float(np.linalg.norm(ends[4] - ends[3])))
    finally:
        env.close()

    def quartiles(values: list) -> list | None:
        return [round(float(q), 2) for q in np.percentile(values, [25, 50, 75])] if values else None

    seen = [f for f in first if f is not None]
    return {"camera": camera, "image_size": image_size, "episodes": episodes, "seed": seed,
            "never_in_view": first.count(None), "first_step_in_view_quartiles": quartiles(seen),
            "caught_in_view": len(in_view), "steps_in_view_before_the_catch_quartiles": quartiles(in_view),
            "ball_diameter_px_quartiles": quartiles(diameter), "px_per_cm_across_its_line_quartiles": quartiles(across),
            "px_per_cm_along_its_line_quartiles": quartiles(along)}


def redness(pixels: np.ndarray) -> np.ndarray:
    """Red minus the mean of green and blue, per pixel of ``(..., 3)`` RGB."""
    pixels = pixels.astype(np.float64)
    return pixels[..., 0] - 0.5 * (pixels[..., 1] + pixels[..., 2])


def search_radius(image_size: int) -> int:
    """Pixels around the ball's projected centre searched for its red pixels (4 at 128 px, 8 at 256)."""
    return max(4, image_size // 32)


def ball_centroid(image: np.ndarray, near: np.ndarray, radius: int) -> np.ndarray | None:
    """``(u, v)``: the ball where the keypoint loss's targets find it (``ball_pixels``: from the image
    alone, pixel centres at +0.5, :func:`project_to_pixels`'s convention), None where it finds none or
    finds it farther than ``radius`` from ``near``.

    It was the red-weighted centroid (red minus the mean of green and blue, above 40) of the pixels
    within ``radius`` of ``near`` until stop 45: the table's wood passes that test too (about 120), so
    the centroid followed the window (moved 2 px, it moved 1.6) and the window sat on the simulator's
    ball: stop 44's line and codec figures read the true place back (see benchmarks/MIKASA.md)."""
    from memstream.embodied.policies.memvla.mikasa import ball_pixels

    found = ball_pixels(np.asarray(image)[None])[0]
    if not np.isfinite(found).all() or np.linalg.norm(found - np.asarray(near, np.float64)) > radius:
        return None
    return found


def onto_plane(uv: np.ndarray, intrinsic: np.ndarray, extrinsic: np.ndarray, height: float) -> np.ndarray:
    """The world (x, y) where the camera ray through pixel ``uv`` meets the plane ``z = height`` (the
    inverse of :func:`project_to_pixels` for points on that plane)."""
    rotation, translation = extrinsic[:, :3], extrinsic[:, 3]
    ray = rotation.T @ np.linalg.solve(intrinsic, np.array([uv[0], uv[1], 1.0]))
    centre = -rotation.T @ translation
    return (centre + (height - centre[2]) / ray[2] * ray)[:2]


def miss_by(points: list[np.ndarray], target: np.ndarray) -> float:
    """Metres between ``target`` and the straight line fitted (total least squares) through ``points``."""
    points = np.asarray(points, np.float64)
    direction = np.linalg.svd(points - points.mean(0))[2][0]
    offset = target - points.mean(0)
    return float(abs(offset[0] * direction[1] - offset[1] * direction[0]))


def ball_line(episodes: int, seed: int, camera: str, image_size: int, frames: list[int]) -> dict:
    from memstream.embodied.envs.mikasa import catch_geometry, make_mikasa_env
    from memstream.embodied.policies.memvla.mikasa import project_to_pixels

    env = make_mikasa_env("InterceptMedium", seed=seed, image_size=image_size, cameras=(camera,))
    misses: dict[int, list[float]] = {k: [] for k in frames}
    straight: dict[int, list[float]] = {k: [] for k in frames}
    found = lost = 0
    radius = search_radius(image_size)
    try:
        obs = env.reset()
        params = env.camera_params()[camera]
        intrinsic = np.asarray(params["intrinsic_cv"], np.float64)
        extrinsic = np.asarray(params["extrinsic_cv"], np.float64).reshape(3, 4)
        for _ in range(episodes):
            images, balls, motion, obs = expert_episode(env, obs, camera)
            caught = catch_geometry(motion)
            if not caught["ball_reached_hand"]:
                continue
            step = caught["catch_step"]
            seen = []  # (estimated, true) table positions of the frames before the catch with the ball in view
            for image, ball in zip(images[:step], balls[:step], strict=True):
                uv = project_to_pixels(ball[None], intrinsic, extrinsic)[0]
                if not (np.isfinite(uv).all() and (uv >= 2).all() and (uv < image_size - 2).all()):
                    continue
                centroid = ball_centroid(image, uv, radius)
                found, lost = found + (centroid is not None), lost + (centroid is None)
                if centroid is not None:
                    seen.append((onto_plane(centroid, intrinsic, extrinsic, ball[2]), ball[:2]))
            for k in frames:
                if len(seen) >= k:
                    misses[k].append(miss_by([s[0] for s in seen[:k]], balls[step][:2]))
                    straight[k].append(miss_by([s[1] for s in seen[:k]], balls[step][:2]))
    finally:
        env.close()
    return {"camera": camera, "image_size": image_size, "episodes": episodes, "seed": seed, "centroid": "ball_pixels",
            "ball_found_in_frames": found, "ball_not_found_in_frames": lost,
            "rows": [{"first_frames_in_view": k, "episodes": len(misses[k]),
                      "miss_cm_quartiles": ([round(float(q) * 100, 2) for q in np.percentile(misses[k], [25, 50, 75])]
                                            if misses[k] else None),
                      "true_positions_miss_cm_median": round(float(np.median(straight[k])) * 100, 3) if straight[k] else None}
                     for k in frames]}


HANDOVER_MODES = ("policy-expert", "expert-policy")


def push_record(steps: list[tuple]) -> dict:
    """What followed the handover in one ``handover`` episode, from ``steps``: per step after it, the
    policy's action, the expert's action at the same state, the tip's height, the ball's planar
    velocity and the ball-to-goal offset (``goal_offset``). Whoever acted, the policy's action is
    compared with the expert's: heading error on the frames where the expert moves (planar norm over
    0.2) and, on its push frames (tip low, planar norm over ``PUSH_NORM``), heading and strength; and
    what the ball did: its top speed after the handover, its heading against the goal's direction at
    that step, and the closest it came to the goal's centre."""
    from memstream.embodied.policies.memvla.mikasa import heading_error_deg

    if not steps:
        return {}
    policy_actions, expert_actions, tips_z, velocities, to_goal = zip(*steps, strict=True)
    moving, push_heading, push_strength = [], [], []
    for policy_action, expert_action, tip_z in zip(policy_actions, expert_actions, tips_z, strict=True):
        planar, wanted = policy_action[:2], expert_action[:2]
        if np.linalg.norm(wanted) < 0.2:
            continue
        angle = heading_error_deg(planar, wanted)
        angle = 90.0 if np.isnan(angle) else angle  # no planar action: no heading, counted as 90 deg off
        moving.append(angle)
        if tip_z < LOW_TIP_M and np.linalg.norm(wanted) > PUSH_NORM:
            push_heading.append(angle)
            push_strength.append(float(np.linalg.norm(planar) / np.linalg.norm(wanted)))
    speeds = [float(np.linalg.norm(v)) for v in velocities]
    fastest = int(np.argmax(speeds))
    ball_heading = heading_error_deg(velocities[fastest], to_goal[fastest]) if speeds[fastest] > 0.02 else None

    def median(values: list) -> float | None:
        return round(float(np.median(values)), 2) if values else None

    return {"after_steps_recorded": len(steps), "after_moving_frames": len(moving),
            "after_heading_median_deg": median(moving), "after_push_frames": len(push_heading),
            "after_push_heading_median_deg": median(push_heading), "after_push_strength_median": median(push_strength),
            "after_ball_top_speed_m_s": round(speeds[fastest], 4),
            "after_ball_heading_to_goal_deg": None if ball_heading is None else round(float(ball_heading), 1),
            "after_closest_ball_to_goal_m": round(min(float(np.linalg.norm(g)) for g in to_goal), 4)}


def push_summary(rows: list[dict]) -> dict:
    """Medians of :func:`push_record`'s fields over the episodes that recorded them, split by success."""
    out = {}
    for name, chosen in (("success", [r for r in rows if r["success"]]), ("failure", [r for r in rows if not r["success"]])):
        for field in ("after_heading_median_deg", "after_push_heading_median_deg", "after_push_strength_median",
                      "after_ball_top_speed_m_s", "after_ball_heading_to_goal_deg", "after_closest_ball_to_goal_m"):
            values = [r[field] for r in chosen if r.get(field) is not None]
            out[f"{name}_{field}"] = round(float(np.median(values)), 3) if values else None
    return out


def handover(policy_dir: str, mode: str, episodes: int, seed: int, after: int, ensemble: float | None,
             eval_dir: str | None = None, expert_axes: tuple[str, ...] = ()) -> dict:
    from memstream.embodied.envs.mikasa import catch_geometry, catch_step_so_far, make_mikasa_env
    from memstream.embodied.policies.memvla.mikasa import MikasaPolicyDriver, load_mikasa_policy

    policy, meta = load_mikasa_policy(policy_dir, task="InterceptMedium")
    policy.eval()
    if ensemble is not None:
        policy.config.temporal_ensemble_coeff = ensemble
        policy.config.n_action_steps = 1
    env = make_mikasa_env(meta["task"], seed=seed, image_size=int(meta["image_size"]), cameras=(meta["camera"],),
                          camera_housing=bool(meta.get("camera_housing", False)))
    driver = MikasaPolicyDriver(policy, env)
    policy_first = mode == "policy-expert"
    taken = [ACTION_AXES.index(axis) for axis in expert_axes]
    rows = []
    try:
        obs = env.reset()
        for index in range(episodes):
            driver.start_episode()
            motion, switch, t, after_switch = [], None, 0, []
            while True:
                motion.append(env.ball_motion())
                if switch is None:
                    caught = catch_step_so_far(motion)
                    switch = None if caught is None else caught + after
                from_policy = np.asarray(driver(obs), np.float32).reshape(-1)  # every frame reaches the policy, whoever acts
                from_expert = env.expert_actions()[0]
                second = switch is not None and t >= switch
                if second:  # what follows the catch: both actions at this state, whoever acts
                    after_switch.append((from_policy, from_expert, float(np.asarray(obs["observation.state"])[0, 2]),
                                         motion[-1][3:5].copy(), env.goal_offset()))
                policy_acts = policy_first != second
                action = from_policy if policy_acts else from_expert
                if policy_acts and expert_axes:  # the policy acts, but the expert drives these axes
                    action = from_policy.copy()
                    action[taken] = from_expert[taken]
                obs, _, terminated, truncated, info = env.step(np.asarray(action, np.float32).reshape(1, -1))
                t += 1
                if terminated[0] or truncated[0]:
                    break
            row = {"seed": env.episode_seed(index), "success": bool(info["success"][0]), "switch_step": switch,
                   "length": t, **catch_geometry(np.stack(motion)), **push_record(after_switch)}
            rows.append(row)
            print(f"{mode} {index + 1}/{episodes} seed {row['seed']} {'success' if row['success'] else 'failure'} "
                  f"switch {switch}", flush=True)
    finally:
        env.close()
    result = {"policy": policy_dir, "mode": mode, "after_steps": after, "episodes": episodes, "seed": seed,
              "temporal_ensemble_coeff": policy.config.temporal_ensemble_coeff, "expert_axes": list(expert_axes),
              "success_rate": float(np.mean([r["success"] for r in rows])),
              # episodes where the second one acted at all (a late catch may leave it no step)
              "handed_over": sum(r["switch_step"] is not None and r["switch_step"] < r["length"] for r in rows),
              **catch_summary(rows), **push_summary(rows), "rows": rows}
    if eval_dir is not None:  # paired with the policy's own episodes on the same seeds
        own = {e["seed"]: bool(e["success"]) for e in json.loads((Path(eval_dir) / "results.json").read_text())["episodes"]}
        paired = [(own[r["seed"]], r["success"]) for r in rows if r["seed"] in own]
        result["paired_with"] = eval_dir
        result["paired"] = {"episodes": len(paired), "policy_alone": sum(a for a, _ in paired),
                            "both": sum(a and b for a, b in paired), "only_policy_alone": sum(a and not b for a, b in paired),
                            "only_handover": sum(b and not a for a, b in paired)}
    return result


def main() -> None:
    from memstream.embodied.envs.mikasa.dataset import HANDOVER_STEPS

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="what", required=True)
    loop = sub.add_parser("open-loop", help="a policy's push on stored expert episodes")
    loop.add_argument("--policy", nargs="+", required=True, help="vla-train folders (InterceptMedium)")
    loop.add_argument("--demos", nargs="+", required=True,
                      help="vla-collect folders of InterceptMedium episodes: one for every policy, or one per policy")
    loop.add_argument("--episodes", type=int, default=20)
    loop.add_argument("--noise", type=float, default=None, help="override the flow sampler's noise scale")
    sweep = sub.add_parser("expert", help="the scripted expert's success with other push constants")
    sweep.add_argument("--run-up", type=float, nargs="+", default=[0.11])
    sweep.add_argument("--speed", type=float, nargs="+", default=[0.8])
    sweep.add_argument("--line-tol", type=float, default=None, help="default: the expert's LINE_TOL_M")
    sweep.add_argument("--line-gain", type=float, default=None, help="default: the expert's LINE_GAIN")
    sweep.add_argument("--line-error", type=float, nargs="+", default=[0.0],
                       help="metres the expert misjudges the rolling ball's line by while it comes in (alternately "
                            "to either side, episode by episode): how precisely a policy must read it")
    sweep.add_argument("--episodes", type=int, default=50)
    sweep.add_argument("--seed", type=int, default=0)
    view = sub.add_parser("view", help="the rolling ball in a camera's pixels along the expert's episodes")
    view.add_argument("--episodes", type=int, default=50)
    view.add_argument("--seed", type=int, default=4242424242, help="first episode seed (default: the evaluation's)")
    view.add_argument("--camera", default="base_camera", choices=["base_camera", "hand_camera"])
    view.add_argument("--image-size", type=int, nargs="+", default=[128], help="image sides in pixels (MemoryVLA: 128)")
    line = sub.add_parser("line", help="how precisely the rendered frames pin the rolling ball's line at the catch")
    line.add_argument("--episodes", type=int, default=30)
    line.add_argument("--seed", type=int, default=4242424242, help="first episode seed (default: the evaluation's)")
    line.add_argument("--camera", default="base_camera", choices=["base_camera", "hand_camera"])
    line.add_argument("--image-size", type=int, nargs="+", default=[128, 256], help="image sides in pixels (MemoryVLA: 128)")
    line.add_argument("--frames", type=int, nargs="+", default=[3, 5, 8, 12],
                      help="fit the line to the first this many frames with the ball in view")
    hand = sub.add_parser("handover", help="the policy and the expert share each episode, handing over after the catch")
    hand.add_argument("--policy", required=True, help="a vla-train folder (InterceptMedium)")
    hand.add_argument("--mode", nargs="+", choices=HANDOVER_MODES, default=list(HANDOVER_MODES),
                      help="policy-expert: the policy catches, the expert pushes; expert-policy: the other way round")
    hand.add_argument("--after", type=int, default=HANDOVER_STEPS,
                      help="steps past the catch step the second one takes over (default: vla-collect --expert-catches')")
    hand.add_argument("--episodes", type=int, default=100)
    hand.add_argument("--seed", type=int, default=4242424242, help="first episode seed (default: the evaluation's)")
    hand.add_argument("--temporal-ensemble", type=float, default=0.01, help="as vla-eval's (default: 0.01)")
    hand.add_argument("--eval", default=None, help="the policy's vla-eval folder on the same seeds, to pair episodes")
    hand.add_argument("--expert-axes", nargs="+", choices=ACTION_AXES, default=[],
                      help="where the policy acts, the expert's components on these axes replace the policy's: "
                           "which part of its action the policy's half loses (e.g. yaw: turning the hand to the goal's line)")
    args = parser.parse_args()
    if args.what == "handover":
        import torch

        # as vla-eval --threads 1: two modes side by side on two cores (two threads each ran 18x slower here)
        torch.set_num_threads(1)
        results = [handover(args.policy, m, args.episodes, args.seed, args.after, args.temporal_ensemble, args.eval,
                            tuple(args.expert_axes))
                   for m in args.mode]
        print_table("InterceptMedium: the policy and the expert in one episode, handing over after the catch",
                    ["policy", "mode", "after", "expert's axes", "episodes", "success", "handed over",
                     "paired: alone / both / only alone / only handover"],
                    [[r["policy"], r["mode"], r["after_steps"], " ".join(r["expert_axes"]) or "-", r["episodes"], r["success_rate"], r["handed_over"],
                      "/".join(str(v) for k, v in r.get("paired", {}).items() if k != "episodes")] for r in results])
        path = RESULTS / "mikasa_handover.json"
        kept = json.loads(path.read_text()).get("results", []) if path.exists() else []

        def key(r: dict) -> tuple:
            return (r["policy"], r["mode"], r["after_steps"], r["seed"], r["episodes"], r["temporal_ensemble_coeff"],
                    tuple(r.get("expert_axes", ())))

        done = {key(r) for r in results}
        save("mikasa_handover", {"results": [r for r in kept if key(r) not in done] + results})
        return
    if args.what == "line":
        results = [ball_line(args.episodes, args.seed, args.camera, size, args.frames) for size in args.image_size]
        print_table(f"the rolling ball's line from {args.camera}'s pixels: distance from the ball at the catch "
                    "(expert episodes, rendered)",
                    ["image px", "first frames in view", "episodes", "miss cm (quartiles)", "with true positions cm (median)"],
                    [[r["image_size"], row["first_frames_in_view"], row["episodes"], row["miss_cm_quartiles"],
                      row["true_positions_miss_cm_median"]] for r in results for row in r["rows"]])
        # a run for some image sizes keeps the file's rows for the others (two sizes can run side by side)
        path = RESULTS / "mikasa_ball_line.json"
        kept = json.loads(path.read_text()).get("results", []) if path.exists() else []
        done = {(r["camera"], r["image_size"]) for r in results}
        save("mikasa_ball_line", {"results": sorted([r for r in kept if (r["camera"], r["image_size"]) not in done] + results,
                                                    key=lambda r: (r["camera"], r["image_size"]))})
        return
    if args.what == "view":
        rows = [ball_view(args.episodes, args.seed, args.camera, size) for size in args.image_size]
        print_table(f"the rolling InterceptMedium ball in {args.camera}'s pixels (expert episodes, cameras off)",
                    ["image px", "episodes", "never in view", "first step in view", "steps in view before the catch",
                     "ball diameter px", "px per cm across its line", "px per cm along it"],
                    [[r["image_size"], r["episodes"], r["never_in_view"], r["first_step_in_view_quartiles"],
                      r["steps_in_view_before_the_catch_quartiles"], r["ball_diameter_px_quartiles"],
                      r["px_per_cm_across_its_line_quartiles"], r["px_per_cm_along_its_line_quartiles"]] for r in rows])
        save("mikasa_ball_view", {"rows": rows})
    elif args.what == "open-loop":
        if len(args.demos) not in (1, len(args.policy)):
            parser.error(f"give one --demos folder or one per policy ({len(args.policy)}), not {len(args.demos)}")
        demos = args.demos * len(args.policy) if len(args.demos) == 1 else args.demos
        rows = [open_loop(p, d, args.episodes, args.noise) for p, d in zip(args.policy, demos, strict=True)]
        print_table("policy against the expert on stored InterceptMedium episodes (open loop)",
                    ["policy", "episodes", "push frames", "push heading median deg", "within 10 deg", "push strength",
                     "other heading median deg"],
                    [[r["policy"], r["episodes"], r["push_frames"], r["push_heading_median_deg"], r["push_heading_within_10deg"],
                      r["push_strength_median"], r["other_heading_median_deg"]] for r in rows])
        save("mikasa_push_open_loop", {"rows": rows})
    else:
        from memstream.embodied.envs.mikasa import experts

        line_tol = experts.LINE_TOL_M if args.line_tol is None else args.line_tol
        line_gain = experts.LINE_GAIN if args.line_gain is None else args.line_gain
        rows = [expert(r, s, line_tol, line_gain, args.episodes, args.seed, e)
                for r, s, e in itertools.product(args.run_up, args.speed, args.line_error)]
        print_table("InterceptMedium expert with other push constants (cameras off)",
                    ["run-up m", "speed", "line error m", "episodes", "success", "push steps (mean)", "ball reached the hand",
                     "hand down then", "across its line, quartiles m", "failed seeds"],
                    [[r["run_up_m"], r["push_speed"], r["line_error_m"], r["episodes"], r["success_rate"], r["push_steps_mean"],
                      r["ball_reached_hand"], r["hand_down_as_it_reached"], r["catch_across_abs_quartiles_m"], r["failed_seeds"]] for r in rows])
        path = RESULTS / "mikasa_push_expert.json"
        kept = json.loads(path.read_text()).get("rows", []) if path.exists() else []

        def setting(r: dict) -> tuple:  # rows before stop 50 ran the expert that lifted off every miss
            return (r["run_up_m"], r["push_speed"], r["line_tol_m"], r["line_gain"], r["line_error_m"], r["episodes"],
                    r["seed"], r.get("low_clear_m"))

        done = {setting(r) for r in rows}
        save("mikasa_push_expert", {"rows": [r for r in kept if setting(r) not in done] + rows})


if __name__ == "__main__":
    main()
