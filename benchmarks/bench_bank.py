"""The perceptual-cognitive memory bank: time per control step, batched over parallel episodes.

Claims (``memstream.embodied.bank``): one ``step`` (retrieval + fusion of both streams, then append +
consolidation) costs the same whether the bank merges (``tome``) or drops (``fifo``) entries, since
consolidation is O(B N C) bookkeeping, not a pass over the bank; the cost is retrieval. In inference
the projected keys/values of stored entries are cached (``cache_projections``), so a step projects
only what it wrote instead of all ``L * N`` entry tokens (MemoryVLA recomputes them every step:
``no cache`` rows); and 32 episodes run in one batched call instead of a per-sample Python loop.

Shapes: ``cpu`` = 64 perceptual tokens x 256 channels and one 512-channel cognitive token
(MemoryVLA-ish, sized for a CPU), ``paper`` = MemoryVLA's 256 x 256 perceptual tokens and 4096-channel
cognitive token. Each case: capacity L (16: MemoryVLA's default; 256: its long real-world tasks),
batch B, consolidation. The bank is first filled to capacity by ``update`` (so every measured step
consolidates), then ``forward`` (retrieval + fusion) and ``update`` (append + consolidation) are timed
separately under ``torch.no_grad`` (inference): median (and best) over at least ``--repeats`` steps
after a warm-up one, more for short steps. Times on a shared machine are noisy: the load average is
saved with them, and ``--threads 1`` steadies them when other processes compete for the cores. ``loop`` rows time
MemoryVLA's per-sample loop on the same layers (``reference.ReferenceBank`` + ``reference_read``):
one slot at a time, projections recomputed, consolidation by a Python loop over pairs.

    python benchmarks/bench_bank.py [--gpu] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _common import print_table, save

os.environ.setdefault("COLUMNS", "180")
SHAPES = {"cpu": (64, 256, 512), "paper": (256, 256, 4096)}  # perceptual tokens, channels; cognitive channels
# (shape, capacity L, batch B, consolidation, cache_projections)
CASES = [("cpu", capacity, batch, consolidation, True) for capacity in (16, 256) for batch in (1, 32)
         for consolidation in ("tome", "fifo")]
CASES += [("paper", capacity, 1, consolidation, True) for capacity in (16, 256) for consolidation in ("tome", "fifo")]
CASES += [("cpu", 16, 32, "tome", False), ("cpu", 256, 32, "tome", False), ("paper", 256, 1, "tome", False)]
LOOP_CASES = [("cpu", 16, 32, "tome"), ("cpu", 16, 1, "tome")]
MAX_STEPS = 20


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def enough(first: list[float], second: list[float], repeats: int) -> bool:
    """Keep timing: one warm-up step, then at least ``repeats`` steps, more (up to 20) while the timed
    steps add up to under a second (short steps are noisier)."""
    done = len(first) - 1
    return done < repeats or (done < MAX_STEPS and sum(first[1:]) + sum(second[1:]) < 1.0)


def make_memory(shape: str, capacity: int, consolidation: str, device: torch.device, cache: bool = True):
    from memstream.embodied.bank import MemoryBankConfig, PerceptualCognitiveMemory

    _, channels, cognitive = SHAPES[shape]
    torch.manual_seed(0)
    config = MemoryBankConfig(capacity=capacity, consolidation=consolidation, cache_projections=cache)
    return PerceptualCognitiveMemory(channels, cognitive, config).to(device).eval()


def batched_case(shape: str, capacity: int, batch: int, consolidation: str, cache: bool, repeats: int,
                 device: torch.device) -> dict:
    tokens, channels, cognitive = SHAPES[shape]
    memory = make_memory(shape, capacity, consolidation, device, cache)
    memory.reset(batch_size=batch)
    generator = torch.Generator(device).manual_seed(0)

    def frame():
        return (torch.randn(batch, tokens, channels, device=device, generator=generator),
                torch.randn(batch, 1, cognitive, device=device, generator=generator))

    with torch.no_grad():
        fill_s = timed(lambda: [memory.update(*frame()) for _ in range(capacity)], device)
        forward_s, update_s = [], []
        while enough(forward_s, update_s, repeats):
            perceptual, cognitive_tokens = frame()
            readout = {}
            forward_s.append(timed(lambda: readout.setdefault("r", memory(perceptual, cognitive_tokens)), device))
            update_s.append(timed(lambda: memory.update(perceptual, cognitive_tokens, fused=readout["r"]), device))
    assert int(memory.bank_lengths.max()) == capacity
    storage = memory._storage["perceptual"], memory._storage["cognitive"]
    bank_mib = sum(s.feats.numel() * s.feats.element_size() for s in storage) / 2**20
    cached = [t for s in storage if s._projections is not None for pair in s._projections[1] for t in pair]
    cache_mib = sum(t.numel() * t.element_size() for t in cached) / 2**20
    forward_ms = statistics.median(forward_s[1:]) * 1e3
    update_ms = statistics.median(update_s[1:]) * 1e3
    best_ms = min(f + u for f, u in zip(forward_s[1:], update_s[1:])) * 1e3
    mode = "batched" if cache else "no cache"
    return {"shape": shape, "capacity": capacity, "batch": batch, "consolidation": consolidation, "mode": mode,
            "forward_ms": forward_ms, "update_ms": update_ms, "step_ms": forward_ms + update_ms,
            "best_step_ms": best_ms,
            "slot_steps_per_s": batch / (forward_ms + update_ms) * 1e3, "fill_update_ms": fill_s / capacity * 1e3,
            "bank_mib": bank_mib, "cache_mib": cache_mib, "steps_timed": len(forward_s) - 1}


def loop_case(shape: str, capacity: int, batch: int, consolidation: str, repeats: int, device: torch.device) -> dict:
    """MemoryVLA's per-sample loop: read and consolidate one slot at a time."""
    from memstream.embodied.bank.reference import ReferenceBank, reference_read

    tokens, channels, cognitive = SHAPES[shape]
    memory = make_memory(shape, capacity, consolidation, device)
    banks = {name: [ReferenceBank(memory.config) for _ in range(batch)] for name in ("perceptual", "cognitive")}
    generator = torch.Generator(device).manual_seed(0)
    shapes = {"perceptual": (batch, tokens, channels), "cognitive": (batch, 1, cognitive)}

    def step(read: bool, t: int) -> None:
        for name, size in shapes.items():
            current = torch.randn(*size, device=device, generator=generator)
            for row in range(batch):
                if read:
                    reference_read(getattr(memory, name), current[row], banks[name][row])
                banks[name][row].append(current[row], t)

    with torch.no_grad():
        for t in range(capacity):
            step(False, t)
        seconds = []
        while enough(seconds, [], repeats):
            seconds.append(timed(lambda: step(True, capacity + len(seconds)), device))
    step_ms = statistics.median(seconds[1:]) * 1e3
    return {"shape": shape, "capacity": capacity, "batch": batch, "consolidation": consolidation, "mode": "loop",
            "step_ms": step_ms, "best_step_ms": min(seconds[1:]) * 1e3, "slot_steps_per_s": batch / step_ms * 1e3,
            "steps_timed": len(seconds) - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="run on CUDA (falls back to CPU, said so, when absent)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per case (after one warm-up step)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    use_gpu = args.gpu and torch.cuda.is_available()
    if args.gpu and not use_gpu:
        print("--gpu: CUDA is not available here; running on the CPU")
    device = torch.device("cuda" if use_gpu else "cpu")
    started, load_before = time.perf_counter(), os.getloadavg()
    rows = []
    for case in CASES:
        rows.append(batched_case(*case, args.repeats, device))
        print(f"{case[0]} L={case[1]} B={case[2]} {case[3]} cache={case[4]}: {rows[-1]['step_ms']:.1f} ms/step",
              flush=True)
    for case in LOOP_CASES:
        rows.append(loop_case(*case, args.repeats, device))
        print(f"loop {case[0]} L={case[1]} B={case[2]}: {rows[-1]['step_ms']:.1f} ms/step", flush=True)
    environment = {"device": str(device), "gpu": torch.cuda.get_device_name(0) if use_gpu else None,
                   "torch_threads": torch.get_num_threads(), "load_average_before": load_before,
                   "load_average_after": os.getloadavg(), "seconds": time.perf_counter() - started}
    path = save("bank_gpu" if use_gpu else "bank", {"args": vars(args), "shapes": SHAPES, "environment": environment, "results": rows})
    print_table(f"memory bank, ms per control step on {device} ({torch.get_num_threads()} threads; "
                f"load avg {load_before[0]:.1f})",
                ["shape", "L", "B", "consolidation", "mode", "retrieve+fuse ms", "update ms", "step ms",
                 "best step ms", "slot-steps/s", "bank MiB", "cache MiB"],
                [[r["shape"], r["capacity"], r["batch"], r["consolidation"], r["mode"], r.get("forward_ms", "-"),
                  r.get("update_ms", "-"), r["step_ms"], r["best_step_ms"], r["slot_steps_per_s"],
                  r.get("bank_mib", "-"), r.get("cache_mib", "-")]
                 for r in rows])
    print(f"{environment['seconds']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
