"""Memory on a long stream: peak RSS of our streaming SAM 2 tracker vs sam2's ``SAM2VideoPredictor``.

Both run the same random-weight SAM 2.1 hiera-t (the real architecture, built by
``memstream.tracking.sam2_stream.loading.build_model`` at a reduced ``image_size``) on the same synthetic
frames (``synthetic://demo``, written once as ``<int>.jpg``), one object prompted with its
ground-truth box on frame 0, over streams of 200, 1,000 and 3,000 frames:

* ours: ``Tracker(Sam2Backend(model), selection="samurai")``, each JPEG decoded with PIL just
  before its ``update()`` call (no frame list is ever held);
* theirs: ``model.init_state(folder)`` with sam2's defaults (it preloads every frame as a float32
  tensor and keeps every frame's outputs), ``add_new_points_or_box``, ``propagate_in_video``.

Each (predictor, length) pair runs in its own fresh subprocess, which reports its peak RSS
(``ru_maxrss``, KiB on Linux), its RSS once the model is built (baseline), and RSS samples along
the stream. Growth = peak - baseline.

Target: ours is flat, i.e. its peak RSS at 3,000 frames is < 5 % above its peak at 200 frames,
while sam2's predictor grows with the stream length.

    python benchmarks/bench_tracking_memory.py [--lengths 200 1000 3000] [--image-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import print_table, save

MODEL_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
PREDICTORS = ("ours", "theirs")
TARGET_PERCENT = 5.0
KIB_PER_MIB = 1024.0
os.environ.setdefault("COLUMNS", "120")  # rich's table width when stdout is not a terminal


# ---------------------------------------------------------------------------------------- child
def rss_kib() -> int:
    """Current resident set size, KiB (``VmRSS`` of ``/proc/self/status``)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_ours(model, folder: Path, frames: int, box_xywh: list[float], sample_every: int) -> tuple[list, dict]:
    import numpy as np
    from PIL import Image

    from memstream.streaming.types import Frame
    from memstream.tracking.sam2_stream.backend import Sam2Backend
    from memstream.tracking.tracker import Tracker
    from memstream.tracking.types import Prompt

    tracker = Tracker(Sam2Backend(model, min_obj_score_logit=-1.0), selection="samurai")  # samurai_t.yaml
    samples = []
    for index in range(frames):
        with Image.open(folder / f"{index}.jpg") as image:
            rgb = np.asarray(image.convert("RGB"))
        frame = Frame(index=index, timestamp_s=index / 30.0, rgb=rgb)
        tracker.update(frame, [Prompt(1, box_xywh)] if index == 0 else [])
        if (index + 1) % sample_every == 0:
            samples.append([index + 1, rss_kib()])
    return samples, {"bank_bytes": tracker.memory_summary()["bytes"]}


def run_theirs(model, folder: Path, frames: int, box_xywh: list[float], sample_every: int) -> tuple[list, dict]:
    import torch

    with torch.inference_mode():
        state = model.init_state(str(folder))
        assert state["num_frames"] == frames, (state["num_frames"], frames)
        x, y, w, h = box_xywh
        model.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=[x, y, x + w, y + h])
        samples = [[0, rss_kib()]]  # after the preload
        for done, (_, _, _masks) in enumerate(model.propagate_in_video(state), start=1):
            if done % sample_every == 0:
                samples.append([done, rss_kib()])
    kept = len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    return samples, {"frame_outputs_kept": kept}


