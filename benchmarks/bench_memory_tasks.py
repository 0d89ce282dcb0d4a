"""The value of memory: a policy trained by imitation on memory-dependent tasks, with and without
the perceptual-cognitive bank, and MemoryVLA's ablations side by side.

Claims (``memstream.embodied.bank`` + ``memstream.embodied.policies.memvla``): on tasks whose decisive information is
shown early and then hidden, the policy with the bank (tome consolidation + gate) succeeds where the
same policy without memory is at chance, and the ablations go the way MemoryVLA's do (merge > FIFO,
gate > add, both streams > one).

Tasks (``memstream.embodied.envs``, 64x64 rendered top-down frames): ``cue_choice`` (a lamp shown for 2-5
frames decides the goal at the end of a corridor; chance 1/2, episodes 23-32 steps) and ``order``
(three pads light up in a random order, to be visited in that order; chance 1/6, 41-51 steps).
Both are longer than the bank's 16 entries, so what consolidation keeps matters.

Protocol: ``--train-episodes`` expert demonstrations (seed 0) per task; every variant is trained
from the same initial weights (seed 0) for ``--steps`` AdamW steps (default per task: 400 for
``cue_choice``, 1000 for ``order``, whose permutation takes longer to learn: at 400 steps the bank
reached 36 %) on batches of
``--batch-episodes`` whole episodes, then scored on ``--eval-episodes`` fresh episodes (seed 1000,
never seen in training) in 50 parallel envs. Variants:

* ``no_memory``: the current frame only (``memory="none"``);
* ``bank``: tome consolidation + gate, both streams (MemoryVLA);
* ``fifo``: FIFO instead of tome; ``add``: average instead of the gate;
* ``perceptual_only`` / ``cognitive_only``: one stream has a bank, the other passes through.

    python benchmarks/bench_memory_tasks.py [--tasks cue_choice order] [--steps N] [--eval-episodes 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np
import torch

from _common import print_table, save

os.environ.setdefault("COLUMNS", "160")
VARIANTS = {
    "no_memory": {"memory": "none"},
    "bank": {},
    "fifo": {"bank": {"consolidation": "fifo"}},
    "add": {"bank": {"fusion": "add"}},
    "perceptual_only": {"memory_streams": ("perceptual",)},
    "cognitive_only": {"memory_streams": ("cognitive",)},
}
TARGET_SUCCESS = 0.9
DEFAULT_STEPS = {"cue_choice": 400, "order": 1000}


def make_config(data, variant: dict):
    from memstream.embodied.bank import MemoryBankConfig
    from memstream.embodied.policies.memvla import config_for

    overrides = {k: v for k, v in variant.items() if k != "bank"}
    bank = dataclasses.replace(MemoryBankConfig(), **variant.get("bank", {}))
    return config_for(data, bank=bank, **overrides)


def run_variant(task: str, name: str, data, args, steps: int) -> dict:
    from memstream.embodied.envs import evaluate
    from memstream.embodied.policies.memvla import MemoryVLAPolicy, as_policy_fn, dataset_stats, train

    torch.manual_seed(args.seed)
    policy = MemoryVLAPolicy(make_config(data, VARIANTS[name]), dataset_stats(data))
    started = time.perf_counter()
    losses = train(policy, data, steps, batch_episodes=args.batch_episodes, seed=args.seed,
                   log=lambda step, loss, seconds: print(f"  {task}/{name} step {step} loss {loss:.4f} {seconds:.0f}s", flush=True),
                   log_every=100)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    result = evaluate(as_policy_fn(policy), task, args.eval_episodes, seed=1000, num_envs=50)
    row = {"task": task, "variant": name, "success_rate": result["success_rate"], "failure_rate": result["failure_rate"],
           "truncation_rate": result["truncation_rate"], "chance_success_rate": result["chance_success_rate"],
           "episodes": result["episodes"], "steps": steps, "train_episodes": args.train_episodes,
           "batch_episodes": args.batch_episodes, "final_loss": float(np.mean(losses[-20:])), "train_s": train_s,
           "eval_s": time.perf_counter() - started, "parameters": sum(p.numel() for p in policy.parameters())}
    print(f"{task}/{name}: success {row['success_rate']:.1%} (chance {row['chance_success_rate']:.1%}), "
          f"loss {row['final_loss']:.3f}, train {train_s:.0f}s", flush=True)
    return row


def directions(rows: list[dict]) -> dict:
    """MemoryVLA's ablation directions, per task: True when ours goes the same way."""
    out = {}
    for task in sorted({r["task"] for r in rows}):
        s = {r["variant"]: r["success_rate"] for r in rows if r["task"] == task}
        if "bank" not in s:
            continue
        out[task] = {
            "bank_ge_90pct": s["bank"] >= TARGET_SUCCESS,
            "no_memory_near_chance": "no_memory" in s and abs(s["no_memory"] - next(r["chance_success_rate"] for r in rows if r["task"] == task)) <= 0.1,
            "merge_gt_fifo": s["bank"] > s.get("fifo", 1.0),
            "gate_gt_add": s["bank"] > s.get("add", 1.0),
            "both_gt_perceptual_only": s["bank"] > s.get("perceptual_only", 1.0),
            "both_gt_cognitive_only": s["bank"] > s.get("cognitive_only", 1.0),
        }
    return out


def kept_rows(tasks: list[str]) -> list[dict]:
    """Rows of other tasks from the last results file: a run of one task keeps the other's."""
    from _common import RESULTS

    path = RESULTS / "memory_tasks.json"
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text()).get("rows", []) if r["task"] not in tasks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["cue_choice", "order"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--steps", type=int, default=None, help=f"training steps (default per task: {DEFAULT_STEPS})")
    parser.add_argument("--batch-episodes", type=int, default=8)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from memstream.embodied.envs import collect_demonstrations

    started = time.perf_counter()
    rows = []
    for task in args.tasks:
        data = collect_demonstrations(task, args.train_episodes, seed=args.seed)
        print(f"{task}: {data.num_episodes} demonstrations, {data.num_frames} frames", flush=True)
        steps = args.steps or DEFAULT_STEPS.get(task, 400)
        rows += [run_variant(task, name, data, args, steps) for name in args.variants]
    rows = kept_rows(args.tasks) + rows
    found = directions(rows)
    path = save("memory_tasks", {"args": vars(args), "variants": VARIANTS, "rows": rows, "directions": found,
                                 "seconds": time.perf_counter() - started, "threads": torch.get_num_threads()})
    print_table(f"success over {args.eval_episodes} unseen episodes ({args.train_episodes} demos)",
                ["task", "variant", "steps", "success %", "wrong choice %", "timed out %", "chance %", "final loss", "train s"],
                [[r["task"], r["variant"], r["steps"], r["success_rate"] * 100, r["failure_rate"] * 100,
                  r["truncation_rate"] * 100, r["chance_success_rate"] * 100, r["final_loss"], r["train_s"]] for r in rows])
    print_table("MemoryVLA's directions reproduced?", ["task", *next(iter(found.values()), {}).keys()],
                [[task, *d.values()] for task, d in found.items()])
    print(f"{time.perf_counter() - started:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
