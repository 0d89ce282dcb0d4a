"""Synthetic scene rendering speed: frames per second with exact ground truth, per preset and size.

Claim: every preset renders at >= 100 fps at 320x240 on a 2-core CPU, ground truth included (the
``Frame`` with ``FrameGroundTruth`` that ``synthetic://`` yields).

Side by side, in one run:

* ``frames+gt``: ``Scene.frame(i)``, i.e. RGB, depth, pose and ground truth as the source yields them;
* ``no culling``: the same renderer intersecting every object over the whole image instead of over
  the screen rectangle of its bounds (what the rectangles buy);
* ``write_scene``: frames per second of ``memstream synth`` (H.264 video, PNGs, masks, LaSOT, TUM).

Run: ``python benchmarks/bench_synthetic.py [--frames 120]``; writes ``benchmarks/results/synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

from memstream.streaming.synthetic import SCENE_PRESETS, Renderer, Scene, build_scene, write_scene

RESULTS = Path(__file__).resolve().parent / "results" / "synthetic.json"
SIZES = ((320, 240), (640, 480))
TARGET_FPS = 100.0


class _NoCullingRenderer(Renderer):
    """Intersects each object with every ray of the image (the baseline the rectangles replace)."""

    def _screen_rect(self, placement, pose):
        return None if super()._screen_rect(placement, pose) is None else (0, 0, self.width, self.height)


def _fps(render_one, frames: int, repeats: int = 2) -> float:
    """Best of ``repeats`` passes over all frames (the first frame is rendered once beforehand)."""
    render_one(0)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(frames):
            render_one(i)
        best = min(best, time.perf_counter() - start)
    return frames / best


def _write_fps(preset: str, frames: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        write_scene(f"{preset}?frames={frames}", Path(folder) / "scene")
        return frames / (time.perf_counter() - start)


def machine_info() -> dict:
    import av

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "pyav": av.__version__,
    }


def run(frames: int) -> dict:
    rows = []
    for preset in SCENE_PRESETS.names():
        for width, height in SIZES:
            spec = build_scene(preset, frames=frames, size=(width, height))
            scene = Scene(spec)
            baseline = _NoCullingRenderer(spec)
            rows.append(
                {
                    "preset": preset,
                    "size": f"{width}x{height}",
                    "objects": len(spec.objects),
                    "camera_moves": not (spec.camera.position.is_constant and spec.camera.yaw.is_constant),
                    "fps_frames_gt": round(_fps(scene.frame, frames), 1),
                    "fps_no_culling": round(_fps(baseline.render, frames), 1),
                }
            )
        rows[-2]["fps_write_scene"] = round(_write_fps(preset, frames), 1)
    small = [r["fps_frames_gt"] for r in rows if r["size"] == "320x240"]
    return {
        "benchmark": "synthetic",
        "frames_per_preset": frames,
        "claim": f"every preset >= {TARGET_FPS:.0f} fps at 320x240 with ground truth",
        "claim_holds": min(small) >= TARGET_FPS,
        "min_fps_320x240": min(small),
        "machine": machine_info(),
        "results": rows,
    }


def print_table(result: dict) -> None:
    table = Table(title=f"synthetic scenes: frames/s ({result['frames_per_preset']} frames, best of 2)")
    for column in (
        "preset",
        "size",
        "objects",
        "camera moves",
        "frames+gt",
        "no culling",
        "speed-up",
        "write_scene",
    ):
        table.add_column(column, justify="left" if column in ("preset", "size") else "right")
    for r in result["results"]:
        table.add_row(
            r["preset"],
            r["size"],
            str(r["objects"]),
            "yes" if r["camera_moves"] else "no",
            f"{r['fps_frames_gt']:.1f}",
            f"{r['fps_no_culling']:.1f}",
            f"{r['fps_frames_gt'] / r['fps_no_culling']:.2f}x",
            f"{r['fps_write_scene']:.1f}" if "fps_write_scene" in r else "",
        )
    console = Console(width=120)
    console.print(table)
    verdict = "holds" if result["claim_holds"] else "FAILS"
    console.print(f"claim ({result['claim']}): {verdict}; slowest preset {result['min_fps_320x240']:.1f} fps")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=120, help="frames rendered per preset and size")
    args = parser.parse_args()
    result = run(args.frames)
    print_table(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
