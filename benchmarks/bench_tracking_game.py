"""Tracking on game footage: SAMURAI on the classical backend vs affinity-only selection vs OpenCV's CSRT
and KCF, on ViZDoom sequences whose animated monsters turn, occlude and leave the view and come back.

The set comes from ``benchmarks/make_game_footage.py`` (LaSOT layout, raw PNG frames plus H.264 copies
at CRF 18 and 28). Every tracker gets the same frames and the ground-truth box of frame 0. Encodings:
``raw`` (``img/``) and ``crf<N>`` (``video_crf<N>.mp4`` decoded back), all scored against the one
ground truth. Trackers and scores are those of ``bench_tracking_synthetic.py``: OPE as LaSOT (AUC, P,
Pnorm; frames where the target is gone count as failures for every tracker) and the presence-aware AUC
(a frame where the target is gone counts only when the tracker reports it absent), presence F1 and
absence recall. Speed: frames per second of each tracker at 320x240, timed over the whole set (one
process; pin cores with ``taskset -c 0,1`` to measure on 2 cores).

Only the full default run writes ``benchmarks/results/tracking_game.json``; any other configuration
writes ``benchmarks/data/tracking_game.partial.json`` (git-ignored).

    python benchmarks/make_game_footage.py
    python benchmarks/bench_tracking_game.py [--root benchmarks/data/game_footage] [--codec raw,crf18,crf28]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from collections import Counter

import numpy as np
from _common import DATA, print_table, save
from bench_tracking_synthetic import MULTI, TEMPLATE, TRACKERS, percent, summarise

from memstream.streaming import open_source
from memstream.tracking.classical import ClassicalBackend, ClassicalConfig
from memstream.tracking.classical.config import PROPOSER_NAMES
from memstream.tracking.eval import evaluate_presence, evaluate_sequence, open_dataset
from memstream.tracking.eval.footage import parse_codec
from memstream.tracking.outputs import reports_present
from memstream.tracking.tracker import Tracker
from memstream.tracking.types import Prompt

DEFAULT_ROOT = DATA / "game_footage"
DEFAULTS = {"root": str(DEFAULT_ROOT), "codec": "raw,crf18,crf28", "ablation_codec": "raw,crf18"}
ABLATIONS = {f"samurai-no-{name}": ClassicalConfig(proposers=tuple(p for p in PROPOSER_NAMES if p != name))
             for name in PROPOSER_NAMES}  # the default with one proposer removed


def run_counting(frames, box, config: ClassicalConfig, wins: Counter) -> tuple[np.ndarray, np.ndarray]:
    """SAMURAI on the classical backend with ``config``; adds the backend's proposer wins to ``wins``."""
    backend = ClassicalBackend(config)
    tracker = Tracker(backend, "samurai")
    states = [tracker.update(f, [Prompt(1, box)] if f.index == 0 else []).states[0] for f in frames]
    wins.update(backend.proposer_wins)
    return np.array([s.box_xywh for s in states]), np.array([reports_present(s) for s in states])