def child(predictor: str, frames: int, folder: Path, image_size: int, box_xywh: list[float]) -> dict:
    import torch

    from memstream.tracking.sam2_stream.loading import build_model

    torch.manual_seed(0)
    model = build_model(MODEL_CONFIG, None, device="cpu", image_size=image_size)
    baseline, baseline_peak = rss_kib(), peak_rss_kib()
    started = time.perf_counter()
    run = run_ours if predictor == "ours" else run_theirs
    samples, extra = run(model, folder, frames, box_xywh, max(frames // 20, 1))
    return {
        "predictor": predictor, "frames": frames, "seconds": time.perf_counter() - started,
        "baseline_rss_kib": baseline, "baseline_peak_rss_kib": baseline_peak, "peak_rss_kib": peak_rss_kib(),
        "rss_samples_kib": samples, **extra,
    }


# --------------------------------------------------------------------------------------- parent
def write_frames(uri: str, folder: Path) -> list[float]:
    """Write every frame of ``uri`` as ``<index>.jpg``; return object 1's box on frame 0 (xywh)."""
    from PIL import Image

    from memstream.streaming import open_source

    box = None
    with open_source(uri) as source:
        for frame in source:
            if frame.index == 0:
                box = [float(v) for v in frame.gt.boxes_xywh[0]]
            Image.fromarray(frame.rgb).save(folder / f"{frame.index}.jpg", quality=95)
    assert box is not None
    return box


def first_frames(all_frames: Path, frames: int, root: Path) -> Path:
    """A folder holding (hard links to) the first ``frames`` JPEGs: sam2 reads a whole folder."""
    folder = root / f"first_{frames}"
    folder.mkdir()
    for index in range(frames):
        os.link(all_frames / f"{index}.jpg", folder / f"{index}.jpg")
    return folder


def measure(predictor: str, frames: int, folder: Path, image_size: int, box: list[float]) -> dict:
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", predictor, str(frames),
        "--folder", str(folder), "--image-size", str(image_size), "--box", ",".join(map(str, box)),
    ]
    env = {**os.environ, "TQDM_DISABLE": "1"}  # sam2's progress bars
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{predictor} x{frames} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def mib(kib: float) -> float:
    return kib / KIB_PER_MIB


def percent(first: float, last: float) -> float:
    return 100.0 * (last - first) / first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 1000, 3000])
    parser.add_argument("--image-size", type=int, default=128, help="SAM 2 input size (1024 in the real model)")
    parser.add_argument("--frame-size", default="160x120", help="synthetic frames, WxH")
    parser.add_argument("--predictors", nargs="+", choices=PREDICTORS, default=list(PREDICTORS))
    parser.add_argument("--child", nargs=2, metavar=("PREDICTOR", "FRAMES"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--box", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        box = [float(v) for v in args.box.split(",")]
        print(json.dumps(child(args.child[0], int(args.child[1]), args.folder, args.image_size, box)))
        return

    import torch

    started = time.perf_counter()
    lengths = sorted(args.lengths)
    uri = f"synthetic://demo?frames={lengths[-1]}&size={args.frame_size}"
    runs: dict[tuple[str, int], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_tracking_memory_") as tmp:
        root = Path(tmp)
        all_frames = root / "all"
        all_frames.mkdir()
        box = write_frames(uri, all_frames)
        for frames in lengths:
            folder = first_frames(all_frames, frames, root)
            for predictor in args.predictors:
                run = runs[predictor, frames] = measure(predictor, frames, folder, args.image_size, box)
                print(f"{predictor:6s} x{frames:5d}: peak {mib(run['peak_rss_kib']):7.1f} MiB, "
                      f"{run['seconds']:.0f} s", flush=True)

    results, rows = [], []
    for frames in lengths:
        row: list = [frames]
        for predictor in PREDICTORS:
            run = runs.get((predictor, frames))
            if run is None:
                row += ["-", "-"]
                continue
            peak, growth = mib(run["peak_rss_kib"]), mib(run["peak_rss_kib"] - run["baseline_rss_kib"])
            row += [peak, growth]
            results.append({
                "predictor": predictor, "frames": frames, "peak_rss_mib": round(peak, 1),
                "baseline_rss_mib": round(mib(run["baseline_rss_kib"]), 1), "growth_mib": round(growth, 1),
                "seconds": round(run["seconds"], 1), "ms_per_frame": round(1000 * run["seconds"] / frames, 1),
                "rss_samples_mib": [[n, round(mib(k), 1)] for n, k in run["rss_samples_kib"]],
                **{k: run[k] for k in ("bank_bytes", "frame_outputs_kept") if k in run},
            })
        rows.append(row)

    def peak_change(predictor: str) -> float | None:
        if (predictor, lengths[0]) not in runs or (predictor, lengths[-1]) not in runs:
            return None
        return percent(runs[predictor, lengths[0]]["peak_rss_kib"], runs[predictor, lengths[-1]]["peak_rss_kib"])

    ours, theirs = peak_change("ours"), peak_change("theirs")
    claim = ours is not None and ours < TARGET_PERCENT and (theirs is None or theirs > TARGET_PERCENT)
    columns = ["frames", "ours peak MiB", "ours growth MiB", "sam2 peak MiB", "sam2 growth MiB"]
    print_table(f"peak RSS, SAM 2.1 hiera-t random weights @ {args.image_size} px, 1 object; "
                f"target: ours +< {TARGET_PERCENT:g} % from {lengths[0]} to {lengths[-1]} frames", columns, rows)
    for name, change in (("ours", ours), ("sam2", theirs)):
        if change is not None:
            print(f"{name}: peak RSS {change:+.1f} % from {lengths[0]} to {lengths[-1]} frames")
    wall = time.perf_counter() - started
    payload = {
        "model": "sam2.1 hiera-t, random weights", "model_config": MODEL_CONFIG, "image_size": args.image_size,
        "source": uri, "objects": 1, "torch_threads": torch.get_num_threads(), "lengths": lengths,
        "target_percent": TARGET_PERCENT, "ours_peak_change_percent": None if ours is None else round(ours, 2),
        "sam2_peak_change_percent": None if theirs is None else round(theirs, 2), "claim_holds": claim,
        "wall_seconds": round(wall, 1), "results": results,
    }
    print(f"claim holds: {claim}; {wall:.0f} s; wrote {save('tracking_memory', payload)}")


if __name__ == "__main__":
    main()
