"""NaVQA-style questions with exact answers, asked of the scene memory as the stream goes on.

Claim (issue 18): the scene memory answers spatial questions within 0.10 m and temporal ones within
0.5 s (medians), counting questions >= 95 % exactly, and its errors stay flat from a one-minute stream
to an hour (ReMEmbR with GPT-4o on NaVQA: 5.1 -> 27.5 -> 46.3 m from short to long sequences).

The scene is the ``navqa`` synthetic preset (``streaming/synthetic/navqa.py``): four named movers
(cup, ball, bottle, toy) that rest 6-40 s and move 0.6-1.6 m on a clock, a table and a shelf that
never move, a swaying camera that glances aside every 50-110 s (objects leave the view and come back).
Three lengths at 160x120 and 4 fps: short 1 min (240 frames), medium 10 min (2,400), long 60 min
(14,400). The frames are rendered and go through ``memstream run``'s real stages, so the memory is
fed what the pipeline produced (masks back-projected through the rendered depth and pose, motion
detection, visits), never ground-truth positions. Two feeds (``--feeds``):

* ``tracker``: the preset as it is, the classical tracker prompted once from the first frame's
  ground-truth boxes, then on its own: what a user gets, tracker losses included;
* ``exact_masks``: the renderer's instance masks in the tracker's place (everything after it
  unchanged): the scene memory measured apart from the weight-free tracker.

Path per length (``--full``): by default short and medium run the whole ``scene`` preset (tracking ->
video memory -> 3D memory -> bank -> scene) and long runs ``tracking -> scene`` only (the 3D memory,
video memory and bank turned off: the scene memory then takes depth and pose from the frame itself,
the same values the 3D memory hands on for synthetic frames with given poses), because the whole
preset costs 0.2-0.6 s a frame on the shared 2-core machine. The tracker feed runs short and medium
by default (``--tracker-lengths``; ``--tracker-lengths short medium long`` adds the hour, 10 min of
tracking -> scene at 25 frames/s with the world-gated tracker).

Questions are asked live: at checkpoints during the run (the frame has just left the last stage),
"now" is that frame's time and the memory holds only what came before. Templates, in ReMEmbR's three
kinds (the benchmark parses each question's text back into scene-memory queries, so it measures the
memory, not a language model):

* spatial (metres, error = distance to the true centre): "where is the cup now?", "where was the
  ball at 12:05.5?";
* temporal (seconds): "when did the toy last move?" (start of its last motion), "how long ago did the
  cup stop moving?", "how long ago did you see the shelf?" (asked while it is out of view);
* descriptive / counting (exact match): "how many objects moved in the last minute?" (or 30 s), "how
  many objects can you see now?", "how many objects are within 1.5 m of the ball?", "which object
  moved last?", "has the table moved?".

Only unambiguous questions are asked: none whose answer would flip within a frame or two of the
question's time or window edges (a motion starting 0.3 s before the window, an object half
in view, a distance within 0.15 m of the radius); the filters are in ``make_questions``.

A second table runs a sample of the final checkpoint's questions through the tiny random-weight
Video-LLM with the scene memory's tools wired as an LLM client would: the tool call (name and JSON
arguments) goes through ``memstream.embodied.scene.tools.call_tool``, its JSON result is put before
the question as a fact (``grounded_question``), and the Video-LLM answers over its retrieved frames.
Its weights are random: its answers are noise, and the table says so; it proves the wiring only.

    nice -n 10 python benchmarks/bench_scene_qa.py [--lengths short medium long] [--full long]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from _common import DATA, print_table, save
from memstream.embodied.scene import SceneQueryError
from memstream.embodied.scene.tools import call_tool
from memstream.streaming.config import load_config
from memstream.streaming.configtypes import dump
from memstream.streaming.pipeline.run import resolved
from memstream.streaming.pipeline.runner import Runner
from memstream.streaming.pipeline.stages import build_stage
from memstream.streaming.sources import open_source
from memstream.streaming.synthetic import build_scene
from memstream.streaming.synthetic.navqa import MOVERS, motion_intervals
from memstream.tracking.types import TrackOutput, TrackState

os.environ.setdefault("COLUMNS", "200")
FPS = 4.0
SIZE = (160, 120)
LENGTHS = {"short": 60.0, "medium": 600.0, "long": 3600.0}
CHECKPOINTS = {"short": 24, "medium": 40, "long": 40}
PER_LENGTH = 120  # questions kept per length (sampled evenly over kinds' templates)
SEEN_FRACTION = 0.5  # ground truth: an object is "seen" on a frame when this much of it is visible
FURNITURE = ("table", "shelf")


@dataclass
class QA:
    length: str
    kind: str  # spatial | temporal | counting
    template: str
    text: str
    now_s: float
    truth: Any
    answer: Any = None
    error: float | None = None  # metres or seconds; None for exact-match kinds
    correct: bool | None = None
    query_us: float = 0.0  # wall time of the memory's answer (a loaded machine's preemptions included)
    query_cpu_us: float = 0.0  # this thread's CPU time for it (preemptions excluded)


def clock(t: float) -> str:
    """Seconds as ``m:ss.s`` (``12:05.5``), how the questions write times."""
    minutes, seconds = divmod(t, 60.0)
    return f"{int(minutes)}:{seconds:04.1f}"


class Truth:
    """The scene's exact answers: positions and motions from its script, visibility from the frames
    as they pass (``FrameGroundTruth.visible_fraction``)."""

    def __init__(self, spec) -> None:
        self.objects = {o.name: o for o in spec.objects}
        self.motions = {o.name: motion_intervals(o) for o in spec.objects}
        self.names = [o.name for o in spec.objects]
        self.times: list[float] = []
        self.visible: list[np.ndarray] = []

    def add(self, frame) -> None:
        self.times.append(frame.timestamp_s)
        self.visible.append(frame.gt.visible_fraction.copy())

    def position(self, name: str, t: float) -> np.ndarray:
        return self.objects[name].position.at(t)

    def moving_at(self, name: str, t: float) -> bool:
        return any(a <= t <= b for a, b in self.motions[name])

    def last_motion(self, name: str, t: float) -> tuple[float, float] | None:
        done = [m for m in self.motions[name] if m[0] <= t]
        return done[-1] if done else None

    def last_seen(self, name: str) -> float | None:
        column = np.asarray(self.visible)[:, self.names.index(name)]
        seen = np.flatnonzero(column >= SEEN_FRACTION)
        return self.times[seen[-1]] if len(seen) else None


def _boundaries(truth: Truth) -> np.ndarray:
    return np.array(sorted(t for m in truth.motions.values() for pair in m for t in pair))


def make_questions(truth: Truth, now: float, rng: np.random.Generator, length: str) -> list[QA]:
    """Every unambiguous templated question at ``now`` (see the module docstring for the filters)."""
    out: list[QA] = []
    add = lambda kind, template, text, answer: out.append(QA(length, kind, template, text, now, answer))  # noqa: E731
    vis = truth.visible[-1]
    edges = _boundaries(truth)
    for name in truth.names:
        add("spatial", "where_now", f"where is the {name} now?", truth.position(name, now).tolist())
    for _ in range(2):
        name, t = str(rng.choice(truth.names)), float(rng.uniform(0.0, now))
        t = round(t * 10) / 10
        add("spatial", "where_at", f"where was the {name} at {clock(t)}?", truth.position(name, t).tolist())
    for name in MOVERS:
        last = truth.last_motion(name, now)
        if last is None or truth.moving_at(name, now) or now - last[1] < 2.0:
            continue
        add("temporal", "when_last_move", f"when did the {name} last move?", last[0])
        add("temporal", "ago_stopped", f"how long ago did the {name} stop moving?", now - last[1])
    column_of = np.asarray(truth.visible)
    for i, name in enumerate(truth.names):
        seen = truth.last_seen(name)
        if vis[i] > 0 or seen is None or now - seen <= 1.0:
            continue
        j = truth.times.index(seen)
        if column_of[j + 2, i] == 0:  # it left the view cleanly: mostly visible, gone half a second later
            add("temporal", "ago_seen", f"how long ago did you see the {name}?", now - seen)
    for window, words in ((60.0, "minute"), (30.0, "30 seconds")):
        if now < window + 1 or (len(edges) and np.min(np.abs(edges - (now - window))) < 1.0):
            continue
        if any(truth.moving_at(n, now) for n in MOVERS):
            continue
        moved = sum(any(a <= now and b >= now - window for a, b in truth.motions[n]) for n in MOVERS)
        add("counting", "moved_window", f"how many objects moved in the last {words}?", moved)
    changing = np.asarray(truth.visible[-int(1.5 * FPS):])
    if len(changing) and not ((vis > 0) & (vis < SEEN_FRACTION)).any() and (
        ((changing >= SEEN_FRACTION) == (vis >= SEEN_FRACTION)).all()
    ):
        add("counting", "visible_now", "how many objects can you see now?", int((vis >= SEEN_FRACTION).sum()))
    centre = {n: truth.position(n, now) for n in truth.names}
    for name in (str(rng.choice(truth.names)),):
        radius = float(rng.choice([1.0, 1.5, 2.0]))
        distances = [np.linalg.norm(centre[n] - centre[name]) for n in truth.names if n != name]
        if min(abs(d - radius) for d in distances) >= 0.15:
            add("counting", "near", f"how many objects are within {radius} m of the {name}?",
                int(sum(d <= radius for d in distances)))
    starts = sorted(((m[0], n) for n in MOVERS if (m := truth.last_motion(n, now))), reverse=True)
    if len(starts) >= 2 and starts[0][0] - starts[1][0] >= 2.0 and not any(truth.moving_at(n, now) for n in MOVERS):
        add("counting", "moved_last", "which object moved last?", starts[0][1])
    add("counting", "has_moved", f"has the {str(rng.choice(FURNITURE))} moved?", "no")
    return out


# ---- the benchmark's own template parser: question text -> scene-memory queries ----------------
_OBJ = r"the (?P<obj>[a-z]+)"
_T = r"(?P<m>\d+):(?P<s>\d+(?:\.\d+)?)"


def answer(memory, text: str, now: float) -> Any:
    """The memory's answer to one templated question (numbers, a name, or "yes"/"no")."""
    q = text.rstrip("?")
    if m := re.fullmatch(rf"where is {_OBJ} now", q):
        return list(memory.where(m["obj"], now).position)
    if m := re.fullmatch(rf"where was {_OBJ} at {_T}", q):
        return list(memory.where(m["obj"], int(m["m"]) * 60 + float(m["s"])).position)
    if m := re.fullmatch(rf"when did {_OBJ} last move", q):
        last = memory.last_moved(m["obj"])
        return None if last is None else last.start_s
    if m := re.fullmatch(rf"how long ago did {_OBJ} stop moving", q):
        last = memory.last_moved(m["obj"])
        return None if last is None or last.end_s is None else now - last.end_s
    if m := re.fullmatch(rf"how long ago did you see {_OBJ}", q):
        return now - memory.last_seen(m["obj"]).seen_at_s
    if m := re.fullmatch(r"how many objects moved in the last (?P<w>minute|30 seconds)", q):
        window = 60.0 if m["w"] == "minute" else 30.0
        moved = 0
        for o in memory.objects():
            moved += any(x.start_s <= now and (x.end_s is None or x.end_s >= now - window)
                         for x in memory.motions(o.object_id))
        return moved
    if q == "how many objects can you see now":
        return len(memory.visible_at(now))
    if m := re.fullmatch(rf"how many objects are within (?P<r>[\d.]+) m of {_OBJ}", q):
        point = memory.where(m["obj"], now).position
        near = memory.objects_near(point, float(m["r"]), now)
        return sum(1 for s in near if (s.name or str(s.object_id)) != m["obj"])
    if q == "which object moved last":
        latest = [(x.start_s, x.name) for o in memory.objects() if (x := memory.last_moved(o.object_id))]
        return max(latest)[1] if latest else None
    if m := re.fullmatch(rf"has {_OBJ} moved", q):
        return "no" if memory.last_moved(m["obj"]) is None else "yes"
    raise ValueError(f"no template reads {text!r}")


