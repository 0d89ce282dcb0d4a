"""Fit the classical backend's per-proposer score calibration on tuning sequences (never the benchmarks').

Runs SAMURAI on the classical backend with its candidate trace on (``ClassicalBackend.trace``) over

* game footage rendered by ``benchmarks/make_game_footage.py`` from tuning seeds (default: the set made with
  ``--first-seed 300 --sequences 6 --crf 18 --out benchmarks/data/game_footage_tune``; the benchmark's
  set starts at seed 100 and draws its seeds from 100-259, so the two never share a seed), and
* synthetic scenes of the four tracking presets at seeds 0-4 (the backend's tuning seeds; the benchmark
  uses 10-14),

each raw and through H.264 at CRF 18. Every verified candidate becomes one sample: features (its
verified match score, its proposer's own confidence, how many other proposers agree with it), label
(IoU with the ground truth > 0.5; 0 when the target is not visible). A logistic regression per proposer
(IRLS with a small L2 penalty, numpy) gives ``logit P = a + b_score s + b_raw raw + b_agree agree`` (what
the object score reads) and ``logit P = a + b_score s + b_raw raw`` (the affinity's line, which may lift a
follower's affinity at most ``ClassicalConfig.follower_lift`` above its verified score); the
template proposer's own line (its fit at ``agree = 0``) is the reference scale, so a template peak no other
proposer agrees with keeps its score. The coefficients, the sample counts and the
seeds are written to ``tracking/classical/calibration.py``.

The trace depends on the calibration in force (it decides which candidates are chosen, hence where the
proposers look next), so the fit can be iterated: ``--rounds 2`` fits, reloads and fits again.

    python benchmarks/fit_classical_calibration.py [--game benchmarks/data/game_footage_tune]
        [--synthetic-seeds 0-4] [--codec raw,crf18] [--rounds 1] [--dry-run]
"""

from __future__ import annotations

import argparse
import importlib
import pprint
from pathlib import Path

import numpy as np
from _common import DATA
from bench_tracking_game import load_frames

from memstream.tracking.classical import ClassicalBackend, calibration
from memstream.tracking.eval import open_dataset
from memstream.tracking.eval.footage import load_synthetic
from memstream.tracking.kalman import box_iou_xywh
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

PRESETS = ("distractors", "occlusion", "fast_motion", "camera_motion")
TARGET = Path(calibration.__file__)
L2 = 1.0  # ridge penalty on the slopes (absolute: a few thousand samples outweigh it)


def sequences(args: argparse.Namespace):
    """``(name, frames, gt_xywh, visible)`` of every tuning sequence and encoding."""
    codecs = args.codec.split(",")
    if args.game:
        for spec in open_dataset(args.game):
            for codec in codecs:
                yield f"{spec.name}/{codec}", load_frames(spec, codec), spec.gt_xywh, spec.target_visible
    first, last = (int(v) for v in args.synthetic_seeds.split("-"))
    for preset in PRESETS:
        for seed in range(first, last + 1):
            for codec in codecs:
                footage = load_synthetic(f"synthetic://{preset}?seed={seed}&frames=150", codec, DATA / "tracking_footage")
                yield f"{preset}-{seed}/{codec}", list(footage.frames), footage.gt_xywh, footage.target_visible


def collect(args: argparse.Namespace) -> tuple[dict[str, list], dict]:
    """Samples per proposer ``[(score, raw, agree, label)]`` and presence diagnostics."""
    samples: dict[str, list] = {}
    presence = {"visible_reported": 0, "visible_missed": 0, "missed_with_good_candidate": 0, "absent_reported": 0,
                "absent_quiet": 0}
    for name, frames, gt, visible in sequences(args):
        backend = ClassicalBackend()
        backend.trace = []
        tracker = Tracker(backend, "samurai")
        for frame in frames:
            tracker.update(frame, [Prompt(1, gt[0])] if frame.index == 0 else [])
        for row in backend.trace:
            t = row["frame"]
            target_here = bool(visible[t]) and gt[t, 2] > 0 and gt[t, 3] > 0
            good = False
            for cand in row["candidates"]:
                iou = float(box_iou_xywh(np.array(cand["box"]), gt[t])[0, 0]) if target_here else 0.0
                good |= iou > 0.5
                samples.setdefault(cand["proposer"], []).append((cand["score"], cand["raw"], cand["agree"], iou > 0.5))
            reported = row["logit"] > 0
            if target_here:
                presence["visible_reported" if reported else "visible_missed"] += 1
                presence["missed_with_good_candidate"] += int(good and not reported)
            else:
                presence["absent_reported" if reported else "absent_quiet"] += 1
        print(f"{name}: {len(backend.trace)} frames, wins {backend.proposer_wins}")
    return samples, presence


