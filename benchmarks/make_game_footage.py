"""Render a game-footage tracking set from ViZDoom: animated monsters that turn, occlude each other and
leave the view and come back, with exact boxes from the engine's label buffer.

Each sequence is one monster followed from its first frame, in the LaSOT layout that
:func:`memstream.tracking.eval.open_dataset` reads, plus its H.264 encodings::

    ROOT/<scenario>-<seed>/img/00000001.png ...    the rendered frames (lossless), 320x240 RGB
    ROOT/<scenario>-<seed>/groundtruth.txt         x,y,w,h of the target's visible pixels; 0,0,0,0 when absent
    ROOT/<scenario>-<seed>/full_occlusion.txt      LaSOT flags (one comma-separated line): 1 where the target
                                                   is inside the field of view but none of its pixels is drawn
    ROOT/<scenario>-<seed>/out_of_view.txt         1 where the target lies outside the horizontal field of view
    ROOT/<scenario>-<seed>/video_crf<N>.mp4        the frames through libx264 at CRF N (``--crf``, 18 and 28)
    ROOT/<scenario>-<seed>/meta.json               scenario, seed, target id and class, absent share

How a sequence is made: the scenario (``defend_the_center``, ``defend_the_line``, ``deadly_corridor``,
``basic``; Freedoom's art ships in the vizdoom wheel) runs headless with god mode on and no attack,
so every monster lives and walks (sprites animate per step and per viewing angle). The camera follows a
seeded random walk: turns in both directions at random lengths, so monsters swing out of the view and
back, and some strafing and walking. After a warm-up, the first monster whose visible box is at least
``--min-side`` pixels on both sides and off the border becomes the target; the sequence keeps it for
``--frames`` frames (``--skip`` game tics per frame). A sequence whose target is absent on fewer
than 5 % or more than 60 % of its frames (``--min-absent``, ``--max-absent``) is rendered again from
the next seed, so every kept one has the target leave and come back. A seed on which no monster
qualifies within 400 warm-up frames gives no sequence either (so far every ``deadly_corridor`` seed
tried; the cause is not investigated). Boxes are the label buffer's bounding box of the target's visible
pixels (a partly occluded monster gets the box of what shows).

    python benchmarks/make_game_footage.py [--out benchmarks/data/game_footage] [--sequences 8]
        [--frames 240] [--first-seed 100] [--crf 18,28]
"""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import cv2
import numpy as np

from memstream.streaming.videoio import VideoWriter

SCENARIOS = ("defend_the_center", "deadly_corridor", "basic", "defend_the_line")
BUTTONS = ("TURN_LEFT", "TURN_RIGHT", "MOVE_LEFT", "MOVE_RIGHT", "MOVE_FORWARD", "MOVE_BACKWARD")
NOT_MONSTERS = ("DoomPlayer", "Puff", "Blood", "Ball", "Shot", "Clip", "Medikit", "Stimpack", "Bonus", "Tracer")
FOV_DEG = 90.0
DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "game_footage"


def _game(scenario: str, seed: int):
    import vizdoom as vzd

    game = vzd.DoomGame()
    game.load_config(os.path.join(vzd.scenarios_path, f"{scenario}.cfg"))
    game.set_window_visible(False)
    game.set_screen_resolution(vzd.ScreenResolution.RES_320X240)
    game.set_screen_format(vzd.ScreenFormat.RGB24)
    game.set_render_hud(False)
    game.set_render_weapon(False)
    game.set_render_crosshair(False)
    game.set_labels_buffer_enabled(True)
    game.set_objects_info_enabled(True)
    game.set_available_buttons([getattr(vzd.Button, b) for b in BUTTONS])
    game.set_episode_timeout(100_000)
    game.set_seed(seed)
    game.set_mode(vzd.Mode.PLAYER)
    game.init()
    game.send_game_command("god")
    return game


def _is_monster(name: str) -> bool:
    return not any(word in name for word in NOT_MONSTERS)


