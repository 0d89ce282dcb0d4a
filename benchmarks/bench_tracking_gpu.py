"""Frames/s on a CUDA GPU: our streaming SAM 2 predictor vs sam2's ``SAM2VideoPredictor``.

The same random-weight SAM 2.1 model (random weights give the real compute) at the real 1024 px,
hiera-t and hiera-b+, one object prompted on frame 0, bf16 autocast as SAM 2's demos use. Ours gets
frames one at a time (``Tracker(Sam2Backend(model), selection=...).update``); sam2's predictor gets
the JPEG folder (``init_state`` decodes and resizes every frame up front, which is not timed) and
``propagate_in_video``. Reported: tracked frames/s of each (after a warm-up, ``torch.cuda.synchronize``
around the timed part) and the ratio ours / theirs, for ``samurai`` and ``affinity`` selection. The
predictor is timed before and after ours (the first run of a process pays for warming the GPU up);
the ratio uses the faster of its two runs.

``--profile`` adds, per model size, where each side's time goes: device-synchronising calls per
frame (torch's sync debug mode), kernel launches and busy GPU time per frame against wall time per
frame (``torch.profiler``), the host-side resize our streaming input pays for and the predictor does
not, and for hiera-t the profiler's tables of the top ops of ours (written with the JSON).

Needs a CUDA device; without one it says so and exits 0 without writing results (``--device cpu``
runs the same code on the CPU as a dry run of the script, its figures meaningless).

    python benchmarks/bench_tracking_gpu.py [--frames 200] [--sizes t b+] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import print_table, save
from PIL import Image

from memstream.streaming import open_source
from memstream.streaming.types import Frame
from memstream.tracking.sam2_stream.backend import Sam2Backend
from memstream.tracking.sam2_stream.loading import MODEL_CONFIGS, build_model
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

PROFILED_FRAMES = 20


def write_frames(folder: Path, count: int) -> tuple[list[Frame], np.ndarray]:
    frames = []
    with open_source(f"synthetic://demo?frames={count}&size=640x480") as source:
        for frame in source:
            Image.fromarray(frame.rgb).save(folder / f"{frame.index:05d}.jpg", quality=95)
            rgb = np.asarray(Image.open(folder / f"{frame.index:05d}.jpg").convert("RGB"))
            frames.append(Frame(index=frame.index, timestamp_s=frame.timestamp_s, rgb=rgb))
            if frame.index == 0:
                box = frame.gt.boxes_xywh[0].astype(np.float64)
    return frames, box


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else contextlib.nullcontext()


def ours_frames(model, frames: list[Frame], box: np.ndarray, selection: str, warmup: int):
    """A generator: prompts on frame 0 and warms up before its first yield, then yields after each frame."""
    tracker = Tracker(Sam2Backend(model, min_obj_score_logit=-1.0 if selection == "samurai" else 0.0), selection)
    for frame in frames[:warmup]:
        tracker.update(frame, [Prompt(1, box)] if frame.index == 0 else [])
    yield
    for frame in frames[warmup:]:
        tracker.update(frame)
        yield


def theirs_frames(model, folder: Path, box: np.ndarray, warmup: int, device: str):
    with autocast(device):
        state = model.init_state(str(folder))
        x, y, w, h = box
        model.add_new_points_or_box(state, 0, 1, box=[x, y, x + w, y + h])
        generator = model.propagate_in_video(state)
        for _ in range(warmup):
            next(generator)
        yield
        for _ in generator:
            yield


def fps(steps, device: str) -> float:
    """Frames/s of a generator from one of the above (each step after the first runs one frame)."""
    next(steps)  # the warm-up
    synchronize(device)
    started, count = time.perf_counter(), 0
    for _ in steps:
        count += 1
    synchronize(device)
    return count / (time.perf_counter() - started)


def syncs_per_frame(steps, device: str, count: int = 10) -> float | None:
    """Calls that make the host wait for the GPU (``torch.cuda.set_sync_debug_mode``), per frame."""
    if device != "cuda":
        return None
    next(steps)
    synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            done = sum(1 for _ in zip(range(count), steps, strict=False))
        finally:
            torch.cuda.set_sync_debug_mode("default")
    synchronize(device)
    return sum("synchroniz" in str(w.message) for w in caught) / done


def profile(steps, device: str, count: int = PROFILED_FRAMES):
    """torch.profiler over ``count`` frames, and its per-frame summary."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    next(steps)
    synchronize(device)
    with torch_profile(activities=activities) as prof:
        started = time.perf_counter()
        count = sum(1 for _ in zip(range(count), steps, strict=False))
        synchronize(device)
        wall = time.perf_counter() - started
    kernels, busy_us = 0, 0.0
    for event in prof.events():
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kernels += 1
            busy_us += getattr(event, "device_time", None) or getattr(event, "cuda_time", 0.0) or 0.0
    ops = sum(1 for event in prof.events() if event.name.startswith("aten::"))
    summary = {"wall_ms_per_frame": round(wall / count * 1e3, 2), "aten_ops_per_frame": round(ops / count, 1),
               "kernels_per_frame": round(kernels / count, 1), "gpu_busy_ms_per_frame": round(busy_us / count / 1e3, 2)}
    return prof, summary