def load_frames(spec, codec: str) -> list:
    uri = spec.source_uri if codec == "raw" else str(spec.source_path.parent / f"video_{codec}.mp4")
    with open_source(uri) as source:
        frames = list(source)
    if len(frames) != spec.num_frames:
        raise SystemExit(f"{uri}: {len(frames)} frames for {spec.num_frames} boxes")
    return frames


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", default=DEFAULTS["root"], help="output of make_game_footage.py")
    parser.add_argument("--codec", default=DEFAULTS["codec"], help="comma-separated: raw and/or crf<N>")
    parser.add_argument("--ablation-codec", default=DEFAULTS["ablation_codec"],
                        help="encodings on which SAMURAI also runs with each proposer removed ('' for none)")
    parser.add_argument("--trackers", default="", help="comma-separated subset of the trackers to run ('' for all)")
    args = parser.parse_args()
    is_default = all(getattr(args, k) == v for k, v in DEFAULTS.items()) and not args.trackers
    codecs = args.codec.split(",")
    ablation_codecs = [c for c in args.ablation_codec.split(",") if c]
    for codec in codecs + ablation_codecs:
        parse_codec(codec)
    dataset = open_dataset(args.root)
    wins = {c: Counter() for c in codecs}
    trackers = {c: {"samurai": lambda f, b, c=c: run_counting(f, b, ClassicalConfig(), wins[c]),
                    "samurai-multi": lambda f, b: run_counting(f, b, MULTI, Counter()),
                    "samurai-template": lambda f, b: run_counting(f, b, TEMPLATE, Counter()),
                    **{k: v for k, v in TRACKERS.items() if k not in ("samurai", "affinity", "samurai-multi", "samurai-template")},
                    **({k: lambda f, b, cfg=cfg: run_counting(f, b, cfg, Counter()) for k, cfg in ABLATIONS.items()}
                       if c in ablation_codecs else {})}
                for c in codecs}
    if args.trackers:
        chosen = args.trackers.split(",")
        unknown = set(chosen) - {t for c in codecs for t in trackers[c]}
        if unknown:
            parser.error(f"unknown trackers {sorted(unknown)}; choose from {', '.join(trackers[codecs[0]])}")
        trackers = {c: {t: run for t, run in trackers[c].items() if t in chosen} for c in codecs}
    results = {c: {t: {} for t in trackers[c]} for c in codecs}
    seconds = {c: {t: 0.0 for t in trackers[c]} for c in codecs}
    frames_total = 0
    for spec in dataset:
        gt, visible = spec.gt_xywh, spec.target_visible
        frames_total += spec.num_frames
        for codec in codecs:
            frames = load_frames(spec, codec)
            for name, run in trackers[codec].items():
                started = time.perf_counter()
                pred, present = run(frames, gt[0])
                seconds[codec][name] += time.perf_counter() - started
                results[codec][name][spec.name] = (evaluate_sequence(pred, gt, visible, "lasot"),
                                                   evaluate_presence(pred, gt, visible, present))
    scores = {c: {t: summarise(results[c][t]) for t in trackers[c]} for c in codecs}
    per_sequence = {c: {t: {s: round(100 * float(np.mean(r[1].success_curve)), 1)
                            for s, r in results[c][t].items()} for t in trackers[c]} for c in codecs}
    fps = {c: {t: round(frames_total / seconds[c][t], 1) for t in trackers[c]} for c in codecs}
    rows = [[codec, name, percent(r["auc"]), percent(r["precision"]), percent(r["presence_auc"]),
             percent(r["presence_f1"]), percent(r["absence_recall"]), f"{fps[codec][name]:.0f}"]
            for codec in codecs for name, r in scores[codec].items()]
    print_table(f"Game footage ({len(dataset)} ViZDoom sequences, {frames_total} frames, 320x240)",
                ["codec", "tracker", "AUC", "P", "AUC-PA", "presence F1", "absence recall", "fps"], rows)
    summary, beats = [], {}
    for codec in codecs:
        s = scores[codec]
        rivals = [r for r in ("csrt", "kcf") if r in s]
        beats[codec] = {t: all(s[t][k] > max(s[r][k] for r in rivals) for k in ("auc", "presence_auc"))
                        for t in ("samurai", "samurai-multi", "samurai-template") if t in s and rivals}
        summary.append(f"{codec}: " + "; ".join(f"{t} {s[t]['auc']:.1f} AUC / {s[t]['presence_auc']:.1f} AUC-PA"
                                                for t in ("samurai", "samurai-multi", "samurai-template",
                                                          "samurai-before", "csrt", "kcf") if t in s)
                       + f"; beats both: {beats[codec]}")
        print(summary[-1])
    ablation = {}
    for codec in ablation_codecs:
        if codec not in codecs or any(f"samurai-no-{n}" not in scores[codec] for n in PROPOSER_NAMES):
            continue
        s, total = scores[codec], sum(wins[codec].values())
        ablation[codec] = {name: {"wins": wins[codec][name], "win_share": round(100 * wins[codec][name] / max(total, 1), 1),
                                  "auc_without": s[f"samurai-no-{name}"]["auc"],
                                  "auc_added": s["samurai"]["auc"] - s[f"samurai-no-{name}"]["auc"],
                                  "presence_auc_added": (s["samurai"]["presence_auc"]
                                                         - s[f"samurai-no-{name}"]["presence_auc"])}
                           for name in PROPOSER_NAMES}
    if ablation:
        print_table("Per-proposer ablation (samurai, the default: all proposers): share of reported frames whose chosen "
                    "candidate came from each proposer, and what removing it costs",
                    ["codec", "proposer", "wins", "win share %", "AUC without", "AUC added", "AUC-PA added"],
                    [[c, n, a["wins"], f"{a['win_share']:.1f}", percent(a["auc_without"]), f"{a['auc_added']:+.1f}",
                      f"{a['presence_auc_added']:+.1f}"] for c, by in ablation.items() for n, a in by.items()])
    meta = [json.loads((d / "meta.json").read_text()) for d in dataset.sequence_dirs if (d / "meta.json").is_file()]
    payload = {"sequences": list(dataset.names), "frames": frames_total, "codecs": codecs, "scores": scores,
               "presence_auc_per_sequence": per_sequence, "fps": fps, "set": meta,
               "samurai_beats_csrt_and_kcf": beats, "proposer_ablation": ablation,
               "samurai_proposer_wins": {c: dict(wins[c]) for c in codecs},
               "before": "samurai-before: the classical backend before issue 19 (template proposer only, whole-frame "
                         "search every frame once lost, no presence hysteresis)", "summary": summary}
    if is_default:
        print(f"wrote {save('tracking_game', payload)}")
    else:
        DATA.mkdir(parents=True, exist_ok=True)
        path = Path(DATA / "tracking_game.partial.json")
        path.write_text(json.dumps({"benchmark": "tracking_game", "partial": True, **payload}, indent=2) + "\n")
        print(f"not the default configuration: wrote {path}")


if __name__ == "__main__":
    main()