def score(qa: QA, memory) -> None:
    started, cpu = time.perf_counter(), time.thread_time()
    try:
        qa.answer = answer(memory, qa.text, qa.now_s)
    except SceneQueryError as exc:  # unknown object (lost by the tracker), a time before it was placed
        qa.answer = f"error: {exc}"
    qa.query_us = (time.perf_counter() - started) * 1e6
    qa.query_cpu_us = (time.thread_time() - cpu) * 1e6
    if qa.kind == "spatial":
        ok = isinstance(qa.answer, list)
        qa.error = float(np.linalg.norm(np.subtract(qa.answer, qa.truth))) if ok else float("inf")
    elif qa.kind == "temporal":
        qa.error = abs(float(qa.answer) - qa.truth) if isinstance(qa.answer, float) else float("inf")
    else:
        qa.correct = qa.answer == qa.truth


# ---- one length through the pipeline -------------------------------------------------------------
class ExactMasksStage:
    """The ``exact_masks`` feed's ``tracking`` stage: the renderer's instance masks and boxes as the
    tracker's output (every object in view, with its scene name), so what follows (3D memory, scene
    memory: back-projection, motion detection, visits) is measured without the tracker's losses."""

    name = "tracking"

    def open(self, context) -> None:
        pass

    def update(self, frame, upstream) -> TrackOutput:
        gt = frame.gt
        states = tuple(
            TrackState(int(o), gt.boxes_xywh[r].astype(np.float64), gt.instance_mask == o, 0.9, 3.0, 1.0, True)
            for r, o in enumerate(gt.object_ids)
            if gt.visible_fraction[r] > 0
        )
        return TrackOutput(frame.index, states, tuple((int(o), n) for o, n in zip(gt.object_ids, gt.names, strict=True)))

    def close(self) -> None:
        pass