def profile_tables(prof, device: str) -> dict[str, str]:
    averages = prof.key_averages()
    tables = {"by_self_cpu": averages.table(sort_by="self_cpu_time_total", row_limit=25)}
    if device == "cuda":
        for key in ("self_device_time_total", "self_cuda_time_total"):
            with contextlib.suppress(Exception):
                tables["by_self_gpu"] = averages.table(sort_by=key, row_limit=25)
                break
    return tables


def resize_ms(frames: list[Frame], size: int) -> float:
    """Host time per frame of the resize ours does per frame (PIL bicubic, as sam2's loader)."""
    started = time.perf_counter()
    for frame in frames[:30]:
        np.asarray(Image.fromarray(frame.rgb).resize((size, size)))
    return (time.perf_counter() - started) / min(len(frames), 30) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["t", "b+"], choices=list(MODEL_CONFIGS))
    parser.add_argument("--profile", action="store_true", help="also where the time goes (see the docstring)")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="cpu: a dry run of the code")
    parser.add_argument("--warmup", type=int, default=10, help="untimed frames first (frame 0 included)")
    parser.add_argument("--image-size", type=int, default=1024, help="the model's input size (SAM 2: 1024)")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU throughput; nothing written")
        return
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    results, rows, profiles, prof_rows = [], [], {}, []
    with tempfile.TemporaryDirectory() as tmp:
        frames, box = write_frames(Path(tmp), args.frames)
        for size in args.sizes:
            torch.manual_seed(0)
            model = build_model(MODEL_CONFIGS[size], None, device=device, image_size=args.image_size)
            first = fps(theirs_frames(model, Path(tmp), box, args.warmup, device), device)
            ours = {s: fps(ours_frames(model, frames, box, s, args.warmup), device) for s in ("samurai", "affinity")}
            second = fps(theirs_frames(model, Path(tmp), box, args.warmup, device), device)
            theirs = max(first, second)
            for selection, value in ours.items():
                results.append({"model": f"hiera-{size}", "selection": selection, "ours_fps": round(value, 1),
                                "sam2_video_predictor_fps": round(theirs, 1),
                                "sam2_video_predictor_fps_runs": [round(first, 1), round(second, 1)],
                                "ratio": round(value / theirs, 3)})
                rows.append([f"hiera-{size}", selection, value, f"{first:.1f} / {second:.1f}", value / theirs])
            if args.profile:
                sides = {"ours samurai": partial(ours_frames, model, frames, box, "samurai", args.warmup),
                         "ours affinity": partial(ours_frames, model, frames, box, "affinity", args.warmup),
                         "sam2 predictor": partial(theirs_frames, model, Path(tmp), box, args.warmup, device)}
                for side, make in sides.items():
                    prof, summary = profile(make(), device)
                    summary["syncs_per_frame"] = syncs_per_frame(make(), device)
                    profiles[f"hiera-{size} {side}"] = summary
                    prof_rows.append([f"hiera-{size}", side, *summary.values()])
                    if size == args.sizes[0] and side != "sam2 predictor":
                        for key, table in profile_tables(prof, device).items():
                            profiles[f"hiera-{size} {side} table {key}"] = table
                            if side == "ours samurai":
                                print(f"\n--- torch.profiler, hiera-{size} {side}, {PROFILED_FRAMES} frames, {key}\n{table}")
            del model
            if device == "cuda":
                torch.cuda.empty_cache()
    print_table(f"frames/s at {args.image_size} px on {name}", ["model", "selection", "ours", "sam2 (runs 1 / 2)", "ratio"], rows)
    payload = {"device": name, "frames": args.frames, "image_size": args.image_size, "results": results}
    if args.profile:
        host = resize_ms(frames, args.image_size)
        print_table(f"per frame, {PROFILED_FRAMES} frames profiled (host resize ours pays per frame: {host:.2f} ms)",
                    ["model", "side", "wall ms", "aten ops", "kernels", "GPU busy ms", "syncs"], prof_rows)
        payload["profile"] = {"host_resize_ms_per_frame": round(host, 2),
                              **{k: v for k, v in profiles.items() if " table " not in k}}
        tables = {k: v.splitlines() for k, v in profiles.items() if " table " in k}
        if device == "cuda":  # a JSON, so that gpu_check.sh's archive takes it along
            print(f"wrote {save('tracking_gpu_profile', {'device': name, 'tables': tables})}")
    if device == "cuda":
        print(f"wrote {save('tracking_gpu', payload)}")
    else:
        print(payload)


if __name__ == "__main__":
    main()
