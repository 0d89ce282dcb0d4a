"""Run navigation agents over episodes of a navigation env and score them as habitat and FindingDory do.

Per episode: habitat-lab's ``distance_to_goal``, ``success``, ``spl``; FindingDory's high-level success
(the agent chose the right goals: each within :data:`HIGH_LEVEL_RADIUS_M` of the true one, in order);
the template and its group; steps; seconds spent in the agent and in the simulator. An episode that
raises is recorded as failed with its seed and the reason, and the run goes on.

Example (needs ``miniworld`` and EGL):
    >>> result = evaluate_nav("miniworld", "findingdory", ["oracle"], episodes=1, options={"image_size": 64})
    >>> result["summary"]["oracle"]["episodes"]
    1
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from memstream.embodied.agents.memory_agent import AGENT_MODES, MapMemoryAgent
from memstream.embodied.envs.nav import NavEnv, make_nav_env
from memstream.embodied.envs.navmetrics import high_level_success
from memstream.streaming.errors import ConfigError

HIGH_LEVEL_RADIUS_M = 1.0
METRICS = ("high_level_success", "success", "spl", "distance_to_goal")
#: one past the largest episode seed: Memory Maze seeds numpy's ``RandomState``, which takes 32 bits
MAX_SEED = 2**32


def check_seeds(seed: int, episodes: int) -> None:
    """Raise :class:`ConfigError` unless the seeds ``seed .. seed + episodes - 1`` are in [0, 2**32)."""
    if seed < 0 or seed + max(episodes, 1) > MAX_SEED:
        last = seed + max(episodes, 1) - 1
        raise ConfigError(f"episode seeds must lie in [0, 2**32), got {seed} .. {last}",
                          "Pass a seed of 0 or more (--seed 10000), with seed + episodes <= 2**32")


def run_episode(env: NavEnv, agent: Any, seed: int, video: str | Path | None = None) -> dict[str, Any]:
    """One episode of ``agent`` (habitat's ``reset`` / ``act``) in ``env``; metrics, template, timings.
    ``video``: also write a top-down video of it there (:mod:`~memstream.embodied.agents.topdown_video`)."""
    recorder = None
    if video is not None:
        from memstream.embodied.agents.topdown_video import TopDownRecorder

        # an env larger than the video's default 16 m square says how much to show (a Memory Maze)
        extent_m = getattr(env, "video_extent_m", None)
        recorder = TopDownRecorder(video) if extent_m is None else TopDownRecorder(
            video, extent_m=extent_m, px_per_m=min(16.0, 512.0 / extent_m))
    try:
        return _run_episode(env, agent, seed, recorder)
    finally:
        if recorder is not None:
            recorder.close()


def _run_episode(env: NavEnv, agent: Any, seed: int, recorder: Any) -> dict[str, Any]:
    agent_s = sim_s = 0.0
    start = time.perf_counter()
    obs = env.reset(seed)
    sim_s += time.perf_counter() - start
    agent.reset()
    steps = history_steps = 0
    while not env.episode_over:
        start = time.perf_counter()
        action = agent.act(obs)
        agent_s += time.perf_counter() - start
        start = time.perf_counter()
        obs = env.step(action)
        sim_s += time.perf_counter() - start
        if recorder is not None:
            recorder.add(obs, agent, env.goals_gps())
        steps += 1
        history_steps += obs.get("phase") == "history"
    metrics = env.get_metrics()
    chosen = getattr(agent, "chosen_goals", None)
    # an env that sees the choice itself (the cue maze: which arm the agent entered) reports it;
    # otherwise the agent's chosen goals are compared with the true ones
    high_level = metrics.pop("high_level_success", None)
    if high_level is None:
        high_level = high_level_success(chosen, env.goals_gps(), HIGH_LEVEL_RADIUS_M)
    template = getattr(env, "template", None)
    agent_stats = getattr(agent, "episode_stats", None)  # an agent that logs where its steps went
    scored_by = getattr(env, "summary_metrics", METRICS)
    return {
        "seed": seed,
        "ok": True,
        "error": None,
        "template": getattr(template, "name", None),
        "group": getattr(template, "group", None),
        "instruction": obs.get("instruction", ""),
        "num_goals": len(env.goals_gps()),
        **({"high_level_success": float(high_level)} if "high_level_success" in scored_by else {}),
        **{key: float(value) for key, value in metrics.items()},
        "steps": steps,
        "history_steps": history_steps,
        "agent_s": agent_s,
        "sim_s": sim_s,
        **({"agent_stats": agent_stats()} if callable(agent_stats) else {}),
    }


def make_agent(mode: str, env: NavEnv, seed: int) -> MapMemoryAgent:
    if mode not in AGENT_MODES:
        raise ConfigError(f"unknown agent {mode!r}", f"Choose among {', '.join(AGENT_MODES)}")
    return MapMemoryAgent(mode, goal_oracle=env.goals_gps if mode == "oracle" else None, seed=seed)  # type: ignore[arg-type]


def make_maze_agent(mode: str, env: NavEnv, seed: int) -> Any:
    """A :class:`~memstream.embodied.agents.maze_agent.MazeMemoryAgent` for ``env`` (a Memory Maze)."""
    from memstream.embodied.agents.maze_agent import MAZE_AGENT_MODES, MazeMemoryAgent
    from memstream.embodied.envs.memory_maze_env import TARGETS_PER_SIZE

    if mode not in MAZE_AGENT_MODES:
        raise ConfigError(f"unknown agent {mode!r}", f"Choose among {', '.join(MAZE_AGENT_MODES)}")
    size = env.config.maze_size  # type: ignore[attr-defined]
    oracle = env.goals_gps if mode == "oracle" else None
    return MazeMemoryAgent(
        mode, goal_oracle=oracle, seed=seed, targets=TARGETS_PER_SIZE[size], maze_size=size  # type: ignore[arg-type]
    )


def agent_modes(env: str) -> tuple[tuple[str, ...], Callable[[str, NavEnv, int], Any]]:
    """The agent names an environment takes and the factory that builds them."""
    if env == "memory_maze":
        from memstream.embodied.agents.maze_agent import MAZE_AGENT_MODES

        return MAZE_AGENT_MODES, make_maze_agent
    return AGENT_MODES, make_agent


def summarise(episodes: list[dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> dict[str, Any]:
    """Means of ``metrics`` over all episodes (failed ones count 0 / inf-free) and per template group."""

    def means(rows: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {"episodes": len(rows), "crashed": sum(not r["ok"] for r in rows)}
        for key in metrics:
            values = [r[key] for r in rows if r["ok"] and np.isfinite(r[key])]
            out[key] = (
                float(np.mean([r[key] if r["ok"] else 0.0 for r in rows]))
                if key != "distance_to_goal"
                else (float(np.mean(values)) if values else None)
            )
        steps = sum(r["steps"] for r in rows if r["ok"])
        agent_s = sum(r["agent_s"] for r in rows if r["ok"])
        sim_s = sum(r["sim_s"] for r in rows if r["ok"])
        out["steps_per_s"] = steps / (agent_s + sim_s) if agent_s + sim_s > 0 else None
        out["agent_steps_per_s"] = steps / agent_s if agent_s > 0 else None
        out["agent_share"] = agent_s / (agent_s + sim_s) if agent_s + sim_s > 0 else None
        return out

    summary = means(episodes)
    groups = sorted({r["group"] for r in episodes if r["group"]})
    summary["groups"] = {g: means([r for r in episodes if r["group"] == g]) for g in groups}
    summary["templates"] = len({r["template"] for r in episodes if r["template"]})
    return summary


def evaluate_nav(
    env: str,
    task: str,
    agents: list[str],
    episodes: int,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    progress: Callable[[str, int, dict[str, Any]], None] | None = None,
    agent_factory: Callable[[str, NavEnv, int], Any] | None = None,
    videos: int = 0,
    video_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Every agent over the same ``episodes`` seeds ``seed .. seed + episodes - 1``.

    ``videos``: a top-down video of each agent's first ``videos`` episodes goes to
    ``video_dir/{agent}_seed{seed}.mp4``.

    ``agent_factory(name, env, seed)`` builds each agent (default :func:`make_agent`, names in
    :data:`AGENT_MODES`); any object with habitat's ``reset`` / ``act`` will do.

    Returns ``{"env", "task", "options", "episodes": {agent: [per-episode dict]}, "summary": {agent: ...}}``.

    Raises:
        ConfigError: unknown env, task or agent; a seed outside [0, 2**32). MemstreamError: the
            simulator is missing (before any episode). An episode that raises is recorded (``ok``
            False, ``error``) and the run goes on.
    """
    check_seeds(seed, episodes)
    modes, default_factory = agent_modes(env)
    factory = agent_factory or default_factory
    for mode in agents if agent_factory is None else ():
        if mode not in modes:
            raise ConfigError(f"unknown agent {mode!r}", f"Choose among {', '.join(modes)}")
    nav_env = make_nav_env(env, task, options)
    nav_env.require()
    metrics: tuple[str, ...] = getattr(nav_env, "summary_metrics", METRICS)
    rows: dict[str, list[dict[str, Any]]] = {mode: [] for mode in agents}
    try:
        for mode in agents:
            agent = factory(mode, nav_env, seed)
            for index in range(episodes):
                episode_seed = seed + index
                try:
                    video = Path(video_dir) / f"{mode}_seed{episode_seed}.mp4" if index < videos and video_dir else None
                    row = run_episode(nav_env, agent, episode_seed, video)
                except Exception as error:  # noqa: BLE001 - a crashed episode fails; the run goes on
                    row = _crashed(episode_seed, error)
                rows[mode].append(row)
                if progress is not None:
                    progress(mode, index, row)
    finally:
        nav_env.close()
    return {
        "env": env,
        "task": task,
        "options": dict(options or {}),
        "seed": seed,
        "episodes": rows,
        "summary": {mode: summarise(r, metrics) for mode, r in rows.items()},
    }


def _crashed(seed: int, error: BaseException) -> dict[str, Any]:
    reason = f"{type(error).__name__}: {error}"
    return {
        "seed": seed,
        "ok": False,
        "error": reason,
        "trace": traceback.format_exc(limit=3),
        "template": None,
        "group": None,
        "instruction": "",
        "num_goals": 0,
        "high_level_success": 0.0,
        "success": 0.0,
        "spl": 0.0,
        "distance_to_goal": float("nan"),
        "steps": 0,
        "history_steps": 0,
        "agent_s": 0.0,
        "sim_s": 0.0,
    }