def run_length(
    length: str, full: bool, feed: str, seed: int, out_root: Path
) -> tuple[list[QA], dict, list[dict]]:
    frames = int(LENGTHS[length] * FPS)
    uri = f"synthetic://navqa?frames={frames}&size={SIZE[0]}x{SIZE[1]}&fps={FPS:g}&seed={seed}"
    spec = build_scene("navqa", frames=frames, size=SIZE, fps=FPS, seed=seed)
    truth = Truth(spec)
    overrides = ["stages.tracking.options.gt_objects=[1, 2, 3, 4, 5, 6]", "stages.scene.options.save_every_frames=0"]
    if full:  # a tool's JSON result goes into the question: room for it
        overrides.append("stages.video_memory.options.rekv.max_question_tokens=4096")
    else:
        overrides += [f"stages.{s}.enabled=false" for s in ("video_memory", "map3d", "bank")]
    config = load_config("scene", overrides)
    stages = [build_stage(s.name, s.options) for s in config.enabled_stages]
    config = resolved(config, stages)
    if feed == "exact_masks":
        stages[0] = ExactMasksStage()
    scene = next(s for s in stages if s.name == "scene")
    video = next((s for s in stages if s.name == "video_memory"), None)
    rng = np.random.default_rng(seed)
    ask_at = set(np.linspace(int(6 * FPS), frames - 1, CHECKPOINTS[length]).astype(int).tolist())
    questions: list[QA] = []
    llm_rows: list[dict] = []

    def on_frame(frame) -> None:  # the scene stage's thread, right after it took this frame
        truth.add(frame)
        if frame.index in ask_at:
            found = make_questions(truth, frame.timestamp_s, rng, length)
            for qa in found:
                score(qa, scene.memory)
            questions.extend(found)
            if frame.index == frames - 1 and video is not None:
                llm_rows.extend(ask_llm(found, scene.memory, video.memory, rng))

    out = out_root / f"{length}_{feed}"
    out.mkdir(parents=True, exist_ok=True)
    with open_source(uri) as source:
        runner = Runner(source, stages, queue_size=config.runner.queue_size, backpressure="block",
                        out_dir=out, config=dump(config), on_frame=on_frame)
        summary = runner.run()
    info = {
        "length": length, "feed": feed, "uri": uri, "frames": frames, "stream_s": LENGTHS[length],
        "path": "full scene preset" if full else "tracking -> scene (map3d, video_memory, bank off)",
        "stages": [s.name for s in stages], "fps": round(summary.fps, 2), "wall_s": round(summary.wall_s, 1),
        "stage_ms": {n: round(st.as_dict()["mean_ms"], 2) for n, st in summary.stages.items()},
        "memory": scene.memory.memory_summary(),
    }
    return questions, info, llm_rows


