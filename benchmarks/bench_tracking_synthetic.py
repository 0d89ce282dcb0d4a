"""Tracking quality on synthetic scenes with exact ground truth: SAMURAI vs plain SAM 2 selection vs
OpenCV's CSRT and KCF, side by side on the same frames.

Trackers (all weight-free, so the comparison runs anywhere):

* ``samurai``: the classical candidate backend with SAMURAI's motion-aware selection and memory gate;
* ``affinity``: the same backend, highest-affinity candidate and a window memory (plain SAM 2);
* ``csrt``, ``kcf``: OpenCV's trackers (opencv-contrib).

Scenes: the ``distractors``, ``occlusion``, ``fast_motion`` and ``camera_motion`` presets, fixed seeds.
Scores: OPE as LaSOT (AUC over 21 IoU thresholds, P at 20 px, Pnorm at 0.2; frames where the target
is fully hidden or out of view count as failures for every tracker). Targets: samurai beats affinity
by >= 10 AUC points on ``distractors`` and beats CSRT overall.

Seeds start at 10 by default: the classical backend's constants were tuned on seeds 0-9 of these
presets, so the default figures come from scenes it never saw (``--first-seed 0`` shows the tuned ones).

    python benchmarks/bench_tracking_synthetic.py [--seeds 5] [--first-seed 10] [--frames 150]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from _common import print_table, save

from memstream.streaming import open_source
from memstream.tracking.classical import ClassicalBackend
from memstream.tracking.eval import evaluate_dataset, evaluate_sequence
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

PRESETS = ("distractors", "occlusion", "fast_motion", "camera_motion")


def run_samurai(frames, box, selection: str) -> np.ndarray:
    tracker = Tracker(ClassicalBackend(), selection=selection)
    return np.array([tracker.update(f, [Prompt(1, box)] if f.index == 0 else []).states[0].box_xywh for f in frames])


def run_opencv(frames, box, kind: str) -> np.ndarray:
    tracker = cv2.TrackerCSRT_create() if kind == "csrt" else cv2.TrackerKCF_create()
    tracker.init(cv2.cvtColor(frames[0].rgb, cv2.COLOR_RGB2BGR), tuple(int(round(v)) for v in box))
    boxes = [box]
    for frame in frames[1:]:
        ok, found = tracker.update(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        boxes.append(np.array(found, np.float64) if ok else np.zeros(4))
    return np.array(boxes, np.float64)


TRACKERS = {
    "samurai": lambda frames, box: run_samurai(frames, box, "samurai"),
    "affinity": lambda frames, box: run_samurai(frames, box, "affinity"),
    "csrt": lambda frames, box: run_opencv(frames, box, "csrt"),
    "kcf": lambda frames, box: run_opencv(frames, box, "kcf"),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5, help="sequences per preset")
    parser.add_argument("--first-seed", type=int, default=10, help="seeds 0-9 were used to tune the backend")
    parser.add_argument("--frames", type=int, default=150)
    args = parser.parse_args()
    results = {name: {preset: {} for preset in PRESETS} for name in TRACKERS}
    seconds = {name: 0.0 for name in TRACKERS}
    for preset in PRESETS:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            with open_source(f"synthetic://{preset}?seed={seed}&frames={args.frames}") as source:
                frames = list(source)
            gt = np.array([f.gt.boxes_xywh[0] for f in frames])
            visible = np.array([f.gt.visible_fraction[0] > 0 for f in frames])
            for name, run in TRACKERS.items():
                started = time.perf_counter()
                pred = run(frames, gt[0])
                seconds[name] += time.perf_counter() - started
                results[name][preset][f"{preset}-{seed}"] = evaluate_sequence(pred, gt, visible, "lasot")
    rows, table = [], {}
    for name in TRACKERS:
        table[name] = {p: evaluate_dataset(results[name][p]).to_dict() for p in PRESETS}
        table[name]["all"] = evaluate_dataset({k: v for p in PRESETS for k, v in results[name][p].items()}).to_dict()
        for group in (*PRESETS, "all"):
            r = table[name][group]
            rows.append([name, group, r["auc"], r["precision"], r["norm_precision"]])
        frames_total = len(PRESETS) * args.seeds * args.frames
        table[name]["fps"] = frames_total / seconds[name]
    print_table(f"OPE on synthetic scenes (seeds {args.first_seed}-{args.first_seed + args.seeds - 1} x "
                f"{len(PRESETS)} presets, {args.frames} frames)",
                ["tracker", "preset", "AUC", "P", "Pnorm"], rows)
    gap = table["samurai"]["distractors"]["auc"] - table["affinity"]["distractors"]["auc"]
    over_csrt = table["samurai"]["all"]["auc"] - table["csrt"]["all"]["auc"]
    print(f"samurai - affinity on distractors: {gap:+.1f} AUC (target >= +10); samurai - csrt overall: {over_csrt:+.1f}")
    print("fps: " + ", ".join(f"{n} {table[n]['fps']:.0f}" for n in TRACKERS))
    scores = {n: {g: {k: table[n][g][k] for k in ("auc", "precision", "norm_precision")} for g in (*PRESETS, "all")}
              for n in TRACKERS}
    payload = {"seeds": list(range(args.first_seed, args.first_seed + args.seeds)), "frames": args.frames, "scores": scores,
               "fps": {n: round(table[n]["fps"], 1) for n in TRACKERS},
               "samurai_minus_affinity_distractors_auc": gap, "samurai_minus_csrt_auc": over_csrt,
               "claim_holds": gap >= 10 and over_csrt > 0}
    print(f"wrote {save('tracking_synthetic', payload)}")


if __name__ == "__main__":
    main()
