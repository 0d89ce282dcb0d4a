"""``memstream nav-eval``: navigation agents over FindingDory-style episodes, habitat's metrics, a JSON file.

    memstream nav-eval --env miniworld --task findingdory --episodes 200 --out runs/nav
    memstream nav-eval --episodes 20 --agents memory,wiped,retrieval,oracle --out runs/nav --overwrite
    memstream nav-eval --env memory_maze --task 9x9 --episodes 10 --agents memory,no_memory --out runs/maze

Writes ``results.json`` in ``--out`` (rewritten after every episode, so it is valid even if the run is
stopped): per agent the per-episode rows (seed, template, group, high-level success, success, spl,
distance_to_goal, steps, seconds in the agent and the simulator; a crashed episode keeps its seed and
error) and the summary, overall and per template group. Prints the summary table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

from memstream.streaming.cli import add_output_args
from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import prepare_output_dir


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    nav = sub.add_parser(
        "nav-eval", help="navigation agents with memory on FindingDory-style tasks (habitat metrics)"
    )
    nav.add_argument("--env", default="miniworld", help="navigation environment (default miniworld)")
    nav.add_argument(
        "--task", default=None, help="task in that environment (default: findingdory; memory_maze: 9x9)"
    )
    nav.add_argument("--episodes", type=int, default=10, help="episodes per agent (seeds seed .. seed+N-1)")
    nav.add_argument(
        "--agents",
        default="memory",
        help="comma-separated: memory, wiped, retrieval, oracle (memory_maze: memory, no_memory, oracle)",
    )
    nav.add_argument("--seed", type=int, default=0)
    nav.add_argument(
        "--image-size", type=int, default=None, help="rgb/depth pixels per side (default 128; memory_maze 64)"
    )
    nav.add_argument(
        "--template",
        dest="templates",
        action="append",
        default=[],
        metavar="NAME",
        help="draw instructions from these templates only (repeatable; default all 24)",
    )
    add_output_args(nav)
    nav.add_argument("--no-progress", action="store_true")
    nav.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    nav.set_defaults(handler=cmd_nav_eval)


def cmd_nav_eval(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}", "Pass --episodes 10")
    agents = [a.strip() for a in args.agents.split(",") if a.strip()]
    from memstream.embodied.agents.evaluate import agent_modes, evaluate_nav
    from memstream.embodied.envs.nav import DEFAULT_TASKS, NAV_ENVS, make_nav_env

    NAV_ENVS.get(args.env)  # an unknown environment is named before anything else
    args.task = args.task or DEFAULT_TASKS[args.env]
    modes, _ = agent_modes(args.env)
    unknown = [a for a in agents if a not in modes]
    if unknown or not agents:
        raise ConfigError(f"unknown agent(s) {unknown or agents}", f"Choose among {', '.join(modes)}")
    options: dict[str, Any] = {} if args.image_size is None else {"image_size": args.image_size}
    if args.templates:
        options["templates"] = tuple(args.templates)
    probe = make_nav_env(args.env, args.task, options)  # unknown names, bad options, no simulator: fail
    probe.require()  # here, before the output folder is touched
    probe.close()
    prepare_output_dir(args.out, overwrite=args.overwrite)
    path = Path(args.out) / "results.json"
    partial: dict[str, list[dict[str, Any]]] = {a: [] for a in agents}

    def progress(agent: str, index: int, row: dict[str, Any]) -> None:
        partial[agent].append(row)
        write_json(
            path,
            {
                "env": args.env,
                "task": args.task,
                "options": options,
                "seed": args.seed,
                "complete": False,
                "episodes": partial,
            },
        )
        if not args.no_progress:
            status = "ok" if row["ok"] else f"crashed: {row['error']}"
            if "high_level_success" in row:
                scores = (f"{row['template']}: high-level {row['high_level_success']:.0f} success "
                          f"{row['success']:.0f} spl {row['spl']:.2f}")
            else:  # a reward task (memory_maze)
                scores = f"return {row.get('return', 0.0):.0f} in {row['steps']} steps"
            print(f"{agent} {index + 1}/{args.episodes} seed {row['seed']} {scores} {status}", flush=True)

    result = evaluate_nav(
        args.env, args.task, agents, args.episodes, seed=args.seed, options=options, progress=progress
    )
    write_json(path, {**result, "complete": True})
    print_table(result["summary"])
    print(f"results: {path}")
    return 0


def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become None (JSON has no NaN or Infinity), recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file renamed over it)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(finite(data), indent=1))
    os.replace(tmp, path)


def print_table(summary: dict[str, Any]) -> None:
    """One row per agent and template group: high-level success, success, SPL, distance to goal (a
    reward task: mean return and steps per second, one row per agent)."""
    if any("return" in stats for stats in summary.values()):
        print(f"{'agent':<10} {'eps':>4} {'return':>7} {'steps/s':>8} {'agent share':>11}")
        for agent, stats in summary.items():
            rate = "-" if stats["steps_per_s"] is None else f"{stats['steps_per_s']:.1f}"
            share = "-" if stats["agent_share"] is None else f"{stats['agent_share']:.2f}"
            print(f"{agent:<10} {stats['episodes']:>4} {stats['return']:>7.2f} {rate:>8} {share:>11}")
        return
    header = (f"{'agent':<10} {'group':<11} {'eps':>4} {'high-level':>10} {'success':>8} {'spl':>6} "
              f"{'dtg m':>6} {'steps/s':>8}")
    print(header)
    print("-" * len(header))
    for agent, stats in summary.items():
        for group, row in [("all", stats), *stats["groups"].items()]:
            dtg = "-" if row["distance_to_goal"] is None else f"{row['distance_to_goal']:.2f}"
            rate = "-" if row["steps_per_s"] is None else f"{row['steps_per_s']:.0f}"
            print(
                f"{agent:<10} {group:<11} {row['episodes']:>4} {row['high_level_success']:>10.2f} "
                f"{row['success']:>8.2f} {row['spl']:>6.2f} {dtg:>6} {rate:>8}"
            )
