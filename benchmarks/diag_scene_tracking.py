"""Where the weight-free tracker goes wrong on the scene-QA stream: per object and frame, against the
renderer's masks.

The ``navqa`` stream of ``bench_scene_qa.py`` (160x120, 4 fps) through the ``scene`` preset's
``tracking`` stage alone (the same options, prompted once from the first frame's ground truth), each
object's reported box compared with its exact visible box on every frame, and every frame put in one
class:

* ``right``: reported, IoU with the true visible box >= 0.5;
* ``drift``: reported, overlapping the true box (IoU in (0, 0.5)) or its centre within one object
  size of the true centre: on the object, badly placed;
* ``switch_object``: reported on another object (its box's centre on another object's pixels);
* ``switch_background``: reported somewhere else (the room, a look-alike patch);
* ``lost``: visible (at least ``--visible`` of it) but reported absent;
* ``false_presence``: reported while nothing of it is visible;
* ``absent_ok``: not visible and not reported. Frames where the object is only partly visible (under
  ``--visible`` but above 0) count only when reported (``partial``), as neither side is wrong then.

Extra options go to the tracking stage as ``--set KEY=VALUE`` (``stages.tracking.options.`` is
prefixed), so two settings are compared side by side on the same frames::

    nice -n 10 python benchmarks/diag_scene_tracking.py --lengths short medium
    nice -n 10 python benchmarks/diag_scene_tracking.py --lengths short --set classical.depth_gate=false
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter

import numpy as np

from _common import print_table, save

os.environ.setdefault("COLUMNS", "200")
from memstream.streaming.config import load_config
from memstream.streaming.pipeline.protocol import RunContext
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.sources import open_source
from memstream.tracking.kalman import box_iou_xywh

FPS, SIZE = 4.0, (160, 120)
LENGTHS = {"short": 60.0, "medium": 600.0, "long": 3600.0}
CLASSES = ("right", "drift", "switch_object", "switch_background", "lost", "false_presence", "partial", "absent_ok")


def classify(box: np.ndarray, present: bool, row: int, gt, visible_min: float) -> str:
    """One object's class on one frame (see the module docstring)."""
    fraction = float(gt.visible_fraction[row])
    if fraction <= 0:
        return "false_presence" if present else "absent_ok"
    if not present:
        return "lost" if fraction >= visible_min else "absent_ok"
    if fraction < visible_min:
        return "partial"
    truth = gt.boxes_xywh[row].astype(np.float64)
    if box_iou_xywh(box[None], truth[None])[0, 0] >= 0.5:
        return "right"
    centre, true_centre = box[:2] + box[2:] / 2, truth[:2] + truth[2:] / 2
    if box_iou_xywh(box[None], truth[None])[0, 0] > 0 or np.linalg.norm(centre - true_centre) <= max(truth[2:]):
        return "drift"
    x, y = np.clip(np.round(centre).astype(int), 0, [gt.instance_mask.shape[1] - 1, gt.instance_mask.shape[0] - 1])
    under = int(gt.instance_mask[y, x])
    return "switch_object" if under not in (0, int(gt.object_ids[row])) else "switch_background"


def run(length: str, seed: int, extra: list[str], visible_min: float) -> dict:
    frames = int(LENGTHS[length] * FPS)
    uri = f"synthetic://navqa?frames={frames}&size={SIZE[0]}x{SIZE[1]}&fps={FPS:g}&seed={seed}"
    overrides = ["stages.tracking.options.gt_objects=[1, 2, 3, 4, 5, 6]"]
    overrides += [f"stages.tracking.options.{e}" for e in extra]
    config = load_config("scene", overrides)
    options = next(s for s in config.enabled_stages if s.name == "tracking").options
    stage = build_stage("tracking", options)
    counts: dict[str, Counter[str]] = {}
    errors: dict[str, list[float]] = {}
    sizes: dict[str, list[float]] = {}
    started = time.perf_counter()
    with open_source(uri) as source:
        stage.open(RunContext(source.info, None))
        for frame in source:
            output = stage.update(frame, None)
            gt = frame.gt
            for state in output.states:
                row = gt.index_of(state.object_id)
                name = gt.names[row]
                label = classify(state.box_xywh, state.present, row, gt, visible_min)
                counts.setdefault(name, Counter())[label] += 1
                if label in ("right", "drift", "switch_object", "switch_background"):
                    truth = gt.boxes_xywh[row].astype(np.float64)
                    error = np.linalg.norm(state.box_xywh[:2] + state.box_xywh[2:] / 2 - truth[:2] - truth[2:] / 2)
                    errors.setdefault(name, []).append(float(error))
                    sizes.setdefault(name, []).append(float(max(truth[2:])))
    wall = time.perf_counter() - started
    stage.close()
    per_object = {}
    for name, c in counts.items():
        on_view = sum(c[k] for k in ("right", "drift", "switch_object", "switch_background", "lost"))
        per_object[name] = {
            **{k: c[k] for k in CLASSES},
            "visible_frames": on_view,
            "right_pct": round(100 * c["right"] / on_view, 1) if on_view else None,
            "centre_error_px_median": round(float(np.median(errors[name])), 2) if errors.get(name) else None,
            "size_px_median": round(float(np.median(sizes[name])), 1) if sizes.get(name) else None,
        }
    total = Counter()
    for c in counts.values():
        total.update(c)
    visible = sum(total[k] for k in ("right", "drift", "switch_object", "switch_background", "lost"))
    wins = getattr(stage.tracker.backend, "proposer_wins", {})
    return {"length": length, "frames": frames, "set": extra, "fps": round(frames / wall, 2),
            "objects": per_object, "total": {k: total[k] for k in CLASSES},
            "right_pct": round(100 * total["right"] / visible, 1), "proposer_wins": wins}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", nargs="+", default=["short", "medium"], choices=list(LENGTHS))
    parser.add_argument("--set", action="append", default=[], dest="extra",
                        help="KEY=VALUE under stages.tracking.options (repeatable)")
    parser.add_argument("--visible", type=float, default=0.5, help="visible fraction from which a miss is a loss")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tag", default="", help="suffix of the results file (scene_tracking_diag{tag}.json)")
    args = parser.parse_args()
    results = [run(length, args.seed, args.extra, args.visible) for length in args.lengths]
    rows = []
    for r in results:
        for name, o in r["objects"].items():
            rows.append([r["length"], name, o["size_px_median"], o["visible_frames"], o["right_pct"],
                         *[o[k] for k in CLASSES[1:7]], o["centre_error_px_median"]])
        rows.append([r["length"], "ALL", "", "", r["right_pct"], *[r["total"][k] for k in CLASSES[1:7]],
                     f"{r['fps']} fps"])
    print_table(f"tracker vs the renderer's masks on navqa ({' '.join(args.extra) or 'preset as is'})",
                ["length", "object", "size px", "visible", "right %", *CLASSES[1:7], "centre err px"], rows)
    print(f"wrote {save(f'scene_tracking_diag{args.tag}', {'set': args.extra, 'runs': results})}")


if __name__ == "__main__":
    main()
