"""Why counting questions of ``bench_scene_qa.py`` go wrong: record once what the scene memory is fed,
then replay it through scene-memory settings side by side.

``record``: one length of the navqa stream through ``bench_scene_qa``'s pipeline (``--feed tracker``
or ``exact_masks``, ``tracking -> scene`` path), saving every frame's observations (what the scene
stage hands the memory: positions, areas, border and occlusion flags) and the questions the
benchmark kept (text, time, truth) to ``DATA/scene_counting/LENGTH_FEED[TAG].pkl``. The tracker does
not read the scene memory, so a replay feeds any motion or visit setting exactly what the pipeline
would; a change to how observations are made (``observe.py``) needs a new recording.

``replay``: feed the recorded observations to a fresh ``SceneMemory`` with ``--set key=value``
overrides, ask the kept questions at their frames, print the counting score, the medians and each
wrong counting question, and with ``--motions`` every object's motions next to the script's::

    nice -n 19 python benchmarks/diag_scene_counting.py record --length medium --feed tracker [--tag _x]
    nice -n 19 python benchmarks/diag_scene_counting.py replay --length medium --set motion_confirm_s=1 --motions
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_scene_qa as bench  # noqa: E402
from _common import DATA  # noqa: E402

from memstream.embodied.scene import SceneConfig, SceneMemory  # noqa: E402

OUT = DATA / "scene_counting"


def record(length: str, feed: str, seed: int, tag: str = "") -> Path:
    frames: list = []
    original = SceneMemory.observe

    def recording(self, frame_index, timestamp_s, found):
        found = tuple(found)
        frames.append((frame_index, timestamp_s, found))
        return original(self, frame_index, timestamp_s, found)

    SceneMemory.observe = recording
    try:
        found, info, _ = bench.run_length(length, False, feed, seed, DATA / "scene_qa")
    finally:
        SceneMemory.observe = original
    kept = bench.keep(found, np.random.default_rng(seed))
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{length}_{feed}{tag}.pkl"
    with open(path, "wb") as f:
        pickle.dump({"frames": frames, "questions": kept, "all_questions": found, "info": info}, f)
    print(f"wrote {path}: {len(frames)} frames, {len(kept)} questions kept")
    return path


def replay(length: str, feed: str, overrides: dict, show: bool = True, tag: str = "") -> dict:
    with open(OUT / f"{length}_{feed}{tag}.pkl", "rb") as f:
        data = pickle.load(f)
    memory = SceneMemory(SceneConfig(**overrides))
    questions = [
        bench.QA(**{k: getattr(q, k) for k in ("length", "kind", "template", "text", "now_s", "truth")})
        for q in data["questions"]
    ]
    by_time: dict[float, list] = {}
    for q in questions:
        by_time.setdefault(q.now_s, []).append(q)
    for index, t, found in data["frames"]:
        memory.observe(index, t, found)
        for q in by_time.get(t, ()):
            bench.score(q, memory)
    counting = [q for q in questions if q.kind == "counting"]
    spatial = [q.error for q in questions if q.kind == "spatial"]
    temporal = [q.error for q in questions if q.kind == "temporal"]
    result = {
        "counting": f"{sum(q.correct for q in counting)}/{len(counting)}",
        "spatial_median_m": bench._med(spatial),
        "temporal_median_s": bench._med(temporal),
        "wrong": [(round(q.now_s, 1), q.text, q.truth, q.answer) for q in counting if not q.correct],
        "motions": {
            o.name: [
                (round(m.start_s, 1), None if m.end_s is None else round(m.end_s, 1), round(m.distance_m, 2))
                for m in memory.motions(o.object_id)
            ][::-1]
            for o in memory.objects()
        },
    }
    if show:
        print(
            f"{length} {feed} {overrides}: counting {result['counting']}, spatial median "
            f"{result['spatial_median_m']} m, temporal median {result['temporal_median_s']} s"
        )
        for row in result["wrong"]:
            print("  wrong:", *row)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["record", "replay"])
    parser.add_argument("--length", default="medium", choices=list(bench.LENGTHS))
    parser.add_argument("--feed", default="tracker", choices=["tracker", "exact_masks"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="SceneConfig key=value")
    parser.add_argument("--tag", default="", help="suffix of the recording's file name")
    parser.add_argument("--motions", action="store_true", help="print every object's motions")
    args = parser.parse_args()
    if args.mode == "record":
        import torch

        torch.set_num_threads(1)
        record(args.length, args.feed, args.seed, args.tag)
        return
    overrides = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = type(getattr(SceneConfig(), key))(value)
    result = replay(args.length, args.feed, overrides, tag=args.tag)
    if args.motions:
        from memstream.streaming.synthetic import build_scene
        from memstream.streaming.synthetic.navqa import motion_intervals

        frames = int(bench.LENGTHS[args.length] * bench.FPS)
        spec = build_scene("navqa", frames=frames, size=bench.SIZE, fps=bench.FPS, seed=args.seed)
        true = {o.name: [(round(a, 1), round(b, 1)) for a, b in motion_intervals(o)] for o in spec.objects}
        for name, rows in result["motions"].items():
            print(f"  {name}: memory {rows}")
            print(f"  {name}: truth  {true.get(name)}")


if __name__ == "__main__":
    main()
