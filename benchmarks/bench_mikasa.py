"""MIKASA-Robo on ManiSkill3's CPU simulator: expert success, simulator speed, demonstration rate.

* ``experts``: the scripted experts (:mod:`memstream.embodied.envs.mikasa.experts`) on ``--episodes``
  episodes per task, seeds 0.. (the demonstration range; evaluation uses 4242424242..), cameras off
  (``render=False``: same physics, no rendering), success as the suite's VLA benchmark counts it
  (``success_once`` within the time limit). Chance level beside each task.
* ``speed``: control steps/s with both 128x128 cameras, one process vs ``--procs`` processes side by
  side (ManiSkill's CPU backend simulates one env per process; parallel envs mean processes), and
  without rendering.
* ``profile``: where a control step's time goes (physics = control + simulation + the suite's
  evaluate; render per camera), for the suite's own ``obs_mode="rgb"`` (the adapter's previous path)
  and the adapter's render settings (wrist-camera housing drawn or hidden, both cameras or the base
  camera only, no render). All envs step round-robin in one process, so the machine's load falls
  on every row alike: compare the ratios.
* ``serve``: one policy step (bank read + write, action chunk) of a random-weight MemoryVLA-style
  policy sized for MIKASA-Robo (128x128 image, 7-d state and action, chunk 8, bank L = 16) in
  process at batch 1 and 8, and through the WebSocket server from a loopback client (round trip).
* ``vla``: gathers ``memstream vla-eval`` runs (``results.json``) into one table beside chance (success
  with its 95 % Wilson interval, how often the tip ended nearest the right cube, evaluation and
  demonstration seeds, training steps and speed, policy latency per control step), with how far each
  run is from MemoryVLA's protocol (250 demonstrations per task, 100 episodes) and MemoryVLA's and
  muVLA's figures beside it.
* ``offline``: open-loop chunk metrics of ``vla-train`` folders on held-out stored demonstrations
  (:func:`~memstream.embodied.policies.memvla.mikasa.open_loop_metrics`): position-action error
  before / after the arm may move, whether the first moving chunk heads for the expert's cube,
  and the same with the bank wiped at that frame (did the cue reach the bank and get used?);
  ``--train-check N`` also scores the run's first N training episodes (memorisation shows as
  agreement there far above held out).
* ``idle``: success of a policy that holds the arm still (zero deltas, fingers closed) on the
  evaluation seeds (4242424242..), cameras off: the floor a trained policy must beat where chance has
  no closed form (InterceptMedium: the ball may roll into the goal unaided).
* ``demos``: demonstrations/hour written by ``memstream vla-collect`` (rendering, H.264 encoding,
  Parquet) for ``--episodes`` episodes of one task, once per ``--workers`` count, side by side.

The ShellGame tasks (MemoryVLA's fifth) need a YCB asset download and are left out of every table.
The machine is shared (2 cores, several other jobs): compare rows of one run, not across runs.

    python benchmarks/bench_mikasa.py experts --episodes 20 [--render]
    python benchmarks/bench_mikasa.py profile --steps 40
    python benchmarks/bench_mikasa.py speed --steps 30 --procs 2
    python benchmarks/bench_mikasa.py idle --tasks InterceptMedium --episodes 100
    python benchmarks/bench_mikasa.py demos --task RememberColor3 --episodes 6 [--workers 1 2]
    python benchmarks/bench_mikasa.py serve --steps 30 [--threads 1]
    python benchmarks/bench_mikasa.py vla --runs runs/rc3_bank_eval runs/rc3_none_eval [--train-logs bank.log none.log]
    python benchmarks/bench_mikasa.py offline --demos demos/rc3 --held-out 100 112 --runs runs/rc3_bank runs/rc3_none
    python benchmarks/bench_mikasa.py offline --demos demos/rc5 demos/rc5_held --held-out 1000 1050 --train-check 50 --runs runs/rc5
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from _common import RESULTS, print_table, save

TASKS = ("RememberColor3", "RememberColor5", "RememberColor9", "InterceptMedium")
NOTE = "ShellGameTouch (MemoryVLA's fifth task) needs a YCB asset download: not runnable offline, left out"


def _touch_height(meta: dict) -> float | None:
    """Where the RememberColor expert of the policy's demonstrations stopped (m above the cube's centre):
    recorded by collections since stop 38; 0.035 before (the expert's old constant); None when the
    folders are gone or the task is not RememberColor."""
    demos = meta.get("demos")
    folders = [demos] if isinstance(demos, str) else demos or []
    info = Path(folders[0]) / "meta" / "info.json" if folders else None
    if not str(meta.get("task", "")).startswith("RememberColor") or info is None or not info.is_file():
        return None
    return json.loads(info.read_text()).get("memstream", {}).get("expert", {}).get("touch_height_m", 0.035)


def _evaluate(task: str, seed: int, render: bool, episodes: int, policy_for) -> tuple[dict, float]:
    """``evaluate_env`` of ``policy_for(env)`` on ``episodes`` episodes from ``seed``, and its seconds."""
    from memstream.embodied.envs import evaluate_env
    from memstream.embodied.envs.mikasa import make_mikasa_env

    env = make_mikasa_env(task, seed=seed, render=render)
    try:
        started = time.perf_counter()
        result = evaluate_env(policy_for(env), env, episodes)
        return result, time.perf_counter() - started
    finally:
        env.close()


def expert_success(task: str, episodes: int, render: bool = False) -> dict:
    result, seconds = _evaluate(task, 0, render, episodes, lambda env: lambda obs: env.expert_actions())
    return {"task": task, "episodes": episodes, "render": render, "success_rate": result["success_rate"],
            "chance_success_rate": result["chance_success_rate"], "mean_length": result["mean_length"],
            "failed_seeds": [int(i) for i in (~result["success"]).nonzero()[0]], "seconds": round(seconds, 1)}


def idle_success(task: str, episodes: int) -> dict:
    """The suite's success of a policy that holds still, on the evaluation seeds (cameras off)."""
    import numpy as np

    from memstream.embodied.envs.mikasa import EVAL_SEED
    from memstream.embodied.envs.mikasa.env import ACTION_DIM

    def hold_still(env):
        hold = np.zeros((env.num_envs, ACTION_DIM), np.float32)
        hold[:, -1] = -1.0  # fingers closed, as the experts and the trained policies keep them
        return lambda obs: hold

    result, seconds = _evaluate(task, EVAL_SEED, False, episodes, hold_still)
    wins = int(result["success"].sum())
    return {"task": task, "episodes": episodes, "first_seed": EVAL_SEED, "success_rate": result["success_rate"],
            "success_95ci": wilson(wins, episodes), "successful_seeds": [EVAL_SEED + int(i) for i in result["success"].nonzero()[0]],
            "chance_success_rate": result["chance_success_rate"], "seconds": round(seconds, 1)}


def _steps_per_s(args: tuple[str, int, bool]) -> float:
    from memstream.embodied.envs.mikasa import make_mikasa_env

    task, steps, render = args
    env = make_mikasa_env(task, seed=0, render=render)
    env.reset()
    env.step(env.expert_actions())  # warm-up: first render compiles shaders
    started = time.perf_counter()
    for _ in range(steps):
        env.step(env.expert_actions())
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def speed(task: str, steps: int, procs: int) -> list[dict]:
    rows = []
    for n, render in ((1, True), (procs, True), (1, False)):
        with mp.get_context("spawn").Pool(n) as pool:
            started = time.perf_counter()
            rates = pool.map(_steps_per_s, [(task, steps, render)] * n)
            wall = time.perf_counter() - started
        rows.append({"task": task, "processes": n, "render": render, "steps_per_s_each": [round(r, 2) for r in rates],
                     "steps_per_s_total": round(sum(rates), 2), "wall_s": round(wall, 1)})
    return rows


PROFILES = (  # label, MikasaConfig overrides (None: the suite's own obs_mode="rgb" env, the previous path)
    ("suite obs_mode=rgb (before)", None),
    ("both cameras, housing drawn", dict(camera_housing=True)),
    ("both cameras, housing hidden", dict()),
    ("base camera, housing hidden", dict(cameras=("base_camera",))),
    ("no render", dict(render=False)),
)


def profile(task: str, steps: int) -> list[dict]:
    import numpy as np
    import torch

    from memstream.embodied.envs.mikasa import make_mikasa_env, resolve_task
    from memstream.embodied.envs.mikasa.sim import make_suite_env

    envs = []
    for label, overrides in PROFILES:
        if overrides is None:
            raw = make_suite_env(resolve_task(task).suite_id, obs_mode="rgb", control_mode="pd_ee_delta_pose", image_size=128)
            raw.reset(seed=0)
            envs.append((label, raw, None))
        else:
            env = make_mikasa_env(task, seed=0, **overrides)
            env.reset()
            envs.append((label, env, env.timing))
    zero = np.zeros((1, 7), np.float32)
    seconds = {label: 0.0 for label, _ in PROFILES}
    for step in range(steps + 2):  # round-robin; the first 2 steps warm up (shader compilation)
        for label, env, timing in envs:
            if step == 2 and timing is not None:
                timing.update({key: 0.0 for key in timing})
            started = time.perf_counter()
            if timing is None:
                _, _, terminated, truncated, _ = env.step(torch.from_numpy(zero))
                if bool(terminated.any() or truncated.any()):
                    env.reset(seed=step)
            else:
                env.step(env.expert_actions())
            if step >= 2:
                seconds[label] += time.perf_counter() - started
    rows = []
    before = steps / seconds[PROFILES[0][0]]
    for label, env, timing in envs:
        rate = steps / seconds[label]
        row = {"setting": label, "steps_per_s": round(rate, 2), "speedup_vs_before": round(rate / before, 2),
               "ms_per_step": round(1000 * seconds[label] / steps, 1)}
        if timing is not None:
            row["ms_per_step_by_part"] = {key: round(1000 * value / steps, 1) for key, value in timing.items()}
        rows.append(row)
        env.close()
    return rows


def demos(task: str, episodes: int, workers: int = 1) -> dict:
    """``memstream vla-collect`` of ``episodes`` rollouts (both cameras, seed 0) with ``workers``
    processes, into a temporary folder."""
    from memstream.embodied.envs.mikasa import read_demonstrations
    from memstream.streaming.cli import main as memstream

    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "demos"
        started = time.perf_counter()
        if memstream(["vla-collect", "--task", task, "--episodes", str(episodes), "--workers", str(workers),
                      "--out", str(out), "--no-progress"]) != 0:
            raise SystemExit(f"vla-collect {task} failed")
        seconds = time.perf_counter() - started
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        data = read_demonstrations(out)
        frames = sum(r["length"] for r in data.records)
    return {"task": task, "episodes": episodes, "workers": workers, "frames": frames, "seconds": round(seconds, 1),
            "demos_per_hour": round(len(data) * 3600 / seconds, 1), "bytes": size,
            "bytes_per_frame": round(size / max(frames, 1), 1), "expert_success": len(data) / episodes}


def serve_latency(steps: int, threads: int, run: str | None = None) -> list[dict]:
    """Median policy step (observe + one chunk) in process at batch 1 and 8 (8 parallel envs) and over
    the WebSocket server at batch 1. ``run``: a ``vla-train`` folder whose policy is measured; without
    it, random weights in the settings the variant table of ``benchmarks/MIKASA.md`` trains with (max-pooled 4x4 tokens,
    chunk prior, bank L = 16), which cost the same per step."""
    import numpy as np
    import torch

    from memstream.embodied.bank import MemoryBankConfig
    from memstream.embodied.policies import MemoryVLAConfig, MemoryVLAPolicy
    from memstream.embodied.policies.serve import PolicyServer
    from memstream.embodied.policies.wire import PolicyClient

    torch.manual_seed(0)
    torch.set_num_threads(threads)  # 2 threads on a loaded 2-core machine spin-wait: steps 30-100x slower
    if run is not None:
        from memstream.embodied.policies.memvla.mikasa import load_mikasa_policy

        policy, meta = load_mikasa_policy(run)
        policy, variant = policy.eval(), meta["variant"]
        image_key = policy.config.image_key
    else:
        image_key = "observation.images.base_camera"
        config = MemoryVLAConfig(input_features={image_key: (3, 128, 128), "observation.state": (7,)},
                                 output_features={"action": (7,)}, chunk_size=8, n_action_steps=1,
                                 bank=MemoryBankConfig(capacity=16), perceptual_pool="max", perceptual_grid=4,
                                 perceptual_subgrid=4, chunk_prior=True, inference_noise=0.0)
        policy, variant = MemoryVLAPolicy(config).eval(), "bank"
    rng = np.random.default_rng(0)
    settings = {"policy": run or "random weights", "variant": variant,
                "memory_length": policy.config.bank.capacity if policy.config.memory == "bank" else None,
                "perceptual_pool": policy.config.perceptual_pool, "chunk_prior": policy.config.chunk_prior,
                "torch_threads": threads, "load_average_before": [round(x, 2) for x in os.getloadavg()]}

    def batch(size: int, t: int) -> dict:
        return {image_key: rng.integers(0, 256, (size, 128, 128, 3), dtype=np.uint8),
                "observation.state": rng.normal(size=(size, 7)).astype(np.float32), "task": ["touch the cube"] * size,
                "episode_start": np.full(size, t == 0), "frame_index": np.full(size, t)}

    def median_ms(call) -> float:
        call(0)
        times = []
        for t in range(1, steps + 1):
            started = time.perf_counter()
            call(t)
            times.append(time.perf_counter() - started)
        return round(1000 * sorted(times)[len(times) // 2], 2)

    rows = [{"path": f"in process, batch {size}", **settings,
             "median_ms": median_ms(lambda t, size=size: policy.predict_action_chunk(batch(size, t)))} for size in (1, 8)]
    rows[1]["median_ms_per_env"] = round(rows[1]["median_ms"] / 8, 2)
    server = PolicyServer(policy, "touch the cube", api_keys=["bench"])
    server.start()
    try:
        with PolicyClient(f"ws://127.0.0.1:{server.port}", api_key="bench") as client:
            client.reset()

            def remote(t: int) -> None:
                one = batch(1, t)
                client.infer({key: one[key][0] for key in (image_key, "observation.state")} | {"task": "touch the cube"})

            rows.append({"path": "WebSocket round trip, batch 1", **settings, "median_ms": median_ms(remote)})
    finally:
        server.stop()
    return rows


ANCHORS = ("MemoryVLA (MIKASA-Robo, 5 tasks incl. ShellGameTouch, 250 demonstrations, 100 episodes per task): "
           "41.2 % average; muVLA: 84 % average over five training tasks. Both fine-tune pretrained 7B VLA backbones "
           "and average over a fifth task (ShellGameTouch) that needs a YCB download and is left out here; the "
           "policy here is a small one trained from scratch on 2 CPU cores.")


def wilson(successes: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson interval of a success rate."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 3), round(min(1.0, centre + half), 3)]


def _train_log(path: str | None, step: int | None) -> dict:
    """Training speed from a ``memstream vla-train`` log: the mean steps/s it printed at checkpoint
    ``step`` (its last one when None), and the seconds that took."""
    import re

    if not path:
        return {}
    rates = {int(done): float(rate) for done, _, rate in
             re.findall(r"step (\d+)/(\d+) loss [-\d.]+ \(([\d.]+) steps/s\)", Path(path).read_text())}
    step = step if step in rates else max(rates, default=None)
    if step is None:
        return {}
    return {"train_steps_per_s": rates[step], "train_seconds": round(step / rates[step], 1), "train_log_step": step}


def gather_vla(runs: list[str], train_logs: list[str] | None = None) -> list[dict]:
    """One row per ``vla-eval`` folder; ``train_logs`` (same order, optional) fill the training speed of
    runs trained before ``vla-train`` recorded it in ``mikasa.json``."""
    rows = []
    logs = list(train_logs or []) + [None] * len(runs)
    for run, log in zip(runs, logs[: len(runs)], strict=True):
        result = json.loads((Path(run) / "results.json").read_text())
        meta = json.loads((Path(result["policy"]) / "mikasa.json").read_text())
        config = json.loads((Path(result["policy"]) / "config.json").read_text())
        episodes = result["episodes"]
        timing = ({k: meta[k] for k in ("train_seconds", "train_steps_per_s") if meta.get(k) is not None}
                  or _train_log(log, meta.get("steps", meta.get("checkpoint_step"))))
        steps = sum(e["length"] for e in episodes)
        rows.append({"run": run, "task": result["task"], "variant": result["variant"],
                     "memory_length": result["memory_length"], "episodes": result["episodes_done"],
                     "complete": result["complete"], "success_rate": result["success_rate"],
                     "success_95ci": wilson(sum(e["success"] for e in episodes), len(episodes)),
                     "chance_success_rate": result["chance_success_rate"], "demonstrations": meta.get("demonstrations"),
                     "eval_seeds": [min(e["seed"] for e in episodes), max(e["seed"] for e in episodes)] if episodes else None,
                     "demo_seeds": meta.get("demo_seeds"), "init_seed": meta.get("seed"),
                     "train_steps": meta.get("steps", meta.get("checkpoint_step")), "batch_episodes": meta.get("batch_episodes"),
                     "prefix_episodes": meta.get("prefix_episodes", 0), "init_from": meta.get("init_from"),
                     "binding_warmup": meta.get("binding_warmup"), "expert_touch_height_m": _touch_height(meta),
                     "loss_frames": config.get("loss_frames"), "bank_gradients": config.get("bank_gradients", False),
                     "bank_heads": (config.get("bank") or {}).get("num_heads") if config.get("memory") == "bank" else None,
                     "perceptual_pool": config.get("perceptual_pool", "avg"), "perceptual_grid": config.get("perceptual_grid", 4),
                     "perceptual_fine_position": config.get("perceptual_fine_position", False),
                     "prior_readout_heads": config.get("prior_readout_heads", 0),
                     "prior_readout_offsets": config.get("prior_readout_offsets", False),
                     "prior_readout_track": config.get("prior_readout_track", 0),
                     "head_film": config.get("head_film", False), "chunk_prior": config.get("chunk_prior", False),
                     "goal_loss_weight": config.get("goal_loss_weight", 0.0),
                     "onset_loss_weight": config.get("onset_loss_weight", 1.0),
                     "pointer_loss_weight": config.get("pointer_loss_weight", 0.0),
                     "keypoint_loss_weight": config.get("keypoint_loss_weight", 0.0),
                     "keypoint_rms_px": meta.get("keypoint_rms_px"),
                     "augment_hue": config.get("augment_hue", 0.0), "image_crop": config.get("image_crop"),
                     "final_loss": meta.get("final_loss"), "inference_noise": result.get("inference_noise"),
                     "n_action_steps": result.get("n_action_steps", config.get("n_action_steps")),
                     "temporal_ensemble_coeff": result.get("temporal_ensemble_coeff"),
                     "wipe_memory": result.get("wipe_memory", False), **timing,
                     "policy_ms_per_step": round(1000 * sum(e["policy_s"] for e in episodes) / max(steps, 1), 2),
                     "sim_ms_per_step": round(1000 * sum(e["sim_s"] for e in episodes) / max(steps, 1), 1),
                     **_choice(episodes), **_intercept(episodes),
                     "protocol_gap": f"{meta.get('demonstrations')} of 250 demonstrations, {result['episodes_done']} of "
                                     "100 evaluation episodes, a small policy trained from scratch on a CPU (MemoryVLA: "
                                     "a pretrained 7B backbone)"})
    return rows


def offline_vla(runs: list[str], demos: list[str], held_out: tuple[int, int], noises: list[float],
                probe: bool = False, train_check: int = 0) -> list[dict]:
    """Open-loop chunk metrics of trained policies on held-out stored demonstrations (no simulator);
    ``probe``: also the cue colour's linear probes at the first move (``cue_probe``: fitted on the
    run's training episodes, scored on the held-out ones), in the run's first row; ``train_check``:
    also score the run's first N training episodes (rows with ``split`` "train"): a policy that
    memorises its episodes agrees with the expert there far more than held out."""
    from memstream.embodied.policies.memvla.mikasa import (cue_probe, demonstration_camera, end_point_tokens,
                                                           load_mikasa_demonstrations, load_mikasa_policy, open_loop_metrics)

    first, last = held_out
    data = load_mikasa_demonstrations(demos, max_episodes=last)
    if data.num_episodes < last:
        raise SystemExit(f"{' '.join(demos)} hold {data.num_episodes} episodes, --held-out needs {last}")
    rows = []
    for run in runs:
        policy, meta = load_mikasa_policy(run)
        trained = json.loads((Path(run) / "mikasa.json").read_text())
        if trained.get("demonstrations", 0) > first:
            raise SystemExit(f"{run} was trained on {trained['demonstrations']} demonstrations: --held-out must start past them")
        if not 0 <= train_check <= trained.get("demonstrations", 0):
            raise SystemExit(f"--train-check {train_check}: {run} was trained on {trained.get('demonstrations')} demonstrations")
        splits = [("held_out", list(range(first, last)))] + ([("train", list(range(train_check)))] if train_check else [])
        tokens = None  # where a readout's first head should look (what --pointer-loss trains), for every policy with one
        if policy.prior is not None and policy.prior.readout is not None:
            tokens = end_point_tokens(data, demonstration_camera(demos, meta.get("camera", "base_camera")),
                                      policy.config.perceptual_grid, policy.config.image_crop)
        for noise, (split, episodes) in [(n, s) for n in noises for s in splits]:
            policy.config.inference_noise = noise
            wipes = (False, True) if policy.memory is not None and noise == noises[0] and split == "held_out" else (False,)
            for wipe in wipes:
                started = time.perf_counter()
                metrics = open_loop_metrics(policy, data, episodes, wipe_at_first_move=wipe, pointer_tokens=tokens)
                rows.append({"run": run, "variant": meta["variant"], "steps": trained.get("steps", trained.get("checkpoint_step")),
                             "prefix_episodes": trained.get("prefix_episodes", 0), "init_from": trained.get("init_from"),
                             "binding_warmup": trained.get("binding_warmup"), "expert_touch_height_m": _touch_height(trained),
                             "perceptual_pool": policy.config.perceptual_pool, "perceptual_grid": policy.config.perceptual_grid,
                             "chunk_prior": policy.config.chunk_prior, "head_film": policy.config.head_film,
                             "goal_loss_weight": policy.config.goal_loss_weight,
                             "onset_loss_weight": policy.config.onset_loss_weight,
                             "pointer_loss_weight": policy.config.pointer_loss_weight,
                             "augment_hue": policy.config.augment_hue,
                             "image_crop": None if policy.config.image_crop is None else list(policy.config.image_crop),
                             "final_loss": trained.get("final_loss"), "inference_noise": noise,
                             "bank_wiped_at_first_move": wipe, "split": split, "held_out": [first, last], **metrics,
                             "seconds": round(time.perf_counter() - started, 1)})
        if probe:
            started = time.perf_counter()
            first_row = next(r for r in rows if r["run"] == run)
            first_row["cue_probe"] = cue_probe(policy, data, range(trained["demonstrations"]), range(first, last))
            first_row["cue_probe_seconds"] = round(time.perf_counter() - started, 1)
    return rows


def _choice(episodes: list[dict]) -> dict:
    """RememberColor: how often the tip ended nearest the right cube, and within the suite's 5 cm of it."""
    rows = [e for e in episodes if "nearest_is_target" in e]
    if not rows:
        return {}
    return {"nearest_is_target": sum(e["nearest_is_target"] for e in rows) / len(rows),
            "tip_within_5cm_of_a_cube": sum(e["tip_to_nearest_m"] < 0.05 for e in rows) / len(rows),
            "median_tip_to_target_m": float(sorted(e["tip_to_target_m"] for e in rows)[len(rows) // 2]),
            **_offsets(rows)}


def _intercept(episodes: list[dict]) -> dict:
    """Intercept: how often the tip came within 5 cm of the ball, and how near the ball came to the goal
    against where it started (medians; the expert catches it and pushes it through the goal)."""
    rows = [e for e in episodes if "closest_tip_to_ball_m" in e]
    if not rows:
        return {}

    def median(key: str) -> float:
        return float(sorted(e[key] for e in rows)[len(rows) // 2])

    return {"tip_within_5cm_of_the_ball": sum(e["closest_tip_to_ball_m"] < 0.05 for e in rows) / len(rows),
            "median_closest_tip_to_ball_m": median("closest_tip_to_ball_m"),
            "median_ball_to_goal_start_m": median("ball_to_goal_start_m"),
            "median_closest_ball_to_goal_m": median("closest_ball_to_goal_m"),
            "ball_within_5cm_of_the_goal": sum(e["closest_ball_to_goal_m"] < 0.05 for e in rows) / len(rows),
            **catch_summary(rows)}


HAND_DOWN_M = 0.02  # the tip this little above the ball's centre is down (the expert's waits 0.005 m above it)


def catch_summary(rows: list[dict]) -> dict:
    """Where the hand was as the rolling ball reached it (runs that recorded ``catch_*``, see
    ``catch_geometry``): how often the ball rolled up to the hand at all, and of those how often the
    hand was down on the table and how far across the ball's line (quartiles of the distance)."""
    caught = [e for e in rows if "catch_offset_m" in e]
    if not caught:
        return {}
    reached = [e for e in caught if e["ball_reached_hand"]]
    across = sorted(abs(e["catch_across_m"]) for e in reached)
    quartiles = [round(across[int(q * (len(across) - 1))], 4) for q in (0.25, 0.5, 0.75)] if across else None
    return {"ball_reached_hand": len(reached) / len(caught),
            "hand_down_as_it_reached": sum(e["catch_offset_m"][2] < HAND_DOWN_M for e in reached) / max(len(reached), 1),
            "catch_across_abs_quartiles_m": quartiles}


def _offsets(rows: list[dict]) -> dict:
    """Mean tip minus nearest cube centre (x, y, z) and its std, for runs that recorded it (the expert
    stops 0.035 m above the centre; the suite's success needs the tip within 0.05 m)."""
    offsets = [e["tip_offset_m"] for e in rows if "tip_offset_m" in e]
    if not offsets:
        return {}
    columns = list(zip(*offsets, strict=True))
    mean = [sum(c) / len(c) for c in columns]
    std = [(sum((v - m) ** 2 for v in c) / len(c)) ** 0.5 for c, m in zip(columns, mean, strict=True)]
    return {"tip_offset_mean_m": [round(v, 4) for v in mean], "tip_offset_std_m": [round(v, 4) for v in std]}


def _payload(path: Path) -> dict:
    """The results file as it is now, without the fields :func:`save` writes afresh."""
    payload = json.loads(path.read_text()) if path.exists() else {}
    payload.pop("benchmark", None), payload.pop("date", None), payload.pop("machine", None)
    payload["note"] = NOTE
    payload["load_average"] = os.getloadavg()
    return payload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("experts", "idle", "speed", "profile", "demos", "serve", "vla", "offline"))
    parser.add_argument("--demos", nargs="+", default=None,
                        help="offline: the demonstration folder(s) the runs were trained from, in training order, "
                             "then any folder of held-out episodes")
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0],
                        help="offline: flow sampler noise scales to score (the bank is also wiped at the first)")
    parser.add_argument("--held-out", nargs=2, type=int, default=(100, 112),
                        help="offline: episodes [first, last) of --demos, none of them trained on")
    parser.add_argument("--runs", nargs="+", default=[],
                        help="vla: vla-eval output folders; offline: vla-train folders; serve: the vla-train folder to serve "
                             "(default random weights)")
    parser.add_argument("--note", default=None, help="vla: how these runs were made (stored in their rows)")
    parser.add_argument("--train-logs", nargs="+", default=[],
                        help="vla: the vla-train logs of --runs, same order (training speed of runs whose mikasa.json lacks it)")
    parser.add_argument("--probe", action="store_true",
                        help="offline: also fit the cue colour's linear probes at the first move (cue_probe)")
    parser.add_argument("--train-check", type=int, default=0,
                        help="offline: also score the first N training episodes (memorisation: train against held out)")
    parser.add_argument("--render", action="store_true", help="experts: render the cameras (default settings)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--task", default="RememberColor3")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="demos: vla-collect worker counts, run in turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the serve measurement")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args()
    path = RESULTS / "mikasa.json"
    payload = _payload(path)
    if args.what == "experts":
        rows = [expert_success(task, args.episodes, args.render) for task in args.tasks]
        key = "experts_rendered" if args.render else "experts"
        # a run for some tasks replaces only their rows: the other tasks' measurements stay
        payload[key] = [r for r in payload.get(key, []) if r["task"] not in args.tasks] + rows
        payload[key].sort(key=lambda r: TASKS.index(r["task"]) if r["task"] in TASKS else len(TASKS))
        print_table(f"Scripted experts, {args.episodes} episodes per task (cameras {'on' if args.render else 'off'}). {NOTE}",
                    ["task", "success", "chance", "mean length", "failed seeds", "s"],
                    [[r["task"], r["success_rate"], r["chance_success_rate"], r["mean_length"],
                      str(r["failed_seeds"]), r["seconds"]] for r in rows])
    elif args.what == "idle":
        rows = [idle_success(task, args.episodes) for task in args.tasks]
        payload = _payload(path)
        payload["idle"] = [r for r in payload.get("idle", []) if r["task"] not in args.tasks] + rows
        print_table(f"A policy that holds still, {args.episodes} evaluation episodes per task (seeds {rows[0]['first_seed']}..). {NOTE}",
                    ["task", "success (95 % CI)", "chance", "successful seeds", "s"],
                    [[r["task"], f"{r['success_rate']:.2f} {r['success_95ci']}", r["chance_success_rate"],
                      str(r["successful_seeds"]), r["seconds"]] for r in rows])
    elif args.what == "speed":
        rows = speed(args.task, args.steps, args.procs)
        payload["speed"] = rows
        print_table(f"{args.task} control steps/s (128x128 base + hand cameras), shared 2-core machine",
                    ["processes", "render", "steps/s each", "steps/s total"],
                    [[r["processes"], r["render"], str(r["steps_per_s_each"]), r["steps_per_s_total"]] for r in rows])
    elif args.what == "profile":
        rows = profile(args.task, args.steps)
        payload["profile"] = {"task": args.task, "steps": args.steps, "rows": rows}
        print_table(f"{args.task}: time per control step, {args.steps} steps round-robin, 128x128, shared 2-core machine",
                    ["setting", "steps/s", "x before", "ms/step", "by part (ms)"],
                    [[r["setting"], r["steps_per_s"], r["speedup_vs_before"], r["ms_per_step"],
                      str(r.get("ms_per_step_by_part", ""))] for r in rows])
    elif args.what == "vla":
        rows = gather_vla(args.runs, args.train_logs)
        if args.note:
            for row in rows:
                row["run_note"] = args.note
        # the listed runs replace their own earlier rows; rows of other runs stay
        payload = _payload(path)  # reread: another run (of other policies) may have saved since this one began
        rows = [r for r in payload.get("vla", []) if r["run"] not in args.runs] + rows
        payload["vla"] = rows
        payload["vla_note"] = f"{NOTE}. {ANCHORS}"
        print_table(f"memstream vla-eval runs (NOT MemoryVLA's protocol: see protocol_gap). {NOTE}. {ANCHORS}",
                    ["task", "variant", "L", "heads", "tokens, readout, ensemble", "bank grad", "prior", "demos", "steps", "episodes", "success (95 % CI)",
                     "chance", "nearest cube right", "tip within 5 cm", "train steps/s", "policy ms/step"],
                    [[r["task"], r["variant"] + (" (wiped at cue end)" if r.get("wipe_memory") else ""),
                      r["memory_length"], r.get("bank_heads") or "-",
                      f"{r.get('perceptual_pool', 'avg')} g{r.get('perceptual_grid', 4)}{' +pos' if r.get('perceptual_fine_position') else ''}"
                      f"{' ro' + str(r['prior_readout_heads']) if r.get('prior_readout_heads') else ''}"
                      f"{' ens ' + str(r['temporal_ensemble_coeff']) if r.get('temporal_ensemble_coeff') is not None else ''}",
                      r["bank_gradients"], r.get("chunk_prior", False),
                      r["demonstrations"], r["train_steps"],
                      r["episodes"], f"{r['success_rate']:.2f} {r['success_95ci']}", round(r["chance_success_rate"], 3),
                      r.get("nearest_is_target", "-"), r.get("tip_within_5cm_of_a_cube", "-"), r.get("train_steps_per_s", "-"),
                      r["policy_ms_per_step"]] for r in rows])
    elif args.what == "offline":
        rows = offline_vla(args.runs, args.demos, tuple(args.held_out), args.noise, probe=args.probe,
                           train_check=args.train_check)
        if args.note:
            for row in rows:
                row["run_note"] = args.note
        # the listed runs replace their own earlier rows; rows of other runs stay, also those saved by
        # another run of this script since this one began (the file is reread)
        payload = _payload(path)
        rows = [r for r in payload.get("vla_offline", []) if r["run"] not in args.runs] + rows
        payload["vla_offline"] = rows

        def probe(row: dict, name: str) -> object:
            return row.get("cue_probe", {}).get(name, "-")

        print_table("Open-loop chunks on held-out demonstrations (position-action MSE in action stds; target agreement: "
                    "the first moving chunk heads for the expert's cube, chance 1/3; heading: its planar direction within "
                    "20 degrees of the expert's; episodes: held out, or the run's own training episodes; cue probes: the "
                    "colour's held-out "
                    "linear probe at the first move from the bank's read-out / the fused cognitive token; pointer: the "
                    "prior readout's first head on the end point's token at the first move)",
                    ["variant", "pool", "grid", "steps", "episodes", "noise", "bank wiped", "mse frozen", "mse move",
                     "target agree", "heading within 20 deg", "pointer", "classes (exp / pol)", "probe retrieved perc.",
                     "probe fused cogn."],
                    [[r["variant"], r.get("perceptual_pool", "avg"), r.get("perceptual_grid", 4), r["steps"],
                      r.get("split", "held_out"), r["inference_noise"], r["bank_wiped_at_first_move"], round(r["mse_frozen"], 3),
                      round(r["mse_move"], 3), round(r["target_agreement"], 3), r.get("heading_within_20deg", "-"),
                      r.get("pointer_on_target", "-"), f"{r['classes_expert']} / {r['classes_policy']}",
                      probe(r, "retrieved_perceptual"), probe(r, "fused_cognitive")]
                     for r in rows])
    elif args.what == "serve":
        rows = serve_latency(args.steps, args.threads, args.runs[0] if args.runs else None)
        payload["serve"] = rows
        print_table(f"Policy step (observe + one chunk of 8, 128x128; {rows[0]['policy']}), median of {args.steps}, "
                    f"load {rows[0]['load_average_before'][0]} on {os.cpu_count()} cores",
                    ["path", "variant", "median ms", "ms per env"],
                    [[r["path"], f"{r['variant']} L{r['memory_length']}" if r["memory_length"] else r["variant"], r["median_ms"],
                      r.get("median_ms_per_env", r["median_ms"])] for r in rows])
    else:
        rows = [demos(args.task, args.episodes, workers) for workers in args.workers]
        for row in rows:  # one worker keeps the task's own key (the rows of earlier runs)
            payload.setdefault("demos", {})[args.task + ("" if row["workers"] == 1 else f" x{row['workers']} workers")] = row
        base = rows[0]["demos_per_hour"]
        print_table(f"Demonstration collection (render + H.264 + Parquet), load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
                    ["task", "workers", "episodes", "frames", "demos/hour", f"vs {rows[0]['workers']} worker(s)",
                     "bytes/frame", "expert success"],
                    [[r["task"], r["workers"], r["episodes"], r["frames"], r["demos_per_hour"],
                      f"{r['demos_per_hour'] / base:.2f}x", r["bytes_per_frame"], r["expert_success"]] for r in rows])
    print(save("mikasa", payload))


if __name__ == "__main__":
    main()