def logistic(x: np.ndarray, y: np.ndarray, iterations: int = 50) -> np.ndarray:
    """IRLS fit of ``logit P(y) = [1, x] @ w`` with an L2 penalty ``L2`` on the slopes."""
    design = np.concatenate([np.ones((len(x), 1)), x], 1)
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], L2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(design @ w, -30, 30)))
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def fit(samples: dict[str, list]) -> tuple[dict[str, tuple[float, ...]], dict]:
    coefficients: dict[str, tuple[float, ...]] = {}
    counts: dict[str, dict[str, int]] = {}
    for proposer, rows in sorted(samples.items()):
        data = np.array(rows, np.float64)
        x, y = data[:, :3], data[:, 3]
        counts[proposer] = {"samples": len(y), "positives": int(y.sum())}
        if y.sum() < 10 or (1 - y).sum() < 10:
            print(f"{proposer}: {len(y)} samples, {int(y.sum())} positive: too few to fit, left as the reference")
            continue
        if proposer == "template":  # its own confidence is its score: fit on score (and agreement)
            a, b_score, b_agree = logistic(x[:, [0, 2]], y)
            w = np.array([a, b_score, 0.0, b_agree])
            coefficients["reference"] = (round(float(a), 4), round(float(b_score), 4))  # agree = 0: s itself
            a, b_score = logistic(x[:, :1], y)
            line = np.array([a, b_score, 0.0])
            coefficients["reference/affinity"] = (round(float(a), 4), round(float(b_score), 4))
        else:
            w, line = logistic(x, y), logistic(x[:, :2], y)
        coefficients[proposer] = tuple(round(float(v), 4) for v in w)
        coefficients[f"{proposer}/affinity"] = tuple(round(float(v), 4) for v in line)
        print(f"{proposer}: {len(y)} samples, {int(y.sum())} positive, w = {np.round(w, 3).tolist()}")
    for proposer in ("template", "correlation", "colour", "flow"):
        coefficients.setdefault(proposer, (*coefficients["reference"], 0.0, 0.0))
        coefficients.setdefault(f"{proposer}/affinity", (*coefficients["reference/affinity"], 0.0))
    return coefficients, counts


def write(coefficients: dict, fit_record: dict) -> None:
    text = TARGET.read_text()
    head = text[: text.index("CALIBRATION: dict")]
    body = (f"CALIBRATION: dict[str, tuple[float, ...]] = {pprint.pformat(coefficients, sort_dicts=False, width=110)}\n\n"
            f"FIT: dict[str, object] = {pprint.pformat(fit_record, sort_dicts=False, width=110)}\n")
    TARGET.write_text(head + body)
    print(f"wrote {TARGET}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default=str(DATA / "game_footage_tune"), help="tuning game set ('' for none)")
    parser.add_argument("--synthetic-seeds", default="0-4", help="first-last seed of the synthetic presets")
    parser.add_argument("--codec", default="raw,crf18")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="print the fit, leave calibration.py as it is")
    args = parser.parse_args()
    game_seeds = sorted(s.name for s in open_dataset(args.game)) if args.game else []
    for round_ in range(args.rounds):
        samples, presence = collect(args)
        coefficients, counts = fit(samples)
        print("presence on the tuning frames:", presence)
        record = {"fitted": True, "game_sequences": game_seeds, "synthetic_presets": list(PRESETS),
                  "synthetic_seeds": args.synthetic_seeds, "codecs": args.codec.split(","),
                  "label": "IoU with the ground truth > 0.5", "l2": L2, "round": round_ + 1, "samples": counts}
        if args.dry_run:
            pprint.pprint(coefficients)
            return
        write(coefficients, record)
        importlib.reload(calibration)
        from memstream.tracking.classical import backend as backend_module

        backend_module.CALIBRATION = calibration.CALIBRATION


if __name__ == "__main__":
    main()