class CameraWalk:
    """A seeded random walk of button presses: each segment holds one action for 4-25 frames."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.left, self.action = rng, 0, [0] * len(BUTTONS)

    def next(self) -> list[int]:
        if self.left == 0:
            self.left = int(self.rng.integers(4, 26))
            turn = self.rng.choice(3, p=[0.3, 0.3, 0.4])  # left, right, none
            action = [0] * len(BUTTONS)
            if turn < 2:
                action[turn] = 1
            if self.rng.random() < 0.35:
                action[2 + int(self.rng.integers(4))] = 1
            self.action = action
        self.left -= 1
        return self.action


def _target_flags(state, target_id: int) -> tuple[np.ndarray, bool, float]:
    """The target's box (zeros when no pixel shows), whether it lies outside the horizontal view, and
    its bearing from the view direction in degrees (positive: to the left)."""
    box = np.zeros(4)
    for label in state.labels:
        if label.object_id == target_id:
            box = np.array([label.x, label.y, label.width, label.height], np.float64)
    player = next((o for o in state.objects if o.name == "DoomPlayer"), None)
    target = next((o for o in state.objects if o.id == target_id), None)
    outside, offset = True, 0.0
    if player is not None and target is not None:
        bearing = math.degrees(math.atan2(target.position_y - player.position_y, target.position_x - player.position_x))
        offset = (bearing - player.angle + 180.0) % 360.0 - 180.0
        outside = abs(offset) > FOV_DEG / 2
    return box, outside and not box[2:].all(), offset


def render_sequence(scenario: str, seed: int, frames: int, skip: int, min_side: int) -> dict | None:
    """Frames, boxes and flags of one sequence, or None when no usable target shows up."""
    game = _game(scenario, seed)
    walk = CameraWalk(np.random.default_rng(seed))
    try:
        target = None
        for _ in range(400):  # warm-up: wait for a monster big enough, off the border
            state = game.get_state()
            for label in state.labels:
                on_screen = label.x > 2 and label.y > 2 and label.x + label.width < 318
                if _is_monster(label.object_name) and min(label.width, label.height) >= min_side and on_screen:
                    target = label
                    break
            if target is not None:
                break
            game.make_action(walk.next(), skip)
        if target is None:
            return None
        rgb, boxes, outside = [], [], []
        absent_for, patience = 0, int(walk.rng.integers(5, 25))
        for _ in range(frames):
            if game.is_episode_finished():
                return None
            state = game.get_state()
            box, out, offset = _target_flags(state, target.object_id)
            rgb.append(np.ascontiguousarray(state.screen_buffer))
            boxes.append(box)
            outside.append(out)
            absent_for = 0 if box[2:].all() else absent_for + 1
            action = walk.next()
            if absent_for > patience:  # look back for it: the target leaves the view and comes back
                action = [int(offset > 0), int(offset <= 0)] + [0] * (len(BUTTONS) - 2)
                walk.left = 0
                if abs(offset) < FOV_DEG / 4:
                    patience = int(walk.rng.integers(5, 25))
            game.make_action(action, skip)
    finally:
        game.close()
    boxes_arr = np.array(boxes)
    present = boxes_arr[:, 2:].all(axis=1)
    return {"rgb": rgb, "boxes": boxes_arr, "present": present, "out_of_view": np.array(outside) & ~present,
            "target_id": int(target.object_id), "target_class": target.object_name}


def write_sequence(folder: Path, sequence: dict, crfs: list[int], fps: float) -> None:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for i, rgb in enumerate(sequence["rgb"], start=1):
        cv2.imwrite(str(folder / "img" / f"{i:08d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    lines = [",".join(str(int(v)) for v in box) for box in sequence["boxes"]]
    (folder / "groundtruth.txt").write_text("\n".join(lines) + "\n")
    absent, outside = ~sequence["present"], sequence["out_of_view"]
    (folder / "out_of_view.txt").write_text(",".join(str(int(v)) for v in outside) + "\n")
    (folder / "full_occlusion.txt").write_text(",".join(str(int(v)) for v in absent & ~outside) + "\n")
    for crf in crfs:
        with VideoWriter(folder / f"video_crf{crf}.mp4", fps, codec="h264", crf=crf) as writer:
            for rgb in sequence["rgb"]:
                writer.write(rgb)
    meta = {k: sequence[k] for k in ("target_id", "target_class")}
    meta.update(scenario=folder.name.rsplit("-", 1)[0], seed=int(folder.name.rsplit("-", 1)[1]),
                frames=len(sequence["rgb"]), absent_share=round(float(absent.mean()), 3), fps=fps)
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--sequences", type=int, default=8)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--skip", type=int, default=1, help="game tics per frame (35 tics per second)")
    parser.add_argument("--min-side", type=int, default=14, help="smallest target box side at frame 0, pixels")
    parser.add_argument("--min-absent", type=float, default=0.05)
    parser.add_argument("--max-absent", type=float, default=0.6)
    parser.add_argument("--crf", default="18,28", help="comma-separated CRFs of the H.264 copies")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    crfs = [int(c) for c in args.crf.split(",") if c]
    scenarios = args.scenarios.split(",")
    seed, made = args.first_seed, 0
    while made < args.sequences and seed < args.first_seed + 20 * args.sequences:
        scenario = scenarios[seed % len(scenarios)]
        sequence = render_sequence(scenario, seed, args.frames, args.skip, args.min_side)
        seed += 1
        if sequence is None:
            continue
        share = float((~sequence["present"]).mean())
        if not args.min_absent <= share <= args.max_absent:
            print(f"{scenario}-{seed - 1}: target absent on {share:.0%} of frames, skipped")
            continue
        folder = args.out / f"{scenario}-{seed - 1}"
        write_sequence(folder, sequence, crfs, 35.0 / args.skip)
        made += 1
        print(f"{folder}: {sequence['target_class']} #{sequence['target_id']}, absent on {share:.0%} of frames")
    if made < args.sequences:
        raise SystemExit(f"made only {made} of {args.sequences} sequences")


if __name__ == "__main__":
    main()