# ---- the tiny Video-LLM with the tools wired -----------------------------------------------------
def tool_call(qa: QA) -> tuple[str, dict]:
    """The tool call an agent would make for the question (name, JSON arguments)."""
    obj = re.search(r"the ([a-z]+)", qa.text)
    name = obj[1] if obj else None
    if qa.template in ("where_now", "where_at"):
        t = re.search(r"(\d+):(\d+(?:\.\d+)?)", qa.text)
        at = int(t[1]) * 60 + float(t[2]) if t else qa.now_s
        return "where", {"obj": name, "at_s": at}
    if qa.template in ("when_last_move", "ago_stopped", "has_moved"):
        return "last_moved", {"obj": name}
    if qa.template == "ago_seen":
        return "last_seen", {"obj": name}
    return "visible_at", {"at_s": qa.now_s}


def ask_llm(found: list[QA], memory, video_memory, rng: np.random.Generator, sample: int = 8) -> list[dict]:
    from memstream.streaming.videomem.grounding import grounded_question

    rows = []
    picks = rng.choice(len(found), size=min(sample, len(found)), replace=False)
    for i in sorted(picks.tolist()):
        qa = found[i]
        name, arguments = tool_call(qa)
        result = call_tool(memory, name, json.loads(json.dumps(arguments)))  # as a client sends JSON
        fact = f"{name}({json.dumps(arguments)}) -> {json.dumps(result)}"
        reply = video_memory.ask(grounded_question(qa.text, [fact]))
        number = re.search(r"-?\d+(?:\.\d+)?", reply.text)
        rows.append({
            "question": qa.text, "truth": qa.truth, "memory_answer": qa.answer, "tool": name,
            "arguments": arguments, "tool_result_chars": len(json.dumps(result)),
            "llm_answer": reply.text[:80], "llm_number": float(number[0]) if number else None,
            "llm_matches_truth": _llm_match(qa, reply.text),
        })
    return rows


