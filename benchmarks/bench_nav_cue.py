"""A learned navigation policy fed by the perceptual-cognitive bank: the MiniWorld cue T-maze, three memories.

Claim (issue 16, ``memstream.embodied.policies.memvla`` on ``memstream.embodied.envs.cue_maze``): the
MemoryVLA-style policy with a discrete habitat action head, trained by imitation of a shortest-path
expert, succeeds (>= 90 %) when its bank keeps the cue (token-merge consolidation + gate), where the
same policy without memory is at chance (50 %); FIFO is reported beside them. The cue (a red or blue
pillar on the corridor wall) is in view for the first 4-7 frames of a 35-step episode; the turn that
depends on it comes at frame 23, more than 16 frames (the bank's capacity) after the cue was last
seen, so a FIFO bank has already dropped it and only consolidation can keep it.

Protocol: ``--train-episodes`` expert demonstrations (seeds 0 ..), 64x64 RGB + habitat's gps and
compass; every variant starts from the same initial weights (``nav_policy``, seed ``--seed``) and
trains ``--steps`` AdamW steps on batches of ``--batch-episodes`` whole episodes; each is scored with
habitat's metrics on ``--eval-episodes`` unseen episodes (seeds 1000 ..) through
``memstream.embodied.agents.evaluate.evaluate_nav``, as a habitat ``Agent`` that sees only rgb, gps
and compass. Checkpoints go to ``--out/<variant>`` (``MemoryVLAPolicy.from_pretrained``).

    nice -n 10 python benchmarks/bench_nav_cue.py --out runs/nav_cue
    python benchmarks/bench_nav_cue.py --train-episodes 4 --steps 2 --eval-episodes 2 --out /tmp/cue  # smoke
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import print_table, save

TARGET_SUCCESS = 0.9


def run_variant(name: str, data, args) -> dict:
    from memstream.embodied.agents.evaluate import evaluate_nav
    from memstream.embodied.policies.memvla import train
    from memstream.embodied.policies.memvla.nav_agent import NavPolicyAgent, nav_policy

    policy = nav_policy(data, name, seed=args.seed, **POLICY_SIZE)
    started = time.perf_counter()
    losses = train(policy, data, args.steps, batch_episodes=args.batch_episodes, seed=args.seed, progress=False,
                   log=lambda step, loss, s: print(f"  {name} step {step} loss {loss:.4f} {s:.0f}s", flush=True),
                   log_every=50)
    train_s = time.perf_counter() - started
    policy.save_pretrained(Path(args.out) / name)
    started = time.perf_counter()
    result = evaluate_nav("miniworld", "cue", [name], args.eval_episodes, seed=1000,
                          agent_factory=lambda agent, env, seed: NavPolicyAgent(policy))
    rows = result["episodes"][name]
    summary = result["summary"][name]
    row = {"variant": name, "success": summary["success"], "high_level_success": summary["high_level_success"],
           "spl": summary["spl"], "wrong_goal": float(np.mean([r.get("wrong_goal", 0.0) for r in rows])),
           "crashed": summary["crashed"], "episodes": len(rows), "steps": args.steps,
           "final_loss": float(np.mean(losses[-20:])), "train_s": train_s, "eval_s": time.perf_counter() - started,
           "agent_steps_per_s": summary["agent_steps_per_s"], "agent_share": summary["agent_share"],
           "parameters": sum(p.numel() for p in policy.parameters()), "checkpoint": str(Path(args.out) / name)}
    print(f"{name}: success {row['success']:.1%} (right arm {row['high_level_success']:.1%}), SPL {row['spl']:.2f}, "
          f"loss {row['final_loss']:.3f}, train {train_s:.0f}s", flush=True)
    return row


# small enough for a shared 2-core CPU: 4 perceptual tokens of 32 channels, 64-channel cognitive token,
# a 2-block 64-wide action head (~0.55 M parameters with the bank)
POLICY_SIZE = {"perceptual_grid": 2, "perceptual_dim": 32, "cognitive_dim": 64}


def kept_rows(args) -> list[dict]:
    """Rows of other variants from the last results file, when trained under the same protocol: runs
    of one variant each (in parallel processes) make one table."""
    import json

    from _common import RESULTS

    path = RESULTS / "nav_cue.json"
    if args.no_save or not path.exists():
        return []
    previous = json.loads(path.read_text())
    same = ("train_episodes", "steps", "batch_episodes", "eval_episodes", "seed")
    if any(previous.get("args", {}).get(key) != getattr(args, key) for key in same):
        return []
    return [r for r in previous.get("rows", []) if r["variant"] not in args.variants]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=["no_memory", "bank", "fifo"])
    parser.add_argument("--train-episodes", type=int, default=300)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-episodes", type=int, default=8)
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared machine)")
    parser.add_argument("--out", default="runs/nav_cue", help="checkpoints and the demonstrations")
    parser.add_argument("--no-save", action="store_true", help="do not write results/nav_cue.json (smoke runs)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from memstream.embodied.envs.cue_maze import collect_cue_demonstrations
    from memstream.embodied.envs.types import EpisodeDataset
    from memstream.embodied.policies.memvla import nav_agent  # noqa: F401 - before MiniWorld loads (see there)

    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = out / f"demos_{args.train_episodes}_seed{args.seed}.npz"
    if cache.exists():
        data = EpisodeDataset.load(cache)
    else:
        data = collect_cue_demonstrations(args.train_episodes, seed=args.seed)
        data.save(cache)
    print(f"{data.num_episodes} demonstrations, {data.num_frames} frames, expert success {data.success.mean():.0%}, "
          f"cue in view {data.reveal_frames.min()}-{data.reveal_frames.max()} frames, "
          f"{time.perf_counter() - started:.0f}s", flush=True)
    rows = [run_variant(name, data, args) for name in args.variants]
    rows = kept_rows(args) + rows  # re-read now: a parallel run of another variant may have written since
    by = {r["variant"]: r["success"] for r in rows}
    checks = {"bank_ge_90pct": by.get("bank", 0.0) >= TARGET_SUCCESS,
              "no_memory_near_chance": abs(by.get("no_memory", 0.5) - 0.5) <= 0.1}
    payload = {"args": vars(args), "policy_size": POLICY_SIZE, "chance_success": 0.5, "rows": rows, "checks": checks,
               "demonstrations": {"episodes": data.num_episodes, "frames": data.num_frames,
                                  "mean_length": float(data.lengths.mean()),
                                  "cue_in_view_frames": [int(data.reveal_frames.min()), int(data.reveal_frames.max())]},
               "seconds": time.perf_counter() - started, "threads": torch.get_num_threads(),
               "note": "shared 2-core machine (several other jobs running): times are noisy"}
    if not args.no_save:
        path = save("nav_cue", payload)
        print(f"wrote {path}")
    print_table(f"MiniWorld cue T-maze, {args.eval_episodes} unseen episodes (chance 50 %)",
                ["variant", "success %", "right arm %", "wrong goal %", "SPL", "final loss", "train s"],
                [[r["variant"], r["success"] * 100, r["high_level_success"] * 100, r["wrong_goal"] * 100, r["spl"],
                  r["final_loss"], r["train_s"]] for r in rows])
    print(checks, f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
