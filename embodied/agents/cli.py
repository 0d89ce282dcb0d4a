"""``memstream nav-eval``: navigation agents over FindingDory-style episodes, habitat's metrics, a JSON file.

    memstream nav-eval --env miniworld --task findingdory --episodes 200 --out runs/nav
    memstream nav-eval --episodes 20 --agents memory,wiped,retrieval,oracle --out runs/nav --overwrite
    memstream nav-eval --env memory_maze --task 9x9 --episodes 10 --agents memory,no_memory --out runs/maze

    memstream nav-eval --task cue --agents oracle --max-steps 40 --out runs/cue

Writes ``results.json`` in ``--out`` (rewritten after every episode, so it is valid even if the run is
stopped): the time limit in actions it ran under (``max_steps``: ``--max-steps`` or the env's own;
null for Memory Maze's per-size default); per agent the per-episode rows (seed, template, group,
high-level success, success, spl, distance_to_goal, steps, seconds in the agent and the simulator; a
crashed episode keeps its seed and error) and the summary, overall and per template group. Prints the
summary table and the step limit.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path
from typing import Any

from memstream.streaming.atomic import write_json_atomic
from memstream.streaming.cli import add_output_args
from memstream.streaming.errors import ConfigError
from memstream.streaming.paths import claim_output_dir, holds_output_dirs


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
        default=None,
        help="comma-separated: memory, wiped, retrieval, oracle (memory_maze: memory, no_memory, oracle); "
        "default memory, or none with --policy",
    )
    nav.add_argument("--policy", action="append", default=[], type=Path, metavar="DIR",
                     help="a learned policy (a folder written by nav-train), named by its folder (repeatable)")
    nav.add_argument("--seed", type=int, default=0)
    nav.add_argument(
        "--max-steps", type=int, default=None, metavar="N",
        help="an episode's time limit in actions (FindingDory: of the task phase; default the env's own: "
        "FindingDory 500, cue 60, Memory Maze the benchmark's)",
    )
    nav.add_argument("--videos", type=int, default=0,
                     help="top-down videos (map, path, goals) of each agent's first N episodes, in OUT/videos")
    nav.add_argument(
        "--image-size", type=int, default=None,
        help="rgb/depth pixels per side (default 128, memory_maze 64, or what --policy was trained on)",
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

    train = sub.add_parser(
        "nav-train",
        help="imitation of a scripted expert: the bank-fed navigation policy (MiniWorld cue maze)"
    )
    train.add_argument("--env", default="miniworld", help="navigation environment (default miniworld)")
    train.add_argument("--task", default="cue", help="task with a scripted expert (default cue)")
    train.add_argument("--variant", default="bank", help="memory: bank (merge + gate), fifo, no_memory")
    train.add_argument("--episodes", type=int, default=300, help="expert demonstrations (seeds seed ..)")
    train.add_argument("--steps", type=int, default=400, help="AdamW steps on batches of whole episodes")
    train.add_argument("--batch-episodes", type=int, default=8)
    train.add_argument("--seed", type=int, default=0, help="demonstration seeds and initial weights")
    add_output_args(train)
    train.add_argument("--no-progress", action="store_true")
    train.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    train.set_defaults(handler=cmd_nav_train)


@holds_output_dirs
def cmd_nav_eval(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    if args.episodes < 1:
        raise ConfigError(f"--episodes must be >= 1, got {args.episodes}", "Pass --episodes 10")
    if args.videos < 0:
        raise ConfigError(f"--videos must be >= 0, got {args.videos}", "Pass --videos 2, or leave it out")
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}",
                          "Pass --max-steps 500, or leave it out for the env's own limit")
    default = "" if args.policy else "memory"
    agents = [a.strip() for a in (args.agents if args.agents is not None else default).split(",") if a.strip()]
    from memstream.embodied.agents.evaluate import agent_modes, check_seeds, evaluate_nav
    from memstream.embodied.envs.nav import DEFAULT_TASKS, NAV_ENVS, STEP_LIMIT_FIELDS, make_nav_env

    check_seeds(args.seed, args.episodes)
    NAV_ENVS.get(args.env)  # an unknown environment is named before anything else
    args.task = args.task or DEFAULT_TASKS[args.env]
    modes, make_agent = agent_modes(args.env)
    unknown = [a for a in agents if a not in modes]
    if unknown or not (agents or args.policy):
        raise ConfigError(f"unknown agent(s) {unknown or agents}", f"Choose among {', '.join(modes)}")
    policies = load_policies(args.policy)
    agents += list(policies)
    sizes = {p.config.input_features[p.config.image_key][-1] for p in policies.values()}
    if args.image_size is not None:
        sizes.add(args.image_size)
    if len(sizes) > 1:
        raise ConfigError(f"the agents need images of {sorted(sizes)} pixels in one run",
                          "Evaluate policies of different image sizes in separate runs, without --image-size")
    options: dict[str, Any] = {"image_size": sizes.pop()} if sizes else {}  # else the env's own default
    if args.templates:
        options["templates"] = tuple(args.templates)
    limit_field = STEP_LIMIT_FIELDS.get((args.env, args.task))  # None: an unknown task, named by the probe
    if args.max_steps is not None and limit_field is not None:
        options[limit_field] = args.max_steps
    try:
        probe = make_nav_env(args.env, args.task, options)  # unknown names, bad options, no simulator: fail
    except ConfigError as error:  # the options come from flags here, not from a YAML file or --set
        if error.what.startswith("unknown config key") and error.what.endswith(".templates"):
            raise ConfigError(f"--template applies to --task findingdory, not {args.env} {args.task}",
                              "Leave --template out") from None
        if not error.what.startswith("invalid config value"):
            raise
        fix = "Pass another --image-size, or leave it out for the env's default"
        raise ConfigError(error.what, fix) from None
    probe.require()  # here, before the output folder is touched
    probe.close()
    # the limit the run used, given or the env's default (None: Memory Maze's own per size)
    max_steps = getattr(getattr(probe, "config", None), limit_field or "", None)
    claim_output_dir(args.out, held, overwrite=args.overwrite)
    if args.videos:
        (Path(args.out) / "videos").mkdir(exist_ok=True)
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
                "max_steps": max_steps,
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

    def factory(name: str, env: Any, seed: int) -> Any:
        if name in policies:
            from memstream.embodied.policies.memvla.nav_agent import NavPolicyAgent

            return NavPolicyAgent(policies[name])
        return make_agent(name, env, seed)

    result = evaluate_nav(
        args.env, args.task, agents, args.episodes, seed=args.seed, options=options, progress=progress,
        agent_factory=factory, videos=args.videos, video_dir=Path(args.out) / "videos",
    )
    write_json(path, {**result, "max_steps": max_steps, "complete": True})
    print_table(result["summary"])
    print(f"step limit: {max_steps if max_steps is not None else 'the benchmark default'} ({limit_field})")
    print(f"results: {path}")
    return 0


def load_policies(folders: list[Path]) -> dict[str, Any]:
    """Folder name -> a discrete-action policy loaded from it (``nav-train``'s output)."""
    if not folders:
        return {}
    from memstream.embodied.policies.memvla import MemoryVLAPolicy

    policies = {}
    for folder in folders:
        name = folder.resolve().name
        if name in policies or name in ("memory", "wiped", "retrieval", "oracle", "no_memory"):
            raise ConfigError(f"two agents would be named {name!r}", "Give each --policy folder its own name")
        policy = MemoryVLAPolicy.from_pretrained(folder)
        if policy.config.action_head != "discrete":
            raise ConfigError(f"{str(folder)!r} holds a continuous-action policy", "Give a folder written by nav-train")
        policies[name] = policy
    return policies


@holds_output_dirs
def cmd_nav_train(args: argparse.Namespace, held: contextlib.ExitStack) -> int:
    """Collect the expert's demonstrations, train one memory variant, save it to ``--out``."""
    for flag, value, low in (("--episodes", args.episodes, 1), ("--steps", args.steps, 1),
                             ("--batch-episodes", args.batch_episodes, 1)):
        if value < low:
            raise ConfigError(f"{flag} must be >= {low}, got {value}", f"Pass {flag} {max(low, 8)}")
    from memstream.embodied.agents.evaluate import check_seeds
    from memstream.embodied.envs.nav import make_nav_env
    from memstream.embodied.policies.memvla import train
    from memstream.embodied.policies.memvla.nav_agent import NAV_VARIANTS, collect_nav_demonstrations, nav_policy

    check_seeds(args.seed, args.episodes)
    if args.variant not in NAV_VARIANTS:
        raise ConfigError(f"unknown policy variant {args.variant!r}", f"Choose among {', '.join(NAV_VARIANTS)}")
    probe = make_nav_env(args.env, args.task)  # unknown names and a missing simulator fail here
    if not hasattr(probe, "expert_action"):
        raise ConfigError(f"task {args.task!r} has no scripted expert to imitate", "Use --task cue")
    probe.require()
    probe.close()
    claim_output_dir(args.out, held, overwrite=args.overwrite)
    data = collect_nav_demonstrations(args.env, args.task, args.episodes, seed=args.seed)
    policy = nav_policy(data, args.variant, seed=args.seed)
    losses = train(policy, data, args.steps, batch_episodes=args.batch_episodes, seed=args.seed,
                   progress=None if not args.no_progress else False)
    policy.save_pretrained(args.out)
    write_json(Path(args.out) / "training.json", {
        "env": args.env, "task": args.task, "variant": args.variant, "episodes": args.episodes, "steps": args.steps,
        "batch_episodes": args.batch_episodes, "seed": args.seed, "final_loss": float(sum(losses[-20:]) / len(losses[-20:])),
        "frames": data.num_frames})
    print(f"trained {args.variant} on {data.num_episodes} demonstrations ({data.num_frames} frames), "
          f"final loss {losses[-1]:.4f}: {args.out}")
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
    write_json_atomic(path, finite(data), indent=1)


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