def _llm_match(qa: QA, text: str) -> bool:
    if qa.kind == "counting":
        return str(qa.truth).lower() in text.lower().split()
    numbers = [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?", text)]
    if qa.kind == "temporal":
        return any(abs(x - qa.truth) <= 0.5 for x in numbers)
    return len(numbers) >= 3 and float(np.linalg.norm(np.subtract(numbers[:3], qa.truth))) <= 0.10


# ---- query cost at scale ---------------------------------------------------------------------------
def at_scale(frames: int, seed: int) -> dict:
    """The templates' queries on a memory fed ``frames`` frames of the navqa script at 30 fps (every
    object observed on every frame at its true centre plus 1 cm noise: no rendering, so 100,000
    frames fit in minutes; the worst case for the memory's size, as nothing is ever out of view)."""
    from memstream.embodied.scene import ObjectObservation, SceneMemory

    fps = 30.0
    spec = build_scene("navqa", frames=frames, size=SIZE, fps=fps, seed=seed)
    truth = Truth(spec)
    times = np.arange(frames) / fps
    centres = np.stack([np.stack([np.interp(times, o.position.times_s, np.asarray(o.position.values)[:, j])
                                  for j in range(3)], 1) for o in spec.objects], 1)  # (frames, objects, 3)
    centres += np.random.default_rng(seed).normal(0, 0.01, centres.shape)
    memory = SceneMemory()
    started = time.perf_counter()
    for i in range(frames):
        memory.observe(i, float(times[i]), [
            ObjectObservation(o.object_id, i, float(times[i]), tuple(centres[i, k]), "world", 0.9, (0, 0, 10, 10),
                              o.name, 0.05)
            for k, o in enumerate(spec.objects)
        ])
    update_us = (time.perf_counter() - started) / frames * 1e6
    truth.times, truth.visible = times.tolist(), [np.ones(len(spec.objects), np.float32)] * frames
    rng = np.random.default_rng(seed)
    asked = [qa for _ in range(20) for qa in make_questions(truth, float(times[-1]), rng, "scale")]
    for qa in asked:
        score(qa, memory)
    latency, cpu = [qa.query_us for qa in asked], [qa.query_cpu_us for qa in asked]
    slowest = max(asked, key=lambda qa: qa.query_cpu_us)
    return {
        "frames": frames, "stream_min": round(frames / fps / 60, 1), "questions": len(asked),
        "update_us_per_frame": round(update_us, 1), "entries": memory.memory_summary()["entries"],
        "query_us": {"p50": _pct(latency, 50), "p99": _pct(latency, 99), "max": round(max(latency), 1)},
        "query_cpu_us": {"p50": _pct(cpu, 50), "p99": _pct(cpu, 99), "max": round(max(cpu), 1),
                         "slowest_template": slowest.template},
        "spatial_median_m": _med([q.error for q in asked if q.kind == "spatial"]),
        "temporal_median_s": _med([q.error for q in asked if q.kind == "temporal"]),
        "counting_accuracy": round(float(np.mean([q.correct for q in asked if q.kind == "counting"])), 4),
    }


# ---- tables ----------------------------------------------------------------------------------------
def keep(questions: list[QA], rng: np.random.Generator) -> list[QA]:
    """At most ``PER_LENGTH`` questions, round-robin over templates (so common templates do not crowd
    out rare ones)."""
    by_template: dict[str, list[QA]] = {}
    for qa in questions:
        by_template.setdefault(qa.template, []).append(qa)
    for group in by_template.values():
        rng.shuffle(group)
    kept: list[QA] = []
    while len(kept) < PER_LENGTH and any(by_template.values()):
        for group in by_template.values():
            if group and len(kept) < PER_LENGTH:
                kept.append(group.pop())
    return kept


def summarise(length: str, qs: list[QA], info: dict) -> dict:
    spatial = [q.error for q in qs if q.kind == "spatial"]
    temporal = [q.error for q in qs if q.kind == "temporal"]
    counting = [q.correct for q in qs if q.kind == "counting"]
    latency = [q.query_us for q in qs]
    return {
        **info,
        "questions": len(qs),
        "by_template": {t: sum(q.template == t for q in qs) for t in sorted({q.template for q in qs})},
        "spatial": {"n": len(spatial), "median_m": _med(spatial), "p90_m": _pct(spatial, 90)},
        "temporal": {"n": len(temporal), "median_s": _med(temporal), "p90_s": _pct(temporal, 90)},
        "temporal_by_template": {
            t: _med([q.error for q in qs if q.template == t]) for t in ("when_last_move", "ago_stopped", "ago_seen")
        },
        "counting": {"n": len(counting), "accuracy": round(sum(counting) / len(counting), 4) if counting else None},
        "counting_by_template": {
            t: f"{sum(q.correct for q in qs if q.template == t)}/{sum(q.template == t for q in qs)}"
            for t in ("moved_window", "visible_now", "near", "moved_last", "has_moved")
        },
        "query_us": {"p50": _pct(latency, 50), "p99": _pct(latency, 99), "max": round(max(latency), 1)},
        "query_cpu_us_max": round(max(q.query_cpu_us for q in qs), 1),
    }


def _med(values: list[float]) -> float | None:
    return round(float(np.percentile(values, 50, method="nearest")), 4) if values else None


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q, method="nearest")), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", nargs="+", default=list(LENGTHS), choices=list(LENGTHS))
    parser.add_argument("--full", nargs="*", default=["short", "medium"], choices=list(LENGTHS),
                        help="lengths that run the whole scene preset (others: tracking -> scene)")
    parser.add_argument("--feeds", nargs="*", default=["exact_masks", "tracker"], choices=["exact_masks", "tracker"],
                        help="tracker: the preset's classical tracker; exact_masks: the renderer's masks in its place")
    parser.add_argument("--tracker-lengths", nargs="*", default=["short", "medium"], choices=list(LENGTHS),
                        help="lengths the tracker feed runs (it costs the most)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DATA / "scene_qa")
    parser.add_argument("--tag", default="", help="suffix of the results file (scene_qa{tag}.json)")
    parser.add_argument("--scale-frames", type=int, default=0,
                        help="also time the templates' queries on a memory fed this many scripted frames (100000)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # a shared 2-core machine
    rows, records, llm = [], [], []
    for feed in args.feeds:
        for length in args.lengths:
            if feed == "tracker" and length not in args.tracker_lengths:
                continue
            found, info, llm_rows = run_length(length, length in args.full, feed, args.seed, args.out)
            kept = keep(found, np.random.default_rng(args.seed))
            result = summarise(length, kept, info)
            result["asked"] = len(found)
            rows.append(result)
            records += [{"feed": feed, **asdict(q)} for q in kept]
            llm += [{"length": length, "feed": feed, **r} for r in llm_rows]
            print(f"{feed} {length}: {result['questions']} questions, {result['spatial']}, "
                  f"{result['temporal']}, {result['counting']}", flush=True)
    print_table(
        "scene memory on NaVQA-style questions (navqa scene, 160x120, 4 fps; memory fed by the pipeline)",
        ["feed", "length", "path", "frames", "questions", "spatial median / p90 m", "temporal median / p90 s",
         "counting acc", "query p50 / p99 us", "pipeline fps"],
        [
            [r["feed"], r["length"], r["path"], r["frames"], r["questions"],
             f"{r['spatial']['median_m']} / {r['spatial']['p90_m']} (n={r['spatial']['n']})",
             f"{r['temporal']['median_s']} / {r['temporal']['p90_s']} (n={r['temporal']['n']})",
             f"{r['counting']['accuracy']} (n={r['counting']['n']})",
             f"{r['query_us']['p50']} / {r['query_us']['p99']}", r["fps"]]
            for r in rows
        ],
    )
    scale = at_scale(args.scale_frames, args.seed) if args.scale_frames else None
    if scale is not None:
        print_table(
            "the same templates on a memory fed the navqa script at 30 fps (scripted observations, 1 cm noise)",
            ["frames", "minutes", "questions", "query wall p50 / p99 / max us", "query CPU p99 / max us",
             "update us/frame", "entries",
             "spatial median m", "temporal median s", "counting acc"],
            [[scale["frames"], scale["stream_min"], scale["questions"],
              f"{scale['query_us']['p50']} / {scale['query_us']['p99']} / {scale['query_us']['max']}",
              f"{scale['query_cpu_us']['p99']} / {scale['query_cpu_us']['max']} ({scale['query_cpu_us']['slowest_template']})",
              scale["update_us_per_frame"], scale["entries"], scale["spatial_median_m"], scale["temporal_median_s"],
              scale["counting_accuracy"]]],
        )
    if llm:
        print_table(
            "the same questions through the tiny RANDOM-WEIGHT Video-LLM, scene tools wired "
            "(its answers are noise: this proves the wiring, not an accuracy)",
            ["length", "question", "truth", "memory", "tool call", "LLM answer", "LLM right"],
            [[r["length"], r["question"], _short(r["truth"]), _short(r["memory_answer"]),
              f"{r['tool']}({json.dumps(r['arguments'])})", r["llm_answer"][:40], r["llm_matches_truth"]]
             for r in llm],
        )
    path = save(f"scene_qa{args.tag}", {"lengths": rows, "llm_tools": llm, "questions": records, "scale": scale,
                             "llm_note": "tiny-random weights: answers are noise; the rows prove the tool wiring"})
    print(f"wrote {path}")


def _short(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(f"{v:.2f}" for v in value) + ")"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


if __name__ == "__main__":
    main()
