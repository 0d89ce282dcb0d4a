"""Frames/s on a CUDA GPU: our streaming SAM 2 predictor vs sam2's ``SAM2VideoPredictor``.

The same random-weight SAM 2.1 model (random weights give the real compute) at the real 1024 px,
hiera-t and hiera-b+, one object prompted on frame 0, bf16 autocast as SAM 2's demos use. Ours gets
frames one at a time (``Tracker(Sam2Backend(model), selection=...).update``); sam2's predictor gets
the JPEG folder (``init_state`` decodes it up front, which is not timed) and ``propagate_in_video``.
Reported: tracked frames/s of each (after a warm-up, ``torch.cuda.synchronize`` around the timed
part) and the ratio ours / theirs, for ``samurai`` and ``affinity`` selection.

Needs a CUDA device; without one it says so and exits 0 without writing results.

    python benchmarks/bench_tracking_gpu.py [--frames 200] [--sizes t b+]
"""

from __future__ import annotations

import argparse
import tempfile
import time
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

WARMUP = 10


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


def ours_fps(model, frames: list[Frame], box: np.ndarray, selection: str) -> float:
    tracker = Tracker(Sam2Backend(model, min_obj_score_logit=-1.0 if selection == "samurai" else 0.0), selection)
    for frame in frames[:WARMUP]:
        tracker.update(frame, [Prompt(1, box)] if frame.index == 0 else [])
    torch.cuda.synchronize()
    started = time.perf_counter()
    for frame in frames[WARMUP:]:
        tracker.update(frame)
    torch.cuda.synchronize()
    return (len(frames) - WARMUP) / (time.perf_counter() - started)


def theirs_fps(model, folder: Path, box: np.ndarray) -> float:
    with torch.autocast("cuda", dtype=torch.bfloat16):
        state = model.init_state(str(folder))
        x, y, w, h = box
        model.add_new_points_or_box(state, 0, 1, box=[x, y, x + w, y + h])
        generator = model.propagate_in_video(state)
        for _ in range(WARMUP):
            next(generator)
        torch.cuda.synchronize()
        started, count = time.perf_counter(), 0
        for _ in generator:
            count += 1
        torch.cuda.synchronize()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--sizes", nargs="+", default=["t", "b+"], choices=list(MODEL_CONFIGS))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: this benchmark measures GPU throughput; nothing written")
        return
    results, rows = [], []
    with tempfile.TemporaryDirectory() as tmp:
        frames, box = write_frames(Path(tmp), args.frames)
        for size in args.sizes:
            torch.manual_seed(0)
            model = build_model(MODEL_CONFIGS[size], None, device="cuda")
            theirs = theirs_fps(model, Path(tmp), box)
            for selection in ("samurai", "affinity"):
                ours = ours_fps(model, frames, box, selection)
                results.append({"model": f"hiera-{size}", "selection": selection, "ours_fps": round(ours, 1),
                                "sam2_video_predictor_fps": round(theirs, 1), "ratio": round(ours / theirs, 3)})
                rows.append([f"hiera-{size}", selection, ours, theirs, ours / theirs])
            del model
            torch.cuda.empty_cache()
    print_table(f"frames/s at 1024 px on {torch.cuda.get_device_name()}", ["model", "selection", "ours", "sam2", "ratio"], rows)
    payload = {"device": torch.cuda.get_device_name(), "frames": args.frames, "image_size": 1024, "results": results}
    print(f"wrote {save('tracking_gpu', payload)}")


if __name__ == "__main__":
    main()
